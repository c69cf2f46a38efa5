"""Shared test helpers: the real ``sweeps`` CLI in a subprocess, and small specs."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

# Tests send SIGINT and SIGHUP to the CLI and to scripts, which must meet them as a user's Ctrl-C and a
# terminal closing. A suite started in the background by a shell without job control (`pytest &` in a
# script) inherits SIGINT ignored, one started under `nohup` SIGHUP, and every process it starts would
# inherit that too and never see the signal. A handler of Python's own is not inherited through exec: each
# child gets the default disposition again. The suite itself keeps ignoring SIGHUP (a no-op handler).
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)
if signal.getsignal(signal.SIGHUP) is signal.SIG_IGN:
    signal.signal(signal.SIGHUP, lambda signum, frame: None)

ROOT = Path(__file__).resolve().parents[1]
SWEEPS = Path(sys.executable).parent / "sweeps"

TINY_SPEC = """\
name: tiny
seed: 7
trials: 4
dataset: {name: moons, n_samples: 400, noise: 0.2, val_fraction: 0.25}
model: {hidden: [8], activation: tanh}
training: {epochs: 4}
search:
  batch_size: {choices: [32, 64]}
  optimizer: {choices: [momentum, adam]}
  lr: {low: 0.001, high: 0.1, log: true}
  beta1: {low: 0.8, high: 0.95, when: {optimizer: [momentum, adam]}}
  schedule: {choices: [constant, cosine]}
sampler: {name: tpe}
pruner: {name: none}
"""


@pytest.fixture(scope="session", autouse=True)
def _store_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    """New MLflow stores copy an empty one kept in a cache (tracking.sqlite_store): the tests keep theirs
    beside their temporary folders (shared by the xdist workers of a run), not in the user's cache."""
    os.environ.setdefault("OPTSWEEP_CACHE_DIR", str(tmp_path_factory.getbasetemp().parent / "store-cache"))


def cli_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_TRACKING", "SWEEPS_"))}
    env |= {
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
        "PYTHONUNBUFFERED": "1",
        # `sweeps run` draws its HTML report (a few seconds) only in tests that pass SWEEPS_NO_REPORT="".
        "SWEEPS_NO_REPORT": "1",
    }
    return env


