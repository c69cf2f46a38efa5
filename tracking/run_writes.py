"""A trial run's hot-path writes — its creation, its values, its end — straight into an embedded SQLite store.

Every trial creates a run, logs ~150 values and ends it; through MLflow's SQLAlchemy store those three
requests cost 30-100 ms of CPU on a quickstart trial that trains for ~30-60 ms (ORM objects for every
value, and a session with its own commit for the params, the metrics and the tags of one ``log_batch``).
Here each is one transaction of plain statements on the same database, writing the rows MLflow's store
writes (``tests/tracking/test_run_writes.py`` compares the two, as MLflow reads them back): a run's creation
~2 ms, a trial's ~150 values ~2.5 ms, its end under 1 ms, each committed as durably as MLflow commits.

Only where that is known to be exact: a ``sqlite:///`` store at a schema revision listed in
:data:`tracking.direct_sql.KNOWN_REVISIONS` (the one the installed MLflow was checked at), whose tables hold
the columns this module writes and nothing else, and values MLflow would take as they are (plain names,
lengths within its limits, numbers for metrics, a non-empty run name). Everything else — another store,
another MLflow schema, MLflow's workspaces, metrics while an MLflow model is active (MLflow links them to
it), a value MLflow would refuse or change — goes through ``MlflowClient`` as before, which says what is
wrong; and so does all reading, searching and artifacts. A sweep's experiment (found, or created with the
artifact location it is given) and a run's dataset inputs are written here too, under the same rules, so that
a sweep on an embedded store can run without importing MLflow at all (~2.4 s of a quickstart's CPU): nothing
on the direct paths imports it, and the run :func:`create_run` returns is a plain :class:`CreatedRun`.
``TRACKING_DIRECT_SQLITE=0`` turns the direct writes off. The connection is this process's own: a forked
child opens its own (SQLite connections must not cross a fork).
"""

from __future__ import annotations

import contextlib
import functools
import math
import numbers
import os
import posixpath
import re
import sqlite3
import sys
import threading
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from tracking.direct_sql import DEFAULT_WORKSPACE, allowed, known_schema, other_workspaces
from tracking.direct_sql import marks as _marks
from tracking.errors import TrackingError
from tracking.mlflow_requests import MAX_PARAM_VALUE, MAX_TAG_VALUE, log_batched, with_retries

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities import Run

# The columns of the tables written here, exactly; a store whose tables differ is written through MLflow.
COLUMNS = {
    "runs": {
        "run_uuid", "name", "source_type", "source_name", "entry_point_name", "user_id", "status",
        "start_time", "end_time", "source_version", "lifecycle_stage", "artifact_uri", "experiment_id",
        "deleted_time",
    },
    "metrics": {"key", "value", "timestamp", "run_uuid", "step", "is_nan"},
    "latest_metrics": {"key", "value", "timestamp", "step", "is_nan", "run_uuid"},
    "params": {"key", "value", "run_uuid"},
    "tags": {"key", "value", "run_uuid"},
    "experiments": {
        "experiment_id", "name", "artifact_location", "lifecycle_stage", "creation_time", "last_update_time",
        "workspace",
    },
    "datasets": {
        "dataset_uuid", "experiment_id", "name", "digest", "dataset_source_type", "dataset_source", "dataset_schema",
        "dataset_profile",
    },
    "inputs": {"input_uuid", "source_type", "source_id", "destination_type", "destination_id", "step"},
    "input_tags": {"input_uuid", "name", "value"},
}  # fmt: skip
BUSY_TIMEOUT_SECONDS = 20.0  # as MLflow's SQLite sessions (PRAGMA busy_timeout = 20000)
MAX_KEY = 250  # the key columns' width
RUN_NAME_TAG = "mlflow.runName"
USER_TAG = "mlflow.user"
STATUSES = frozenset({"RUNNING", "SCHEDULED", "FINISHED", "FAILED", "KILLED"})
_FLOAT_MAX = 1.7976931348623157e308  # what MLflow stores for ±inf
_NAME = re.compile(r"^[/\w.\- :]*$")  # the names MLflow accepts (on POSIX)
# What names an active MLflow model in a process that has not set one itself (MLflow's public and legacy names).
ACTIVE_MODEL_VARS = ("MLFLOW_ACTIVE_MODEL_ID", "_MLFLOW_ACTIVE_MODEL_ID")
MAX_EXPERIMENT_NAME = 500
MAX_ARTIFACT_LOCATION = 2048  # MLflow's default limit; MLFLOW_ARTIFACT_LOCATION_MAX_LENGTH changes it
# Artifact locations known without MLflow: an absolute path, plain or as a ``file:///`` URI, with nothing
# urllib would read as a host, a query or a fragment, or strip (control characters). MLflow keeps such a
# location as it is and puts a run's artifacts at ``<location>/<run id>/artifacts``.
_SIMPLE_LOCATION = re.compile(r"(?:file://)?/(?!/)[^?#\x00-\x1f\x7f]*")
_RUN_ID = re.compile(r"[a-zA-Z0-9][\w\-]{0,255}")  # the run ids MLflow accepts
# MLflow's limits on a dataset input's name, digest, source type (none), source, schema and profile: its store
# refuses longer ones.
MAX_DATASET = (500, 36, math.inf, 65535, 1048575, 16777215)
MAX_INPUT_TAG_KEY, MAX_INPUT_TAG_VALUE = 255, 500

