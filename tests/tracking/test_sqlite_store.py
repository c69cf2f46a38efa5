"""The embedded mlflow.db is created whole or not at all: killed creators, creators racing, torn files left
by older versions. Real processes, real signals, real SQLite files."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

import tracking
from tracking.cache import CACHE_VAR
from tracking.errors import TrackingUnavailable
from tracking.sqlite_store import _head, _template_name

CREATE = "import sys, tracking; tracking.check_reachable(tracking.default_tracking_uri(sys.argv[1]))"


def _creator(folder: Path, cache: str = "") -> subprocess.Popen:
    """A process creating the store in ``folder``; by MLflow's migrations unless given a ``cache`` folder."""
    env = {**os.environ, CACHE_VAR: cache}
    return subprocess.Popen([sys.executable, "-c", CREATE, str(folder)], stderr=subprocess.PIPE, text=True, env=env)


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


def _definition(sql: str | None) -> list[str]:
    """The lines of a CREATE statement in sorted order: MLflow's migrations list a table's constraints in an
    order that changes from one process to the next (two stores it migrates differ in it)."""
    return sorted(line.strip().rstrip(",").strip() for line in (sql or "").splitlines())


def _contents(db: Path) -> tuple[list, dict[str, list]]:
    """(schema, rows of every table) of ``db``; the default experiment's times left out."""
    with contextlib.closing(sqlite3.connect(f"{db.as_uri()}?mode=ro", uri=True)) as conn:
        schema = sorted(
            (kind, name, table, _definition(sql))
            for kind, name, table, sql in conn.execute("SELECT type, name, tbl_name, sql FROM sqlite_master")
        )
        tables = [row[1] for row in schema if row[0] == "table"]
        rows = {table: sorted(map(repr, conn.execute(f'SELECT * FROM "{table}"'))) for table in tables}
        conn.row_factory = sqlite3.Row
        experiments = [dict(row) for row in conn.execute("SELECT * FROM experiments")]
    for experiment in experiments:
        del experiment["creation_time"], experiment["last_update_time"]
    rows["experiments"] = experiments
    return schema, rows


def _create_in(folder: Path, cache: Path | str) -> Path:
    """Create the store in ``folder`` as a work folder's first command does, here in the test's process (the
    store is the subject; :func:`_creator` runs the same in a process of its own where one is to be killed)."""
    with pytest.MonkeyPatch.context() as env:
        env.setenv(CACHE_VAR, str(cache))
        tracking.check_reachable(tracking.default_tracking_uri(folder))
    return folder / "mlflow.db"


@pytest.fixture(scope="module")
def migrated(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, tuple[list, dict[str, list]]]:
    """A store made by MLflow's own migrations (no cache), and its contents: what every copy must equal.
    Made once per module (each migration is seconds of CPU)."""
    db = _create_in(tmp_path_factory.mktemp("sqlite-store") / "migrated", "")
    return db, _contents(db)


