"""A local ``mlflow server`` process on 127.0.0.1, for several writers over one SQLite store and for tests.

SQLite takes one writer at a time; several worker processes each opening ``mlflow.db`` contend for its lock
("database is locked"). One server process owning the database serialises their writes, so workers talk
HTTP to it instead. ``--workers 1``: with uvicorn's default of several workers each request pays ~45 ms on a
small machine, with one it pays under 1 ms.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from tracking.errors import TrackingUnavailable
from tracking.redact import redact


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class MlflowServer:
    """``with MlflowServer(backend_uri, artifacts_dir) as server: server.url`` — started on a free port,
    bound to 127.0.0.1, stopped (with its whole process group) on exit."""

    def __init__(
        self, backend_store_uri: str, artifacts_dir: Path, port: int | None = None, log_file: Path | None = None
    ):
        self.backend_store_uri = backend_store_uri
        self.artifacts_dir = Path(artifacts_dir)
        self.port = port or free_port()
        self.log_file = log_file
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 90.0) -> MlflowServer:
        self.artifacts_dir.mkdir(parents=True, exist_ok=True)
        cmd = [
            sys.executable,
            "-m",
            "mlflow",
            "server",
            "--backend-store-uri",
            self.backend_store_uri,
            "--default-artifact-root",
            self.artifacts_dir.resolve().as_uri(),
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--workers",
            "1",
        ]
        # No job runner: it starts a pool of background consumers that sweeps never uses (GenAI jobs).
        env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true", "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
        out = open(self.log_file, "ab") if self.log_file else subprocess.DEVNULL  # noqa: SIM115 — owned by Popen
        self.process = subprocess.Popen(
            cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, start_new_session=True
        )
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    break
                try:
                    with urllib.request.urlopen(f"{self.url}/health", timeout=2) as r:
                        if r.status == 200:
                            return self
                except OSError:
                    time.sleep(0.3)
        except BaseException:  # Ctrl-C while starting: `with` would not call __exit__, so stop it here
            self.stop()
            raise
        self.stop()
        raise TrackingUnavailable(
            f"the MLflow server for {redact(self.backend_store_uri)} did not start within {timeout:.0f} s"
            + (f"; see {self.log_file}" if self.log_file else "")
        )

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM to the server's process group, then wait until every process of it is gone (SIGKILL after
        ``timeout``). Not only the leader: ``mlflow server`` runs uvicorn as a child, which can outlive it by
        a moment while still holding the port."""
        proc, self.process = self.process, None
        if proc is None:
            return
        for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                break
            deadline = time.monotonic() + wait
            while time.monotonic() < deadline:
                proc.poll()  # reap the leader, or it stays a zombie member of the group
                if not _group_alive(proc.pid):
                    return
                time.sleep(0.05)
        proc.poll()

    def __enter__(self) -> MlflowServer:
        return self.start() if self.process is None else self

    def __exit__(self, *exc) -> None:
        self.stop()
