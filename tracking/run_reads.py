"""The end of a sweep's reads — its trial runs, a run, metric histories — and its artifact copies, straight from
an embedded SQLite store and into a local artifact folder, without importing MLflow.

The tracking writer reads the trial runs, the parent run and the curves once at the end of a sweep (the
summary, the report) and copies their files into the parent's artifacts. Through ``MlflowClient`` those few
requests cost the import of MLflow, ~2.4 s of CPU in a process that otherwise never needs it (the writes are
:mod:`tracking.run_writes`'s). Here they are a few plain ``SELECT`` statements on the same database and a file
copy, returning what MLflow returns (``tests/tracking/test_run_reads.py`` compares the two on one store):

- :func:`trial_runs` — ``tracking.select.trial_runs``: the same runs, in the same order (start time, newest
  first, then run id), with the same latest values;
- :func:`get_run` — ``MlflowClient.get_run``, and its error for a missing run;
- :func:`metric_histories` — one metric's history of many runs, in the shape of ``select._bulk_histories``;
- :func:`log_artifacts`, :func:`log_artifact` — ``MlflowClient.log_artifacts`` / ``log_artifact`` where the
  run's artifacts are a local folder (MLflow's ``LocalArtifactRepository``).

The runs come back as light, read-only objects (:class:`StoredRun`) with what the callers read of MLflow's
``Run``: ``info`` (id, experiment, user, status, times, stage, artifact URI, name) and ``data`` (metrics,
params, tags); not its dataset inputs or models. Values are MLflow's: a NaN metric reads as NaN and ±inf
as ±1.7976931348623157e308, as MLflow stores and returns it.

Only where :func:`tracking.run_writes.for_client` allows the direct writes (an ``sqlite:///`` store at a
known schema revision, exactly the tables checked there; ``TRACKING_DIRECT_SQLITE=0`` turns both off), with
no experiment of another MLflow workspace, and for arguments MLflow would take as they are. Each function
returns None (False for the copies) otherwise, having done nothing: the caller asks MLflow, which decides and
says what is wrong. The reads share run_writes' connection of this process, one read transaction each (a
consistent view of every page at once), retried as its writes are when the store stays busy past the busy
timeout (:func:`tracking.mlflow_requests.with_retries`). Nothing here imports MLflow but the error of a
failure (MLflow's exception, as its store raises it).
"""

from __future__ import annotations

import contextlib
import os
import posixpath
import re
import shutil
import sqlite3
import tempfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from tracking import run_writes, schema
from tracking.direct_sql import marks as _marks
from tracking.direct_sql import other_workspaces
from tracking.mlflow_requests import with_retries

if TYPE_CHECKING:
    from mlflow import MlflowClient

T = TypeVar("T")

CHUNK = 500  # run ids per query: well under SQLite's bound on query variables (as select.BULK_RUNS)
# A run's info, in StoredRunInfo's order.
RUN_COLUMNS = (
    "r.run_uuid, r.experiment_id, r.user_id, r.status, r.start_time, r.end_time, r.lifecycle_stage,"
    " r.artifact_uri, r.name"
)
# MLflow's natural order of a search: the newest start first, then the run id (SQLite puts a missing start last).
SEARCH_ORDER = "r.start_time DESC, r.run_uuid"
# A condition on run ``r``: it holds tag ? with value ? (MLflow's search joins the tags table so).
TAGGED = "EXISTS (SELECT 1 FROM tags t WHERE t.run_uuid = r.run_uuid AND t.key = ? AND t.value = ?)"
_EXPERIMENT_ID = re.compile(r"[0-9]+")
TRACE_PREFIX = "tr-"  # ids MlflowClient.log_artifact refuses (traces')
STAGING_PREFIX = ".artifact.uploading."  # names MLflow keeps for its own partial uploads
ARTIFACT_PLUGIN_GROUP = "mlflow.artifact_repository"  # entry points that may take over a URI scheme


# --- what the reads return: what callers read of MLflow's Run and Metric, without MLflow --------------------


@dataclass(frozen=True)
class StoredRunInfo:
    """The fields of ``mlflow.entities.RunInfo`` the sweep's readers use, as MLflow's store fills them."""

    run_id: str
    experiment_id: str
    user_id: str | None
    status: str
    start_time: int | None
    end_time: int | None
    lifecycle_stage: str
    artifact_uri: str | None
    run_name: str | None


