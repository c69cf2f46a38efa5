"""The embedded SQLite store is created whole or not at all.

MLflow builds a new database by running some fifty Alembic migrations in place, several seconds of work. A
process killed meanwhile (SIGKILL, OOM, a full disk) leaves a half-migrated file that no later run can open
("table _alembic_tmp_tags already exists"), and two processes creating the same file at once break it the
same way. So :func:`ensure_complete` builds the schema in a temporary file beside the database, under an
exclusive lock on ``.<name>.lock`` in the same folder, and renames it into place: the database file either
does not exist or is complete. A file that an older version (or an interrupted upgrade) left half-migrated
is set aside and rebuilt when it holds no runs, and refused, with what to do, when it does.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

from tracking.errors import TrackingUnavailable

log = logging.getLogger(__name__)

_verified: set[Path] = set()  # files this process has seen complete (a store never becomes less so)


def ensure_complete(db: Path, artifact_location: str) -> None:
    """Make sure ``db`` is a complete MLflow store at the installed MLflow's schema: create it atomically
    (experiments' artifacts default to ``artifact_location``) if missing, rebuild it if an interrupted
    creation left it half-migrated and it holds no runs.

    Raises TrackingUnavailable when a half-migrated file holds runs (nothing is changed then). A file at an
    older (or newer) schema that holds runs is left to MLflow, which says how to upgrade it.
    """
    db = Path(db)
    if db in _verified or _state(db, writable=False) == "complete":
        _verified.add(db)
        return
    db.parent.mkdir(parents=True, exist_ok=True)
    with _lock(db):
        _remove_leftovers(db)
        state = _state(db, writable=True)
        if state == "torn":
            _set_aside_or_refuse(db)
            state = "absent"
        if state == "absent":
            _create(db, artifact_location)
    _verified.add(db)


def _head() -> str | None:
    """The schema revision the installed MLflow creates (None if it cannot say: the version check is skipped)."""
    try:
        from mlflow.store.db.utils import _get_latest_schema_revision

        return _get_latest_schema_revision()
    except Exception:  # a private helper of MLflow's; without it only leftover tables mark a torn file
        return None


def _tables(db: Path, writable: bool) -> tuple[set[str], str | None, int | None] | None:
    """(table names, schema revision, number of runs) of ``db``; None when it cannot be read."""
    if not db.exists() or db.stat().st_size == 0:
        return set(), None, None
    # Read-only outside the lock; read-write under it, so that a hot journal left by a killed writer is
    # rolled back rather than read around. Neither mode creates a file.
    mode = "rw" if writable else "ro"
    try:
        with contextlib.closing(sqlite3.connect(f"{db.as_uri()}?mode={mode}", uri=True, timeout=30)) as conn:
            names = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            revision = None
            if "alembic_version" in names:
                row = conn.execute("SELECT version_num FROM alembic_version").fetchone()
                revision = row[0] if row else None
            runs = conn.execute("SELECT COUNT(*) FROM runs").fetchone()[0] if "runs" in names else None
    except sqlite3.Error:
        return None
    return names, revision, runs


def _state(db: Path, writable: bool) -> str:
    """``absent`` (no file, or no tables), ``complete``, ``torn`` (a creation or upgrade cut short, or
    built by another MLflow, and holding no runs), ``other`` (left to MLflow: unreadable, or a store of
    another schema version that holds runs)."""
    found = _tables(db, writable)
    if found is None:
        return "other"
    names, revision, runs = found
    if not names:
        return "absent"
    leftovers = any(name.startswith("_alembic_tmp_") for name in names)
    head = _head()
    if not leftovers and revision is not None and (head is None or revision == head):
        return "complete"
    return "torn" if leftovers or not runs else "other"


@contextlib.contextmanager
def _lock(db: Path) -> Iterator[None]:
    """An exclusive lock on ``.<name>.lock`` beside the database: one creator at a time, on this machine."""
    with open(db.parent / f".{db.name}.lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _temporary(db: Path) -> Path:
    return db.with_name(f"{db.name}.creating-{os.getpid()}")


def _remove_leftovers(db: Path) -> None:
    """Temporary files of creations that were killed (whoever holds the lock is the only creator)."""
    for path in db.parent.glob(f"{db.name}.creating-*"):
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def _set_aside_or_refuse(db: Path) -> None:
    names, revision, runs = _tables(db, writable=True) or (set(), None, None)
    leftovers = sorted(name for name in names if name.startswith("_alembic_tmp_"))
    why = f"leftover table {leftovers[0]}" if leftovers else f"schema revision {revision or 'none'}"
    if runs:
        raise TrackingUnavailable(
            f"the MLflow store {db} was left half-migrated by an interrupted schema upgrade ({why}) and holds "
            f"{runs} runs; restore it from a backup, or move it aside to start a new store"
        )
    aside = db.with_name(f"{db.name}.damaged-{time.strftime('%Y%m%d-%H%M%S')}")
    os.replace(db, aside)
    log.warning("%s was half-created (%s) and held no runs: moved to %s and created anew", db, why, aside.name)


def _create(db: Path, artifact_location: str) -> None:
    """Build the schema in a temporary file and rename it into place (after syncing it to disk)."""
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    tmp = _temporary(db)
    store = None
    try:
        store = SqlAlchemyStore(f"sqlite:///{tmp}", artifact_location)
        store.engine.dispose()  # every connection closed: the file is whole and no journal is left
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, db)
        directory = os.open(db.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
    except BaseException:  # interrupted or failed: nothing but the lock file is left behind
        if store is not None:
            store.engine.dispose()
        for path in (tmp, tmp.with_name(tmp.name + "-journal")):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        raise