Pair = tuple[str, str]
MetricT = tuple[str, float, int, int]  # key, value, timestamp (ms), step


class DatasetInput(Protocol):
    """A run's dataset input as written here (:class:`tracking.datasets.DatasetRecord` is one): the dataset's
    strings as MLflow stores them, and the input's tags."""

    name: str
    digest: str
    source_type: str
    source: str
    schema: str | None
    profile: str | None

    @property
    def tags(self) -> Mapping[str, str]: ...


# --- the run a direct create_run returns: what callers read of MLflow's Run, without importing MLflow -------


@dataclass(frozen=True)
class CreatedRunInfo:
    """The fields of ``mlflow.entities.RunInfo`` that a new run has."""

    run_id: str
    experiment_id: str
    user_id: str
    status: str
    start_time: int
    end_time: int | None
    lifecycle_stage: str
    artifact_uri: str
    run_name: str


@dataclass(frozen=True)
class CreatedRunData:
    """A new run's data: its tags; no params or metrics yet."""

    tags: dict[str, str]
    params: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class CreatedRunInputs:
    """A new run's inputs: none yet."""

    dataset_inputs: tuple = ()


@dataclass(frozen=True)
class CreatedRun:
    """A run just created directly, read as MLflow's ``Run`` is: ``run.info.run_id``, ``run.data.tags``, ..."""

    info: CreatedRunInfo
    data: CreatedRunData
    inputs: CreatedRunInputs = field(default_factory=CreatedRunInputs)


# --- what callers use: the direct write when it applies, else MLflow's ----------------------------------


def create_run(client: MlflowClient, experiment_id: str, run_name: str, tags: Mapping[str, str]) -> Run | CreatedRun:
    """``client.create_run(experiment_id, run_name=run_name, tags=tags)``; the new run as MLflow returns it
    (a :class:`CreatedRun` with the same values when written directly)."""
    direct = for_client(client)
    plain = (
        bool(run_name)  # MLflow makes up a name for an empty one
        and _plain_tags(tags.items())
        and tags.get(RUN_NAME_TAG) in (None, run_name)
        and str(experiment_id).isdigit()
    )
    if direct is not None and plain:
        return direct.create_run(experiment_id, run_name, dict(tags))
    return client.create_run(experiment_id, run_name=run_name, tags=dict(tags))


def experiment_id(client: MlflowClient, name: str, artifact_location: str | None) -> str | None:
    """The id of the active experiment ``name``, created with ``artifact_location`` if missing (as
    ``client.create_experiment(name, artifact_location=artifact_location)`` creates it), retried on transient
    failures. None where that is MLflow's to do (the caller asks it): no direct writes to this store, no
    ``artifact_location`` (MLflow picks one), a location or a name it would change or refuse. Raises
    TrackingError when the experiment is deleted."""
    direct = for_client(client)
    if direct is None or artifact_location is None:
        return None
    if not _plain_experiment(name, artifact_location):
        return None
    return with_retries(direct.experiment_id, name, artifact_location, what=f"get or create experiment {name!r}")


