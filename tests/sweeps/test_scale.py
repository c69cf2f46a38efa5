"""Many workers on one study (sweeps.study.claims, sweeps.study.proxy): exact totals through `sweeps proxy` with a
worker SIGKILLed mid-trial, bounded database connections per worker, and the claim counter's recount. PostgreSQL
only; fresh databases per test; tiny trials."""

from __future__ import annotations

import os
import signal
import threading

import optuna
import pytest

from tests.conftest import (
    admin_connection,
    postgres_mlflow_server,
    requires_postgres,
    retire_experiments,
    run_cli,
    start_cli,
)
from tests.sweeps.test_distributed import assert_settled
from tests.sweeps.test_parallel import wait_until

pytestmark = [requires_postgres, pytest.mark.postgres]
BEATS = {"SWEEPS_HEARTBEAT_SECONDS": "1", "SWEEPS_GRACE_SECONDS": "3"}


class PeakConnections(threading.Thread):
    """The most connections pg_stat_activity showed to database ``name`` while running (every 0.1 s)."""

    def __init__(self, name: str):
        super().__init__(daemon=True)
        self.name, self.peak, self.done = name, 0, threading.Event()

    def run(self) -> None:
        with admin_connection() as conn:
            while not self.done.wait(0.1):
                row = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = %s", (self.name,)).fetchone()
                self.peak = max(self.peak, row[0])

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.done.set()
        self.join()


@pytest.fixture(scope="module")
def scale_server(tmp_path_factory):
    """A loopback `mlflow server` on a fresh PostgreSQL database, with 2 server processes and a sized pool,
    for this module's tests (starting it costs two processes' worth of MLflow's import)."""
    with postgres_mlflow_server(tmp_path_factory.mktemp("scale-server"), workers=2, pool_size=2) as s:
        yield s


@pytest.fixture
def server(scale_server):
    """The module's server, as new to each test (its sweeps' experiments renamed out of the way after)."""
    yield scale_server
    retire_experiments(scale_server)


@pytest.fixture
def proxy(fresh_db, tmp_path):
    """`sweeps proxy` on a fresh database: (its grpc:// URL, the database URL); stopped afterwards. The proxy's
    heartbeat settings are the ones its workers follow (it tells them), so it gets the tests' short ones."""
    from tracking.server import free_port

    url, port = fresh_db("proxy"), free_port()
    env = {"SWEEPS_STORAGE": url, **BEATS}
    proc = start_cli("proxy", "--port", str(port), cwd=tmp_path, env=env, log=tmp_path / "p.log")
    try:
        wait_until(lambda: "grpc://" in (tmp_path / "p.log").read_text(), timeout=120)
        yield f"grpc://127.0.0.1:{port}", url
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0, (tmp_path / "p.log").read_text()


def test_sixteen_workers_through_the_proxy_finish_exactly_with_a_killed_worker_retried(
    tmp_path, tiny_spec, proxy, server
):
    grpc_url, url = proxy
    env = {"SWEEPS_STORAGE": grpc_url, "SWEEPS_TRACKING_URI": server.url, **BEATS}
    common = ("worker", tiny_spec, "--trials", "24", "--set", "training.epochs=3", "--workdir", tmp_path / "wd")
    workers = [start_cli(*common, "--quiet", cwd=tmp_path, env=env, log=tmp_path / f"w{i}.log") for i in range(16)]
    try:
        pids = {w.pid for w in workers}

        import json

        import psycopg

        def a_running_trial():
            """a worker's RUNNING trial: (its number, its worker's PID)"""
            try:
                rows = conn.execute(
                    "SELECT t.number, a.value_json FROM trials t JOIN trial_system_attributes a "
                    "ON a.trial_id = t.trial_id AND a.key = 'owner' WHERE t.state = 'RUNNING'"
                ).fetchall()
            except psycopg.errors.UndefinedTable:  # no schema yet
                return None
            mine = [(number, json.loads(owner)["pid"]) for number, owner in rows if json.loads(owner)["pid"] in pids]
            return mine[0] if mine else None

        with psycopg.connect(url, autocommit=True) as conn:  # one connection for the polls, not 20 a second
            number, pid = wait_until(a_running_trial, timeout=400, interval=0.05)
        os.kill(pid, signal.SIGKILL)
        for w in workers:
            code = w.wait(300)
            assert code == (-signal.SIGKILL if w.pid == pid else 0), code
    finally:
        for w in workers:
            if w.poll() is None:
                w.kill()
    s, c, _runs = assert_settled(url, server, 24)  # exactly 24 counted, nothing RUNNING, no duplicate run
    numbers = [t.number for t in s.trials]
    assert len(numbers) == len(set(numbers))
    lost = s.trials[number]
    assert lost.state == optuna.trial.TrialState.FAIL and lost.user_attrs["outcome"] == "lost"
    if lost.user_attrs.get("mlflow_run_id"):  # killed after its MLflow run started: failed there too
        assert c.get_run(lost.user_attrs["mlflow_run_id"]).info.status == "FAILED"
    retried = [t for t in s.trials if t.system_attrs.get("failed_trial") == number]
    assert len(retried) == 1
    # With the setting it had sampled: all of it, or the part it had when the kill landed mid-sampling (the
    # retry samples the rest).
    assert {k: retried[0].params.get(k) for k in lost.params} == lost.params
    assert retried[0].state == optuna.trial.TrialState.COMPLETE
    for i in range(16):
        assert "Traceback" not in (tmp_path / f"w{i}.log").read_text()
    # Every reading command works through the proxy too.
    best = run_cli("best", tiny_spec, "--json", "--storage", grpc_url, "--tracking-uri", server.url, cwd=tmp_path)
    assert best.returncode == 0, best.stderr


