"""optuna-dashboard opens a sweep's Optuna storage as it is (journal file or PostgreSQL), labels the
objectives by name, and `sweeps run` prints the command that does it."""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import new_workdir, requires_postgres, run_cli
from tracking.server import free_port

DASHBOARD = Path(sys.executable).with_name("optuna-dashboard")
pytestmark = pytest.mark.skipif(
    not DASHBOARD.exists() and shutil.which("optuna-dashboard") is None,
    reason="optuna-dashboard is not installed (pip install -e '.[test]' installs it)",
)


def _printed_command(stdout: str) -> list[str]:
    """The dashboard command `sweeps run` printed, on the line after its heading."""
    lines = stdout.splitlines()
    heading = next(i for i, line in enumerate(lines) if line.startswith("or Optuna's dashboard"))
    command = shlex.split(lines[heading + 1])
    assert command[0] == "optuna-dashboard", lines[heading + 1]
    return command


def _get(url: str, deadline: float) -> dict:
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                return json.load(response)
        except (urllib.error.URLError, ConnectionError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.3)


def _ask_dashboard(command: list[str], cwd: Path, log: Path) -> tuple[dict, dict]:
    """Start the printed command on a free loopback port, read the study list and the first study, stop it."""
    port = free_port()
    exe = str(DASHBOARD) if DASHBOARD.exists() else "optuna-dashboard"
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [exe, *command[1:], "--host", "127.0.0.1", "--port", str(port), "--quiet"],
            cwd=cwd,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        base = f"http://127.0.0.1:{port}/api/studies"
        studies = _get(base, time.monotonic() + 60)
        [summary] = studies["study_summaries"]
        detail = _get(f"{base}/{summary['study_id']}?after=0", time.monotonic() + 10)
        return summary, detail
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _check(summary: dict, detail: dict, trials: int) -> None:
    assert summary["study_name"] == "tiny" and summary["directions"] == ["minimize"]
    assert detail["objective_names"] == ["final_val_cost"]  # not "Objective 0"
    assert len(detail["trials"]) == trials
    assert all(t["state"] == "Complete" for t in detail["trials"])


def test_the_dashboard_opens_the_embedded_journal_as_printed(tmp_path, tiny_spec, template_db):
    new_workdir(tmp_path / "wd", template_db)
    proc = run_cli(
        "run", tiny_spec, "--trials", "2", "--set", "training.epochs=1", "--workdir", "wd", cwd=tmp_path, check=True
    )
    command = _printed_command(proc.stdout)
    assert command == ["optuna-dashboard", "wd/optuna.journal"]
    _check(*_ask_dashboard(command, tmp_path, tmp_path / "dashboard.log"), trials=2)


@requires_postgres
@pytest.mark.postgres
def test_the_dashboard_opens_a_postgresql_storage_as_printed(tmp_path, tiny_spec, fresh_db, template_db):
    url = fresh_db("dashboard")
    new_workdir(tmp_path / "wd", template_db)  # its MLflow store, migrated already
    proc = run_cli(
        "run", tiny_spec, "--trials", "1", "--set", "training.epochs=1", "--storage", url,
        "--workdir", "wd", cwd=tmp_path, check=True,
    )  # fmt: skip
    command = _printed_command(proc.stdout)
    assert command[1].startswith("postgresql+psycopg://") and command[1].endswith(url.rsplit("/", 1)[1])
    _check(*_ask_dashboard(command, tmp_path, tmp_path / "dashboard.log"), trials=1)
