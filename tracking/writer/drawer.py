"""The writer's drawer: a forked copy of the tracking writer that draws the parent run's summary.

A lone sweep's trainer asks its writer for the summary at the end and waits for it (~0.2 s of matplotlib).
What the summary draws with (matplotlib and pandas, ~0.7 s of CPU) is loaded ahead of time, while the trials
train. Loaded by a thread of the writer, it held the interpreter's lock for up to tens of milliseconds at a
time (an extension module initialising), and a trial's end, which waits for the writer, waited as long: up
to 38 ms instead of ~2 on the quickstart. The drawer loads it in a process of its own instead, forked from the
writer as the writer starts (one thread then, and no store open yet), waits for a summary request, draws it
(its figures side by side in forked copies of itself, :func:`tracking.summary.update_sweep_summary`), writes
it to the store through connections of its own, and answers. It leaves when the writer closes its end of the
pipe (the writer exits, or was killed); it ignores SIGINT and SIGTERM, as the writer does.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pickle
import signal
import sys
from collections.abc import Sequence
from typing import Any

from tracking.errors import TrackingError
from tracking.redact import redact

log = logging.getLogger("tracking.writer")

NICENESS = 10  # below the trainer and the writer, whose work the sweep waits for while the drawer loads


class Pickled:
    """A value pickled by the drawer, handed on as it is: unpickled only where it is finally used (the trainer),
    so that the writer, which only passes the trials table on, does not import pandas for it."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def __reduce__(self):
        return pickle.loads, (self.data,)


class Drawer:
    """The writer's end of the pipes to its drawer process."""

    def __init__(self, pid: int, requests: Any, answers: Any) -> None:
        self.pid, self._requests, self._answers = pid, requests, answers

    @classmethod
    def start(cls, close: Sequence[int] = ()) -> Drawer | None:
        """Fork the drawer, which closes the descriptors ``close`` (the writer's pipes to the trainer: the
        trainer must see them end when the writer does); None where no fork is possible now."""
        from tracking.writer.launch import fork_is_safe

        if not fork_is_safe():
            return None
        try:
            request_read, request_write = os.pipe()
        except OSError:  # out of descriptors: drawn by the writer
            return None
        try:
            answer_read, answer_write = os.pipe()
        except OSError:
            os.close(request_read)
            os.close(request_write)
            return None
        for stream in (sys.stdout, sys.stderr):  # else what they buffer is written twice
            with contextlib.suppress(Exception):
                stream.flush()
        try:
            pid = os.fork()
        except OSError:
            for fd in (request_read, request_write, answer_read, answer_write):
                os.close(fd)
            return None
        if pid == 0:
            for fd in (request_write, answer_read, *close):
                with contextlib.suppress(OSError):
                    os.close(fd)
            with contextlib.suppress(OSError):  # no input of its own (a closed fd 0 would be reused)
                devnull = os.open(os.devnull, os.O_RDONLY)
                os.dup2(devnull, 0)
                os.close(devnull)
            _serve(request_read, answer_write)  # never returns
        os.close(request_read)
        os.close(answer_write)
        return cls(pid, os.fdopen(request_write, "wb"), os.fdopen(answer_read, "rb"))

    def draw(self, request: Any) -> tuple[bool, Any] | None:
        """The drawer's answer to the summary ``request``: (True, the trials table or None, as
        :class:`Pickled`) or (False, the exception); None when the drawer is gone (the caller draws it)."""
        try:
            pickle.dump(request, self._requests, protocol=pickle.HIGHEST_PROTOCOL)
            self._requests.flush()
            ok, value = pickle.load(self._answers)
        except Exception:  # a broken pipe, or an answer cut short: the drawer died
            self.close()
            return None
        return ok, Pickled(value) if ok else value

    def close(self) -> None:
        """Stop the drawer (never in the middle of a drawing: :meth:`draw` waits for it) and reap it: left to
        itself, it would outlive the writer while it loads its libraries, holding the trainer's stderr open."""
        for stream in (self._requests, self._answers):
            with contextlib.suppress(OSError):
                stream.close()
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(self.pid, 0)


def _load() -> None:
    """What the summary draws with; a failure shows when it is drawn."""
    try:
        import matplotlib.backends.backend_agg  # noqa: F401
        import pandas  # noqa: F401 — the trials table (tracking.select)

        import tracking.plots
        import tracking.summary

        tracking.plots.new_figure()  # matplotlib's font machinery, loaded here rather than by each figure
    except Exception as e:
        log.debug("the drawer could not load the summary's libraries: %s", e)


def _answer(reply: tuple[bool, Any]) -> bytes:
    """``reply`` pickled for the writer: a drawn value pickled apart (see :class:`Pickled`); an exception
    that would not come back out of its pickle as its text."""
    ok, value = reply
    try:
        if ok:
            return pickle.dumps((True, pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)))
        data = pickle.dumps(reply, protocol=pickle.HIGHEST_PROTOCOL)
        pickle.loads(data)  # an exception whose arguments do not rebuild it would look like a dead drawer
        return data
    except Exception:
        return pickle.dumps((False, TrackingError(redact(f"{type(value).__name__}: {value}")[:500])))


def _serve(request_fd: int, answer_fd: int) -> None:
    code = 0
    try:
        with contextlib.suppress(OSError):
            os.nice(NICENESS)
        # PR_SET_PDEATHSIG would end it with the writer; here it leaves at the writer's close(), or at the end
        # of its input once loaded (a writer killed meanwhile).
        _load()
        from tracking.runs import draw_summary

        with os.fdopen(request_fd, "rb") as requests, os.fdopen(answer_fd, "wb") as answers:
            while True:
                try:
                    request = pickle.load(requests)
                except EOFError:  # the writer is gone
                    break
                try:
                    reply = (True, draw_summary(request, fork=None))
                except Exception as e:
                    reply = (False, e)
                answers.write(_answer(reply))
                answers.flush()
    except BaseException:
        code = 1
    finally:
        os._exit(code)  # no exit handlers: they are the writer's
