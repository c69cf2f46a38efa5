"""A local ``mlflow server`` process on 127.0.0.1, for several writers over one SQLite store and for tests.

SQLite takes one writer at a time; several worker processes each opening ``mlflow.db`` contend for its lock
("database is locked"). One server process owning the database serialises their writes, so workers talk
HTTP to it instead. ``workers=1`` (the default here): over SQLite, several server processes would contend for
the one writer lock the server exists to avoid. Over PostgreSQL, many sweep workers are served by several
server processes (``workers=K``), each with a bounded SQLAlchemy pool: ``pool_size`` connections kept, and
overflow up to :func:`pool_ceiling` for a moment (docs/how-to/many-workers.md; bench/scale_workers.py).

The backend store URI reaches the server through its environment (``MLFLOW_BACKEND_STORE_URI``), never its
command line: a PostgreSQL URL's password would otherwise be in the process list, readable by every local user.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

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


# uvicorn runs MLflow's request handlers on AnyIO's thread pool: at most this many at once per process.
SERVER_THREADS = 40


def pool_ceiling(pool_size: int) -> int:
    """The most connections one server process's pool may open: more than its request threads.

    MLflow's SQL store takes a second connection inside some requests while it holds the first (``log_batch``
    checks the run in one session, then writes params and metrics in others). A pool no larger than the
    requests in flight can then be held entirely by requests that each wait for a second connection: none
    proceeds until SQLAlchemy's 30-s pool timeout fails them with BAD_REQUEST. Seen with 64 workers on
    2 processes with pools of 4 + 4: the server stalled for 30 s at a time. With one connection more than
    its threads, some request always gets its second one. The overflow is opened only under such load and
    closed again; ``pool_size`` are kept."""
    return max(2 * pool_size, SERVER_THREADS + 1)


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    """Whether a server already listens on ``host:port`` (binding as uvicorn does, with SO_REUSEADDR, so a
    port whose last connections linger in TIME_WAIT counts as free)."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return True
    return False


def next_free_port(port: int) -> int:
    """The first free port after ``port`` (a suggestion for people: 5001 after 5000), else any free one."""
    return next((p for p in range(port + 1, min(port + 50, 65536)) if not port_in_use(p)), None) or free_port()


# The MLflow 3 UI opens on the GenAI view (traces), where a sweep shows nothing; ``workflowType`` selects its
# "Model training" view, where the runs are. Routes read from MLflow 3.17's UI bundle.
_MODEL_TRAINING = "workflowType=machine_learning"


def runs_url(base_url: str, experiment_id: str | None) -> str:
    """The address of an experiment's runs in the MLflow UI at ``base_url`` (the list of experiments when
    the id is unknown), without the URL's credentials: a browser asks for them."""
    if experiment_id is None:
        return experiments_url(base_url)
    return f"{_without_credentials(base_url)}/#/experiments/{experiment_id}/runs?{_MODEL_TRAINING}"


def experiments_url(base_url: str) -> str:
    return f"{_without_credentials(base_url)}/#/experiments?{_MODEL_TRAINING}"


def _without_credentials(url: str) -> str:
    """``url`` without ``user:password@``, query and fragment, and without a trailing slash."""
    parts = urlsplit(url)
    netloc = parts.netloc.rsplit("@", 1)[-1]
    return urlunsplit(parts._replace(netloc=netloc, path=parts.path.rstrip("/"), query="", fragment=""))


def experiments(base_url: str, timeout: float = 10.0) -> list[tuple[str, str]]:
    """(id, name) of the experiments on the tracking server at ``base_url``, most recently updated first,
    without MLflow's own ``Default``; empty when the server does not answer (the caller then shows the list)."""
    from tracking.store import http_request

    url = base_url.rstrip("/") + "/api/2.0/mlflow/experiments/search?max_results=1000&order_by=last_update_time+DESC"
    try:
        with urllib.request.urlopen(http_request(url), timeout=timeout) as response:
            found = json.load(response).get("experiments", [])
    except (OSError, ValueError):
        return []
    return [(e["experiment_id"], e["name"]) for e in found if e.get("name") != "Default"]


