"""How the writer child comes to be: forked from the training process, or a new interpreter.

A new interpreter (``spawn``) imports MLflow and its SQLAlchemy store all over again: 1.5-2 CPU seconds,
and as much memory again, for modules the training process loads anyway to open its parent run. A fork
made right after the training process imported them shares them (``fork``), so the child only opens its
store. Where the training process need not load MLflow at all (an embedded SQLite store that
:mod:`tracking.run_writes` writes itself, :func:`writes_without_mlflow`), the child is forked before, says
it is up as soon as the store exists; neither loads MLflow unless something is not written or read directly.

Forking is safe only when nothing else is running, and nothing is shared: another thread could hold a lock
(an import's, a logging handler's) that stays held forever in the child, and a store MLflow already opened
here would be handed to the child from MLflow's cache, with this process's connections. So the child is
forked only from a process with one thread that has opened no MLflow store yet (the CLI starts its writer
before it opens one), on a system that has ``fork``; otherwise, and with ``TRACKING_WRITER=spawn``, it is
spawned.

Either way the child runs :func:`tracking.writer.server.main` in its own session (no Ctrl-C from the
terminal), reads messages on its fd 0 and answers on its fd 1, and keeps no other descriptor of the
parent's: a lock file or a database socket the parent closes later is not held open by the child.
"""

from __future__ import annotations

import contextlib
import gc
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Collection
from pathlib import Path
from typing import IO, BinaryIO, Protocol

OPEN_VAR = "TRACKING_WRITER_OPEN"  # a tracking URI the child opens before it says it is up
WARM_VAR = "TRACKING_WRITER_WARM"  # "1": the child loads what a sweep's summary draws with, ahead of time
MODE_VAR = "TRACKING_WRITER"  # "process" (default: fork when safe, else spawn), "spawn", or "off"
ENTRY = "tracking.writer.server"  # the child's program: its ``main()`` (by name: the parent never imports it)
NAME = "tracking-writer"  # a forked child's process name (``ps -e``, ``top``), its command line being its parent's


class Child(Protocol):
    """The parent's handle on its writer child."""

    pid: int
    how: str  # "fork" or "spawn"
    stdin: IO[bytes]  # the parent writes messages here
    stdout: IO[bytes]  # and reads the answers here

    def wait(self, timeout: float) -> bool:
        """Reap the child; False when it is still running after ``timeout`` seconds."""
        ...

    def kill(self) -> None:
        """SIGKILL the child and reap it."""
        ...


def can_fork() -> bool:
    """Whether the writer may be forked from this process now (see the module's docstring)."""
    return os.environ.get(MODE_VAR, "process") != "spawn" and fork_is_safe()


def fork_is_safe(besides: Collection[threading.Thread] = ()) -> bool:
    """Whether a child may be forked from this process now: a system with ``fork`` whose libraries are safe
    in a forked child, and no thread but this one (another could hold a lock the child would never see freed)
    and those ``besides``, which the caller knows to hold no lock the child will take."""
    others = [t for t in threading.enumerate() if t is not threading.current_thread() and t not in besides]
    return (
        hasattr(os, "fork")
        and sys.platform != "darwin"  # macOS's system libraries are not safe to use in a forked child
        and not others
    )


def start_child(settings: dict[str, str], tracking_uri: str | None) -> Child:
    """Start the writer child with ``settings`` (OPEN_VAR, WARM_VAR) in its environment. MLflow is loaded here
    first, to be shared with the child, unless this process may never need it (:func:`writes_without_mlflow`):
    then the child loads it for itself, beside the training."""
    if can_fork():
        if not writes_without_mlflow(tracking_uri):
            preload(tracking_uri)
        if threading.active_count() == 1 and not _stores_opened():  # importing MLflow started no thread
            try:
                return fork(ENTRY, NAME, settings)
            except OSError:  # no fork now (out of processes or memory): a new interpreter may still start
                pass
    return _Spawned(settings)


def preload(tracking_uri: str | None) -> None:
    """Import, in this process, what the child needs to open ``tracking_uri`` (the parent needs it too)."""
    import mlflow

    from tracking.store import is_database

    if tracking_uri is not None and is_database(tracking_uri):
        import mlflow.store.tracking.sqlalchemy_store  # noqa: F401 — the import is the costly part


def writes_without_mlflow(tracking_uri: str | None) -> bool:
    """Whether a sweep's writes to ``tracking_uri`` all go straight into its SQLite file
    (:mod:`tracking.run_writes`), so that the training process need not load MLflow (1-3 s before the
    first trial): an SQLite store that is ready for them, or can be made so without MLflow."""
    if tracking_uri is None or "mlflow" in sys.modules:
        return False  # MLflow decides where None points; loaded already, it costs nothing more
    from tracking.store import written_directly

    return written_directly(tracking_uri)


def _stores_opened() -> bool:
    """Whether this process holds an MLflow tracking store (an engine, a pool of connections): the child
    would be handed the same object by MLflow's cache, and use the parent's connections. True also when
    MLflow's cache cannot be read (it is not public API: a new MLflow may move it), to be safe."""
    if "mlflow" not in sys.modules:  # no store without MLflow
        return False
    try:
        from mlflow.tracking._tracking_service.utils import _tracking_store_registry

        return type(_tracking_store_registry)._get_store_with_resolved_uri.cache_info().currsize > 0
    except Exception:
        return True


