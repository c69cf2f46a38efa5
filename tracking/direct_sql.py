"""When optsweep may write MLflow's SQLite tables itself (:mod:`tracking.run_writes`, and the default
experiment of a new store, :mod:`tracking.sqlite_store`): at the schema revisions whose rows the tests
compare with MLflow's own writes, in MLflow's default workspace, unless turned off."""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Mapping, Sequence, Set

SWITCH_VAR = "TRACKING_DIRECT_SQLITE"  # "0": every write through MLflow's client
# Schema revisions whose runs, metrics, latest_metrics, params, tags and experiments are written here as MLflow
# writes them: MLflow 3.17's. A newer MLflow adds a migration (a new head): its writes go through MLflow until
# the rows it writes are checked again (tests/tracking/test_run_writes.py, test_sqlite_store.py compare
# them) and its revision is added here.
KNOWN_REVISIONS = frozenset({"dc11669786a5"})
DEFAULT_WORKSPACE = "default"  # MLflow's one workspace while its workspaces are off


def allowed() -> bool:
    """Whether direct writes are allowed at all: not turned off, and MLflow's workspaces (which scope
    experiments and runs; the direct writes know only the default one) not enabled."""
    workspaces = os.environ.get("MLFLOW_ENABLE_WORKSPACES", "").strip().lower() in ("1", "true", "yes")
    return os.environ.get(SWITCH_VAR, "1") != "0" and not workspaces


def other_workspaces(conn: sqlite3.Connection) -> bool:
    """Whether the store holds experiments of another workspace than the default one (MLflow refuses to open
    such a store with its workspaces off, so nothing is read or written there directly)."""
    row = conn.execute("SELECT 1 FROM experiments WHERE workspace != ? LIMIT 1", (DEFAULT_WORKSPACE,)).fetchone()
    return row is not None


def marks(items: Sequence[object]) -> str:
    """The ``?, ?, …`` of an ``IN (…)`` over ``items``."""
    return ", ".join("?" * len(items))


def known_schema(conn: sqlite3.Connection, columns: Mapping[str, Set[str]]) -> bool:
    """Whether the store open on ``conn`` is at one of :data:`KNOWN_REVISIONS` and each table of ``columns``
    holds exactly those columns."""
    revision = conn.execute("SELECT version_num FROM alembic_version").fetchall()
    if len(revision) != 1 or revision[0][0] not in KNOWN_REVISIONS:
        return False
    return all({row[1] for row in conn.execute(f"PRAGMA table_info({t})")} == set(c) for t, c in columns.items())