def log_inputs(client: MlflowClient, run_id: str, inputs: Sequence[DatasetInput]) -> bool:
    """Log the dataset ``inputs`` to the run as ``client.log_inputs`` does, retried on transient failures;
    inputs the run holds already are left as they are. False, nothing done, when that is MLflow's to do (no
    direct writes to this store, a value MLflow would refuse): the caller asks it."""
    direct = for_client(client)
    if direct is None or not _RUN_ID.fullmatch(run_id) or not all(map(_plain_input, inputs)):
        return False
    with_retries(direct.log_inputs, run_id, inputs, what=f"log the inputs of {run_id}")
    return True


def log_values(
    client: MlflowClient,
    run_id: str,
    metrics: Sequence[MetricT] = (),
    params: Sequence[Pair] = (),
    tags: Sequence[Pair] = (),
    end: str | None = None,
) -> bool:
    """Log ``metrics`` (``(key, value, timestamp, step)``), ``params`` and ``tags`` to the run, retried on
    transient failures: one transaction when direct, else as few ``log_batch`` requests as MLflow allows.
    A param cannot change value (MLflow's rule); a metric point already logged is not logged twice.
    Metrics logged while an MLflow model is active (``mlflow.set_active_model``, ``MLFLOW_ACTIVE_MODEL_ID``)
    go through MLflow, which links them to it.

    ``end``: a status (``FINISHED``, ``FAILED``, ``KILLED``) to end the run with in the same transaction, where
    the values go in one (direct): a trial's last values and its end then cost one durable commit, not
    two. Returns whether the run was ended; if not, the caller ends it (:func:`set_terminated`)."""
    direct = for_client(client)
    joined = end if direct is not None and end in STATUSES else None
    if not (metrics or params or tags or joined):
        return False  # as MLflow: nothing asked, nothing checked
    if direct is not None and _plain(metrics, params, tags) and not (metrics and _active_model()):
        with_retries(direct.log_batch, run_id, metrics, params, tags, end=joined, what=f"log_batch({run_id})")
        return joined is not None
    from mlflow.entities import Metric, Param, RunTag

    log_batched(
        client,
        run_id,
        metrics=[Metric(*m) for m in metrics],
        params=[Param(*p) for p in params],
        tags=[RunTag(*t) for t in tags],
    )
    return False


def set_terminated(client: MlflowClient, run_id: str, status: str) -> None:
    """End the run with ``status`` (``FINISHED``, ``FAILED``, ``KILLED``) now, retried on transient failures."""
    direct = for_client(client)
    if direct is not None and status in STATUSES:
        with_retries(direct.set_terminated, run_id, status, what=f"end run {run_id}")
        return
    with_retries(client.set_terminated, run_id, status=status, what=f"end run {run_id}")


def delete_tags(client: MlflowClient, run_id: str, keys: Sequence[str]) -> None:
    """Delete the run's tags ``keys`` (``MlflowClient.delete_tag`` each), retried on transient failures: one
    transaction when direct (a key the run lacks raises MLflow's error and deletes none)."""
    direct = for_client(client)
    if direct is not None and all(isinstance(key, str) for key in keys):  # else MLflow's own error
        if keys:
            with_retries(direct.delete_tags, run_id, list(keys), what=f"delete tags of {run_id}")
        return
    for key in keys:
        with_retries(client.delete_tag, run_id, key, what=f"delete tag {key}")


def for_client(client: MlflowClient) -> SqliteRuns | None:
    """The direct writer of the store ``client`` talks to, or None when writes must go through MLflow."""
    try:
        uri = client.tracking_uri
    except Exception:
        return None
    return for_uri(uri) if isinstance(uri, str) else None


def for_uri(uri: str) -> SqliteRuns | None:
    """The direct writer of the SQLite store at ``uri`` (see the module's docstring), or None."""
    if not allowed():
        return None
    from tracking.store import sqlite_path

    db = sqlite_path(uri)
    return None if db is None else _writer(db)


# --- the direct writes ------------------------------------------------------------------------------------


