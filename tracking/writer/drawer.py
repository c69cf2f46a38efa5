"""The writer's drawer: a forked copy of the tracking writer that draws the parent run's summary.

A lone sweep's trainer asks its writer for the summary at the end and waits for it (~0.2 s of matplotlib).
What the summary draws with (matplotlib and pandas, ~0.7 s of CPU) is loaded ahead of time, while the trials
train. Loaded by a thread of the writer, it held the interpreter's lock for up to tens of milliseconds at a
time (an extension module initialising), and a trial's end, which waits for the writer, waited as long: up
to 38 ms instead of ~2 on the quickstart. The drawer loads it in a process of its own instead, forked from the
writer as the writer starts (one thread then, and no store open yet), waits for a summary request, draws it
(its figures side by side in forked copies of itself, :func:`tracking.summary.update_sweep_summary`), writes
it to the store through connections of its own, and answers. The writer stops it as it exits (a writer
killed: it leaves at the end of its input); forked as the writer is (:func:`tracking.writer.launch.fork`),
it ignores SIGINT and SIGTERM, and stays in the writer's session, where its lower priority counts.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pickle
from typing import Any

from tracking.errors import TrackingError
from tracking.redact import redact
from tracking.writer.launch import answer_channel, fork, fork_is_safe

log = logging.getLogger("tracking.writer")

ENTRY = "tracking.writer.drawer"  # the drawer's program: this module's ``main()``
NAME = "tracking-drawer"  # its process name (``ps -e``, ``top``); its command line is the writer's
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

    def __init__(self, child: Any) -> None:
        self._child = child

    @property
    def pid(self) -> int:
        return self._child.pid

    @classmethod
    def start(cls) -> Drawer | None:
        """Fork the drawer (:func:`tracking.writer.launch.fork`: in the writer's session, the writer's pipes
        to the trainer and its other descriptors closed, so that the trainer sees them end when the writer
        does); None where no fork is possible now."""
        if not fork_is_safe():
            return None
        try:
            return cls(fork(ENTRY, NAME, session=False))  # niced in the writer's session (see fork)
        except OSError:  # no fork or no pipe now (out of processes or descriptors): drawn by the writer
            return None

    def draw(self, request: Any) -> tuple[bool, Any] | None:
        """The drawer's answer to the summary ``request``: (True, the trials table or None, as
        :class:`Pickled`) or (False, the exception); None when the drawer is gone (the caller draws it)."""
        try:
            pickle.dump(request, self._child.stdin, protocol=pickle.HIGHEST_PROTOCOL)
            self._child.stdin.flush()
            ok, value = pickle.load(self._child.stdout)
        except Exception:  # a broken pipe, or an answer cut short: the drawer died
            self.close()
            return None
        return ok, Pickled(value) if ok else value

    def close(self) -> None:
        """Stop the drawer (never in the middle of a drawing: :meth:`draw` waits for it) and reap it: left to
        itself, it would outlive the writer while it loads its libraries, holding the trainer's stderr open."""
        for stream in (self._child.stdin, self._child.stdout):
            with contextlib.suppress(OSError):
                stream.close()
        self._child.kill()


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


def main() -> None:
    """The drawer's program (run by :func:`tracking.writer.launch.fork`): requests on fd 0, answers on fd 1."""
    code = 0
    try:
        answers = answer_channel()
        with contextlib.suppress(OSError):
            os.nice(NICENESS)
        _load()
        from tracking.runs import draw_summary

        requests = os.fdopen(0, "rb", closefd=False)
        while True:
            try:
                request = pickle.load(requests)
            except EOFError:  # the writer is gone (killed: else it stops this process as it exits)
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
