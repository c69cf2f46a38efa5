"""Remove passwords from URLs before they are recorded anywhere (params, tags, artifacts, log output)."""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Mapping
from typing import Any

MASK = "***"

# scheme://user:password@host — the password may itself hold '@' (greedy up to the last '@' before the path).
_USERINFO = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.\-]*://[^:/@\s]*:)(?P<secret>[^\s/]*)@")
# ?password=... / &token=... query arguments (and the same names in DSN strings such as 'password=x').
_QUERY = re.compile(
    r"(?P<head>(?:^|[?&;\s])(?:password|passwd|pwd|token|access_token|api_key|apikey|secret)=)(?P<secret>[^&;\s#]*)",
    re.IGNORECASE,
)


def redact(url: str) -> str:
    """The URL with any password replaced by ``***``.

    >>> redact("postgresql://alice:s3cret@db:5432/optuna?sslmode=require&password=x")
    'postgresql://alice:***@db:5432/optuna?sslmode=require&password=***'

    Also works on free text that contains URLs (an error message, a spec value); text without a password is
    returned unchanged.
    """
    text = _USERINFO.sub(lambda m: m["head"] + MASK + "@", url)
    return _QUERY.sub(lambda m: m["head"] + (MASK if m["secret"] else ""), text)


# Setting names whose value is a secret itself (a loader's ``password=...`` keyword argument).
_SECRET_KEY = re.compile(r"passw|pwd|token|secret|api_?key|credential|private_?key", re.IGNORECASE)


def redact_setting(key: str, value: Any) -> str:
    """A setting's value as text fit to record: masked whole when ``key`` names a secret (``password``,
    ``api_key``, ``token``, ...), otherwise ``str(value)`` with passwords in URLs redacted; in a mapping, each
    entry by its own key.

    >>> redact_setting("db_password", "hunter2"), redact_setting("options", {"token": "x", "n": 3})
    ('***', "{'token': '***', 'n': 3}")
    """
    if _SECRET_KEY.search(str(key)):
        return MASK
    if isinstance(value, Mapping):
        return str({k: _masked(str(k), v) for k, v in value.items()})
    return redact(str(value))


def _masked(key: str, value: Any) -> Any:
    if _SECRET_KEY.search(key):
        return MASK
    if isinstance(value, Mapping):
        return {k: _masked(str(k), v) for k, v in value.items()}
    return redact(value) if isinstance(value, str) else value


def redact_obj(obj: Any) -> Any:
    """A copy of a nested structure of dicts, lists and scalars with every string passed through redact()."""
    if isinstance(obj, str):
        return redact(obj)
    if isinstance(obj, Mapping):
        return {redact(str(k)) if isinstance(k, str) else k: redact_obj(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple | set | frozenset):
        return [redact_obj(v) for v in obj]
    return obj


# Loggers whose records may carry a tracking or storage URL: MLflow's own log the full URI on some paths
# (e.g. "No artifacts found to download at http://user:password@host/...").
REDACTED_LOGGERS = ("mlflow", "tracking", "urllib3", "requests", "sqlalchemy", "alembic")
_install_lock = threading.Lock()
_installed = False


def install_log_redaction() -> None:
    """Redact every record of :data:`REDACTED_LOGGERS` (and their children) when it is created.

    Wraps the process's log-record factory once (idempotent), so the redaction reaches every handler,
    whatever the logger's propagation. Records of other loggers pass through untouched.
    """
    global _installed
    with _install_lock:
        if _installed:
            return
        previous = logging.getLogRecordFactory()

        def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
            record = previous(*args, **kwargs)
            if record.name.startswith(REDACTED_LOGGERS):
                message = record.getMessage()
                clean = redact(message)
                if clean != message:
                    record.msg, record.args = clean, ()
            return record

        logging.setLogRecordFactory(factory)
        _installed = True