def run_cli(
    *args: str, cwd: Path, timeout: float = 300, check: bool = False, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    """Run the installed ``sweeps`` console script; output is captured as text."""
    proc = subprocess.run(
        [str(SWEEPS), *map(str, args)],
        cwd=cwd,
        env={**cli_env(), **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"sweeps {' '.join(map(str, args))} exited {proc.returncode}:\n{proc.stderr}")
    return proc


def processes_with(*parts: str, writers: bool = True) -> dict[int, str]:
    """Every process whose command line contains each of ``parts``: pid -> command line (arguments joined by
    spaces). ``writers=False``: but the tracking writers forked from them, which share their command line."""
    from tracking.writer.launch import NAME as WRITER_NAME

    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            name = (entry / "comm").read_text().strip() if not writers else ""
        except OSError:
            continue
        if all(p in cmdline for p in parts) and (writers or name != WRITER_NAME):
            found[int(entry.name)] = cmdline
    return found


def stop_server_groups(leaders) -> None:
    """SIGTERM to the process group of each MLflow server in ``leaders`` (the server and its uvicorn child):
    one that the process which started it left behind."""
    for pid in leaders:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGTERM)


def start_cli(*args: str, cwd: Path, env: dict[str, str] | None = None, log: Path | None = None) -> subprocess.Popen:
    """Start the ``sweeps`` console script in the background (output to ``log``, or discarded)."""
    out = open(log, "w") if log else subprocess.DEVNULL  # noqa: SIM115 — owned by the process
    return subprocess.Popen(
        [str(SWEEPS), *map(str, args)],
        cwd=cwd,
        env={**cli_env(), **(env or {})},
        stdout=out,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )


@pytest.fixture(scope="session")
def template_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty, migrated MLflow SQLite store, made once per test process (per xdist worker).

    Creating a store runs MLflow's ~50 Alembic migrations: ~1.5 s of CPU in every CLI process that starts a
    fresh workdir. Tests whose subject is not the store's creation start theirs from a copy (:func:`new_workdir`);
    tests/tracking/test_sqlite_store.py and the quickstart test in tests/sweeps/test_cli.py still create one.
    """
    import tracking

    folder = tmp_path_factory.mktemp("template")
    tracking.check_reachable(tracking.default_tracking_uri(folder))
    return folder / "mlflow.db"


def new_workdir(folder: Path, template_db: Path) -> Path:
    """``folder`` made, holding a copy of the empty store ``template_db``: a sweep's workdir, migrated already."""
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(template_db, folder / "mlflow.db")
    return folder


@pytest.fixture
def tiny_spec(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.yaml"
    path.write_text(TINY_SPEC)
    return path


def postgres_url() -> str | None:
    return os.environ.get("OPTSWEEP_TEST_POSTGRES_URL") or None


requires_postgres = pytest.mark.skipif(
    postgres_url() is None,
    reason="set OPTSWEEP_TEST_POSTGRES_URL (e.g. postgresql://postgres@127.0.0.1:5432/test) to run PostgreSQL tests",
)


def admin_connection():
    """An autocommit connection to the test server, to create and drop databases and roles."""
    import psycopg

    return psycopg.connect(postgres_url().replace("postgresql+psycopg://", "postgresql://"), autocommit=True)


@pytest.fixture
def fresh_db():
    """Factory of new, empty databases on the test server; all dropped afterwards."""
    made = []

    def make(prefix: str) -> str:
        name = f"optsweep_{prefix}_{uuid.uuid4().hex[:10]}"
        with admin_connection() as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        made.append(name)
        base = postgres_url().rsplit("/", 1)[0]
        return f"{base}/{name}"

    yield make
    with admin_connection() as conn:
        for name in made:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextlib.contextmanager
def postgres_mlflow_server(folder: Path, **options):
    """An `mlflow server` on a new PostgreSQL database (dropped afterwards), with ``options`` for
    :class:`tracking.server.MlflowServer`. Starting one takes ~9 s of CPU per server process, so tests share
    them (:func:`shared_mlflow_server`) and hand them on as new (:func:`retire_experiments`)."""
    from sweeps.study.storage import sqlalchemy_url
    from tracking.server import MlflowServer

    name = f"optsweep_mlflow_{uuid.uuid4().hex[:10]}"
    with admin_connection() as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        backend = sqlalchemy_url(f"{postgres_url().rsplit('/', 1)[0]}/{name}")
        with MlflowServer(backend, folder / "artifacts", log_file=folder / "mlflow-server.log", **options) as server:
            yield server
    finally:
        with admin_connection() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def retire_experiments(server) -> None:
    """Rename every experiment on ``server`` but Default out of the way: the next test's sweep (its experiment
    named after the spec, ``tiny``) starts a new experiment of the same name, as on a new server."""
    import mlflow

    client = mlflow.MlflowClient(server.url)
    for experiment in client.search_experiments():
        if experiment.name != "Default":
            client.rename_experiment(experiment.experiment_id, f"{experiment.name}-done-{uuid.uuid4().hex[:8]}")


@pytest.fixture(scope="session")
def shared_mlflow_server(tmp_path_factory):
    """One `mlflow server` on a new PostgreSQL database per test process (per xdist worker that runs a test
    using it; `--dist worksteal` keeps a module's tests together unless a worker runs out of work).
    tests/sweeps/test_distributed.py's ``mlflow_server`` hands it to each test as new."""
    with postgres_mlflow_server(tmp_path_factory.mktemp("mlflow-server")) as server:
        yield server
