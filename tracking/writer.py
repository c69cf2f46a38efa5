"""A writer process that owns the MLflow client, so a training process pays microseconds per epoch, not ms.

MLflow's SQLite store spends ~9 ms of CPU in the calling process on every ``log_batch``, and a thread would
take that CPU from the trainer through the GIL. So one child process per training process
(:func:`main`, started with the sweep by :func:`start_writer`, or on the first trial) does the MLflow work
on another core; the trainer sends it small pickled tuples through a pipe. Requests that need an answer
(``finish``, ``sync``, ``barrier``, ``summary``, ``stop``) wait for the child's reply, and the child answers
only after everything sent before the request is written: that is what makes ``TrialRun.finish`` durable.
Values are written at most once a second per run (``LINGER_SECONDS``), all that arrived meanwhile in one
``log_batch``. Until the child has MLflow loaded and its store open (1-5 s), trials hold their values (or
log them from the training process at ``finish``), and they switch to the child once it is ready.

The child ignores SIGINT and SIGTERM and runs in its own session: a Ctrl-C in the trainer must leave it up,
so that the interrupted trial can still be closed FAILED. It exits when asked (``stop``, sent at exit) or
when its input closes (the trainer is gone), after writing what it received. ``TRACKING_WRITER=off`` logs
from the training process instead.
"""

from __future__ import annotations

import atexit
import contextlib
import itertools
import logging
import math
import os
import pickle
import queue
import select
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from tracking.errors import TrackingError
from tracking.redact import redact

log = logging.getLogger(__name__)

OPEN_VAR = "TRACKING_WRITER_OPEN"  # a tracking URI the child opens before it says it is up
STOP_SECONDS = 60.0  # at most this long to write what is queued when the trainer exits
RETRY_SECONDS = 5.0  # a run whose values the store refused for now is tried again this often
# A run's values are written at most this often (and at once before any request: finish, sync, ...). The UI
# still sees a trial progress every second, and short epochs cost the store (and, with several workers, the
# cores they share with the MLflow server) one request per second instead of one per epoch.
LINGER_SECONDS = 1.0


class WriterGone(TrackingError):
    """The writer process exited or its pipe broke; the caller logs through its own client instead."""


