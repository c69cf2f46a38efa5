"""Where a sweep keeps its state: the work folder, Optuna's storage and its cross-process trial lock.

Embedded default (no server): Optuna's journal file ``<workdir>/optuna.journal`` — an append-only log that
several processes can share safely (Optuna's FAQ advises against SQLite for parallel work) — and MLflow's
``<workdir>/mlflow.db``; two different files, since both use Alembic migrations.

Beyond one machine: a ``postgresql://`` URL, shared by workers anywhere, with Optuna's heartbeat so a
worker that dies mid-trial has its trial failed and retried by another worker.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import threading
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

DEFAULT_WORKDIR = ".sweeps"
JOURNAL_FILE = "optuna.journal"
# A worker beats every HEARTBEAT_SECONDS; a trial silent for GRACE_SECONDS is failed and retried. The
# environment may shorten them (tests do): SWEEPS_HEARTBEAT_SECONDS, SWEEPS_GRACE_SECONDS.
HEARTBEAT_SECONDS = int(os.environ.get("SWEEPS_HEARTBEAT_SECONDS", "10"))
GRACE_SECONDS = int(os.environ.get("SWEEPS_GRACE_SECONDS", "30"))


@dataclass(frozen=True)
class Stores:
    """The resolved locations of one sweep's state. ``storage_url`` is None for the embedded journal."""

    workdir: Path
    storage_url: str | None
    tracking_uri: str

    @property
    def journal_path(self) -> Path:
        return self.workdir / JOURNAL_FILE

    @property
    def embedded(self) -> bool:
        return self.storage_url is None

    def describe_storage(self) -> str:
        from tracking import redact

        return redact(self.storage_url) if self.storage_url else f"journal file {self.journal_path}"

    def dashboard_command(self) -> str:
        """The optuna-dashboard command that opens this storage as it is (a password masked: the user types
        it); the journal's path relative to the current folder when it lies under it."""
        import shlex

        from tracking import redact

        if self.storage_url:
            return f"optuna-dashboard {shlex.quote(sqlalchemy_url(redact(self.storage_url)))}"
        path = os.path.relpath(self.journal_path)
        return f"optuna-dashboard {shlex.quote(str(self.journal_path) if path.startswith('..') else path)}"


def resolve_stores(workdir: str | Path | None, storage: str | None, tracking_uri: str | None) -> Stores:
    """Fill in the embedded defaults under ``workdir`` (default ``.sweeps`` in the current directory)."""
    from tracking import default_tracking_uri

    folder = Path(workdir or DEFAULT_WORKDIR).resolve()
    return Stores(folder, storage or None, tracking_uri or default_tracking_uri(folder))


def sqlalchemy_url(url: str) -> str:
    """Spell the driver for PostgreSQL: SQLAlchemy 2.1 maps a bare ``postgresql://`` to psycopg2, which
    optsweep does not install; psycopg 3 is a dependency."""
    if url.startswith(("postgresql://", "postgres://")):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


def open_storage(stores: Stores, stale_trial_callback: Callable | None = None, pool_size: int = 1):
    """The Optuna storage for ``stores``: the journal file, ``sweeps proxy`` (``grpc://``), or an RDB storage
    with heartbeats.

    An RDB storage keeps ``pool_size`` connections and opens one more at most for a moment (:func:`pool_kwargs`),
    so a worker holds 1-2 of them plus one for the trial lock (docs/how-to/many-workers.md). Creating the RDB
    schema on an empty PostgreSQL database from several workers at once can fail with a duplicate key on
    ``CREATE TYPE``; the first creation is serialised with an advisory lock.
    """
    import optuna

    if stores.embedded:
        from sweeps.study.journal import open_journal

        stores.workdir.mkdir(parents=True, exist_ok=True)
        return open_journal(stores.journal_path)
    if is_proxy(stores.storage_url):
        from sweeps.study.proxy import proxy_storage

        return proxy_storage(stores.storage_url)

    url = sqlalchemy_url(stores.storage_url)
    from tracking.db_url import check_database_url

    check_database_url(url, "--storage")  # a bad URL: one line, exit 2, before anything is written
    with _schema_lock(url) as schema, warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        storage = optuna.storages.RDBStorage(
            url,
            engine_kwargs=pool_kwargs(url, pool_size),
            heartbeat_interval=HEARTBEAT_SECONDS,
            grace_period=GRACE_SECONDS,
            heartbeat_stale_trial_callback=stale_trial_callback,
        )
        if schema is not None:
            # The claims look up WAITING and RUNNING trials of a study (sweeps.study.claims): an index makes that a
            # lookup of those few rows, not a scan of every trial of the study.
            import sqlalchemy

            schema.execute(sqlalchemy.text(f"CREATE INDEX IF NOT EXISTS {STATE_INDEX} ON trials (study_id, state)"))
            schema.commit()
        return storage


STATE_INDEX = "optsweep_trials_study_state"


