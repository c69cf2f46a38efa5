"""SIGINT, SIGTERM and SIGHUP during a sweep: raised where it is safe, never lost.

Python raises KeyboardInterrupt at whatever bytecode the main thread is running. In a sweep that can be
the middle of an SQLite commit (the database stays locked and closing the trial then hangs), of a message to
the tracking writer, or of a garbage-collector callback, which swallows the exception ("Exception ignored
in …") so that the sweep carries on as if nothing happened. So while a sweep runs, :func:`handling`
replaces the handlers: a signal is first only *recorded*, and it is raised

* at once inside :func:`interruptible` sections — the pure NumPy training loop and idle waits, where an
  exception cannot leave a store half-written;
* otherwise at the next :func:`check` — after every epoch's callback (MLflow logging and Optuna's report,
  which run shielded), before each trial is asked, and when the sweep returns (a signal during the final
  summary still ends the command as interrupted).

A second signal, a second or more after the first, raises at once wherever the program is: the user
insists. SIGINT raises KeyboardInterrupt; SIGTERM and SIGHUP (the terminal closed) raise
:class:`~sweeps.errors.Interrupted`. Callers record the interrupted trial and the CLI exits 130, 143 or 129.
"""

from __future__ import annotations

import contextlib
import functools
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from sweeps.errors import Interrupted

SIGNALS = {signal.SIGINT: "SIGINT", signal.SIGTERM: "SIGTERM", signal.SIGHUP: "SIGHUP"}
EXIT_CODES = {"SIGINT": 130, "SIGTERM": 143, "SIGHUP": 129}

# A signal this long after the first one means the user insists. Sooner, it is the same request delivered
# twice: Linux's parent-death signal comes once per thread of a dying multi-threaded parent, and a process
# manager may signal both a process and its group.
INSIST_AFTER_SECONDS = 1.0

_pending: str | None = None  # a signal received and not yet raised by check()
_first_at: float | None = None  # time.monotonic() of the first signal of this sweep
_immediate = False  # inside an interruptible section
_depth = 0  # nesting of handling()


def exception_for(name: str) -> BaseException:
    """The exception a signal turns into: KeyboardInterrupt for SIGINT, Interrupted for the others."""
    return KeyboardInterrupt() if name == "SIGINT" else Interrupted(name, EXIT_CODES[name])


def _on_signal(signum: int, frame: Any) -> None:
    global _pending, _first_at
    name = SIGNALS[signum]
    now = time.monotonic()
    if _first_at is None:
        _first_at = now
    insists = now - _first_at >= INSIST_AFTER_SECONDS
    if _immediate or insists:
        _pending = None  # delivered (if a finalizer swallows it, _on_unraisable records it again)
        raise exception_for(name)
    _pending = name


def _on_unraisable(unraisable: Any) -> None:
    """An exception raised in a finalizer or a garbage-collector callback is printed and dropped by
    Python ("Exception ignored in …"); when it is one of ours, the next check() raises it again."""
    global _pending
    exc = unraisable.exc_value
    if isinstance(exc, KeyboardInterrupt):
        _pending = "SIGINT"
    elif isinstance(exc, Interrupted):
        _pending = exc.signal_name
    _previous_unraisablehook(unraisable)


_previous_unraisablehook = sys.unraisablehook


def check() -> None:
    """Raise the signal received since the last check, if any."""
    global _pending
    if _pending is not None:
        name, _pending = _pending, None
        raise exception_for(name)


@contextlib.contextmanager
def handling() -> Iterator[None]:
    """Defer SIGINT, SIGTERM and SIGHUP to safe points for the duration (main thread only; elsewhere, and
    when already active, a no-op); one that this process ignores stays ignored. The previous handlers come
    back afterwards, and a signal still pending then is raised (unless an exception is on its way out
    already)."""
    global _depth, _pending, _first_at, _immediate, _previous_unraisablehook
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    outermost = _depth == 0
    previous = {}
    if outermost:
        # Left over from an earlier, interrupted sweep in this process.
        _pending, _first_at, _immediate = None, None, False
        # A signal the command was started with ignored stays ignored: `nohup sweeps run …` must outlive
        # the terminal, and a sweep started in the background by a shell ignores Ctrl-C, as Unix programs do.
        previous = {s: signal.signal(s, _on_signal) for s in SIGNALS if signal.getsignal(s) is not signal.SIG_IGN}
        _previous_unraisablehook, sys.unraisablehook = sys.unraisablehook, _on_unraisable
    _depth += 1
    try:
        yield
    finally:
        _depth -= 1
        for s, handler in previous.items():
            signal.signal(s, handler)
        if outermost:
            sys.unraisablehook = _previous_unraisablehook
    if outermost:
        check()


@contextlib.contextmanager
def interruptible() -> Iterator[None]:
    """A section that a signal may interrupt at any point; a signal already pending is raised on entry."""
    global _immediate
    outer = _immediate
    try:
        _immediate = True
        check()
        yield
    finally:
        _immediate = outer


@contextlib.contextmanager
def shielded() -> Iterator[None]:
    """A section that a signal must not cut short (store writes); inside an interruptible section, a
    signal received meanwhile is raised when the section ends."""
    global _immediate
    outer = _immediate
    try:
        _immediate = False
        yield
    finally:
        _immediate = outer
    if outer:
        check()


def shield(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn`` run as a :func:`shielded` section (for callbacks called from interruptible code, and as a
    decorator of functions that write to a store)."""

    @functools.wraps(fn)
    def shielded_call(*args: Any, **kwargs: Any) -> Any:
        with shielded():
            return fn(*args, **kwargs)

    return shielded_call