@pytest.fixture(scope="module")
def cached_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A cached empty store as the first creation in a new cache folder builds it (made once per module)."""
    cache = tmp_path_factory.mktemp("sqlite-cache")
    _create_in(cache.parent / f"{cache.name}-first", cache)
    return cache / _template_name(_head())


@pytest.mark.parametrize("via", ["direct", "mlflow"])
def test_a_store_copied_from_the_cache_is_the_store_mlflow_migrates(tmp_path, migrated, monkeypatch, via):
    """Every new work folder used to run MLflow's ~70 migrations; the first one now keeps an empty store in
    the cache and later ones copy it. The copies must be what MLflow builds: same schema, same revision,
    same rows, the default experiment's artifacts in their own folder. A copy gets its default experiment
    written directly where the schema is one the direct writes know, else from MLflow opening it."""
    from tracking import sqlite_store

    cache = tmp_path / "cache"
    migrated_db, (expected_schema, expected_rows) = migrated
    first = _create_in(tmp_path / "first", cache)  # builds the cached store
    template = cache / _template_name(_head())
    assert template.exists() and _revision(template) == (_head(), [])
    if via == "mlflow":
        monkeypatch.setenv("TRACKING_DIRECT_SQLITE", "0")
    opened = []
    real_build = sqlite_store._build
    monkeypatch.setattr(sqlite_store, "_build", lambda *a: opened.append(a) or real_build(*a))
    second = _create_in(tmp_path / "second ü folder", cache)  # copies it (a URI with escapes)
    assert len(opened) == (0 if via == "direct" else 1)
    for db in (first, second):
        schema, rows = _contents(db)
        assert schema == expected_schema
        experiment = rows["experiments"]
        assert experiment == [
            {**expected_rows["experiments"][0], "artifact_location": (db.parent / "mlartifacts" / "0").as_uri()}
        ]
        assert rows == {**expected_rows, "experiments": experiment}
    assert expected_rows["experiments"][0]["artifact_location"] == (migrated_db.parent / "mlartifacts" / "0").as_uri()
    assert sorted(p.name for p in second.parent.iterdir()) == [".mlflow.db.lock", "mlflow.db"]
    client = tracking.make_client(tracking.default_tracking_uri(second.parent))
    default = client.get_experiment("0")
    assert (default.name, default.lifecycle_stage) == ("Default", "active")
    assert client.create_experiment("next") == "1"


def test_a_copy_from_the_cache_runs_no_migration(tmp_path, monkeypatch):
    import mlflow.store.db.utils as db_utils

    from tracking.sqlite_store import ensure_complete

    monkeypatch.setenv(CACHE_VAR, str(tmp_path / "cache"))
    ensure_complete(tmp_path / "a" / "mlflow.db", (tmp_path / "a").as_uri())  # builds the cached store

    def refuse(engine):
        raise AssertionError("migrations ran although the cache holds the store")

    monkeypatch.setattr(db_utils, "_initialize_tables", refuse)
    ensure_complete(tmp_path / "b" / "mlflow.db", (tmp_path / "b").as_uri())
    assert _revision(tmp_path / "b" / "mlflow.db") == (_head(), [])


@pytest.mark.parametrize("damage", ["garbage", "experiment", "old revision", "cache is a file"])
def test_an_unusable_cache_is_rebuilt_or_passed_by(tmp_path, damage, migrated, cached_template):
    cache = tmp_path / "cache"
    template = cache / _template_name(_head())
    if damage == "cache is a file":
        cache.write_text("not a folder")
    else:
        cache.mkdir()
        shutil.copy(cached_template, template)  # as a first creation left it, then damaged
        if damage == "garbage":
            template.write_bytes(b"not a database, " * 100)
        else:
            with sqlite3.connect(template) as conn:
                if damage == "experiment":
                    conn.execute(
                        "INSERT INTO experiments (experiment_id, name, lifecycle_stage) VALUES (5, 'x', 'active')"
                    )
                else:
                    conn.execute("UPDATE alembic_version SET version_num = 'a1b2c3d4e5f6'")
    db = _create_in(tmp_path / "work", cache)
    assert _contents(db)[0] == migrated[1][0]
    assert _revision(db) == (_head(), [])
    assert [row["name"] for row in _contents(db)[1]["experiments"]] == ["Default"]
    if damage != "cache is a file":
        assert _revision(template) == (_head(), [])  # rebuilt
        with sqlite3.connect(f"{template.as_uri()}?mode=ro", uri=True) as conn:
            assert conn.execute("SELECT COUNT(*) FROM experiments").fetchone() == (0,)


def test_a_cache_builder_killed_midway_leaves_nothing_that_serves(tmp_path):
    cache = tmp_path / "cache"
    first = _creator(tmp_path / "first", str(cache))
    deadline = time.monotonic() + 60
    while not list(cache.glob("mlflow-store-*")) and time.monotonic() < deadline:  # the build has begun
        time.sleep(0.02)
    time.sleep(0.3)  # inside the seconds of migrations
    first.send_signal(signal.SIGKILL)
    first.wait()
    assert not (tmp_path / "first" / "mlflow.db").exists()
    template = cache / _template_name(_head())
    assert not template.exists() or _revision(template) == (_head(), [])
    db = _create_in(tmp_path / "second", cache)
    assert _revision(db) == (_head(), []) and _revision(template) == (_head(), [])
    assert sorted(p.name for p in cache.iterdir()) == [f".{template.name}.lock", template.name]
