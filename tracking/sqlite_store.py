"""The embedded SQLite store is created whole or not at all.

MLflow builds a new database by running some fifty Alembic migrations in place, several seconds of work. A
process killed meanwhile (SIGKILL, OOM, a full disk) leaves a half-migrated file that no later run can open
("table _alembic_tmp_tags already exists"), and two processes creating the same file at once break it the
same way. So :func:`ensure_complete` builds the schema in a temporary file beside the database, under an
exclusive lock on ``.<name>.lock`` in the same folder, and renames it into place: the database file either
does not exist or is complete. A file that an older version (or an interrupted upgrade) left half-migrated
is set aside and rebuilt when it holds no runs, and refused, with what to do, when it does.

Running the migrations costs 1-2 CPU seconds for every new work folder (and the test suite creates hundreds).
So the first creation also keeps an empty, fully migrated store in optsweep's cache folder
(:func:`tracking.cache.cache_dir`), one per MLflow schema, built the same way (under a lock, in a
temporary file, renamed into place); later creations copy it into the temporary file and add MLflow's
default experiment with this folder's artifact location exactly as on a new database: written directly
at a schema the direct writes know (:func:`_add_default_experiment`), else by letting MLflow open the copy.
A cache that is missing, unreadable or of another schema is rebuilt or passed by.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import importlib.util
import logging
import os
import re
import shutil
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

from tracking import direct_sql
from tracking.cache import cache_dir
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


def is_complete(db: Path) -> bool:
    """Whether ``db`` is a complete store at the installed MLflow's schema (read only; MLflow not loaded)."""
    return Path(db) in _verified or _state(Path(db), writable=False) == "complete"


def may_hold_experiment(db: Path, name: str) -> bool:
    """False when the store ``db`` surely holds no experiment named ``name`` (no file, no table yet, or no
    such row), read with sqlite3 alone; True when it does or when that cannot be told (ask MLflow then).
    Lets a new sweep's check for a lost study skip loading MLflow (1-3 s) on a store with nothing in it."""
    db = Path(db)
    if not db.exists():
        return False
    try:
        with contextlib.closing(sqlite3.connect(f"{db.as_uri()}?mode=ro", uri=True, timeout=30)) as conn:
            names = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            if "experiments" not in names:
                return bool(names)  # an empty file is a store still to be created; anything else: ask MLflow
            return conn.execute("SELECT 1 FROM experiments WHERE name = ? LIMIT 1", (name,)).fetchone() is not None
    except sqlite3.Error:
        return True


@functools.cache
def _head() -> str | None:
    """The schema revision the installed MLflow creates (None if it cannot say: the version check is skipped)."""
    try:
        return _scanned_head_cached() or _alembic_head()
    except Exception:  # a private helper of MLflow's; without it only leftover tables mark a torn file
        return None


def _alembic_head() -> str:
    from mlflow.store.db.utils import _get_latest_schema_revision

    return _get_latest_schema_revision()


_REVISION = re.compile(r"^revision\s*(?::[^=]*)?=\s*[\"']([^\"']+)[\"']", re.MULTILINE)
_DOWN_REVISION = re.compile(r"^down_revision\s*(?::[^=]*)?=\s*(.*)$", re.MULTILINE)


def _scanned_head() -> str | None:
    """The head revision read from the text of MLflow's migration scripts, without importing MLflow or
    Alembic: the one revision no script names as its ``down_revision``. Alembic finds it by executing all
    ~70 scripts, 0.5-1.5 s that MLflow pays again on every store it opens (:func:`fast_schema_check`). None
    when the scripts are not laid out as expected (then Alembic decides)."""
    spec = importlib.util.find_spec("mlflow")
    if spec is None or not spec.submodule_search_locations:
        return None
    versions = Path(next(iter(spec.submodule_search_locations))) / "store" / "db_migrations" / "versions"
    revisions, downs = set(), set()
    for script in versions.glob("*.py"):
        if script.name == "__init__.py":
            continue
        text = script.read_text(encoding="utf-8")
        found, down = _REVISION.findall(text), _DOWN_REVISION.findall(text)
        if len(found) != 1 or len(down) != 1:
            return None
        revisions.add(found[0])
        downs.update(re.findall(r"[\"']([^\"']+)[\"']", down[0]))
    heads = revisions - downs
    return next(iter(heads)) if len(heads) == 1 and downs <= revisions else None


