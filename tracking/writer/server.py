"""The writer process: receives :mod:`tracking.writer.messages` through its stdin and writes them to MLflow.

Values are written at most once a second per run (``LINGER_SECONDS``), all that arrived meanwhile in one
``log_batch``. Requests (``Sync``, ``Finish``, ``Barrier``, ``Summary``, ``Stop``) are answered in order,
each only after everything received before it is written: that is what makes ``TrialRun.finish`` durable.

The process ignores SIGINT and SIGTERM and runs in its own session: a Ctrl-C in the trainer must leave it
up, so that the interrupted trial can still be closed FAILED. It exits when asked (``Stop``, sent at exit)
or when its input closes (the trainer is gone), after writing what it received.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import pickle
import queue
import signal
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from tracking.errors import TrackingError
from tracking.redact import redact
from tracking.writer.drawer import Drawer
from tracking.writer.launch import OPEN_VAR, WARM_VAR, answer_channel, writes_without_mlflow
from tracking.writer.messages import (
    LINGER_SECONDS,
    UP,
    Barrier,
    Envelope,
    Finish,
    Log,
    Reply,
    RunValues,
    Status,
    Stop,
    Summary,
    Sync,
)

log = logging.getLogger("tracking.writer")

WARM_SWITCH_SECONDS = 0.0002  # the GIL's hand-over interval while the summary's modules load (see warm_up)
RETRY_SECONDS = 5.0  # a run whose values the store refused for now is tried again this often

Key = tuple[str, str]  # (tracking uri, run id)


class _Server:
    """Holds the values received per (uri, run id) until written; answers requests in order."""

    def __init__(self, out) -> None:
        self.out = out
        self.reader: threading.Thread | None = None  # reads the trainer's messages (main)
        self.drawer: Drawer | None = None  # draws the summary in a process of its own (main)
        self.warming: threading.Thread | None = None  # else loads what the summary draws with here (warm_up)
        self.clients: dict[str, Any] = {}
        self.pending: dict[Key, RunValues] = {}
        self.unavailable: dict[Key, str] = {}  # why pending values are still pending
        self.refused: dict[Key, str] = {}  # values the store rejected, reported at the next request
        self.due: dict[Key, float] = {}  # when each run's pending values are to be written
        self.written: dict[Key, float] = {}  # when each run was last written
        self.handlers: dict[type, Callable[[Any], Any]] = {
            Sync: self.sync,
            Finish: self.finish,
            Barrier: lambda request: None,  # everything received before is written (or failed) by now
            Stop: lambda request: None,
            Summary: self.summary,
            Status: lambda request: {name: name in sys.modules for name in ("mlflow", "matplotlib", "pandas")},
        }

    def client(self, uri: str):
        if uri not in self.clients:
            from tracking.store import make_client

            self.clients[uri] = make_client(uri, lazy=True)  # MLflow loaded when a write is not direct
        return self.clients[uri]

    def add(self, uri: str, run_id: str, values: RunValues) -> None:
        key = (uri, run_id)
        self.pending.setdefault(key, RunValues()).extend(values)
        if key not in self.due:
            self.due[key] = max(time.monotonic(), self.written.get(key, -math.inf) + LINGER_SECONDS)

    def write(self, key: Key, end: str | None = None) -> bool:
        """Write the run's pending values; transient failures keep them, others become the run's error.
        ``end``: the status to end the run with in the same transaction, where the store has one for both
        (``transport.write_values``); returns whether the run was ended."""
        from tracking.disk_full import disk_full
        from tracking.mlflow_requests import is_transient
        from tracking.transport import write_values

        if key not in self.pending:
            self.due.pop(key, None)
            return False
        ended = False
        try:
            ended = write_values(self.client(key[0]), key[1], self.pending[key], end=end)
        except Exception as e:
            message = f"{type(e).__name__}: {redact(str(e))[:500]}"
            if is_transient(e):
                log.warning("MLflow unavailable for run %s (%s); values kept for the next try", key[1], message)
                self.unavailable[key] = message
                self.due[key] = time.monotonic() + RETRY_SECONDS
                return False
            if disk_full(e) is None:  # a full disk is said once, in one line, by the command that hits it
                log.warning("MLflow refused values of run %s: %s", key[1], message)
            self.refused[key] = message
        del self.pending[key]
        self.due.pop(key, None)
        self.written[key] = time.monotonic()
        self.unavailable.pop(key, None)
        return ended

    def write_all(self, but: Key | None = None) -> None:
        for key in list(self.pending):
            if key != but:
                self.write(key)

    def write_due(self) -> None:
        now = time.monotonic()
        for key in [k for k, when in self.due.items() if when <= now]:
            self.write(key)

    def wait_seconds(self) -> float | None:
        """How long the next wait for messages may last: until the first run is due, or for ever."""
        return max(0.0, min(self.due.values()) - time.monotonic()) if self.due else None

    def settle(self, key: Key, end: str | None = None) -> tuple[bool, bool]:
        """Whether every value sent for the run is in the store (False when the store is unavailable for
        now: values kept), and whether the run was ended with them (``end``, see ``write``); TrackingError
        when the store refused some."""
        ended = self.write(key, end)
        if key in self.refused:
            raise TrackingError(self.refused.pop(key))
        return key not in self.pending, ended

    def receive(self, message) -> None:
        """Take a message's values before the writes that precede its answer: a ``Finish``'s values join
        what is pending for its run (the last epochs, lingering), so that both go in one ``log_batch`` and
        the trainer waits for two requests to the store (that one and the run's end), not three."""
        if isinstance(message, Log | Finish):
            self.add(message.uri, message.run_id, message.values)

    def sync(self, request: Sync) -> bool:
        return self.settle((request.uri, request.run_id))[0]

    def finish(self, request: Finish) -> None:
        """Write the run's values, the request's included (see ``receive``), and end the run: in one
        transaction on an embedded store (the trainer waits for it: one durable commit instead of two). The
        trainer keeps its copy of the values and sends them again on failure, so they are dropped here then."""
        from tracking import run_writes

        key = (request.uri, request.run_id)
        # Not ended with its last values when some earlier ones were refused: settle raises for those, and
        # the run must stay RUNNING then, as it did before the end was joined to the values.
        written, ended = self.settle(key, end=None if key in self.refused else request.status)
        if not written:
            self.pending.pop(key, None)
            self.due.pop(key, None)
            raise TrackingError(self.unavailable.pop(key, "the store is unavailable"))
        if not ended:
            run_writes.set_terminated(self.client(request.uri), request.run_id, request.status)
        self.written.pop(key, None)

    def summary(self, request: Summary):
        """The trials table, if asked for; see ``SweepRun.update_summary``. Drawn by the drawer
        (:mod:`tracking.writer.drawer`) where there is one, else here.

        The trainer waits for it, so here too its figures are drawn side by side in forked copies of this
        process where that is safe: once the warm-up is over (it was loading what they draw with; a module
        half imported by another thread would never finish importing in a copy), with no thread left but the
        reader, which is blocked on the pipe from the trainer or queueing what it read, and holds no lock a
        copy takes (a copy only draws and writes its PNG). Not where MLflow is loaded: it may run threads of
        its own (then ``fork_is_safe`` says no)."""
        from tracking.runs import draw_summary
        from tracking.writer.launch import fork_is_safe

        if self.drawer is not None:
            answer = self.drawer.draw(request)
            if answer is not None:
                ok, value = answer
                if not ok:
                    raise value
                return value
            log.warning("the summary's drawer is gone; drawing the summary here")
            self.drawer = None
        if self.warming is not None:
            self.warming.join()
        fork = fork_is_safe(besides=[t for t in (self.reader,) if t is not None])
        return draw_summary(request, self.client(request.sweep["tracking_uri"]), fork=fork)

    def handle(self, request) -> Any:
        handler = self.handlers.get(type(request))
        if handler is None:
            raise ValueError(f"unknown request {type(request).__name__}")
        return handler(request)

    def reply(self, token: int, ok: bool, value: Any) -> None:
        try:
            data = pickle.dumps(Reply(token, ok, value), protocol=pickle.HIGHEST_PROTOCOL)
        except Exception:  # an exception that does not pickle
            data = pickle.dumps(Reply(token, False, TrackingError(redact(str(value))[:500])))
        with contextlib.suppress(OSError):  # nobody listens any more: keep writing what was received
            self.out.write(data)
            self.out.flush()

    @staticmethod
    def warm_up() -> None:
        """Load what the parent run's summary needs (matplotlib and pandas, ~0.7 s), in a thread beside the
        writing, where no drawer could be forked (:mod:`tracking.writer.drawer`). Not MLflow where this
        process has not loaded it: on an embedded store the summary reads and uploads without it
        (:mod:`tracking.run_reads`), and loading it here would take ~2.4 s of CPU beside the trials for
        nothing.

        Meanwhile the interpreter hands the GIL over every ``WARM_SWITCH_SECONDS`` instead of every 5 ms:
        each of a write's SQLite calls lets the GIL go and must get it back from the importing thread, and
        at 5 ms a turn a trial's end waited 27-77 ms instead of ~5 (the first trials of every sweep)."""
        default = sys.getswitchinterval()
        sys.setswitchinterval(WARM_SWITCH_SECONDS)
        try:
            import matplotlib.backends.backend_agg
            import matplotlib.figure  # noqa: F401
            import pandas  # noqa: F401 — the trials table (tracking.select), ~0.23 s at the end otherwise

            import tracking.summary  # noqa: F401
        except Exception as e:  # drawn without the head start, or the error shows when it is drawn
            log.debug("warm-up failed: %s", e)
        finally:
            sys.setswitchinterval(default)

    def serve(self, inbox: queue.Queue) -> None:
        while True:
            try:
                envelopes = [inbox.get(timeout=self.wait_seconds())]
            except queue.Empty:
                envelopes = []
            while True:  # merge what queued up while we were writing
                try:
                    envelopes.append(inbox.get_nowait())
                except queue.Empty:
                    break
            for envelope in envelopes:
                if envelope is None:  # the trainer is gone: write what we have and leave
                    self.write_all()
                    return
                message = envelope.message
                self.receive(message)
                if isinstance(message, Log):
                    continue
                # Everything received before the request is written before it is answered; a Finish writes
                # its own run's values itself, with the run's end.
                self.write_all(but=(message.uri, message.run_id) if isinstance(message, Finish) else None)
                try:
                    ok, value = True, self.handle(message)
                except Exception as e:
                    ok, value = False, e
                if envelope.token:
                    self.reply(envelope.token, ok, value)
                if isinstance(message, Stop):
                    return
            self.write_due()


def _read(stream, inbox: queue.Queue) -> None:
    try:
        while True:
            envelope = pickle.load(stream)
            if not isinstance(envelope, Envelope):
                raise TypeError(f"not a writer message: {type(envelope).__name__}")
            inbox.put(envelope)
    except Exception:  # EOF, or a message cut short by the trainer's exit
        inbox.put(None)


def main() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    code, out, server = 0, None, None
    try:
        out = answer_channel()
        logging.basicConfig(level=logging.WARNING, format="tracking writer: %(levelname)s %(message)s")
        from tracking.redact import install_log_redaction

        install_log_redaction()
        inbox: queue.Queue = queue.Queue()
        server = _Server(out)
        uri = os.environ.get(OPEN_VAR)
        if not writes_without_mlflow(uri):
            import mlflow  # noqa: F401 — before the first message, not while the trainer waits for an answer
        warm = bool(os.environ.get(WARM_VAR, "1"))  # the process that started this one will ask for a summary
        if warm:  # forked while this process has one thread and no store open
            server.drawer = Drawer.start()
        server.reader = threading.Thread(target=_read, args=(os.fdopen(0, "rb", closefd=False), inbox), daemon=True)
        server.reader.start()
        if uri:  # the store created (up to 2 s for a new SQLite file), and opened by MLflow if it writes there
            try:
                client = server.client(uri)
                if "mlflow" in sys.modules:
                    getattr(client, "real", lambda: client)()  # its engine and schema check
            except Exception as e:  # shows, and is handled, at the first write
                log.debug("could not open %s yet: %s", redact(uri), e)
        server.reply(UP, True, "up")
        if warm and server.drawer is None:  # no fork here: loaded by a thread of this process
            server.warming = threading.Thread(target=server.warm_up, daemon=True)
            server.warming.start()
        server.serve(inbox)
    except BaseException:
        log.exception("tracking writer failed")
        code = 1
    finally:
        if server is not None and server.drawer is not None:
            server.drawer.close()
        # The trainer may have closed its end already (it was interrupted, or gave up waiting): a reply
        # still buffered then cannot be flushed, and nobody needs it.
        if out is not None:
            with contextlib.suppress(OSError):
                out.close()
        logging.shutdown()
        # Not a normal exit: the reader thread may be blocked on stdin, and MLflow may have started
        # non-daemon threads that would keep an orphaned writer alive.
        os._exit(code)