class SqliteRuns:
    """One SQLite store's direct writes (see the module's docstring). Thread-safe; one connection per process."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._connection: sqlite3.Connection | None = None
        self._pid = 0
        self._identity: tuple[int, int] | None = None  # (device, inode) of the file connected to

    def create_run(
        self, experiment_id: str, run_name: str, tags: dict[str, str], start_time: int | None = None
    ) -> CreatedRun:
        """A new RUNNING run of the experiment, as ``MlflowClient.create_run`` makes it; returns it."""
        start = start_time or _now_ms()
        run_id = uuid.uuid4().hex
        tags = dict(tags)
        tags.setdefault(RUN_NAME_TAG, run_name)
        user = tags.get(USER_TAG, "unknown")
        with self._transaction() as db:
            row = db.execute(
                "SELECT artifact_location, lifecycle_stage FROM experiments WHERE experiment_id = ?",
                (int(experiment_id),),
            ).fetchone()
            if row is None:
                raise _error(f"No Experiment with id={experiment_id} exists", "RESOURCE_DOES_NOT_EXIST")
            location, stage = row
            if stage != "active":
                raise _error(
                    f"The experiment {experiment_id} must be in the 'active' state. Current state is {stage}.",
                    "INVALID_PARAMETER_VALUE",
                )
            artifact_uri = _artifact_uri(location, run_id)
            db.execute(
                "INSERT INTO runs (run_uuid, name, source_type, source_name, entry_point_name, user_id, status,"
                " start_time, end_time, source_version, lifecycle_stage, artifact_uri, experiment_id, deleted_time)"
                " VALUES (?, ?, 'UNKNOWN', '', '', ?, 'RUNNING', ?, NULL, '', 'active', ?, ?, NULL)",
                (run_id, run_name, user, start, artifact_uri, int(experiment_id)),
            )
            db.executemany(
                "INSERT INTO tags (key, value, run_uuid) VALUES (?, ?, ?)",
                [(k, v, run_id) for k, v in tags.items()],
            )
        info = CreatedRunInfo(
            run_id, str(experiment_id), user, "RUNNING", start, None, "active", artifact_uri, run_name
        )
        return CreatedRun(info, CreatedRunData(tags))

    def experiment_id(self, name: str, artifact_location: str, now: int | None = None) -> str | None:
        """The id of the experiment ``name``, made as MLflow's SQL store makes one if there is none: in the
        default workspace, active, created and last updated now, with ``artifact_location`` (which MLflow
        keeps as it is, :func:`_plain_experiment`) and no tags. Two processes asking at once get the same
        one: the transaction holds the write lock from its start, so nobody adds it between the look-up and
        the insert. None, nothing written, for a store holding experiments of other workspaces, which MLflow
        refuses to open with its workspaces off; raises TrackingError for a deleted experiment."""
        with self._transaction() as db:
            if other_workspaces(db):
                return None
            row = db.execute(
                "SELECT experiment_id, lifecycle_stage FROM experiments WHERE name = ?", (name,)
            ).fetchone()
            if row is None:
                created = now or _now_ms()
                cursor = db.execute(
                    "INSERT INTO experiments (name, artifact_location, lifecycle_stage, creation_time,"
                    " last_update_time, workspace) VALUES (?, ?, 'active', ?, ?, ?)",
                    (name, artifact_location, created, created, DEFAULT_WORKSPACE),
                )
                return str(cursor.lastrowid)
        found, stage = str(row[0]), row[1]
        if stage != "active":
            raise TrackingError(
                f"MLflow experiment {name!r} (id {found}) is deleted; restore it with "
                f"`mlflow experiments restore --experiment-id {found}` or rename the sweep"
            )
        return found

    def log_inputs(self, run_id: str, inputs: Sequence[DatasetInput]) -> None:
        """The dataset inputs of an active run, as MLflow's ``log_inputs`` writes them: of inputs with one name
        and digest the first; each dataset once per experiment (the one there kept as it is); an input edge
        from the dataset to the run, with its tags, unless the run has it already (its tags then unchanged)."""
        first: dict[tuple[str, str], DatasetInput] = {}
        for item in inputs:
            first.setdefault((item.name, item.digest), item)
        with self._transaction() as db:
            experiment = self._check_active(db, run_id)
            for item in first.values():
                dataset = self._dataset_uuid(db, experiment, item)
                held = db.execute(
                    "SELECT 1 FROM inputs WHERE source_type = 'DATASET' AND source_id = ?"
                    " AND destination_type = 'RUN' AND destination_id = ?",
                    (dataset, run_id),
                ).fetchone()
                if held:
                    continue
                input_uuid = uuid.uuid4().hex
                db.execute(
                    "INSERT INTO inputs (input_uuid, source_type, source_id, destination_type, destination_id)"
                    " VALUES (?, 'DATASET', ?, 'RUN', ?)",
                    (input_uuid, dataset, run_id),
                )
                db.executemany(
                    "INSERT INTO input_tags (input_uuid, name, value) VALUES (?, ?, ?)",
                    [(input_uuid, k, v) for k, v in item.tags.items()],
                )

    @staticmethod
    def _dataset_uuid(db: sqlite3.Connection, experiment: int, item: DatasetInput) -> str:
        """The id of the experiment's dataset of ``item``'s name and digest, added if missing."""
        row = db.execute(
            "SELECT dataset_uuid FROM datasets WHERE experiment_id = ? AND name = ? AND digest = ?",
            (experiment, item.name, item.digest),
        ).fetchone()
        if row is not None:
            return row[0]
        dataset = uuid.uuid4().hex
        db.execute(
            "INSERT INTO datasets (dataset_uuid, experiment_id, name, digest, dataset_source_type, dataset_source,"
            " dataset_schema, dataset_profile) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (dataset, experiment, item.name, item.digest, item.source_type, item.source, item.schema, item.profile),
        )
        return dataset

    def log_batch(
        self,
        run_id: str,
        metrics: Sequence[MetricT] = (),
        params: Sequence[Pair] = (),
        tags: Sequence[Pair] = (),
        end: str | None = None,
    ) -> None:
        """Params, metrics (and each key's latest value) and tags of a batch in one transaction, as MLflow's
        ``log_batch`` writes them; the values must be plain (:func:`_plain`). With ``end`` (a status), the
        run ends in the same transaction, as :meth:`set_terminated` ends it."""
        with self._transaction() as db:
            self._check_active(db, run_id)
            if params:
                keys = [k for k, _ in params]
                held = dict(
                    db.execute(
                        f"SELECT key, value FROM params WHERE run_uuid = ? AND key IN ({_marks(keys)})",
                        (run_id, *keys),
                    ).fetchall()
                )
                changed = [
                    {"key": k, "old_value": held[k], "new_value": v} for k, v in params if k in held and held[k] != v
                ]
                if changed:
                    raise _error(
                        f"Changing param values is not allowed. Params were already logged='{changed}' for run "
                        f"ID='{run_id}'.",
                        "INVALID_PARAMETER_VALUE",
                    )
                db.executemany(
                    "INSERT INTO params (key, value, run_uuid) VALUES (?, ?, ?)",
                    [(k, v, run_id) for k, v in params if k not in held],
                )
            if metrics:
                rows = [(k, *_stored(v), t, s) for k, v, t, s in metrics]  # key, value, is_nan, timestamp, step
                db.executemany(
                    "INSERT OR IGNORE INTO metrics (key, value, is_nan, timestamp, step, run_uuid)"
                    " VALUES (?, ?, ?, ?, ?, ?)",
                    [(*row, run_id) for row in rows],
                )
                self._update_latest(db, run_id, rows)
            for key, value in _last_wins(tags):
                db.execute(
                    "INSERT INTO tags (key, value, run_uuid) VALUES (?, ?, ?)"
                    " ON CONFLICT (key, run_uuid) DO UPDATE SET value = excluded.value",
                    (key, value, run_id),
                )
                if key == RUN_NAME_TAG:  # MLflow keeps the run's name in both places
                    db.execute("UPDATE runs SET name = ? WHERE run_uuid = ?", (value, run_id))
            if end is not None:
                self._end(db, run_id, end)

    def set_terminated(self, run_id: str, status: str, end_time: int | None = None) -> None:
        """The run's status and end time, as ``MlflowClient.set_terminated`` sets them."""
        with self._transaction() as db:
            self._check_active(db, run_id)
            self._end(db, run_id, status, end_time)

    @staticmethod
    def _end(db: sqlite3.Connection, run_id: str, status: str, end_time: int | None = None) -> None:
        db.execute(
            "UPDATE runs SET status = ?, end_time = ? WHERE run_uuid = ?", (status, end_time or _now_ms(), run_id)
        )

    def delete_tags(self, run_id: str, keys: Sequence[str]) -> None:
        """Delete the run's tags ``keys``, as ``MlflowClient.delete_tag`` deletes each (and its error for a tag
        the run lacks, when nothing is deleted)."""
        with self._transaction() as db:
            self._check_active(db, run_id)
            for key in keys:
                if db.execute("DELETE FROM tags WHERE run_uuid = ? AND key = ?", (run_id, key)).rowcount == 0:
                    raise _error(f"No tag with name: {key} in run with id {run_id}", "RESOURCE_DOES_NOT_EXIST")

    @staticmethod
    def _check_active(db: sqlite3.Connection, run_id: str) -> int:
        """The experiment of the run, which must exist and be active (MLflow's errors otherwise)."""
        row = db.execute("SELECT lifecycle_stage, experiment_id FROM runs WHERE run_uuid = ?", (run_id,)).fetchone()
        if row is None:
            raise _error(f"Run with id={run_id} not found", "RESOURCE_DOES_NOT_EXIST")
        if row[0] != "active":
            raise _error(
                f"The run {run_id} must be in the 'active' state. Current state is {row[0]}.",
                "INVALID_PARAMETER_VALUE",
            )
        return row[1]

    @staticmethod
    def _update_latest(db: sqlite3.Connection, run_id: str, rows: list[tuple]) -> None:
        """Each key's latest value: the greatest (step, timestamp, value), as MLflow orders them."""
        best: dict[str, tuple] = {}
        for key, value, is_nan, timestamp, step in rows:
            order = (step, timestamp, value)
            if key not in best or order > best[key][0]:
                best[key] = (order, is_nan)
        keys = list(best)
        held = {
            key: (step, timestamp, value)
            for key, step, timestamp, value in db.execute(
                "SELECT key, step, timestamp, value FROM latest_metrics"
                f" WHERE run_uuid = ? AND key IN ({_marks(keys)})",
                (run_id, *keys),
            )
        }
        for key, ((step, timestamp, value), is_nan) in best.items():
            if key not in held:
                db.execute(
                    "INSERT INTO latest_metrics (key, value, timestamp, step, is_nan, run_uuid)"
                    " VALUES (?, ?, ?, ?, ?, ?)",
                    (key, value, timestamp, step, is_nan, run_id),
                )
            elif (step, timestamp, value) > held[key]:
                db.execute(
                    "UPDATE latest_metrics SET value = ?, timestamp = ?, step = ?, is_nan = ?"
                    " WHERE key = ? AND run_uuid = ?",
                    (value, timestamp, step, is_nan, key, run_id),
                )

    def reading(self) -> contextlib.AbstractContextManager[sqlite3.Connection]:
        """One read transaction on this process's connection (one view of the store for all its statements;
        :mod:`tracking.run_reads`), its errors as :meth:`_transaction`'s."""
        return self._transaction(begin="BEGIN")

    @contextlib.contextmanager
    def _transaction(self, begin: str = "BEGIN IMMEDIATE") -> Iterator[sqlite3.Connection]:
        """One write transaction, the database locked from its start (no upgrade from a read lock to fail);
        SQLite's errors become MlflowExceptions as MLflow's SQL store makes them (a busy database:
        TEMPORARILY_UNAVAILABLE, retried by :func:`with_retries`)."""
        with self._lock:
            db = self._connect()
            try:
                db.execute(begin)
                yield db
                db.execute("COMMIT")
            except BaseException as e:
                with contextlib.suppress(sqlite3.Error):
                    if db.in_transaction:
                        db.execute("ROLLBACK")
                if isinstance(e, sqlite3.OperationalError):
                    raise _error(f"(sqlite3.OperationalError) {e}", "TEMPORARILY_UNAVAILABLE") from e
                if isinstance(e, sqlite3.Error):
                    raise _error(f"({type(e).__module__}.{type(e).__name__}) {e}", "BAD_REQUEST") from e
                raise

    def _connect(self) -> sqlite3.Connection:
        """This process's connection to the file now at ``path``: a store deleted and created again (a work
        folder removed between two sweeps of one Python session) gets a new one; a store that is gone is
        an error, never an empty file created here."""
        identity = _identity(self.path)
        if identity is None:
            raise _error(f"the MLflow store {self.path} is gone", "RESOURCE_DOES_NOT_EXIST")
        mine = self._connection is not None and self._pid == os.getpid()
        if not mine or identity != self._identity:
            if mine:  # a replaced file's: closed
                with contextlib.suppress(sqlite3.Error):
                    self._connection.close()
            elif self._connection is not None:  # the parent's, inherited by a fork: neither used nor closed here
                _inherited.append(self._connection)
            db = sqlite3.connect(
                f"{self.path.as_uri()}?mode=rw",
                uri=True,
                timeout=BUSY_TIMEOUT_SECONDS,
                isolation_level=None,
                check_same_thread=False,
            )
            db.execute("PRAGMA foreign_keys = ON")
            self._connection, self._pid, self._identity = db, os.getpid(), identity
        return self._connection


_writers: dict[Path, tuple[tuple[int, int], SqliteRuns | None]] = {}  # path -> (file identity, writer)
_inherited: list[sqlite3.Connection] = []  # kept so that a fork never closes its parent's connections
_writers_lock = threading.Lock()


def _writer(db: Path) -> SqliteRuns | None:
    """The writer of the file now at ``db``: its schema checked once per file (a store deleted and made
    again, by another MLflow perhaps, is checked again); None for a missing file (MLflow decides)."""
    identity = _identity(db)
    if identity is None:
        return None
    with _writers_lock:
        known, writer = _writers.get(db, (None, None))
        if known != identity:
            writer = SqliteRuns(db) if _known_schema(db) else None
            _writers[db] = (identity, writer)
        return writer


def _identity(path: Path) -> tuple[int, int] | None:
    try:
        stat = os.stat(path)
    except FileNotFoundError:
        return None
    return stat.st_dev, stat.st_ino


def _reset_locks_in_child() -> None:
    """After a fork: locks that another thread of the parent held would stay held in the child for ever."""
    global _writers_lock
    _writers_lock = threading.Lock()
    for _, writer in _writers.values():
        if writer is not None:
            writer._lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_locks_in_child)


