"""Database URLs (Optuna's storage, MLflow's backend) checked before anything is written: one line per fault.

Left to the libraries, a mistyped URL ends in SQLAlchemy's own text (exit 1), and a database that does not
exist costs MLflow's fifteen retries (almost two minutes and dozens of warnings) before that. One parse, one
driver import and one connection say the same thing at once, naming the database but never the password.
"""

from __future__ import annotations

from tracking.errors import BadStoreUrl, TrackingUnavailable
from tracking.redact import redact

CONNECT_TIMEOUT_SECONDS = 10
_EXAMPLE = "postgresql://user@host:5432/dbname"

# Phrases of the server's refusal that mean the URL names something that is not there (exit 2), as opposed
# to a server that cannot be reached now (exit 1).
_WRONG_URL = ("does not exist", "password authentication failed", "no password supplied", "role ")


def check_database_url(url: str, what: str) -> None:
    """Raise BadStoreUrl (the URL cannot work: not a URL, unknown kind of database, driver not installed,
    no such database or user) or TrackingUnavailable (the server cannot be reached), each a single line,
    unless a connection to ``url`` opens. ``what`` names the option, e.g. ``"--storage"``. SQLite files are
    only parsed: they are created on first use."""
    import sqlalchemy
    from sqlalchemy.engine import make_url

    shown = redact(url)
    try:
        parsed = make_url(url)
    except (sqlalchemy.exc.ArgumentError, ValueError):
        raise BadStoreUrl(f"{what} {shown!r} is not a database URL; write it as {_EXAMPLE}") from None
    try:
        parsed.get_dialect().import_dbapi()
    except sqlalchemy.exc.NoSuchModuleError:
        raise BadStoreUrl(
            f"{what} {shown!r}: {parsed.drivername!r} is not a kind of database SQLAlchemy knows; write it as "
            f"{_EXAMPLE} (or sqlite:///PATH)"
        ) from None
    except ImportError as e:
        raise BadStoreUrl(
            f"{what} {shown!r}: the driver for {parsed.drivername!r} is not installed ({e.name or e}); "
            "for PostgreSQL write postgresql+psycopg://… (psycopg 3 comes with optsweep)"
        ) from None
    if parsed.get_backend_name() == "sqlite":
        return
    args = {"connect_timeout": CONNECT_TIMEOUT_SECONDS} if parsed.get_backend_name() == "postgresql" else {}
    engine = sqlalchemy.create_engine(parsed, poolclass=sqlalchemy.pool.NullPool, connect_args=args)
    try:
        with engine.connect():
            pass
    except sqlalchemy.exc.DBAPIError as e:
        reason = _first_line(e)
        where = f"database {parsed.database!r} on {parsed.host or 'localhost'}:{parsed.port or 'default port'}"
        if any(phrase in reason for phrase in _WRONG_URL):
            raise BadStoreUrl(f"{what}: {where} refused the connection ({reason}); create it or fix the URL") from None
        raise TrackingUnavailable(f"{what}: cannot connect to {where} ({reason})") from None
    finally:
        engine.dispose()


def _first_line(e: Exception) -> str:
    """The driver's own message without SQLAlchemy's wrapping, on one line, passwords masked."""
    text = str(getattr(e, "orig", None) or e)
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    line = lines[0] if lines else type(e).__name__
    return redact(line.removeprefix("connection failed: "))[:300]
