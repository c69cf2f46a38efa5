"""Work split over forked copies of this process, for the report's importances: one target per core.

At the end of `sweeps run` the training process waits, the writer draws the summary on one core and the
report child composes the report on the other, most of it the importances of two targets (the objective
and ``train_seconds``), each ~0.2 s of fANOVA fits. Computed side by side, the second in a forked copy of
the child, which has every library loaded already (a fork costs a few milliseconds), the report is ready
~0.2 s sooner. A copy shares nothing it could break: it computes from its arguments, sends the result back
through a pipe and leaves with ``os._exit`` (no exit handlers, no finalizers closing the parent's files or
connections; objects alive at the fork are never collected there, as in :func:`tracking.writer.launch.fork`).
"""

from __future__ import annotations

import contextlib
import gc
import os
import pickle
import sys
from collections.abc import Callable, Sequence
from typing import TypeVar

from tracking.writer.launch import fork_is_safe

T = TypeVar("T")
R = TypeVar("R")


class _Copy:
    """``fn(item)`` computed in a forked copy of this process; :meth:`result` waits for it."""

    def __init__(self, fn: Callable[[T], R], item: T) -> None:
        read, write = os.pipe()
        for stream in (sys.stdout, sys.stderr):  # else what they buffer is written twice, once by the copy
            with contextlib.suppress(Exception):
                stream.flush()
        parent = os.getpid()
        gc.freeze()
        try:
            pid = os.fork()
        except OSError:
            os.close(read)
            os.close(write)
            raise
        finally:
            if os.getpid() == parent:
                gc.unfreeze()
        if pid == 0:
            os.close(read)
            _answer(fn, item, write)  # never returns
        os.close(write)
        self.pid, self._read = pid, read

    def result(self) -> tuple[bool, object]:
        """(True, value) or (False, the exception fn raised); (None, None) when the copy died without answering."""
        with os.fdopen(self._read, "rb") as answer:
            data = answer.read()
        with contextlib.suppress(ChildProcessError):
            os.waitpid(self.pid, 0)
        try:
            return pickle.loads(data)
        except Exception:  # nothing or part of an answer: killed, or out of memory
            return None, None


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
    safe now (:func:`tracking.writer.launch.fork_is_safe`), while this process goes on; :meth:`results` waits
    for them. ``fn``'s values must pickle. An item that could not be forked, or whose copy died without
    answering (killed, out of memory), is computed here when asked; an exception ``fn`` raised in a copy is
    raised here. :meth:`close` reaps the copies without taking their results (this process gave up)."""

    def __init__(self, fn: Callable[[T], R], items: Sequence[T]) -> None:
        self._fn, self._items = fn, list(items)
        self._copies: list[_Copy] = []
        if self._items and fork_is_safe():
            for item in self._items:
                try:
                    self._copies.append(_Copy(fn, item))
                except OSError:  # no fork now: this item and the rest are computed here
                    break

    def results(self) -> list[R]:
        answers = self._reap()
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
        self._reap()

    def _reap(self) -> list[tuple[bool | None, object]]:
        copies, self._copies = self._copies, []
        return [copy.result() for copy in copies]


def forked_map(fn: Callable[[T], R], items: Sequence[T]) -> list[R]:
    """``[fn(item) for item in items]``, every item but the first computed in a forked copy of this process
    while this one computes the first, where a fork is safe (see :class:`Forked`); else one after another."""
    if not items:
        return []
    rest = Forked(fn, items[1:])
    try:
        first = fn(items[0])
    except BaseException:
        rest.close()
        raise
    return [first, *rest.results()]
