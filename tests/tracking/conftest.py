"""Real MLflow stores for the tracking tests: an SQLite file per test and one `mlflow server` per session."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

import tracking
from optcore.history import EpochRecord, History

SERVER_START_SECONDS = 90


@pytest.fixture
def sqlite_uri(tmp_path: Path, template_db: Path) -> str:
    """A fresh embedded store: ``sqlite:////<tmp>/mlflow.db`` with artifacts in ``<tmp>/mlartifacts``."""
    shutil.copy(template_db, tmp_path / "mlflow.db")
    return tracking.default_tracking_uri(tmp_path)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def server_uri(tmp_path_factory: pytest.TempPathFactory, template_db: Path) -> Iterator[str]:
    """``http://127.0.0.1:<port>`` of a real `mlflow server` (one worker, SQLite backend, proxied artifacts)."""
    folder = tmp_path_factory.mktemp("server")
    shutil.copy(template_db, folder / "mlflow.db")
    port = _free_port()
    log = (folder / "server.log").open("w")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mlflow",
            "server",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
            "--backend-store-uri",
            tracking.default_tracking_uri(folder),
            "--artifacts-destination",
            str(folder / "artifacts"),
        ],
        cwd=folder,
        stdout=log,
        stderr=subprocess.STDOUT,
        # No job runner (as tracking.server starts its own): seven consumer processes, 16 CPU-s, never used here.
        env={**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true", "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
    )
    uri = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + SERVER_START_SECONDS
        while True:
            if process.poll() is not None:
                pytest.fail(f"mlflow server exited with {process.returncode}:\n{(folder / 'server.log').read_text()}")
            try:
                with urllib.request.urlopen(uri + "/health", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"mlflow server not healthy after {SERVER_START_SECONDS} s")
            time.sleep(0.2)
        yield uri
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
        log.close()


@pytest.fixture(params=["sqlite", "server"])
def store_uri(request: pytest.FixtureRequest) -> str:
    """Each layout test runs against the embedded SQLite store and against the HTTP tracking server."""
    return request.getfixturevalue("sqlite_uri" if request.param == "sqlite" else "server_uri")


def _make_history(
    val_costs: Sequence[float], metric_name: str = "val_accuracy", minibatches_per_epoch: int = 0
) -> History:
    """A History with known values: epoch e has val_cost val_costs[e-1], train_cost = val_cost + 0.1,
    val_metric = 1 - val_cost, lr = 0.01 / e, seconds = 0.5 and mini-batch costs 10*e + i."""
    history = History(metric_name)
    for e, cost in enumerate(val_costs, start=1):
        history.append(EpochRecord(e, cost + 0.1, cost, 1 - cost, 0.01 / e, 0.5))
        history.minibatch_cost += [10.0 * e + i for i in range(minibatches_per_epoch)]
        history.minibatch_cost_ewa += [10.0 * e + i - 0.5 for i in range(minibatches_per_epoch)]
    return history


def _run_trial(
    sweep: tracking.SweepRun,
    number: int,
    params: dict,
    val_costs: Sequence[float],
    state: str = "complete",
    reason: str | None = None,
    minibatches_per_epoch: int = 0,
    via_callback: bool = True,
) -> tracking.TrialRun:
    """Log a trial as the epoch callback would (or only at finish), then finish it with ``state``."""
    history = _make_history(val_costs, minibatches_per_epoch=minibatches_per_epoch)
    run = sweep.trial(number, params, seed=1000 + number, tags={"dataset": "digits"})
    if via_callback:
        k = minibatches_per_epoch
        for i, e in enumerate(history.epoch):
            record = EpochRecord(
                e,
                history.train_cost[i],
                history.val_cost[i],
                history.val_metric[i],
                history.lr[i],
                history.epoch_seconds[i],
            )
            run.log_epoch(
                record, history.minibatch_cost[i * k : (i + 1) * k], history.minibatch_cost_ewa[i * k : (i + 1) * k]
            )
    run.finish(state, history, reason=reason)
    return run


@pytest.fixture
def make_history():
    """``make_history(val_costs, metric_name="val_accuracy", minibatches_per_epoch=0) -> History``."""
    return _make_history


@pytest.fixture
def run_trial():
    """``run_trial(sweep, number, params, val_costs, state="complete", reason=None, ...) -> TrialRun``."""
    return _run_trial