class _Spawned:
    """The child as a new interpreter."""

    how = "spawn"

    def __init__(self, settings: dict[str, str]) -> None:
        root = str(Path(__file__).resolve().parents[2])
        path = os.environ.get("PYTHONPATH")
        env = {**os.environ, "PYTHONPATH": root + (os.pathsep + path if path else ""), **settings}
        self._proc = subprocess.Popen(
            [sys.executable, "-c", f"from {ENTRY} import main; main()"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
            start_new_session=True,  # no Ctrl-C from the terminal's process group
        )
        self.pid, self.stdin, self.stdout = self._proc.pid, self._proc.stdin, self._proc.stdout

    def wait(self, timeout: float) -> bool:
        try:
            self._proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return False
        return True

    def kill(self) -> None:
        self._proc.kill()
        self._proc.wait()


def fork(entry: str, name: str, settings: dict[str, str] | None = None, session: bool = True) -> Child:
    """Fork this process into a child that runs ``entry``'s ``main()`` as the writer runs (see the module's
    docstring; also the CLI's report child, :mod:`sweeps.results.report_child`, and the writer's drawer,
    :mod:`tracking.writer.drawer`): its own session, SIGINT and SIGTERM ignored, messages on fd 0, answers
    on fd 1, the parent's other descriptors closed, ``settings`` in its environment, process name ``name``.
    Only when :func:`fork_is_safe` says so; OSError when the system cannot fork now. ``session=False``: in
    this process's session (the writer's drawer, which the writer's own session already shields from a
    Ctrl-C): with Linux's autogroup scheduling CPU time is shared between sessions first, and a niceness
    only orders the processes within one, so a child niced below its parent must share its session."""
    return _Forked(entry, name, settings or {}, session)


class _Forked:
    """The child as a fork of this (single-threaded) process."""

    how = "fork"

    def __init__(self, entry: str, name: str, settings: dict[str, str], session: bool = True) -> None:
        self._parent_pid = os.getpid()
        to_child, from_parent = os.pipe()  # (read end, write end)
        from_child, to_parent = os.pipe()
        for stream in (sys.stdout, sys.stderr):  # else what they buffer is written twice, once by the child
            with contextlib.suppress(Exception):
                stream.flush()
        # Objects alive now are never collected in the child: a database connection found in a cycle there
        # would otherwise close its socket, which the parent still uses (it also keeps the pages shared).
        gc.freeze()
        try:
            pid = os.fork()
        except OSError:
            for fd in (to_child, from_parent, from_child, to_parent):
                os.close(fd)
            raise
        finally:
            if os.getpid() == self._parent_pid:
                gc.unfreeze()
        if pid == 0:  # the child: never returns
            _child(entry, name, settings, to_child, to_parent, session)
        os.close(to_child)
        os.close(to_parent)
        self.pid = pid
        self.stdin = os.fdopen(from_parent, "wb")
        self.stdout = os.fdopen(from_child, "rb")

    def wait(self, timeout: float) -> bool:
        # Polled (a fork has no Popen to wait with a timeout), first every millisecond: a child asked to stop
        # exits within a few, and every command waits for its writer at exit (at a fixed 20 ms, it waited
        # 20 ms for an exit of ~2).
        deadline = time.monotonic() + timeout
        pause = 0.001
        while True:
            try:
                done, _ = os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:  # reaped already
                return True
            if done:
                return True
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            time.sleep(min(pause, left))
            pause = min(2 * pause, 0.02)

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGKILL)
        self.wait(10.0)


def _child(entry: str, name: str, settings: dict[str, str], inbox: int, outbox: int, session: bool = True) -> None:
    code = 1
    try:
        if session:
            os.setsid()  # first: a Ctrl-C on the terminal's group must not reach the writer
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        for sig in signal.valid_signals():  # the parent's handlers (its sweep's SIGHUP) are not the writer's
            with contextlib.suppress(OSError, ValueError, TypeError):
                if callable(signal.getsignal(sig)):
                    signal.signal(sig, signal.SIG_DFL)
        os.dup2(inbox, 0)
        os.dup2(outbox, 1)
        _close_inherited()  # the parent's files, sockets and pipe ends (see the module's docstring)
        os.environ.update(settings)
        _rename(name)
        import importlib
        import logging

        for handler in list(logging.root.handlers):  # the parent's (a test's capture, a console): not ours
            logging.root.removeHandler(handler)
        importlib.import_module(entry).main()  # exits the process
    finally:
        os._exit(code)


def answer_channel() -> BinaryIO:
    """In a child run by :func:`fork` (or spawned as the writer): a private copy of stdout for its answers,
    stdout itself pointed at stderr, so that anything printed cannot corrupt them."""
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    return out


def _rename(name: str) -> None:
    """Set this process's name (Linux's ``prctl(PR_SET_NAME)``); elsewhere, or if it fails, keep it."""
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL(None).prctl(15, name.encode()[:15], 0, 0, 0)  # 15: PR_SET_NAME


def _close_inherited() -> None:
    """Close every descriptor but 0, 1 and 2."""
    try:
        fds = [int(name) for name in os.listdir("/proc/self/fd")]
    except OSError:  # no /proc: every number up to the limit
        os.closerange(3, os.sysconf("SC_OPEN_MAX"))
        return
    for fd in fds:
        if fd > 2:
            with contextlib.suppress(OSError):  # the listing's own descriptor, closed already
                os.close(fd)
