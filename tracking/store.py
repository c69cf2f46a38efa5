"""Where runs are stored: tracking URIs, the embedded default, client creation and the reachability check.

The embedded default is an SQLite file ``<workdir>/mlflow.db`` with artifacts in ``<workdir>/mlartifacts``;
any other tracking URI works too, ``http://`` tracking servers included. Every URI that is logged or
recorded goes through :func:`tracking.redact.redact` first.
"""

from __future__ import annotations

import base64
import json
import os
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit, urlunsplit

from tracking.errors import TrackingError, TrackingUnavailable
from tracking.redact import install_log_redaction, redact

if TYPE_CHECKING:
    from mlflow import MlflowClient

DB_FILE = "mlflow.db"
ARTIFACT_DIR = "mlartifacts"


def default_tracking_uri(workdir: Path) -> str:
    """``sqlite:////abs/workdir/mlflow.db``: SQLite URIs need four slashes before an absolute path."""
    return "sqlite:///" + str(Path(workdir).resolve() / DB_FILE)


def default_artifact_location(workdir: Path) -> str:
    """``file:///abs/workdir/mlartifacts``: where the embedded store's experiments keep their artifacts."""
    return (Path(workdir).resolve() / ARTIFACT_DIR).as_uri()


def sqlite_path(uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` URI (resolved), or None for any other kind of URI."""
    if not uri.startswith("sqlite:///"):
        return None
    path = uri[len("sqlite:///") :].split("?", 1)[0]
    return None if path in ("", ":memory:") else Path(path).resolve()


def artifact_location_for(tracking_uri: str) -> str | None:
    """Artifacts beside an SQLite database (``<dir>/mlartifacts``); None lets a server or MLflow decide."""
    db = sqlite_path(tracking_uri)
    return None if db is None else default_artifact_location(db.parent)


def make_client(tracking_uri: str | None = None, *, lazy: bool = False) -> MlflowClient:
    """An ``MlflowClient`` bound to ``tracking_uri`` (None: ``MLFLOW_TRACKING_URI`` or MLflow's default).

    Also makes sure MLflow's own log records have passwords masked (see ``install_log_redaction``),
    for a URI with a password, that MLflow does not print its "View run at <URI>" lines, and, for an
    SQLite file, that it is created whole or not at all (:mod:`tracking.sqlite_store`).

    ``lazy=True``, for an SQLite file: the store is created now, but MLflow is loaded (1-3 s) only when the
    client is first used for something :mod:`tracking.run_writes` does not write itself (:class:`LazyClient`).
    """
    db = sqlite_path(tracking_uri) if tracking_uri is not None else None
    if lazy and db is not None:
        from tracking.sqlite_store import ensure_complete

        install_log_redaction()
        ensure_complete(db, default_artifact_location(db.parent))
        return LazyClient(tracking_uri)  # type: ignore[return-value]
    from mlflow import MlflowClient

    from tracking.disk_full import quiet_reraised_database_errors
    from tracking.sqlite_store import fast_schema_check

    install_log_redaction()
    if tracking_uri is not None and is_database(tracking_uri):  # a server or a folder has no schema check
        fast_schema_check()
    quiet_reraised_database_errors()
    if tracking_uri is not None and redact(tracking_uri) != tracking_uri:
        os.environ["MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"] = "true"
    if db is not None:
        from tracking.sqlite_store import ensure_complete

        ensure_complete(db, default_artifact_location(db.parent))

    return MlflowClient(tracking_uri=tracking_uri)


class LazyClient:
    """Stands for ``make_client(tracking_uri)`` and makes it at its first use, once, in whichever thread.

    ``tracking_uri`` is all that :mod:`tracking.run_writes` asks of a client to write an SQLite store itself,
    so a training process whose writes all go there directly never loads MLflow, and its writer loads it
    beside the writing (:mod:`tracking.writer.server`). Any other attribute is the real client's."""

    def __init__(self, tracking_uri: str) -> None:
        self.tracking_uri = tracking_uri
        self._client: MlflowClient | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        state = "made" if self._client is not None else "not made yet"
        return f"LazyClient({redact(self.tracking_uri)!r}, {state})"

    def real(self) -> MlflowClient:
        """The ``MlflowClient``, made now if it is not yet (MLflow loaded, the store opened)."""
        with self._lock:
            if self._client is None:
                self._client = make_client(self.tracking_uri)
            return self._client

    def __reduce__(self):  # pickled and copied as what it stands for, not made yet (its lock does not pickle)
        return (LazyClient, (self.tracking_uri,))

    def __getattr__(self, name: str):  # only what the instance itself lacks: every MlflowClient method
        if name.startswith("__") or name in ("_client", "_lock"):
            raise AttributeError(name)
        return getattr(self.real(), name)


def written_directly(uri: str | None) -> bool:
    """Whether a sweep's writes and end-of-sweep reads of the store at ``uri`` all go straight into its SQLite
    file (:mod:`tracking.run_writes`, :mod:`tracking.run_reads`), MLflow never loaded for them: an SQLite store
    ready for them, or one that can be made so without MLflow."""
    db = sqlite_path(uri) if isinstance(uri, str) else None
    if db is None:
        return False
    from tracking.direct_sql import allowed
    from tracking.sqlite_store import opens_without_mlflow

    return allowed() and opens_without_mlflow(db, default_artifact_location(db.parent))


def is_database(uri: str) -> bool:
    """Whether MLflow opens ``uri`` as an SQLAlchemy database (SQLite, PostgreSQL, …)."""
    return "://" in uri and not uri.startswith(("http://", "https://", "file:", "databricks"))


def resolved_uri(tracking_uri: str | None) -> str:
    """The URI a client made from ``tracking_uri`` talks to (None resolves as MLflow does)."""
    if tracking_uri is not None:
        return tracking_uri
    from mlflow.tracking import get_tracking_uri

    return get_tracking_uri()


def _same_database_key(url: str) -> tuple[str, ...]:
    db = sqlite_path(url)
    if db is not None:
        return ("sqlite", str(db))
    parts = urlsplit(url)
    host = parts.hostname or ""
    return (parts.scheme.split("+", 1)[0], host, str(parts.port or ""), parts.path.rstrip("/"))


def check_separate_databases(tracking_uri: str, storage_url: str) -> None:
    """Raise TrackingError if MLflow and Optuna would share one database (both run schema migrations).

    Compares SQLite files by resolved path and server databases by scheme, host, port and database name
    (driver suffixes such as ``+psycopg`` and credentials ignored).
    """
    if tracking_uri.startswith(("http://", "https://", "file:")):
        return  # a server or a folder of files never shares tables with Optuna
    if _same_database_key(tracking_uri) == _same_database_key(storage_url):
        raise TrackingError(
            f"the MLflow tracking URI {redact(tracking_uri)!r} and the Optuna storage {redact(storage_url)!r} "
            "point at the same database; give MLflow its own (the default is <workdir>/mlflow.db)"
        )


def http_request(url: str) -> urllib.request.Request:
    """A request for ``url`` with the credentials of the URL (moved to a Basic header) or of MLflow's
    ``MLFLOW_TRACKING_USERNAME``/``PASSWORD``/``TOKEN`` variables."""
    parts = urlsplit(url)
    netloc = parts.hostname or ""
    if parts.port:
        netloc += f":{parts.port}"
    request = urllib.request.Request(urlunsplit(parts._replace(netloc=netloc)))
    user = parts.username or os.environ.get("MLFLOW_TRACKING_USERNAME")
    password = parts.password or os.environ.get("MLFLOW_TRACKING_PASSWORD")
    token = os.environ.get("MLFLOW_TRACKING_TOKEN")
    if user and password:
        basic = base64.b64encode(f"{user}:{password}".encode()).decode()
        request.add_header("Authorization", f"Basic {basic}")
    elif token:
        request.add_header("Authorization", f"Bearer {token}")
    return request


# Answers that may mean "not up yet" (a server starting, a proxy before it): worth asking again.
_TRANSIENT_HTTP = (502, 503, 504)
WAIT_VAR = "SWEEPS_TRACKING_WAIT_SECONDS"
DEFAULT_WAIT_SECONDS = 30.0


class _NotYet(Exception):
    """A failure that waiting may cure: no connection, a timeout, 502/503/504."""


def _ask_http(uri: str, timeout: float) -> None:
    """One API request; raises _NotYet for a transient failure and TrackingUnavailable for a final one."""
    shown = redact(uri)
    url = uri.rstrip("/") + "/api/2.0/mlflow/experiments/search?max_results=1"
    try:
        with urllib.request.urlopen(http_request(url), timeout=timeout) as response:
            json.load(response)
    except urllib.error.HTTPError as e:
        if e.code in _TRANSIENT_HTTP:
            raise _NotYet(f"HTTP {e.code}") from None
        if e.code in (401, 403):
            raise TrackingUnavailable(
                f"the MLflow tracking server at {shown} refused the credentials (HTTP {e.code}); put them in "
                "the URI (http://user:password@host) or set MLFLOW_TRACKING_USERNAME/MLFLOW_TRACKING_PASSWORD"
            ) from None
        raise TrackingUnavailable(
            f"{shown} answered HTTP {e.code} to an MLflow API request; is it an MLflow tracking server "
            "(`mlflow server`)?"
        ) from None
    except (urllib.error.URLError, OSError) as e:
        raise _NotYet(redact(str(getattr(e, "reason", e)))) from None
    except ValueError:
        raise TrackingUnavailable(
            f"{shown} answered an MLflow API request with something other than JSON; is it an MLflow tracking server?"
        ) from None


def _wait_seconds() -> float:
    try:
        return max(0.0, float(os.environ.get(WAIT_VAR, DEFAULT_WAIT_SECONDS)))
    except ValueError:
        return DEFAULT_WAIT_SECONDS


def _check_http(uri: str, timeout: float, wait: float) -> None:
    """Ask until the server answers, for up to ``wait`` seconds: workers started together with their
    tracking server (or many at once against a busy one) must not give up at the first refusal. The pauses
    double from 0.5 s up to 8 s, so a server that comes up is found within seconds and a dead one costs
    about ``wait`` seconds, ending in one line."""
    start = time.monotonic()
    pause, attempts = 0.5, 0
    while True:
        attempts += 1
        try:
            _ask_http(uri, timeout)
            return
        except _NotYet as e:
            reason = str(e)
        left = wait - (time.monotonic() - start)
        if left <= 0:
            break
        time.sleep(min(pause, left))
        pause = min(pause * 2, 8.0)
    waited = f"after {time.monotonic() - start:.0f} s and {attempts} attempts" if attempts > 1 else "at once"
    raise TrackingUnavailable(
        f"cannot reach the MLflow tracking server at {redact(uri)} ({reason}; {waited}); start it "
        f"(`mlflow server --host 127.0.0.1 --port 5000`), pass another tracking URI, or wait longer ({WAIT_VAR})"
    )


def _openable_without_mlflow(db: Path) -> bool:
    """Whether ``db`` is a complete store, or absent in a folder this process may write (it can be created
    there); False asks MLflow (a file of another schema, a half-created one, an unreadable one)."""
    from tracking.sqlite_store import is_complete

    if db.exists():
        return is_complete(db)
    return os.access(db.parent, os.W_OK | os.X_OK)


def check_reachable(
    tracking_uri: str | None = None, timeout: float = 5.0, wait: float | None = None, *, create: bool = True
) -> None:
    """Raise TrackingUnavailable, with what to do about it, unless the tracking store answers.

    Call it before any training starts. For ``http(s)://`` it sends API requests of up to ``timeout`` seconds
    each, again and again with growing pauses while the answer may be transient (no connection, timeout,
    502/503/504) for up to ``wait`` seconds (None: ``$SWEEPS_TRACKING_WAIT_SECONDS``, default 30); refused
    credentials or a server that is not MLflow fail at once. For an SQLite URI it creates the database's
    folder and opens (or creates) the database; for any other URI it asks the store for one experiment.

    ``create=False`` leaves a new SQLite store to be created by whoever opens it first (a sweep's tracking
    writer does, on another core, while the sweep opens its study): the check then only makes the folder and
    sees that it can be written, or that the file is a complete store, without loading MLflow (1-3 s).
    """
    uri = resolved_uri(tracking_uri)
    if uri.startswith(("http://", "https://")):
        _check_http(uri, timeout, _wait_seconds() if wait is None else wait)
        return
    db = sqlite_path(uri)
    if db is None and not uri.startswith(("file:", "/")) and "://" in uri:  # a database server (PostgreSQL, …)
        from tracking.db_url import check_database_url

        check_database_url(uri, "tracking URI")  # before MLflow's fifteen retries
    try:
        if db is not None:
            db.parent.mkdir(parents=True, exist_ok=True)
            if not create and _openable_without_mlflow(db):
                return
        make_client(uri).search_experiments(max_results=1)
    except TrackingError:
        raise
    except Exception as e:  # any failure to open the store means the same thing to the user
        raise TrackingUnavailable(
            f"cannot open the MLflow tracking store {redact(uri)}: {redact(str(e)).splitlines()[0][:300]}"
        ) from None
