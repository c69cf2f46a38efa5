"""The training process's end of the pipe to its writer process (:mod:`tracking.writer.server`).

One writer child per training process, started with the sweep (:func:`start_writer`) or by the first trial
(:func:`shared_writer`). :meth:`Writer.send` queues a message without waiting; :meth:`Writer.call` waits for
the answer, which the child sends only after everything sent before the request is written. Until the child
has its store open (1-5 s when it loads MLflow first; milliseconds when the store is written directly),
:meth:`Writer.ready` is False and trials hold their values or
log them from this process (see :mod:`tracking.transport`). ``TRACKING_WRITER=off`` means no writer.
"""

from __future__ import annotations

import atexit
import contextlib
import itertools
import logging
import os
import pickle
import select
import threading
from typing import Any

from tracking.errors import TrackingError
from tracking.redact import redact
from tracking.writer.launch import OPEN_VAR, WARM_VAR, start_child
from tracking.writer.messages import UP, Barrier, Envelope, Log, Reply, Request, Stop

log = logging.getLogger("tracking.writer")

STOP_SECONDS = 60.0  # at most this long to write what is queued when the trainer exits


class WriterGone(TrackingError):
    """The writer process exited or its pipe broke; the caller logs through its own client instead."""


class Writer:
    """The training process's end of the pipe to one writer child. Safe to share between threads."""

    def __init__(self, tracking_uri: str | None = None, summary: bool = True) -> None:
        """``summary=False``: this process will not ask for a sweep's summary (a worker under a coordinator),
        or only one of many will (independent workers), so the child does not load matplotlib ahead of time
        (0.5-0.7 CPU seconds spent for nothing); a summary asked for all the same loads it then."""
        self.owner = os.getpid()  # the process whose pipe this is
        self.broken = False
        self._detached = False  # left to finish alone (see _abandon)
        self._up = False  # the child said it has its store open
        self._sent = self._settled = 0  # messages sent; of those, the ones an answer showed to be handled
        settings = {WARM_VAR: "1" if summary else ""}
        if tracking_uri is not None:  # opened before the child says it is up (in the environment, not argv:
            settings[OPEN_VAR] = tracking_uri  # a password would show in the process list)
        self._proc = start_child(settings, tracking_uri)
        self._tokens = itertools.count(1)
        self._send_lock, self._recv_lock = threading.Lock(), threading.Lock()
        self._replies: dict[int, Reply] = {}

    @property
    def child_pid(self) -> int:
        """The writer process's id."""
        return self._proc.pid

    @property
    def started_by(self) -> str:
        """How the child was started: ``"fork"`` or ``"spawn"`` (see :mod:`tracking.writer.launch`)."""
        return self._proc.how

    def send(self, message: Log) -> None:
        """Queue ``message`` for the child without waiting. Raises WriterGone when the child is gone."""
        self._send(Envelope(0, message))

    def call(self, request: Request) -> Any:
        """Send a request and wait for the child's answer, which comes after everything sent before it is
        written. Raises WriterGone when the child is gone, or the exception the request raised there."""
        token = next(self._tokens)
        covers = self._send(Envelope(token, request))
        try:
            with self._recv_lock:
                # Answers come in request order; a thread may read another's and leave it for its owner.
                while token not in self._replies:
                    self._receive()
        except (OSError, EOFError, pickle.UnpicklingError) as e:
            self._abandon()
            raise WriterGone(f"the tracking writer process exited ({type(e).__name__})") from None
        except BaseException:  # interrupted while waiting: the reply's place in the pipe is lost
            self._abandon(wait=False)
            raise
        reply = self._replies.pop(token)
        self._settled = max(self._settled, covers)
        if not reply.ok:
            raise reply.value
        return reply.value

    def barrier(self) -> None:
        """Wait until everything sent before is written (or failed). Raises WriterGone like ``call``."""
        self.call(Barrier())

    def close(self, timeout: float = STOP_SECONDS) -> None:
        """Ask the child to write what it holds and exit; kill it after ``timeout`` seconds. A child that was
        sent nothing has nothing to write: it is left to exit alone (a sweep interrupted while starting
        does not wait for the child to finish loading MLflow)."""
        if self._sent == 0:
            self._abandon(wait=False)
            return
        if not self.broken:
            try:
                self.call(Stop())
            except Exception as e:
                log.warning("tracking writer did not stop cleanly: %s", redact(str(e))[:200])
        self._abandon(timeout)

    def ready(self) -> bool:
        """True once the child has the store it was started with open (with MLflow loaded, 1-5 s after
        start, unless the store is written directly: :func:`tracking.writer.launch.writes_without_mlflow`).
        Does not wait for the child. Until then trials hold their values or log them from their own
        process rather than wait for it.

        "Up" is the only message the child sends unasked, so the pipe's buffer cannot hide a second one
        from ``select``."""
        if self._up or self.broken:
            return self._up
        try:
            with self._recv_lock:
                while not self._up and select.select([self._proc.stdout], [], [], 0)[0]:
                    self._receive()
        except (OSError, EOFError, pickle.UnpicklingError, ValueError):
            self._abandon()
        return self._up

    def _receive(self) -> None:
        reply: Reply = pickle.load(self._proc.stdout)
        if reply.token == UP:
            self._up = True
        else:
            self._replies[reply.token] = reply

    @property
    def unsettled(self) -> bool:
        """True when some message sent may not be handled yet (:meth:`barrier` waits for it)."""
        return self._sent > self._settled

    def _send(self, envelope: Envelope) -> int:
        if self.broken:
            raise WriterGone("the tracking writer process was stopped")
        data = pickle.dumps(envelope, protocol=pickle.HIGHEST_PROTOCOL)
        try:
            with self._send_lock:
                self._proc.stdin.write(data)
                self._proc.stdin.flush()
                self._sent += 1
                return self._sent
        except OSError:
            self._abandon()
            raise WriterGone("the tracking writer process exited") from None
        except BaseException:  # interrupted mid-message: the stream can no longer be trusted
            self._abandon(wait=False)
            raise

    def _abandon(self, timeout: float = STOP_SECONDS, wait: bool = True) -> None:
        """Close our end (the child writes every whole message it got, then exits) and reap the child.

        ``wait=False`` (the caller was interrupted: the user insists) leaves the child to finish alone."""
        self.broken = True
        for stream in (self._proc.stdin, self._proc.stdout):
            with contextlib.suppress(OSError):
                stream.close()
        if not wait:
            self._detached = True  # not waited for at exit either
            return
        if self._detached:
            return
        if not self._proc.wait(timeout):
            log.warning("tracking writer still busy after %.0f s; killing it", timeout)
            self._proc.kill()