class Writer:
    """The training process's end of the pipe to one writer child. Safe to share between threads."""

    def __init__(self, tracking_uri: str | None = None) -> None:
        root = str(Path(__file__).resolve().parents[1])
        path = os.environ.get("PYTHONPATH")
        env = {**os.environ, "PYTHONPATH": root + (os.pathsep + path if path else "")}
        if tracking_uri is not None:  # opened before the child says it is up (in the environment, not argv:
            env[OPEN_VAR] = tracking_uri  # a password would show in the process list)
        self.owner = os.getpid()  # the process whose pipe this is
        self.broken = False
        self._detached = False  # left to finish alone (see _abandon)
        self._up = False  # the child said it has MLflow loaded
        self._sent = self._settled = 0  # messages sent; of those, the ones an answer showed to be handled
        self._proc = subprocess.Popen(
            [sys.executable, "-c", "from tracking.writer import main; main()"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
            start_new_session=True,  # no Ctrl-C from the terminal's process group
        )
        self._tokens = itertools.count(1)
        self._send_lock, self._recv_lock = threading.Lock(), threading.Lock()
        self._replies: dict[int, tuple[bool, Any]] = {}

    @property
    def child_pid(self) -> int:
        """The writer process's id."""
        return self._proc.pid

    def send(self, kind: str, payload: Any) -> None:
        """Queue ``payload`` for the child without waiting. Raises WriterGone when the child is gone."""
        self._send(0, kind, payload)

    def call(self, kind: str, payload: Any) -> Any:
        """Send a request and wait for the child's answer, which comes after everything sent before it is
        written. Raises WriterGone when the child is gone, or the exception the request raised there."""
        token = next(self._tokens)
        covers = self._send(token, kind, payload)
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
        ok, value = self._replies.pop(token)
        self._settled = max(self._settled, covers)
        if not ok:
            raise value
        return value

    def close(self, timeout: float = STOP_SECONDS) -> None:
        """Ask the child to write what it holds and exit; kill it after ``timeout`` seconds. A child that was
        sent nothing has nothing to write: it is left to exit alone (a sweep interrupted while starting
        does not wait for the child to finish loading MLflow)."""
        if self._sent == 0:
            self._abandon(wait=False)
            return
        if not self.broken:
            try:
                self.call("stop", None)
            except Exception as e:
                log.warning("tracking writer did not stop cleanly: %s", redact(str(e))[:200])
        self._abandon(timeout)

    def ready(self) -> bool:
        """True once the child has MLflow loaded and the store it was started with open (1-5 s after
        start). Does not wait for the child. Until then trials hold their values or log them from their
        own process rather than wait for it.

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
        token, ok, value = pickle.load(self._proc.stdout)
        if token == 0:
            self._up = True
        else:
            self._replies[token] = (ok, value)

    @property
    def unsettled(self) -> bool:
        """True when some message sent may not be handled yet (``call("barrier", None)`` waits for it)."""
        return self._sent > self._settled

    def _send(self, token: int, kind: str, payload: Any) -> int:
        if self.broken:
            raise WriterGone("the tracking writer process was stopped")
        data = pickle.dumps((token, kind, payload), protocol=pickle.HIGHEST_PROTOCOL)
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
        try:
            self._proc.wait(timeout)
        except subprocess.TimeoutExpired:
            log.warning("tracking writer still busy after %.0f s; killing it", timeout)
            self._proc.kill()
            self._proc.wait()


_shared: Writer | None = None
_shared_lock = threading.Lock()


def shared_writer(start: bool = True, tracking_uri: str | None = None) -> Writer | None:
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
            _shared = Writer(tracking_uri)
        return None if _shared.broken else _shared


def start_writer(tracking_uri: str | None = None) -> None:
    """Start this process's writer now, so that it has MLflow loaded (1-3 s) when the first trial logs,
    and, given ``tracking_uri``, its store opened (another 0.5-2 s for SQLite: engine and schema check).

    A no-op when it runs already or ``TRACKING_WRITER=off``."""
    shared_writer(start=True, tracking_uri=tracking_uri)


def stop_shared_writer() -> None:
    """Stop this process's writer (at exit; also safe to call earlier: the next trial starts a new one)."""
    global _shared
    with _shared_lock:
        writer, _shared = _shared, None
    if writer is not None and writer.owner == os.getpid():
        writer.close()


# --- the child ---------------------------------------------------------------------------------------------


class _Server:
    """Holds the values received per (uri, run id) until written; answers requests in order."""

    def __init__(self, out) -> None:
        self.out = out
        self.clients: dict[str, Any] = {}
        self.pending: dict[tuple[str, str], tuple[list, list, list, list]] = {}  # metrics, params, tags, inputs
        self.unavailable: dict[tuple[str, str], str] = {}  # why pending values are still pending
        self.refused: dict[tuple[str, str], str] = {}  # values the store rejected, reported at the next request
        self.due: dict[tuple[str, str], float] = {}  # when each run's pending values are to be written
        self.written: dict[tuple[str, str], float] = {}  # when each run was last written

    def client(self, uri: str):
        if uri not in self.clients:
            from tracking.store import make_client

            self.clients[uri] = make_client(uri)
        return self.clients[uri]

    def add(self, uri: str, run_id: str, metrics=(), params=(), tags=(), inputs=()) -> None:
        key = (uri, run_id)
        m, p, t, i = self.pending.setdefault(key, ([], [], [], []))
        m += metrics
        p += params
        t += tags
        i += inputs
        if key not in self.due:
            self.due[key] = max(time.monotonic(), self.written.get(key, -math.inf) + LINGER_SECONDS)

    def write(self, key: tuple[str, str]) -> None:
        """Write the run's pending values; transient failures keep them, others become the run's error."""
        from mlflow.entities import Metric, Param, RunTag

        from tracking.batch import is_transient, log_batched
        from tracking.datasets import log_dataset_inputs

        if key not in self.pending:
            self.due.pop(key, None)
            return
        metrics, params, tags, inputs = self.pending[key]
        try:
            log_batched(
                self.client(key[0]),
                key[1],
                metrics=[Metric(*m) for m in metrics],
                params=[Param(*p) for p in params],
                tags=[RunTag(*t) for t in tags],
            )
            if inputs:  # what is left is sent again on a transient failure; MLflow keeps one copy of each
                log_dataset_inputs(self.client(key[0]), key[1], inputs)
        except Exception as e:
            message = f"{type(e).__name__}: {redact(str(e))[:500]}"
            if is_transient(e):
                log.warning("MLflow unavailable for run %s (%s); values kept for the next try", key[1], message)
                self.unavailable[key] = message
                self.due[key] = time.monotonic() + RETRY_SECONDS
                return
            log.warning("MLflow refused values of run %s: %s", key[1], message)
            self.refused[key] = message
        del self.pending[key]
        self.due.pop(key, None)
        self.written[key] = time.monotonic()
        self.unavailable.pop(key, None)

    def write_all(self) -> None:
        for key in list(self.pending):
            self.write(key)

    def write_due(self) -> None:
        now = time.monotonic()
        for key in [k for k, when in self.due.items() if when <= now]:
            self.write(key)

    def wait_seconds(self) -> float | None:
        """How long the next wait for messages may last: until the first run is due, or for ever."""
        return max(0.0, min(self.due.values()) - time.monotonic()) if self.due else None

    def settle(self, key: tuple[str, str]) -> bool:
        """True when every value sent for the run is in the store, False when the store is unavailable for
        now (values kept); TrackingError when it refused some."""
        self.write(key)
        if key in self.refused:
            raise TrackingError(self.refused.pop(key))
        return key not in self.pending

    def handle(self, kind: str, payload: Any) -> Any:
        from tracking.batch import with_retries

        if kind == "sync":  # -> True when written, False when the store is unavailable for now
            return self.settle(tuple(payload))
        if kind == "finish":  # the trainer keeps its copy of the values and sends them again on failure
            uri, run_id, metrics, tags, status = payload
            key = (uri, run_id)
            self.add(uri, run_id, metrics, (), tags)
            if not self.settle(key):
                self.pending.pop(key, None)
                self.due.pop(key, None)
                raise TrackingError(self.unavailable.pop(key, "the store is unavailable"))
            with_retries(self.client(uri).set_terminated, run_id, status=status, what=f"end run {run_id}")
            self.written.pop(key, None)
            return None
        if kind in ("barrier", "stop"):  # everything received before is written (or failed) by now
            return None
        if kind == "summary":  # -> the trials table; see SweepRun.update_summary
            from tracking.runs import SweepRun
            from tracking.summary import update_sweep_summary

            fields, spec, metric, direction = payload
            sweep = SweepRun(client=self.client(fields["tracking_uri"]), **fields)
            return update_sweep_summary(sweep, spec, metric=metric, direction=direction)
        raise ValueError(f"unknown request {kind!r}")

    def reply(self, token: int, ok: bool, value: Any) -> None:
        try:
            data = pickle.dumps((token, ok, value), protocol=pickle.HIGHEST_PROTOCOL)
        except Exception:  # an exception that does not pickle
            data = pickle.dumps((token, False, TrackingError(redact(str(value))[:500])))
        with contextlib.suppress(OSError):  # nobody listens any more: keep writing what was received
            self.out.write(data)
            self.out.flush()

    @staticmethod
    def warm_up() -> None:
        """Load what the parent run's summary needs (matplotlib, ~0.5 s), in a thread beside the writing."""
        try:
            import matplotlib.backends.backend_agg
            import matplotlib.figure  # noqa: F401

            import tracking.summary  # noqa: F401
        except Exception as e:  # drawn without the head start, or the error shows when it is drawn
            log.debug("warm-up failed: %s", e)

    def serve(self, inbox: queue.Queue) -> None:
        while True:
            try:
                messages = [inbox.get(timeout=self.wait_seconds())]
            except queue.Empty:
                messages = []
            while True:  # merge what queued up while we were writing
                try:
                    messages.append(inbox.get_nowait())
                except queue.Empty:
                    break
            for message in messages:
                if message is None:  # the trainer is gone: write what we have and leave
                    self.write_all()
                    return
                token, kind, payload = message
                if kind == "log":
                    self.add(*payload)
                    continue
                self.write_all()
                try:
                    ok, value = True, self.handle(kind, payload)
                except Exception as e:
                    ok, value = False, e
                if token:
                    self.reply(token, ok, value)
                if kind == "stop":
                    return
            self.write_due()


def _read(stream, inbox: queue.Queue) -> None:
    try:
        while True:
            inbox.put(pickle.load(stream))
    except Exception:  # EOF, or a message cut short by the trainer's exit
        inbox.put(None)


def main() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    code, out = 0, None
    try:
        # Replies get a private copy of stdout; anything printed goes to stderr instead of corrupting them.
        out = os.fdopen(os.dup(1), "wb")
        os.dup2(2, 1)
        logging.basicConfig(level=logging.WARNING, format="tracking writer: %(levelname)s %(message)s")
        from tracking.redact import install_log_redaction

        install_log_redaction()
        inbox: queue.Queue = queue.Queue()
        threading.Thread(target=_read, args=(sys.stdin.buffer, inbox), daemon=True).start()
        import mlflow  # noqa: F401 — before the first message, not while the trainer waits for an answer

        server = _Server(out)
        if os.environ.get(OPEN_VAR):  # the store's engine and schema check (up to 2 s for a new SQLite file)
            try:
                server.client(os.environ[OPEN_VAR])
            except Exception as e:  # shows, and is handled, at the first write
                log.debug("could not open %s yet: %s", redact(os.environ[OPEN_VAR]), e)
        server.reply(0, True, "up")
        threading.Thread(target=server.warm_up, daemon=True).start()
        server.serve(inbox)
    except BaseException:
        log.exception("tracking writer failed")
        code = 1
    finally:
        # The trainer may have closed its end already (it was interrupted, or gave up waiting): a reply
        # still buffered then cannot be flushed, and nobody needs it.
        if out is not None:
            with contextlib.suppress(OSError):
                out.close()
        logging.shutdown()
        # Not a normal exit: the reader thread may be blocked on stdin, and MLflow may have started
        # non-daemon threads that would keep an orphaned writer alive.
        os._exit(code)