def test_each_direct_worker_holds_a_bounded_number_of_connections(tmp_path, tiny_spec, fresh_db, server):
    url = fresh_db("pool")
    env = {"SWEEPS_STORAGE": url, "SWEEPS_TRACKING_URI": server.url}
    common = ("worker", tiny_spec, "--trials", "12", "--set", "training.epochs=2", "--workdir", tmp_path / "wd")
    with PeakConnections(url.rsplit("/", 1)[1]) as seen:
        workers = [start_cli(*common, "--quiet", cwd=tmp_path, env=env, log=tmp_path / f"w{i}.log") for i in range(4)]
        for i, w in enumerate(workers):
            assert w.wait(300) == 0, (tmp_path / f"w{i}.log").read_text()
    assert_settled(url, server, 12)
    # Per worker: the storage's pool (1, and 1 overflow while Optuna checks its schema), the trial lock's one
    # connection, and the schema lock's for a moment at start-up.
    assert 0 < seen.peak <= 4 * 4, seen.peak


def test_a_trial_that_ends_uncounted_is_made_up_for_by_the_recount(fresh_db):
    from sweeps.study import claims
    from sweeps.study.storage import open_storage, resolve_stores

    storage = open_storage(resolve_stores(None, fresh_db("claims"), "unused"))
    study = optuna.create_study(storage=storage, study_name="c")
    owner = {"host": "h", "pid": 1}
    first = claims.claim(study, 2, owner, now=100.0)
    second = claims.claim(study, 2, owner, now=100.0)
    assert first.trial_id is not None and second.trial_id is not None
    assert claims.claim(study, 2, owner, now=100.0).trial_id is None  # the budget is spent
    # One ends interrupted (not counted, not retried): the counter still says 2 until it is recounted.
    storage.set_trial_user_attr(first.trial_id, "outcome", "interrupted")
    storage.set_trial_state_values(first.trial_id, optuna.trial.TrialState.FAIL)
    waiting = claims.claim(study, 2, owner, now=101.0)
    assert waiting.trial_id is None and waiting.running == 1  # within the heartbeat interval: wait
    third = claims.claim(study, 2, owner, now=200.0)  # a heartbeat interval later: recounted
    assert third.trial_id is not None and third.charged == 2
    storage.set_trial_user_attr(second.trial_id, "outcome", "completed")
    storage.set_trial_state_values(second.trial_id, optuna.trial.TrialState.COMPLETE, [1.0])
    storage.set_trial_user_attr(third.trial_id, "outcome", "completed")
    storage.set_trial_state_values(third.trial_id, optuna.trial.TrialState.COMPLETE, [1.0])
    assert claims.claim(study, 2, owner, now=201.0).trial_id is None
    assert claims.claim(study, 3, owner, now=201.0).trial_id is not None  # a larger total continues


def test_a_worker_that_cannot_reach_its_proxy_stops_with_one_clear_message(tmp_path, tiny_spec):
    from tracking.server import free_port

    proc = run_cli(
        "worker",
        tiny_spec,
        "--storage",
        f"grpc://127.0.0.1:{free_port()}",
        "--workdir",
        tmp_path / "wd",
        cwd=tmp_path,
        env={"SWEEPS_STORAGE_RETRY_SECONDS": "2"},
        timeout=120,
    )
    assert proc.returncode == 2, proc.stderr  # as for any store that cannot be used
    assert "no sweeps proxy answers" in proc.stderr and "Traceback" not in proc.stderr
