"""A folder of registry datasets already generated and split, so that loading one again needs no scikit-learn.

Generating ``moons`` takes milliseconds; importing scikit-learn to do it takes about a second, in every
process that loads data (each `sweeps` command, each worker). A registry dataset's split is a pure function
of its name, parameters, seed and validation fraction, and of the scikit-learn (and NumPy) that made it:
those make the key, and the split rows are kept under it in one ``.npz`` file with a checksum. A file that
is missing, unreadable or fails its checksum is made again; it is written to a temporary name and renamed,
so readers never see half a file, and two processes writing the same key write the same bytes.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import uuid
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import numpy as np

FORMAT = 1  # raise it when what is stored changes
ARRAYS = ("X_train", "X_val", "y_train", "y_val")

Split = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]  # X_train, X_val, y_train, y_val


def _versions() -> str:
    try:
        return f"sklearn{version('scikit-learn')}-numpy{np.__version__}"
    except PackageNotFoundError:  # an odd install: no key, no cache
        return ""


def key(name: str, params: dict, seed: int, val_fraction: float) -> str | None:
    """The file name that holds this split, or None when it cannot be told apart from another."""
    versions = _versions()
    if not versions:
        return None
    what = {"format": FORMAT, "name": name, "params": params, "seed": seed, "val_fraction": val_fraction}
    text = json.dumps(what, sort_keys=True, default=repr) + versions
    return f"{name}-{hashlib.sha256(text.encode()).hexdigest()[:24]}.npz"


def _checksum(arrays: Split) -> np.ndarray:
    h = hashlib.sha256()
    for a in arrays:
        h.update(f"{a.shape}{a.dtype}".encode())
        h.update(np.ascontiguousarray(a).data)
    return np.frombuffer(h.digest(), dtype=np.uint8)


def read(folder: Path, name: str) -> Split | None:
    """The split kept as ``name`` in ``folder``, or None (missing, unreadable, or not what was written)."""
    try:
        with np.load(folder / name, allow_pickle=False) as stored:
            arrays = tuple(stored[k] for k in ARRAYS)
            checksum = stored["sha256"]
    except Exception:  # missing, cut short, not an archive, an array missing: made again, never an error
        return None
    return arrays if np.array_equal(checksum, _checksum(arrays)) else None


def write(folder: Path, name: str, arrays: Split) -> None:
    """Keep ``arrays`` as ``name`` in ``folder``; a folder that cannot be written just means no cache."""
    tmp = folder / f".{name}.{uuid.uuid4().hex}.tmp"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as f:
            np.savez(f, **dict(zip(ARRAYS, arrays, strict=True)), sha256=_checksum(arrays))
        os.replace(tmp, folder / name)
    except OSError:
        with contextlib.suppress(OSError):
            tmp.unlink()
