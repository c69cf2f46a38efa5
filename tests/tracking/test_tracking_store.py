"""URIs, the embedded default, the reachability check, redaction, batching and retries."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE, TEMPORARILY_UNAVAILABLE

import tracking
from tracking.mlflow_requests import (
    MAX_ENTITIES,
    MAX_METRICS,
    MAX_PARAMS_TAGS,
    batches,
    is_transient,
    with_retries,
)
from tracking.redact import redact
from tracking.store import artifact_location_for, sqlite_path


def test_default_uri_is_an_absolute_sqlite_path_with_four_slashes(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    uri = tracking.default_tracking_uri(Path("work"))
    assert uri == f"sqlite:///{tmp_path.resolve()}/work/mlflow.db"
    assert uri.startswith("sqlite:////")
    assert sqlite_path(uri) == tmp_path.resolve() / "work" / "mlflow.db"
    assert artifact_location_for(uri) == tracking.default_artifact_location(tmp_path / "work")
    assert tracking.default_artifact_location(tmp_path).startswith("file:///")
    assert artifact_location_for("http://127.0.0.1:5000") is None


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("postgresql://alice:s3cret@db:5432/optuna", "postgresql://alice:***@db:5432/optuna"),
        ("postgresql+psycopg://a:p@ss@db/o", "postgresql+psycopg://a:***@db/o"),
        ("http://user:pw@127.0.0.1:5000", "http://user:***@127.0.0.1:5000"),
        ("mysql://root:@db/o", "mysql://root:***@db/o"),
        ("https://host/x?password=abc&sslmode=require", "https://host/x?password=***&sslmode=require"),
        ("https://host/x?sslmode=require&Token=abc", "https://host/x?sslmode=require&Token=***"),
        ("failed: postgresql://a:b@h/d refused", "failed: postgresql://a:***@h/d refused"),
        ("sqlite:////abs/path/mlflow.db", "sqlite:////abs/path/mlflow.db"),
        ("http://user@host:5000/path@x", "http://user@host:5000/path@x"),
        ("http://127.0.0.1:5000", "http://127.0.0.1:5000"),
    ],
)
def test_redact_table(url, expected):
    assert redact(url) == expected


@settings(max_examples=40, deadline=None)
@given(
    user=st.from_regex(r"[a-z][a-z0-9_]{0,8}", fullmatch=True),
    # Upper case only in passwords, so that finding one in the text can only mean it leaked.
    password=st.from_regex(r"[A-Z][A-Z0-9!$%^*()@_+-]{5,15}", fullmatch=True),
    host=st.from_regex(r"[a-z][a-z0-9.-]{0,12}", fullmatch=True),
)
def test_redact_never_lets_the_password_through(user, password, host):
    text = redact(f"postgresql://{user}:{password}@{host}:5432/db?password={password}")
    assert password not in text.replace("***", "")
    assert text.startswith(f"postgresql://{user}:***@{host}:5432/db")


@pytest.mark.parametrize(
    ("tracking_uri", "storage"),
    [
        ("sqlite:////tmp/x/../x/same.db", "sqlite:////tmp/x/same.db"),
        ("postgresql://mlflow:a@db:5432/shared", "postgresql+psycopg://optuna:b@db:5432/shared"),
    ],
)
def test_mlflow_and_optuna_may_not_share_a_database(tracking_uri, storage):
    with pytest.raises(tracking.TrackingError, match="point at the same database") as error:
        tracking.check_separate_databases(tracking_uri, storage)
    assert ":a@" not in str(error.value) and ":b@" not in str(error.value)


@pytest.mark.parametrize(
    ("tracking_uri", "storage"),
    [
        ("sqlite:////tmp/x/mlflow.db", "sqlite:////tmp/x/optuna.db"),
        ("postgresql://db:5432/mlflow", "postgresql://db:5432/optuna"),
        ("http://127.0.0.1:5000", "sqlite:////tmp/x/optuna.db"),
    ],
)
def test_separate_databases_pass(tracking_uri, storage):
    tracking.check_separate_databases(tracking_uri, storage)


def test_reachability_check(server_uri, sqlite_uri):
    tracking.check_reachable(server_uri)
    tracking.check_reachable(sqlite_uri)
    with pytest.raises(tracking.TrackingUnavailable, match=r"cannot reach .*alice:\*\*\*@127.0.0.1:9") as error:
        tracking.check_reachable("http://alice:s3cret@127.0.0.1:9", timeout=2, wait=1.5)
    assert "s3cret" not in str(error.value)
    assert " attempts)" in str(error.value)  # it asked again before giving up
    with pytest.raises(tracking.TrackingUnavailable, match="HTTP 404"):
        tracking.check_reachable(server_uri + "/not-mlflow")


def test_reachability_check_waits_for_a_server_that_is_starting(tmp_path, template_db):
    """Workers started together with their tracking server: the first requests are refused while it starts,
    and the check must keep asking (issue 17.5) rather than fail at the first refusal."""
    import shutil
    import subprocess
    import sys

    from tracking.server import free_port

    shutil.copy(template_db, tmp_path / "mlflow.db")
    port = free_port()
    uri = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
        env={
            **os.environ,
            "MLFLOW_BACKEND_STORE_URI": tracking.default_tracking_uri(tmp_path),
            "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",  # its seven consumer processes are not the subject
        },
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        tracking.check_reachable(uri, wait=180)  # returns once the server answers
        assert server.poll() is None
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(30)


def test_reachability_check_on_an_unusable_sqlite_path(tmp_path):
    (tmp_path / "file").write_text("not a folder")
    with pytest.raises(tracking.TrackingUnavailable, match="cannot open the MLflow tracking store"):
        tracking.check_reachable(tracking.default_tracking_uri(tmp_path / "file"))


@settings(max_examples=40, deadline=None)
@given(n_metrics=st.integers(0, 3500), n_params=st.integers(0, 250), n_tags=st.integers(0, 250))
def test_batches_respect_mlflow_request_limits_and_keep_everything(n_metrics, n_params, n_tags):
    metrics, params, tags = (
        list(range(n_metrics)),
        [f"p{i}" for i in range(n_params)],
        [("t", i) for i in range(n_tags)],
    )
    out = batches(metrics, params, tags)
    for m, p, t in out:
        assert len(m) <= MAX_METRICS and len(p) + len(t) <= MAX_PARAMS_TAGS
        assert len(m) + len(p) + len(t) <= MAX_ENTITIES and (m or p or t)
    assert [x for m, _, _ in out for x in m] == metrics
    assert [x for _, p, _ in out for x in p] == params
    assert [x for _, _, t in out for x in t] == tags


def test_transient_errors_are_retried_and_others_are_not():
    calls = []

    def flaky():
        calls.append(1)
        if len(calls) < 3:
            raise MlflowException("database is locked", error_code=TEMPORARILY_UNAVAILABLE)
        return "landed"

    assert with_retries(flaky, what="flaky", first_delay=0) == "landed" and len(calls) == 3

    def bad():
        calls.append(1)
        raise MlflowException("Changing param values is not allowed", error_code=INVALID_PARAMETER_VALUE)

    calls.clear()
    with pytest.raises(MlflowException, match="Changing param"):
        with_retries(bad, what="bad", first_delay=0)
    assert len(calls) == 1


@pytest.mark.parametrize(
    ("message", "transient"),
    [
        ("QueuePool limit of size 4 overflow 4 reached, connection timed out, timeout 30.00", True),
        ("(psycopg.OperationalError) FATAL:  sorry, too many clients already", True),
        ("Run 'abc' not found", False),
    ],
)
def test_a_tracking_server_whose_database_is_busy_is_asked_again(message, transient):
    """A server answers BAD_REQUEST when its pool is exhausted (seen with 64 workers): that passes, unlike
    a real bad request."""
    from mlflow.exceptions import RestException

    error = RestException({"error_code": "BAD_REQUEST", "message": message})
    assert is_transient(error) is transient


def test_import_is_light():
    import subprocess
    import sys

    code = (
        "import sys, tracking; print(sorted(m for m in ('mlflow','optuna','pandas','matplotlib') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_a_lazy_client_is_made_once_at_its_first_use_and_not_before(sqlite_uri):
    """``make_client(uri, lazy=True)`` gives what run_writes needs (the URI) without loading MLflow, and the
    real client, made once whichever thread asks first, for everything else."""
    import subprocess
    import sys
    import threading

    code = (
        "import sys; from tracking.store import make_client; c = make_client(sys.argv[1], lazy=True); "
        "print(c.tracking_uri == sys.argv[1], 'mlflow' in sys.modules)"
    )
    proc = subprocess.run([sys.executable, "-c", code, sqlite_uri], capture_output=True, text=True, timeout=120)
    assert proc.stdout.split() == ["True", "False"], proc.stderr

    from tracking.store import LazyClient, make_client

    lazy = make_client(sqlite_uri, lazy=True)
    assert isinstance(lazy, LazyClient) and "not made yet" in repr(lazy)
    made = []
    threads = [threading.Thread(target=lambda: made.append(lazy.real())) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({id(c) for c in made}) == 1 and lazy.real() is made[0]
    assert lazy.get_experiment_by_name("Default").experiment_id == "0"  # MlflowClient's own method, through it
    import copy
    import pickle

    for twin in (pickle.loads(pickle.dumps(lazy)), copy.deepcopy(lazy)):  # as a real client pickles and copies
        assert isinstance(twin, LazyClient) and twin.tracking_uri == sqlite_uri and "not made yet" in repr(twin)
    assert make_client("http://127.0.0.1:1", lazy=True).__class__.__name__ == "MlflowClient"  # only SQLite is lazy