def _active_model() -> bool:
    """Whether MLflow would link logged metrics to an active model (it does so in its client). A process that
    never imported MLflow's fluent API cannot have set one: only MLflow's environment variables can name one
    then, and MLflow is not imported to read them. Nor while another thread is still importing it (the
    tracking writer's warm-up): waiting for that import would hold a trial's end for seconds."""
    fluent = sys.modules.get("mlflow.tracking.fluent")
    if fluent is None or getattr(getattr(fluent, "__spec__", None), "_initializing", False):
        return any(os.environ.get(name) is not None for name in ACTIVE_MODEL_VARS)
    try:
        from mlflow.tracking.fluent import get_active_model_id

        return get_active_model_id() is not None
    except Exception:
        return True  # cannot tell: MLflow decides


def _known_schema(db: Path) -> bool:
    """Whether the store at ``db`` is at a revision of ``direct_sql.KNOWN_REVISIONS`` and its tables hold exactly
    :data:`COLUMNS` (read-only; False when it cannot be read)."""
    try:
        with contextlib.closing(sqlite3.connect(f"{db.as_uri()}?mode=ro", uri=True, timeout=5)) as con:
            return known_schema(con, COLUMNS)
    except (sqlite3.Error, OSError):
        return False


# --- values MLflow would take as they are ---------------------------------------------------------------