@dataclass(frozen=True)
class StoredRunData:
    """A run's latest metric values, params and tags, as ``mlflow.entities.RunData``'s dicts."""

    metrics: dict[str, float]
    params: dict[str, str]
    tags: dict[str, str]


@dataclass(frozen=True)
class StoredRun:
    """A run read directly: ``run.info.run_id``, ``run.data.metrics``, ... as on MLflow's ``Run``."""

    info: StoredRunInfo
    data: StoredRunData


@dataclass(frozen=True)
class MetricPoint:
    """One logged value, as the ``MetricWithRunId`` of MLflow's bulk history: key, value, time, step, run."""

    key: str
    value: float
    timestamp: int
    step: int
    run_id: str


# --- the reads ------------------------------------------------------------------------------------------


def trial_runs(
    client: MlflowClient, experiment_ids: Sequence[str], parent_run_id: str | None = None
) -> list[StoredRun] | None:
    """What ``tracking.select.trial_runs(client, experiment_ids, parent_run_id)`` returns — every active run
    of the experiments tagged ``role = trial`` (and a child of ``parent_run_id`` when given), in MLflow's
    search order — or None where that is MLflow's to answer (see the module's docstring; experiment ids must
    be whole numbers, a parent id a plain run id; a run MLflow cannot read: :func:`_runs`)."""
    if isinstance(experiment_ids, str | int):  # one id, as search_runs takes it
        experiment_ids = [experiment_ids]
    ids = [str(e) for e in experiment_ids]
    if not ids or not all(_EXPERIMENT_ID.fullmatch(e) for e in ids):
        return None
    if parent_run_id is not None and not _plain_run_id(parent_run_id):
        return None
    where = [
        f"r.experiment_id IN ({_marks(ids)})",
        "r.lifecycle_stage = 'active'",  # search_runs' default view: active runs only
        TAGGED,
    ]
    args: list[Any] = [*map(int, ids), schema.ROLE, schema.ROLE_TRIAL]
    if parent_run_id is not None:
        where.append(TAGGED)
        args += [schema.PARENT_RUN_ID, parent_run_id]
    return _read(client, lambda db: _runs(db, " AND ".join(where), args), what="search trial runs")


def get_run(client: MlflowClient, run_id: str) -> StoredRun | None:
    """What ``client.get_run(run_id)`` returns of the run (whatever its stage), or None where that is MLflow's
    to answer (an id MLflow would refuse, a run MLflow cannot read: :func:`_runs`). Raises MLflow's
    RESOURCE_DOES_NOT_EXIST error for a missing run."""
    if not _plain_run_id(run_id):
        return None

    def one(db: sqlite3.Connection) -> StoredRun | None:
        found = _runs(db, "r.run_uuid = ?", [run_id])
        if found == []:
            raise run_writes._error(f"Run with id={run_id} not found", "RESOURCE_DOES_NOT_EXIST")
        return None if found is None else found[0]

    return _read(client, one, what=f"get run {run_id}")


def metric_histories(client: MlflowClient, run_ids: Sequence[str], key: str) -> dict[str, list[MetricPoint]] | None:
    """Every logged value of metric ``key`` in each of ``run_ids`` (an empty list for a run without it, or
    no such run), each run's by time, step then value — what ``tracking.select._bulk_histories`` returns
    through MLflow's bulk query and ``get_metric_history`` run by run; None where that is MLflow's to
    answer."""
    if not isinstance(key, str) or not all(isinstance(r, str) for r in run_ids):
        return None
    unique = list(dict.fromkeys(run_ids))

    def histories(db: sqlite3.Connection) -> dict[str, list[MetricPoint]]:
        found: dict[str, list[MetricPoint]] = {run_id: [] for run_id in unique}
        for start in range(0, len(unique), CHUNK):
            chunk = unique[start : start + CHUNK]
            rows = db.execute(
                "SELECT run_uuid, value, is_nan, timestamp, step FROM metrics"
                f" WHERE key = ? AND run_uuid IN ({_marks(chunk)})"
                " ORDER BY run_uuid, timestamp, step, value, is_nan",
                (key, *chunk),
            )
            for run_id, value, is_nan, timestamp, step in rows:
                found[run_id].append(MetricPoint(key, _metric_value(value, is_nan), timestamp, step, run_id))
        return found

    return _read(client, histories, what=f"histories of {key}")


# --- the artifact copies ----------------------------------------------------------------------------------


