"""Work split over forked copies of this process, for the end of a sweep: the report's importances (one copy per
target), the parent run's summary, and that summary's figures.

At the end of `sweeps run` the training process waits while the report child draws the parent run's summary
(~0.3 s of matplotlib) and composes the report: the importances of two targets (the objective and
``train_seconds``), ~0.15 s of fANOVA and PED-ANOVA fits each, and the other figures (~0.2 s of plotly).
Computed in forked copies of the child, which has every library loaded already (a fork costs a few
milliseconds), while the child draws the figures, the report is ready sooner on two cores; so is a summary
whose figures are drawn side by side (:func:`tracking.summary.update_sweep_summary`). A copy shares
nothing it could break: it computes from its arguments, sends the result back through a pipe and leaves with
``os._exit`` (no exit handlers, no finalizers closing the parent's files or connections; objects alive at the
fork are never collected there, as in :func:`tracking.writer.launch.fork`). It stays in its parent's process
group: the report child runs in a session of its own, and the command kills the group (the child with its
copies) when it gives up on it.
"""

from __future__ import annotations

import contextlib
import gc
import os
import pickle
import signal
import sys
from collections.abc import Callable, Sequence
from typing import TypeVar

from tracking.writer.launch import fork_is_safe

T = TypeVar("T")
R = TypeVar("R")


class _Copy:
    """``fn(item)`` computed in a forked copy of this process; :meth:`result` waits for it. ``siblings``:
    the read ends of earlier copies' pipes, which this copy closes (it must not hold them open)."""

    def __init__(self, fn: Callable[[T], R], item: T, siblings: Sequence[int] = ()) -> None:
        read, write = os.pipe()
        for stream in (sys.stdout, sys.stderr):  # else what they buffer is written twice, once by the copy
            with contextlib.suppress(Exception):
                stream.flush()
        parent, frozen = os.getpid(), gc.get_freeze_count()
        gc.freeze()
        try:
            pid = os.fork()
        except OSError:
            os.close(read)
            os.close(write)
            raise
        finally:
            if os.getpid() == parent and not frozen:  # the caller's own freeze, if any, stays
                gc.unfreeze()
        if pid == 0:
            for fd in (read, *siblings):
                with contextlib.suppress(OSError):
                    os.close(fd)
            _answer(fn, item, write)  # never returns
        os.close(write)
        self.pid, self.read, self._reaped = pid, read, False

    def result(self) -> tuple[bool | None, object]:
        """(True, value) or (False, the exception fn raised); (None, None) when the copy died without
        answering. Waits for the copy, and reaps it."""
        chunks = []
        while chunk := os.read(self.read, 1 << 20):
            chunks.append(chunk)
        self.reap()
        try:
            return pickle.loads(b"".join(chunks))
        except Exception:  # nothing or part of an answer: killed, or out of memory
            return None, None

    def kill(self) -> None:
        if not self._reaped:  # (a reaped copy's pid may be another process's by now)
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)

    def reap(self) -> None:
        if self.read is not None:
            os.close(self.read)
            self.read = None
        if not self._reaped:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(self.pid, 0)
            self._reaped = True


def _answer(fn: Callable, item: object, fd: int) -> None:
    code = 0
    try:
        try:
            reply = (True, fn(item))
        except Exception as e:
            reply = (False, e)
        try:
            data = pickle.dumps(reply, protocol=pickle.HIGHEST_PROTOCOL)
        except Exception:  # a value or an exception that does not pickle
            data = pickle.dumps((False, RuntimeError(f"{type(reply[1]).__name__}: {reply[1]}")))
        with os.fdopen(fd, "wb") as out:
            out.write(data)
    except BaseException:
        code = 1
    finally:
        os._exit(code)


class Forked:
    """``[fn(item) for item in items]`` begun in forked copies of this process, one per item, where a fork is
    safe now (:func:`tracking.writer.launch.fork_is_safe`, or ``fork`` when the caller knows better), while
    this process goes on; :meth:`results` waits for them. ``fn``'s values must pickle. An item that could not
    be forked, or whose copy died without answering (killed, out of memory), is computed here when asked; an
    exception ``fn`` raised in a copy is raised here. :meth:`close` kills and reaps the copies (this process
    gave up on them)."""

    def __init__(self, fn: Callable[[T], R], items: Sequence[T], fork: bool | None = None) -> None:
        self._fn, self._items = fn, list(items)
        self._copies: list[_Copy] = []
        if self._items and (fork_is_safe() if fork is None else fork):
            for item in self._items:
                try:
                    self._copies.append(_Copy(fn, item, [copy.read for copy in self._copies]))
                except OSError:  # no fork now: this item and the rest are computed here
                    break

    def results(self) -> list[R]:
        answers = []
        try:
            for copy in self._copies:
                answers.append(copy.result())
        finally:
            self.close()  # the copies not waited for, if this was interrupted
        out = []
        for i, item in enumerate(self._items):
            ok, value = answers[i] if i < len(answers) else (None, None)
            if ok is None:
                value = self._fn(item)
            elif not ok:
                raise value
            out.append(value)
        return out

    def close(self) -> None:
        copies, self._copies = self._copies, []
        for copy in copies:
            copy.kill()
        for copy in copies:
            copy.reap()