def fast_schema_check() -> None:
    """Let MLflow's schema check (run whenever a store is opened) use :func:`_head`, found once per process
    by reading the migration scripts, instead of executing them all each time. The same answer: when the
    scripts cannot be read that way, :func:`_head` asks Alembic as MLflow does."""
    import mlflow.store.db.utils as db_utils

    if getattr(db_utils._get_latest_schema_revision, "__wrapped_by_tracking__", False):
        return
    original = db_utils._get_latest_schema_revision

    def latest() -> str:
        return _scanned_head_cached() or original()

    latest.__wrapped_by_tracking__ = True  # type: ignore[attr-defined]
    db_utils._get_latest_schema_revision = latest


@functools.cache
def _scanned_head_cached() -> str | None:
    try:
        return _scanned_head()
    except OSError:
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
    """Build the schema in a temporary file and rename it into place (after syncing it to disk): from a copy
    of the cached empty store when there is one, else (or when that fails) by MLflow's migrations."""
    template = _template()
    if template is None or not _default_experiment_is_direct(artifact_location):
        # Loaded (a second or more) before the temporary file exists: a creator stopped meanwhile leaves none.
        from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore  # noqa: F401

    tmp = _temporary(db)
    if template is not None:
        try:
            shutil.copyfile(template, tmp)
            if not _add_default_experiment(tmp, artifact_location):
                _build(tmp, artifact_location)  # MLflow finds every table and adds the default experiment
        except Exception as e:  # an unusable copy: the migrations then, as without a cache
            log.debug("the cached store %s did not serve (%s); migrating a new one", template, e)
        else:
            _rename_into_place(tmp, db)
            return
    _build(tmp, artifact_location)
    _rename_into_place(tmp, db)


def _default_experiment_is_direct(artifact_location: str) -> bool:
    """Whether :func:`_add_default_experiment` will write the default experiment of a copy of the template at
    the installed MLflow's schema (so that creating a store that way needs no MLflow)."""
    return direct_sql.allowed() and artifact_location.startswith("file:///") and _head() in direct_sql.KNOWN_REVISIONS


def opens_without_mlflow(db: Path, artifact_location: str) -> bool:
    """Whether ``db`` can be made ready for :mod:`tracking.run_writes` without loading MLflow: a complete store
    at a schema the direct writes know, or none yet where the cached empty store is ready to be copied and
    its default experiment written directly (read only: the cache is not built here)."""
    if not _default_experiment_is_direct(artifact_location):
        return False
    db = Path(db)
    if db.exists():
        return is_complete(db)
    folder = cache_dir()
    return folder is not None and _is_template(folder / _template_name(_head()), _head())


def _build(path: Path, artifact_location: str) -> None:
    """Let MLflow open (creating or completing) the store ``path`` and close it again; removed on failure."""
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    store = None
    try:
        store = SqlAlchemyStore(f"sqlite:///{path}", artifact_location)
        store.engine.dispose()  # every connection closed: the file is whole and no journal is left
    except BaseException:  # interrupted or failed: nothing but the lock file is left behind
        if store is not None:
            store.engine.dispose()
        _discard(path)
        raise


# The columns of MLflow's experiments table at the revisions of direct_sql.KNOWN_REVISIONS.
EXPERIMENT_COLUMNS = frozenset(
    {"experiment_id", "name", "artifact_location", "lifecycle_stage", "creation_time", "last_update_time", "workspace"}
)