def log_artifacts(
    client: MlflowClient, run_id: str, local_dir: str | os.PathLike, artifact_path: str | None = None
) -> bool:
    """Copy the tree of ``local_dir`` into the run's artifacts (under ``artifact_path``) as
    ``client.log_artifacts`` does when they are a local folder: folders made as needed, files overwritten
    (contents, times and mode bits copied). False, nothing done, where that is MLflow's to do: no direct
    reads of this store, artifacts elsewhere than in a local folder, a path MLflow would refuse."""
    root = _artifact_root(client, run_id)
    target = None if root is None else _artifact_dir(root, artifact_path)
    if target is None:
        return False
    os.makedirs(target, exist_ok=True)
    _copy_tree(os.fspath(local_dir), target)
    return True


def log_artifact(
    client: MlflowClient, run_id: str, local_file: str | os.PathLike, artifact_path: str | None = None
) -> bool:
    """Copy the file ``local_file`` into the run's artifacts (under ``artifact_path``) as
    ``client.log_artifact`` does when they are a local folder: replaced whole (written beside it, then
    renamed: a reader never sees half a file), its times and mode bits copied; a folder is copied with its
    tree into ``<artifact_path>/<its name>``. False, nothing done, where that is MLflow's to do (as
    :func:`log_artifacts`, and for a path that is neither a file nor a folder)."""
    local = os.fspath(local_file)
    if os.path.isdir(local):
        name = os.path.basename(os.path.normpath(local))
        return log_artifacts(
            client, run_id, local, name if artifact_path is None else os.path.join(artifact_path, name)
        )
    name = os.path.basename(local)
    if not os.path.isfile(local) or name.startswith(STAGING_PREFIX):
        return False
    root = _artifact_root(client, run_id)
    folder = None if root is None else _artifact_dir(root, artifact_path)
    if folder is None or not _within(root, os.path.join(folder, name)):
        return False
    os.makedirs(folder, exist_ok=True)
    _replace_file(local, os.path.join(folder, name))
    return True


def _artifact_root(client: MlflowClient, run_id: str) -> str | None:
    """The local folder of the run's artifacts, or None when MLflow must copy them: not a plain run id, no
    direct reads, no such run (MLflow says so), artifacts that are not a plain local path, or an artifact
    plugin that may claim local URIs."""
    if not _plain_run_id(run_id) or run_id.startswith(TRACE_PREFIX):
        return None

    def uri(db: sqlite3.Connection) -> str | None:
        row = db.execute("SELECT artifact_uri FROM runs WHERE run_uuid = ?", (run_id,)).fetchone()
        return None if row is None else row[0]

    found = _read(client, uri, what=f"artifact location of {run_id}")
    return None if found is None or _artifact_plugins() else _local_path(found)


def _local_path(uri: object) -> str | None:
    """The folder of an artifact URI that MLflow reads as a local path without changing it: an absolute path,
    plain or as ``file:///``, without ``%`` (which MLflow would decode) or anything urllib would read as a
    host, a query or a fragment (:data:`run_writes._SIMPLE_LOCATION`); None for anything else."""
    if os.name != "posix" or not isinstance(uri, str) or "%" in uri:
        return None
    if not run_writes._SIMPLE_LOCATION.fullmatch(uri):
        return None
    return uri.removeprefix("file://")


def _artifact_dir(root: str, artifact_path: str | None) -> str | None:
    """``root/artifact_path``, or None where MLflow would refuse the path: one that is not already in its
    normal relative form (``..``, absolute, ``a//b``, ``./a``), or leads out of ``root`` through a link."""
    if not artifact_path:
        return root
    if not isinstance(artifact_path, str) or "\\" in artifact_path:
        return None
    norm = posixpath.normpath(artifact_path)
    if norm != artifact_path or norm == "." or norm.startswith(("..", "/")):
        return None
    target = os.path.join(root, artifact_path)
    return target if _within(root, target) else None


def _within(root: str, path: str) -> bool:
    """Whether ``path`` stays inside ``root`` once links are followed (MLflow refuses it otherwise); a path
    not made yet is judged by its existing parent."""
    base = Path(root).resolve()
    target = Path(path)
    real = target.resolve() if target.is_symlink() or target.exists() else target.parent.resolve() / target.name
    return real.is_relative_to(base)


def _copy_tree(source: str, target: str) -> None:
    """Every folder of ``source`` made in ``target`` (linked folders as empty folders, not followed) and every
    file copied over what is there (a linked file's contents), as MLflow's local copy does."""
    for folder, subfolders, files in os.walk(source):
        here = os.path.join(target, os.path.relpath(folder, source))
        for name in subfolders:
            made = os.path.join(here, name)
            if not os.path.exists(made):
                os.mkdir(made)
        for name in files:
            shutil.copy2(os.path.join(folder, name), os.path.join(here, name))


