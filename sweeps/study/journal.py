"""The embedded Optuna journal file, made to survive a writer killed mid-record.

Optuna appends one JSON record per line. A writer killed (or out of disk space) in the middle of a record
leaves a *torn* last line; the next append then glues a whole record onto it, and from then on no process
can read the study (a bare JSONDecodeError). And Optuna's default lock is a file created with ``O_EXCL``:
a writer killed while holding it leaves the file, and every other writer waits 30 s before breaking it.

Here the journal is locked with ``flock`` on ``<journal>.flock`` (the kernel releases it when its holder
dies, however it dies) and, under that lock, a torn tail is repaired before every append and when the
journal is opened: the whole file is first copied to ``<journal>.torn-<UTC time>``, then cut back to its
last complete record, and one line on stderr says so. A damaged record elsewhere is an error naming the
file and the line.

Appends are synced to disk as Optuna syncs them, except a running trial's own records (see ``_UNSYNCED``):
the record that ends the trial is synced, and with it everything written before.
"""

from __future__ import annotations

import errno
import fcntl
import json
import logging
import os
import shutil
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

from sweeps.errors import SweepError

if TYPE_CHECKING:
    from sweeps.study.storage import Stores

log = logging.getLogger("sweeps")

TORN_SUFFIX = ".torn-"
# A running trial's own records (Optuna's journal op codes): its params, intermediate values and attributes.
# Optuna syncs every append to disk (fsync, ~0.2 ms here; ~38 appends a quickstart trial, 30 of them its
# epochs' values). These are written without: the record that ends the trial, its state, is synced, and an
# fsync makes every earlier write of the file durable with it. Until then a crash of the machine can lose
# only records of a trial that had not ended, which a resume fails and retries either way; a killed process
# loses nothing, since the kernel holds what it wrote, and other processes read it from there. The
# study's records, a new trial and a trial's state are synced as Optuna syncs them.
_UNSYNCED = frozenset({5, 7, 8, 9})  # SET_TRIAL_PARAM, _INTERMEDIATE_VALUE, _USER_ATTR, _SYSTEM_ATTR
_CHUNK = 1 << 16
_TAIL = 1 << 12  # bytes read at the end of the journal before each append: most records are shorter


class _Flock:
    """Optuna's journal lock interface over ``flock``; re-entrant within a process (and thread-safe)."""

    def __init__(self, journal: str):
        self._path = journal + ".flock"
        self._fd: int | None = None
        self._depth = 0
        self._mutex = threading.RLock()

    def acquire(self) -> bool:
        self._mutex.acquire()
        if self._depth == 0:
            fd = os.open(self._path, os.O_CREAT | os.O_RDWR, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
            except BaseException:
                os.close(fd)
                self._mutex.release()
                raise
            self._fd = fd
        self._depth += 1
        return True

    def release(self) -> None:
        self._depth -= 1
        if self._depth == 0 and self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None
        self._mutex.release()


def _last_records(path: Path, size: int) -> tuple[int, int]:
    """(start of the last complete line, end of it): byte offsets; the end is where a torn tail begins."""
    with open(path, "rb") as f:
        end = size
        f.seek(size - 1)
        if f.read(1) != b"\n":  # a torn tail: find the newline before it
            end = _previous_newline(f, size)
        start = _previous_newline(f, end - 1) if end > 0 else 0
    return start, end


def _previous_newline(f, before: int) -> int:
    """The offset just past the last ``\\n`` before ``before`` (0 if there is none)."""
    pos = before
    while pos > 0:
        step = min(_CHUNK, pos)
        f.seek(pos - step)
        chunk = f.read(step)
        i = chunk.rfind(b"\n")
        if i >= 0:
            return pos - step + i + 1
        pos -= step
    return 0


def _is_record(line: bytes) -> bool:
    try:
        return isinstance(json.loads(line), dict)
    except ValueError:
        return False


def _ends_whole(tail: bytes, size: int) -> bool:
    """Whether ``tail``, the last bytes of a file of ``size`` bytes, ends with a whole record (False also when
    its last line starts before it: then the file is read as a whole)."""
    if not tail.endswith(b"\n"):
        return False
    start = tail.rfind(b"\n", 0, len(tail) - 1)
    return (start >= 0 or size <= _TAIL) and _is_record(tail[start + 1 :])  # else the line began before it


def repair_tail(path: Path) -> Path | None:
    """Cut a torn last record off ``path``, after copying the whole file beside it; return the copy's path.

    Call under the journal's lock, so that no writer is halfway through a record. Torn means: the file
    does not end with a newline, or its last line is not a JSON record (an older append glued onto a torn
    line). Returns None when the tail is whole.
    """
    try:  # the usual case, answered by one read: the file ends with a whole record
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            f.seek(max(0, size - _TAIL))
            tail = f.read()
    except FileNotFoundError:
        return None
    if size == 0 or _ends_whole(tail, size):
        return None
    start, end = _last_records(path, size)
    with open(path, "rb") as f:
        f.seek(start)
        last = f.read(end - start)
    cut = end if (not last or _is_record(last)) else start
    if cut == size:
        return None
    backup = path.with_name(path.name + TORN_SUFFIX + time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()))
    while backup.exists():
        backup = backup.with_name(backup.name + "-1")
    shutil.copy2(path, backup)
    with open(path, "r+b") as f:
        f.truncate(cut)
        f.flush()
        os.fsync(f.fileno())
    log.warning(
        "warning: the last record of %s was torn (a process stopped while writing it): kept a copy in %s and "
        "cut the journal back to its last complete record (%d bytes dropped)",
        path,
        backup.name,
        size - cut,
    )
    return backup