def _add_default_experiment(path: Path, artifact_location: str) -> bool:
    """Add to the copy ``path`` of the empty template the row MLflow's store adds when it first opens it: its
    default experiment, id 0, named Default, its artifacts in ``<artifact_location>/0`` (~60 ms of MLflow's
    engine, schema check and ORM set-up, in the creator, while the sweep's process waits for the store).
    True when added; False, nothing changed, where the row is not known to be exactly MLflow's: a schema
    revision not in direct_sql.KNOWN_REVISIONS (compared with MLflow's writes), other columns, an experiment
    there already, MLflow's workspaces, an artifact location that is not a ``file:`` URI, or the direct
    writes turned off (``TRACKING_DIRECT_SQLITE=0``). Then MLflow opens the store and adds it."""
    if not _default_experiment_is_direct(artifact_location):
        return False
    with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as conn:
        if not direct_sql.known_schema(conn, {"experiments": EXPERIMENT_COLUMNS}):
            return False
        if conn.execute("SELECT 1 FROM experiments LIMIT 1").fetchone() is not None:
            return False
        now = int(time.time() * 1000)
        conn.execute(
            "INSERT INTO experiments (experiment_id, name, artifact_location, lifecycle_stage, creation_time,"
            " last_update_time, workspace) VALUES (0, 'Default', ?, 'active', ?, ?, 'default')",
            (artifact_location.rstrip("/") + "/0", now, now),
        )
    return True


def _discard(path: Path) -> None:
    for leftover in (path, path.with_name(path.name + "-journal")):
        with contextlib.suppress(FileNotFoundError):
            leftover.unlink()


def _rename_into_place(tmp: Path, db: Path) -> None:
    try:
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, db)
        directory = os.open(db.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
    except BaseException:
        _discard(tmp)
        raise


# --- the cached empty store ---------------------------------------------------------------------------------


def _template_name(head: str) -> str:
    """One file per schema and per library versions that take part in building it."""
    from importlib.metadata import version

    versions = "-".join(f"{name}{version(name)}" for name in ("mlflow", "alembic", "sqlalchemy"))
    return f"mlflow-store-{head}-{versions}.db"


def _template() -> Path | None:
    """The cached empty store at the installed MLflow's schema, built if missing; None when there is no cache
    or it cannot be built or read (the caller migrates a new store then)."""
    head = _head()
    try:
        folder = cache_dir()
        if head is None or folder is None:
            return None
        path = folder / _template_name(head)
        if _is_template(path, head):
            return path
        folder.mkdir(parents=True, exist_ok=True)
        with _lock(path):
            if not _is_template(path, head):
                _remove_leftovers(path)
                _build_template(path)
        return path if _is_template(path, head) else None
    except Exception as e:  # a read-only home, a full disk, another MLflow's odd file: no cache, same store
        log.debug("no cached MLflow store (%s)", e)
        return None


def _is_template(path: Path, head: str) -> bool:
    """Whether ``path`` is a complete store at ``head`` that holds no experiment (read only)."""
    if not path.exists():
        return False
    try:
        with contextlib.closing(sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True, timeout=30)) as conn:
            names = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            if "experiments" not in names or any(name.startswith("_alembic_tmp_") for name in names):
                return False
            revision = conn.execute("SELECT version_num FROM alembic_version").fetchone()
            empty = conn.execute("SELECT 1 FROM experiments LIMIT 1").fetchone() is None
            return empty and revision == (head,) and conn.execute("PRAGMA quick_check").fetchone() == ("ok",)
    except sqlite3.Error:
        return False


def _build_template(path: Path) -> None:
    """Migrate a new store in a temporary file, take out the default experiment MLflow added (each copy gets
    its own, with its folder's artifact location), and rename it into place."""
    tmp = _temporary(path)
    _build(tmp, path.parent.as_uri())
    try:
        with contextlib.closing(sqlite3.connect(tmp)) as conn:
            with conn:
                conn.execute("DELETE FROM experiments")
            conn.execute("VACUUM")
    except BaseException:
        _discard(tmp)
        raise
    _rename_into_place(tmp, path)
