"""TrialRun: one trial's MLflow child run, fed from the epoch callback and closed with the trial's fate.

Values are buffered and handed to the run's transport (:mod:`tracking.transport`) once every
``flush_every`` epochs (default: every epoch, so the UI shows live progress): the process's writer, which
puts them in the store with ``log_batch`` on another core, or this process's own client when there is no
writer (or while it starts, or after it died). Per-epoch curves use ``step = epoch``; per-iteration curves
use ``step = iteration``, numbered continuously from 1 across epochs.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from tracking import schema
from tracking.errors import TrackingError
from tracking.mlflow_requests import is_transient, tag_value
from tracking.redact import redact
from tracking.schema import Outcome
from tracking.transport import DirectTransport, Transport
from tracking.writer.client import WriterGone
from tracking.writer.messages import MetricT, Pair, RunValues

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from optcore.history import EpochRecord, History
    from tracking.datasets import DatasetRecord

log = logging.getLogger(__name__)

MAX_WAITING_VALUES = 50_000  # buffered while the writer starts; beyond this, logged from this process


def _now_ms() -> int:
    return int(time.time() * 1000)


class TrialRun:
    """Logs one trial to its child run. Safe to share between threads; one object per trial.

    ``logged_epochs`` and ``logged_iterations`` are what the run already holds (non-zero when an existing
    run is reused): epochs and iterations up to them are not sent again, so no curve gets duplicate steps.
    Values go through ``transport`` (default: ``client``, from this process); a run whose ``client`` is
    replaced logs through the new one directly. Values a transport did not confirm are sent again through
    ``client`` when it fails (MLflow drops a metric point identical to one it holds).
    """

    def __init__(
        self,
        client: MlflowClient,
        run_id: str,
        number: int,
        *,
        metric_name: str = "val_accuracy",
        flush_every: int = 1,
        logged_epochs: int = 0,
        logged_iterations: int = 0,
        transport: Transport | None = None,
    ):
        if not isinstance(flush_every, int) or flush_every < 1:
            raise ValueError(f"flush_every must be a whole number of epochs >= 1, got {flush_every!r}")
        self.run_id, self.number = run_id, number
        self.metric_name, self.flush_every = metric_name, flush_every
        self.finished = False
        self._last_epoch = logged_epochs
        self._iterations = logged_iterations
        self._buffer = RunValues()  # not yet handed to a transport
        self._pending_epochs = 0
        self._lock = threading.Lock()
        self._direct = DirectTransport(client)
        self._transport: Transport = transport if transport is not None else self._direct

    def __repr__(self) -> str:
        return f"TrialRun(number={self.number}, run_id={self.run_id!r}, epochs={self._last_epoch})"

    @property
    def client(self) -> MlflowClient:
        """The client this process logs through when it logs itself."""
        return self._direct.client

    @client.setter
    def client(self, client: MlflowClient) -> None:
        """Log through ``client`` from now on, directly, starting with what the transport did not confirm."""
        with self._lock:
            self._buffer.prepend(self._transport.unconfirmed())
            self._direct = self._transport = DirectTransport(client)

    @property
    def transport(self) -> Transport:
        """Where the run's values go now."""
        return self._transport

    @property
    def logged_epochs(self) -> int:
        """The last epoch whose values were buffered or sent."""
        return self._last_epoch

    def log_epoch(
        self,
        record: EpochRecord,
        minibatch_costs: Sequence[float] = (),
        minibatch_ewa: Sequence[float] = (),
    ) -> None:
        """Buffer one epoch's values (and its mini-batch costs), flushing every ``flush_every`` epochs.

        ``minibatch_costs`` and ``minibatch_ewa`` hold this epoch's per-iteration values (either may be empty;
        when both are given they have one value per iteration). Never raises for a store that is briefly
        unavailable: the values stay buffered and go with the next flush. Raises ValueError on mismatched
        mini-batch lengths.
        """
        if minibatch_costs and minibatch_ewa and len(minibatch_costs) != len(minibatch_ewa):
            raise ValueError(
                f"epoch {record.epoch}: {len(minibatch_costs)} mini-batch costs but {len(minibatch_ewa)} "
                "averaged costs; give one of each per iteration"
            )
        with self._lock:
            if record.epoch <= self._last_epoch:
                return  # already in the run (a reused run, or the same epoch logged twice)
            self._add_epoch(record.epoch, record.values(self.metric_name), minibatch_costs, minibatch_ewa)
            if self._pending_epochs >= self.flush_every and not self._holding():
                self._flush_locked()

    def flush(self) -> bool:
        """Put buffered values in the store now; False (values kept for the next try) if it is unavailable.

        Raises TrackingError when the store refuses them.
        """
        with self._lock:
            if not self._flush_locked():
                return False
            try:
                return self._route().sync(self.run_id)
            except WriterGone:
                self._drop_writer()
                return self._flush_locked()
            except TrackingError as e:
                raise TrackingError(f"could not log trial {self.number} to MLflow run {self.run_id}: {e}") from None

    def log_now(
        self, params: Sequence[Pair] = (), tags: Sequence[Pair] = (), inputs: Sequence[DatasetRecord] = ()
    ) -> None:
        """Send ``params`` and ``tags`` (already ``param_value``/``tag_value``) and dataset ``inputs`` with any
        buffered values, now.

        Through the writer this does not wait for the store. Raises like ``log_epoch``'s flush.
        """
        with self._lock:
            self._buffer.extend(RunValues([], list(params), list(tags), list(inputs)))
            if not self._holding():
                self._flush_locked()

    def finish(self, outcome: Outcome | str, history: History, reason: str | None = None) -> None:
        """Close the run: curves not yet sent, summary metrics, state tags, and the run status.

        ``outcome`` is an :class:`~tracking.schema.Outcome` (or its name; ``completed``, ``failed`` and
        Optuna's spellings in any case are accepted): COMPLETE (status FINISHED), PRUNED (KILLED, partial
        curve kept, tag ``pruned_at_epoch``) or FAIL (FAILED, ``reason`` in tag ``fail_reason``). Epochs of
        ``history`` that ``log_epoch`` did not see are logged here, so a caller may skip ``log_epoch``
        entirely. Returns once the run's end is in the store. A second call does nothing.
        Raises ValueError for another outcome and TrackingError when the store fails after retries.
        """
        outcome = Outcome.parse(outcome)
        with self._lock:
            if self.finished:
                log.debug("trial %d: run %s already finished", self.number, self.run_id)
                return
            self._add_history(history)
            stamp = _now_ms()
            final = RunValues([_metric(k, v, stamp, 0) for k, v in history.summary().items()])
            final.tags.append((schema.TRIAL_STATE, outcome.value))
            if outcome is Outcome.PRUNED:
                final.tags.append((schema.PRUNED_AT_EPOCH, str(history.epoch[-1] if history.epoch else 0)))
            if outcome is Outcome.FAIL:
                final.tags.append((schema.FAIL_REASON, tag_value(reason or "no reason given")))
            self._end_locked(final, outcome.status)

    def end(
        self,
        outcome: Outcome | str,
        metrics: Sequence[tuple[str, float, int]] = (),
        tags: dict[str, Any] | None = None,
    ) -> None:
        """Close the run with values of the caller's own (``(key, value, step)`` metrics, ``tags``) instead
        of a training history: tag ``trial_state`` and the status come from ``outcome``. Buffered values go
        first. Returns once the run's end is in the store; a second call does nothing. Raises like ``finish``.
        """
        outcome = Outcome.parse(outcome)
        with self._lock:
            if self.finished:
                return
            stamp = _now_ms()
            final = RunValues([_metric(k, v, stamp, step) for k, v, step in metrics])
            final.tags += [(k, tag_value(v)) for k, v in (tags or {}).items()]
            final.tags.append((schema.TRIAL_STATE, outcome.value))
            self._end_locked(final, outcome.status)

    def _add_epoch(self, epoch: int, values: dict[str, float], costs: Sequence[float], ewa: Sequence[float]) -> None:
        stamp = _now_ms()
        self._buffer.metrics += [_metric(k, v, stamp, epoch) for k, v in values.items()]
        first = self._iterations + 1
        self._buffer.metrics += [_metric(schema.MINIBATCH_COST, v, stamp, first + i) for i, v in enumerate(costs)]
        self._buffer.metrics += [_metric(schema.MINIBATCH_COST_EWA, v, stamp, first + i) for i, v in enumerate(ewa)]
        self._iterations += max(len(costs), len(ewa))
        self._last_epoch = epoch
        self._pending_epochs += 1

    def _add_history(self, history: History) -> None:
        curves = history.curves()
        for i, epoch in enumerate(history.epoch):
            if epoch > self._last_epoch:
                self._add_epoch(epoch, {k: v[i] for k, v in curves.items()}, (), ())
        # Mini-batch values are numbered from iteration 1 in the history too, so the unsent ones are the tail.
        rest = slice(self._iterations, None)
        costs, ewa = history.minibatch_cost[rest], history.minibatch_cost_ewa[rest]
        if costs or ewa:
            first = self._iterations + 1
            stamp = _now_ms()
            self._buffer.metrics += [_metric(schema.MINIBATCH_COST, v, stamp, first + i) for i, v in enumerate(costs)]
            self._buffer.metrics += [_metric(schema.MINIBATCH_COST_EWA, v, stamp, first + i) for i, v in enumerate(ewa)]
            self._iterations += max(len(costs), len(ewa))

    def _holding(self) -> bool:
        """True while the writer is still loading MLflow and opening the store (1-5 s after it starts) and
        little is buffered.

        Values then wait for it rather than cost this process a synchronous ``log_batch`` (~8 ms of CPU on
        SQLite) per epoch; live curves appear a second or two later. ``finish`` and ``flush`` never wait.
        """
        return self._transport.starting() and len(self._buffer.metrics) < MAX_WAITING_VALUES

    def _route(self) -> Transport:
        """The transport to use now: this process's own client while the writer is still starting (going
        from direct logging to the writer is safe at any flush: what was logged directly is in the store)."""
        return self._direct if self._transport.starting() else self._transport

    def _drop_writer(self) -> None:
        """Log from this process from now on, starting with what the writer did not confirm."""
        log.warning("trial %d: the tracking writer is gone; logging from this process", self.number)
        self._buffer.prepend(self._transport.unconfirmed())
        self._transport = self._direct

    def _deliver(self, send: Callable[[Transport], None]) -> None:
        """``send`` through the route; if the writer is gone, through this process, with what it lost."""
        try:
            send(self._route())
        except WriterGone:
            self._drop_writer()
            send(self._transport)

    def _end_locked(self, final: RunValues, status: str) -> None:
        def send(transport: Transport) -> None:
            values = RunValues()
            values.extend(self._buffer)
            values.extend(final)
            transport.finish(self.run_id, values, status)

        try:
            self._deliver(send)
        except Exception as e:
            self._buffer.prepend(self._transport.unconfirmed())  # kept, to be sent again
            raise TrackingError(
                f"could not record trial {self.number} in MLflow run {self.run_id}: "
                f"{type(e).__name__}: {redact(str(e))[:500]}"
            ) from None
        self._buffer, self._pending_epochs = RunValues(), 0
        self.finished = True

    def _flush_locked(self) -> bool:
        """Hand the buffer over; False (values kept) when the store is unavailable for now."""
        if not self._buffer:
            return True
        try:
            self._deliver(lambda transport: transport.log(self.run_id, self._buffer))
        except Exception as e:
            if not is_transient(e):
                raise TrackingError(
                    f"could not log trial {self.number} to MLflow run {self.run_id}: "
                    f"{type(e).__name__}: {redact(str(e))[:500]}"
                ) from None
            log.warning(
                "trial %d: MLflow unavailable (%s); %d values kept for the next flush",
                self.number,
                redact(str(e))[:200],
                len(self._buffer.metrics),
            )
            return False
        self._buffer, self._pending_epochs = RunValues(), 0
        return True


def _metric(key: str, value: float, timestamp: int, step: int) -> MetricT:
    return (key, float(value), timestamp, step)
