"""A full disk (or a file-size or quota limit): no retry cures it, and the user needs one line saying so.

Left alone, each write to a full SQLite store printed MLflow's own ERROR record with two tracebacks, was
retried three times with multi-line warnings, and ended in SQLAlchemy's text: ~380 lines for one fault.
"""

from __future__ import annotations

import errno
import logging

_ERRNOS = frozenset({errno.ENOSPC, errno.EFBIG, errno.EDQUOT})
# How the fault reads once a library has wrapped it: SQLite's own words, and the OS's.
_TEXTS = ("database or disk is full", "No space left on device", "File too large", "Disk quota exceeded")


def disk_full(exc: BaseException | None) -> str | None:
    """What filled up, as a short phrase (``No space left on device: '/w/mlflow.db'``), when ``exc`` or an
    exception it was raised from is a full disk, a file-size limit or an exceeded quota; else None."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError) and exc.errno in _ERRNOS:
            path = exc.filename2 or exc.filename  # a copy's destination, else the file written
            where = f": {path!r}" if path else ""
            return f"{exc.strerror or 'no space left'}{where}"
        for text in _TEXTS:
            if text in str(exc):
                return text
        exc = exc.__cause__ or exc.__context__ or getattr(exc, "orig", None)
    return None


class _DropReraisedDatabaseErrors(logging.Filter):
    """MLflow logs every database error of its SQL store with its traceback, then raises it as an
    MlflowException, which callers handle (and the CLI reports in one line): the record only repeats it."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("SQLAlchemy database error")


def quiet_reraised_database_errors() -> None:
    """Install the filter on MLflow's SQL-store logger (once per process)."""
    logger = logging.getLogger("mlflow.store.db.utils")
    if not any(isinstance(f, _DropReraisedDatabaseErrors) for f in logger.filters):
        logger.addFilter(_DropReraisedDatabaseErrors())