def _artifact_uri(location: str, run_id: str) -> str:
    """Where MLflow puts a new run's artifacts in an experiment whose artifacts are at ``location``: MLflow's
    ``append_to_uri_path(location, run_id, "artifacts")``, computed here for the locations this store's
    experiments have (:data:`_SIMPLE_LOCATION`: the path gets ``/<run id>/artifacts``), by MLflow otherwise."""
    if isinstance(location, str) and _SIMPLE_LOCATION.fullmatch(location):
        return posixpath.join(location, run_id, "artifacts")
    from mlflow.utils.uri import append_to_uri_path

    return append_to_uri_path(location, run_id, "artifacts")


def _plain_experiment(name: object, artifact_location: str) -> bool:
    """Whether MLflow would create the experiment with this name and location as they are: a name of 1 to 500
    characters, an absolute location (MLflow makes a relative one absolute) within its length limit."""
    return (
        isinstance(name, str)
        and 0 < len(name) <= MAX_EXPERIMENT_NAME
        and isinstance(artifact_location, str)
        and _SIMPLE_LOCATION.fullmatch(artifact_location) is not None
        and len(artifact_location) <= MAX_ARTIFACT_LOCATION
        and "MLFLOW_ARTIFACT_LOCATION_MAX_LENGTH" not in os.environ
    )


