"""The embedded mlflow.db is created whole or not at all: killed creators, creators racing, torn files left
by older versions. Real processes, real signals, real SQLite files."""

from __future__ import annotations

import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

import tracking
from tracking.errors import TrackingUnavailable
from tracking.sqlite_store import _head

CREATE = "import sys, tracking; tracking.check_reachable(tracking.default_tracking_uri(sys.argv[1]))"


def _creator(folder: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", CREATE, str(folder)], stderr=subprocess.PIPE, text=True)


def _revision(db: Path) -> tuple[str | None, list[str]]:
    """(schema revision, leftover migration tables) of ``db``."""
    with sqlite3.connect(f"{db.as_uri()}?mode=ro", uri=True) as conn:
        names = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        row = conn.execute("SELECT version_num FROM alembic_version").fetchone() if "alembic_version" in names else None
    return (row[0] if row else None), [n for n in names if n.startswith("_alembic_tmp_")]


def test_a_creator_killed_midway_leaves_no_half_database_and_the_next_run_creates_it(tmp_path):
    """Before, a SIGKILL during the seconds of migrations left mlflow.db half-migrated, and later runs
    failed on it ("table _alembic_tmp_tags already exists"). Two first runs at once took turns the same way."""
    first = _creator(tmp_path)
    deadline = time.monotonic() + 60
    while not list(tmp_path.glob("mlflow.db*")) and time.monotonic() < deadline:  # creation has begun
        time.sleep(0.02)
    time.sleep(0.3)  # well inside the seconds of migrations
    first.send_signal(signal.SIGKILL)
    first.wait()
    db = tmp_path / "mlflow.db"
    assert not db.exists(), _revision(db)
    tracking.check_reachable(tracking.default_tracking_uri(tmp_path))
    assert _revision(db) == (_head(), [])
    assert sorted(p.name for p in tmp_path.iterdir()) == [".mlflow.db.lock", "mlflow.db"]  # no temporary file


def _torn_copy(template_db: Path, folder: Path, runs: int = 0) -> Path:
    """A store as a migration killed inside a batch operation leaves it: an older revision, and the table
    Alembic was copying a table into."""
    db = folder / "mlflow.db"
    shutil.copy(template_db, db)
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE alembic_version SET version_num = 'a1b2c3d4e5f6'")
        conn.execute("CREATE TABLE _alembic_tmp_tags AS SELECT * FROM tags")
        for i in range(runs):
            conn.execute(
                "INSERT INTO runs (run_uuid, experiment_id, lifecycle_stage, status, start_time) "
                "VALUES (?, 0, 'active', 'FINISHED', 0)",
                (f"run{i}",),
            )
    return db


def test_a_half_migrated_store_without_runs_is_set_aside_and_created_anew(tmp_path, template_db, caplog):
    db = _torn_copy(template_db, tmp_path)
    tracking.check_reachable(tracking.default_tracking_uri(tmp_path))  # before: "out-of-date database schema"
    assert _revision(db) == (_head(), [])
    aside = list(tmp_path.glob("mlflow.db.damaged-*"))
    assert len(aside) == 1 and _revision(aside[0])[1] == ["_alembic_tmp_tags"]
    assert "half-created" in caplog.text and aside[0].name in caplog.text


def test_a_half_migrated_store_with_runs_is_refused_and_left_alone(tmp_path, template_db):
    db = _torn_copy(template_db, tmp_path, runs=2)
    before = db.read_bytes()
    with pytest.raises(TrackingUnavailable, match=r"half-migrated .*_alembic_tmp_tags.* holds 2 runs; restore"):
        tracking.check_reachable(tracking.default_tracking_uri(tmp_path))
    assert db.read_bytes() == before and not list(tmp_path.glob("mlflow.db.damaged-*"))


def test_the_head_read_from_the_migration_scripts_is_the_one_alembic_finds():
    """The schema check runs on every store MLflow opens; reading the scripts' text instead of executing
    them (0.5-1.5 s each time) must give Alembic's answer."""
    from tracking.sqlite_store import _alembic_head, _scanned_head

    assert _scanned_head() is not None
    assert _scanned_head() == _alembic_head()


LIGHT_CHECK = (
    "import sys, tracking; tracking.check_reachable(tracking.default_tracking_uri(sys.argv[1]), create=False); "
    "print('mlflow' in sys.modules)"
)


def test_the_light_check_creates_no_store_and_loads_no_mlflow_then_the_first_client_creates_it(tmp_path):
    folder = tmp_path / "work"
    check = [sys.executable, "-c", LIGHT_CHECK, str(folder)]
    out = subprocess.run(check, capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False"]
    assert folder.is_dir() and not (folder / "mlflow.db").exists()
    tracking.make_client(tracking.default_tracking_uri(folder))  # creates it whole
    assert _revision(folder / "mlflow.db") == (_head(), [])
    out = subprocess.run(check, capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False"]  # a complete store is recognised without MLflow


def test_the_light_check_still_refuses_what_cannot_be_a_store(tmp_path):
    (tmp_path / "file").write_text("not a folder")
    with pytest.raises(TrackingUnavailable, match="cannot open the MLflow tracking store"):
        tracking.check_reachable(tracking.default_tracking_uri(tmp_path / "file"), create=False)


def test_an_experiment_is_looked_for_without_mlflow_and_found_once_created(tmp_path):
    """A new sweep's check for a lost study reads the store with sqlite3 alone while nothing is in it."""
    from tracking.sqlite_store import may_hold_experiment

    db = tmp_path / "mlflow.db"
    assert may_hold_experiment(db, "sweep") is False  # no file
    client = tracking.make_client(tracking.default_tracking_uri(tmp_path))
    assert may_hold_experiment(db, "sweep") is False  # a complete store without it
    client.create_experiment("sweep")
    assert may_hold_experiment(db, "sweep") is True
    assert may_hold_experiment(db, "other") is False
    db.write_bytes(b"not a database, " * 100)
    assert may_hold_experiment(db, "sweep") is True  # cannot tell: MLflow decides