def _replace_file(source: str, destination: str) -> None:
    """``destination`` replaced by a copy of ``source`` in one rename, nothing done when they are one file."""
    with contextlib.suppress(FileNotFoundError):
        if os.path.samefile(source, destination):
            return
    handle, staged = tempfile.mkstemp(dir=os.path.dirname(destination), prefix=STAGING_PREFIX)
    try:
        with os.fdopen(handle, "wb") as out, open(source, "rb") as data:
            shutil.copyfileobj(data, out)
        shutil.copystat(source, staged)
        os.replace(staged, destination)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(staged)
        raise


@lru_cache(maxsize=1)
def _artifact_plugins() -> bool:
    """Whether an installed MLflow plugin registers an artifact repository for local paths (``file`` or no
    scheme), which MLflow would then use instead of its local copy."""
    from importlib.metadata import entry_points

    return any(e.name in ("", "file") for e in entry_points(group=ARTIFACT_PLUGIN_GROUP))


# --- reading the store ----------------------------------------------------------------------------------


def _read(client: MlflowClient, read: Callable[[sqlite3.Connection], T], *, what: str) -> T | None:
    """``read(db)`` in one read transaction on the store of ``client``, retried while the store is busy;
    None, nothing read, when the direct reads do not apply (no direct writes there, or experiments of other
    MLflow workspaces, which MLflow refuses with its workspaces off)."""
    direct = run_writes.for_client(client)
    if direct is None:
        return None
    return with_retries(_read_once, direct, read, what=what)


def _read_once(direct: run_writes.SqliteRuns, read: Callable[[sqlite3.Connection], T]) -> T | None:
    with direct.reading() as db:
        return None if other_workspaces(db) else read(db)


def _runs(db: sqlite3.Connection, where: str, args: Sequence[Any]) -> list[StoredRun] | None:
    """The runs ``r`` matching ``where``, in MLflow's search order, with their latest metrics, params, tags;
    None if one lacks what MLflow's ``RunInfo`` requires (an experiment, user, status, start time), on which
    MLflow's reads fail (its error, then)."""
    rows = db.execute(f"SELECT {RUN_COLUMNS} FROM runs r WHERE {where} ORDER BY {SEARCH_ORDER}", args).fetchall()
    if any(None in row[1:5] for row in rows):
        return None
    if not rows:
        return []
    chosen = f"SELECT r.run_uuid FROM runs r WHERE {where}"
    tags = _by_run(db.execute(f"SELECT run_uuid, key, value FROM tags WHERE run_uuid IN ({chosen})", args))
    params = _by_run(db.execute(f"SELECT run_uuid, key, value FROM params WHERE run_uuid IN ({chosen})", args))
    latest = db.execute(f"SELECT run_uuid, key, value, is_nan FROM latest_metrics WHERE run_uuid IN ({chosen})", args)
    metrics = _by_run((run, key, _metric_value(value, is_nan)) for run, key, value, is_nan in latest)
    return [_run(row, metrics.get(row[0], {}), params.get(row[0], {}), tags.get(row[0], {})) for row in rows]


def _run(row: tuple, metrics: dict, params: dict, tags: dict) -> StoredRun:
    """A run from its ``runs`` row; a run without a name is named by its ``mlflow.runName`` tag, as in MLflow."""
    run_id, experiment, user, status, start, end, stage, artifact_uri, name = row
    if not name and tags.get(schema.RUN_NAME):
        name = tags[schema.RUN_NAME]
    info = StoredRunInfo(run_id, str(experiment), user, status, start, end, stage, artifact_uri, name)
    return StoredRun(info, StoredRunData(metrics, params, tags))


def _by_run(rows: Iterable[tuple[str, str, Any]]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for run_id, key, value in rows:
        out.setdefault(run_id, {})[key] = value
    return out


def _metric_value(value: float, is_nan: int) -> float:
    """A stored metric value as MLflow reads it: NaN where flagged; ±inf stays the ±float max it is stored as."""
    return float("nan") if is_nan else value


def _plain_run_id(run_id: object) -> bool:
    """A run id MLflow takes as it is (anything else: MLflow's error, or its parsing of a filter)."""
    return isinstance(run_id, str) and run_writes._RUN_ID.fullmatch(run_id) is not None