class MlflowServer:
    """``with MlflowServer(backend_uri, artifacts_dir) as server: server.url`` — started on a free port,
    bound to 127.0.0.1, stopped (with its whole process group) on exit."""

    def __init__(
        self,
        backend_store_uri: str,
        artifacts_dir: Path,
        port: int | None = None,
        log_file: Path | None = None,
        workers: int = 1,
        pool_size: int | None = None,
    ):
        self.backend_store_uri = backend_store_uri
        self.workers, self.pool_size = workers, pool_size
        self.artifacts_dir = Path(artifacts_dir)
        self.port = port or free_port()
        self.log_file = log_file
        self.process: subprocess.Popen | None = None
        self._log_offset = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 90.0) -> MlflowServer:
        """Start the server and wait until it answers. Raises TrackingUnavailable at once when the port is
        taken, when the server exits while starting (with the last line of its log), or after ``timeout``."""
        if port_in_use(self.port):
            raise TrackingUnavailable(
                f"port {self.port} on 127.0.0.1 is already in use (another MLflow UI?); "
                f"choose another with --port, e.g. --port {next_free_port(self.port)}"
            )
        self.artifacts_dir.mkdir(parents=True, exist_ok=True)
        cmd = [
            sys.executable,
            "-m",
            "mlflow",
            "server",
            "--default-artifact-root",
            self.artifacts_dir.resolve().as_uri(),
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--workers",
            str(self.workers),
        ]
        # No job runner: it starts a pool of background consumers that sweeps never uses (GenAI jobs).
        env = {
            **os.environ,
            "MLFLOW_BACKEND_STORE_URI": self.backend_store_uri,
            "MLFLOW_DISABLE_TELEMETRY": "true",
            "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
        }
        if self.pool_size is not None:  # per server process: pool_size kept, more for a moment (pool_ceiling)
            env |= {
                "MLFLOW_SQLALCHEMYSTORE_POOL_SIZE": str(self.pool_size),
                "MLFLOW_SQLALCHEMYSTORE_MAX_OVERFLOW": str(pool_ceiling(self.pool_size) - self.pool_size),
                "MLFLOW_SQLALCHEMYSTORE_POOL_RECYCLE": "1800",
            }
        out = open(self.log_file, "ab") if self.log_file else subprocess.DEVNULL  # noqa: SIM115 — owned by Popen
        self._log_offset = out.tell() if self.log_file else 0  # the log is appended to: read only this run's part
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
        status = self.process.poll()
        self.stop()
        what = (
            f"exited with status {status} while starting"
            if status is not None
            else f"did not start within {timeout:.0f} s"
        )
        raise TrackingUnavailable(f"the MLflow server for {redact(self.backend_store_uri)} {what}{self._log_hint()}")

    def _log_hint(self) -> str:
        """``: <the log's last error line>; see <log>`` — the line usually says why (a port taken, a bad URI)."""
        if not self.log_file:
            return ""
        try:
            with open(self.log_file, "rb") as f:
                f.seek(self._log_offset)
                lines = [line.strip() for line in f.read().decode(errors="replace").splitlines()]
        except OSError:
            lines = []
        errors = [line for line in lines if "ERROR" in line or "Error" in line] or [line for line in lines if line]
        return (f": {redact(errors[-1])[:200]}" if errors else "") + f"; see {self.log_file}"

    def stopped_by_itself(self) -> TrackingUnavailable:
        """The error for a server that exited while it was serving (killed, or it lost its port to another
        server started at the same moment: uvicorn then exits with status 0)."""
        status = self.process.returncode if self.process is not None else None
        return TrackingUnavailable(f"the MLflow server stopped by itself (status {status}){self._log_hint()}")

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