def _plain_input(item: DatasetInput) -> bool:
    """A dataset input MLflow's store would take as it is: strings within its limits (schema and profile may
    be missing)."""
    required = (item.name, item.digest, item.source_type, item.source)
    optional = (item.schema, item.profile)
    if not all(isinstance(v, str) for v in required) or not all(v is None or isinstance(v, str) for v in optional):
        return False
    if any(v is not None and len(v) > limit for v, limit in zip((*required, *optional), MAX_DATASET, strict=True)):
        return False
    return all(
        isinstance(k, str) and isinstance(v, str) and len(k) <= MAX_INPUT_TAG_KEY and len(v) <= MAX_INPUT_TAG_VALUE
        for k, v in item.tags.items()
    )


@functools.lru_cache(maxsize=4096)
def _plain_name(name: object) -> bool:
    """A metric, param or tag name MLflow accepts unchanged: its characters, within the column's width, not
    a path that normalises to another name."""
    if not isinstance(name, str) or len(name) > MAX_KEY or not _NAME.match(name):
        return False
    norm = posixpath.normpath(name)
    return norm == name and norm != "." and not norm.startswith(("..", "/"))


def _plain_tags(tags) -> bool:
    """Tags MLflow stores unchanged (an empty run name it does not: it keeps the old one)."""
    return all(
        _plain_name(k) and isinstance(v, str) and len(v) <= MAX_TAG_VALUE and (v or k != RUN_NAME_TAG) for k, v in tags
    )