_shared: Writer | None = None
_shared_lock = threading.Lock()


def shared_writer(start: bool = True, tracking_uri: str | None = None, summary: bool = True) -> Writer | None:
    """This process's writer, started on first use (``start``); None when ``TRACKING_WRITER=off``, when it
    broke (callers then log directly), or when not started and ``start`` is False."""
    global _shared
    if os.environ.get("TRACKING_WRITER", "process") == "off":
        return None
    with _shared_lock:
        if _shared is None or _shared.owner != os.getpid():  # a forked child never writes to its parent's pipe
            if not start:
                return None
            if _shared is None:
                atexit.register(stop_shared_writer)
            _shared = Writer(tracking_uri, summary)
        return None if _shared.broken else _shared


def start_writer(tracking_uri: str | None = None, summary: bool = True) -> None:
    """Start this process's writer now, so that, given ``tracking_uri``, it has its store open when the first
    trial logs: MLflow loaded (1-3 s) and its engine and schema check (another 0.5-2 s for SQLite), or, where
    the store is written directly (:func:`tracking.writer.launch.writes_without_mlflow`), milliseconds.
    ``summary=False`` when this process is unlikely to summarise a sweep (see :class:`Writer`).

    A no-op when it runs already or ``TRACKING_WRITER=off``."""
    shared_writer(start=True, tracking_uri=tracking_uri, summary=summary)


def stop_shared_writer() -> None:
    """Stop this process's writer (at exit; also safe to call earlier: the next trial starts a new one)."""
    global _shared
    with _shared_lock:
        writer, _shared = _shared, None
    if writer is not None and writer.owner == os.getpid():
        writer.close()
