"""optsweep's cache folder: things that can be made again, kept to save time (an empty migrated MLflow
store, :mod:`tracking.sqlite_store`; registry datasets' split rows, :mod:`optcore.data_cache`)."""

from __future__ import annotations

import os
from pathlib import Path

CACHE_VAR = "OPTSWEEP_CACHE_DIR"  # the folder; set to an empty value for no cache


def cache_dir() -> Path | None:
    """``$OPTSWEEP_CACHE_DIR`` (empty: no cache), else ``$XDG_CACHE_HOME/optsweep`` or ``~/.cache/optsweep``;
    None when there is no cache, or no home folder to put it in."""
    value = os.environ.get(CACHE_VAR)
    if value is not None:
        return Path(value).expanduser() if value.strip() else None
    base = os.environ.get("XDG_CACHE_HOME", "").strip()
    if base:
        return Path(base) / "optsweep"
    try:
        return Path.home() / ".cache" / "optsweep"
    except (RuntimeError, KeyError):  # no HOME and no password entry (a bare container)
        return None