def _must_sync(logs: list[dict]) -> bool:
    """Whether appending ``logs`` ends with an fsync: unless each is one of a running trial's own records."""
    return any(log.get("op_code") not in _UNSYNCED for log in logs)


def _append(path: Path, logs: list[dict]) -> tuple[int, int]:
    """Append ``logs`` to the journal ``path``, one JSON record a line as Optuna writes them, under its lock;
    the file's (inode, size) after them, when it ends with their last record."""
    data = "".join(json.dumps(log, separators=(",", ":")) + "\n" for log in logs).encode()
    with open(path, "ab") as f:
        f.write(data)
        f.flush()
        if _must_sync(logs):
            os.fsync(f.fileno())
        return os.fstat(f.fileno()).st_ino, f.tell()


def _identity(path: Path) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return st.st_ino, st.st_size


def _first_bad_line(path: Path) -> int | None:
    with open(path, "rb") as f:
        for number, line in enumerate(f, start=1):
            if not _is_record(line):
                return number
    return None


def open_journal(path: Path):
    """Optuna's JournalStorage on ``path``, with the flock lock and the torn-tail repair.

    Raises SweepError naming the file when it cannot be read.
    """
    import optuna
    from optuna.storages.journal import JournalFileBackend

    class Backend(JournalFileBackend):
        # The journal's (inode, size) when this process's last append ended it. Unchanged at the next append,
        # the file still ends with that whole record (others only append, and a repair only cuts a torn
        # record back to a whole one): the tail is not read again (~0.06 ms of an append's ~0.17).
        whole: tuple[int, int] | None = None

        def append_logs(self, logs: list[dict]) -> None:
            self._lock.acquire()
            try:
                if self.whole is None or _identity(path) != self.whole:
                    repair_tail(path)
                self.whole = None  # until this append is whole
                self.whole = _append(path, logs)
            finally:
                self._lock.release()

    lock = _Flock(str(path))
    try:
        backend = Backend(str(path), lock_obj=lock)
        try:
            lock.acquire()
        except OSError as e:  # a folder only readable to us: `sweeps best` still reads it (a torn tail is skipped)
            if e.errno not in (errno.EACCES, errno.EPERM, errno.EROFS):
                raise
        else:
            try:
                repair_tail(path)
            finally:
                lock.release()
        return optuna.storages.JournalStorage(backend)
    except OSError as e:
        raise SweepError(f"cannot use the Optuna journal {path}: {e.strerror or e}") from e
    except (ValueError, KeyError, AssertionError) as e:  # Optuna's replay of a damaged record
        bad = _first_bad_line(path)
        where = f"line {bad} is not a journal record" if bad else f"it cannot be replayed ({type(e).__name__}: {e})"
        keep = f", or keep the study up to there: its first {bad - 1} lines" if bad else ""
        raise SweepError(
            f"the Optuna journal {path} is damaged: {where}. Restore it from a copy{keep}; "
            "to start afresh, use another --workdir."
        ) from e


def backups(path: Path) -> list[Path]:
    """The copies :func:`repair_tail` left beside ``path``, oldest first."""
    return sorted(path.parent.glob(path.name + TORN_SUFFIX + "*"))


def refuse_lost_study(name: str, stores: Stores) -> None:
    """Refuse to start study ``name`` afresh when MLflow holds a sweep run of it started on this very storage.

    That means the storage lost the study (an emptied, replaced or deleted journal): a new study would put
    a second sweep, numbered from trial 0 again, beside the first under one name. Raises SweepError (exit 2).
    """
    import tracking
    from tracking import schema
    from tracking.store import sqlite_path

    db = sqlite_path(stores.tracking_uri)
    if db is not None:
        from tracking.sqlite_store import may_hold_experiment

        # Nothing tracked under this name yet (and opening the store would create it): a new sweep's usual
        # case, answered without loading MLflow while its writer creates the store.
        if not may_hold_experiment(db, name):
            return
    runs = tracking.sweep_runs(stores.tracking_uri, name)
    here = stores.describe_storage()
    mine = [r for r in runs if r.data.tags.get(schema.STUDY_NAME) == name and r.data.tags.get("optuna_storage") == here]
    if not mine:
        return
    copies = backups(stores.journal_path) if stores.embedded else []
    kept = f" (copies of it made when a torn record was cut off: {', '.join(p.name for p in copies)})" if copies else ""
    raise SweepError(
        f"the sweep {name!r} has no study in {here}{kept}, but MLflow ({tracking.redact(stores.tracking_uri)}) "
        f"holds its sweep run {mine[0].info.run_id}, started on this storage: the study was lost (the journal "
        "emptied, replaced or deleted?). A new study would start a second sweep under the same run name. "
        f"Restore the study, or start afresh under another name (--set name={name}-2) or another --workdir."
    )