def close_storage(storage) -> None:
    """Close what an Optuna storage holds open: an RDB storage's pooled connections, a proxy's channel."""
    backend = getattr(storage, "_backend", storage)
    if hasattr(backend, "engine"):
        backend.engine.dispose()
    elif hasattr(backend, "close"):
        backend.close()


def is_proxy(url: str | None) -> bool:
    return bool(url) and url.startswith("grpc://")


def pool_kwargs(url: str, pool_size: int = 1, overflow: int = 1) -> dict:
    """SQLAlchemy pool bounds for a server database: ``pool_size`` connections kept, at most ``overflow`` more
    opened for a moment, pinged before use (one the server dropped is replaced, not an error) and recycled after
    30 minutes. Optuna's RDBStorage needs two at once while it checks its schema (a session and Alembic's
    connection): with one and no overflow it waits for itself until the pool times out."""
    if not url.startswith("postgresql"):
        return {}
    return {"pool_size": pool_size, "max_overflow": overflow, "pool_pre_ping": True, "pool_recycle": 1800}


@contextlib.contextmanager
def heartbeat(study, trial) -> Iterator[None]:
    """Record the trial's heartbeat while the block runs (RDB storages with heartbeats only).

    ``study.optimize`` does this itself; sweeps uses ``ask``/``tell`` (to keep the total exact across
    workers), so it beats here. A worker killed mid-trial stops beating, and after the grace period the
    next worker to look marks the trial failed and queues it again.
    """
    from optuna.storages._heartbeat import BaseHeartbeat

    storage = study._storage
    if not isinstance(storage, BaseHeartbeat) or storage.get_heartbeat_interval() is None:
        yield
        return
    trial_id = trial._trial_id
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(storage.get_heartbeat_interval()):
            try:
                storage.record_heartbeat(trial_id)
            except Exception:  # the storage is out of reach for now: beat again next time (sweeps.study.claims)
                continue

    storage.record_heartbeat(trial_id)
    thread = threading.Thread(target=beat, name=f"heartbeat-{trial.number}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


@contextlib.contextmanager
def _schema_lock(url: str) -> Iterator:
    if not url.startswith("postgresql"):
        yield None
        return
    import sqlalchemy

    engine = sqlalchemy.create_engine(url, poolclass=sqlalchemy.pool.NullPool)
    try:
        with engine.connect() as conn:
            conn.execute(sqlalchemy.text("SELECT pg_advisory_lock(:k)"), {"k": _lock_key("optsweep-schema")})
            conn.commit()
            try:
                yield conn
            finally:
                conn.execute(sqlalchemy.text("SELECT pg_advisory_unlock(:k)"), {"k": _lock_key("optsweep-schema")})
    finally:
        engine.dispose()


def _lock_key(name: str) -> int:
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)


def trial_lock_key(study_name: str) -> int:
    """The advisory lock key of a study's trial lock (shared by direct workers and ``sweeps proxy``)."""
    return _lock_key(f"optsweep-trials:{study_name}")


class TrialLock:
    """A lock every worker of a study takes around "count the trials, then ask for one", so that
    ``trials: 40`` means 40 in total across workers, not 40 each and not 41 after a race.

    The embedded store uses an exclusive ``flock`` on a file beside the journal; PostgreSQL uses a session
    advisory lock keyed by the study name, so workers on other machines are covered too (on one connection
    kept open: one per worker, not one opened per ask); through ``sweeps proxy`` the proxy holds it.
    """

    def __init__(self, stores: Stores, study_name: str):
        self._stores, self._study_name = stores, study_name
        self._engine = None
        self._proxy = None
        if not stores.embedded and stores.storage_url.startswith(("postgresql", "postgres")):
            import sqlalchemy

            url = sqlalchemy_url(stores.storage_url)
            self._engine = sqlalchemy.create_engine(url, **pool_kwargs(url, 1, overflow=0))
        elif not stores.embedded and is_proxy(stores.storage_url):
            from sweeps.study.proxy import proxy_storage

            self._proxy = proxy_storage(stores.storage_url)

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        if self._proxy is not None:
            with self._proxy.locked(self._study_name):
                yield
            return
        if self._engine is not None:
            import sqlalchemy

            key = trial_lock_key(self._study_name)
            with self._engine.connect() as conn:
                conn.execute(sqlalchemy.text("SELECT pg_advisory_lock(:k)"), {"k": key})
                try:
                    yield
                finally:
                    conn.execute(sqlalchemy.text("SELECT pg_advisory_unlock(:k)"), {"k": key})
            return
        self._stores.workdir.mkdir(parents=True, exist_ok=True)
        name = hashlib.sha256(self._study_name.encode()).hexdigest()[:12]
        lock_path = self._stores.workdir / f".trials-{name}.lock"
        with open(lock_path, "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def close(self) -> None:
        if self._engine is not None:
            self._engine.dispose()
        if self._proxy is not None:
            self._proxy.close()