def _plain(metrics: Sequence[MetricT], params: Sequence[Pair], tags: Sequence[Pair]) -> bool:
    """Whether MLflow would take the batch as it is: plain names, string values within its limits, params
    named once, metrics with a number, a non-negative whole timestamp and a whole step."""
    if not _plain_tags(tags):
        return False
    if not all(_plain_name(k) and isinstance(v, str) and len(v) <= MAX_PARAM_VALUE for k, v in params):
        return False
    if len({k for k, _ in params}) != len(params):
        return False
    for m in metrics:
        if len(m) != 4:
            return False
        key, value, timestamp, step = m
        if not _plain_name(key) or isinstance(value, bool) or not isinstance(value, numbers.Real):
            return False
        if (
            type(timestamp) is not int
            or not 0 <= timestamp < 2**63
            or type(step) is not int
            or not -(2**63) <= step < 2**63
        ):
            return False
    return True


def _stored(value: float) -> tuple[float, int]:
    """(value, is_nan) as MLflow stores a metric value: NaN as 0 with the flag, ±inf as ±float max."""
    value = float(value)
    if math.isnan(value):
        return 0.0, 1
    if math.isinf(value):
        return math.copysign(_FLOAT_MAX, value), 0
    return value, 0


def _last_wins(pairs: Sequence[Pair]) -> list[Pair]:
    """Tags of one batch with a key given twice: the last value, as MLflow keeps it."""
    return list(dict(pairs).items())


def _error(message: str, code: str) -> Exception:
    """MLflow's exception with ``code`` (a name of its error codes), as its SQL store raises it."""
    from mlflow.exceptions import MlflowException
    from mlflow.protos import databricks_pb2

    return MlflowException(message, error_code=getattr(databricks_pb2, code))


def _now_ms() -> int:
    return int(time.time() * 1000)
