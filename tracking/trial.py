"""TrialRun: one trial's MLflow child run, fed from the epoch callback and closed with the trial's fate.

Values are buffered and sent once every ``flush_every`` epochs (default: every epoch, so the UI shows live
progress): to the process's writer (:mod:`tracking.writer`), which puts them in the store with
``log_batch`` on another core, or with ``log_batch`` from this process when there is no writer. Per-epoch
curves use ``step = epoch``; per-iteration curves use ``step = iteration``, numbered continuously from 1
across epochs.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from tracking import schema
from tracking.batch import is_transient, log_batched, tag_value, with_retries
from tracking.errors import TrackingError
from tracking.redact import redact
from tracking.writer import Writer, WriterGone

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from optcore.history import EpochRecord, History
    from tracking.datasets import DatasetRecord

# (key, value, timestamp, step), (key, value), (key, value): cheap to build and to pickle for the writer.
MetricT = tuple[str, float, int, int]
Pair = tuple[str, str]

log = logging.getLogger(__name__)

MAX_WAITING_VALUES = 50_000  # buffered while the writer starts; beyond this, logged from this process


def _now_ms() -> int:
    return int(time.time() * 1000)


class TrialRun:
    """Logs one trial to its child run. Safe to share between threads; one object per trial.

    ``logged_epochs`` and ``logged_iterations`` are what the run already holds (non-zero when an existing
    run is reused): epochs and iterations up to them are not sent again, so no curve gets duplicate steps.
    With a ``writer`` (and the ``tracking_uri`` of ``client``) values go through the writer process while
    ``client`` is the one given here; a run whose ``client`` is replaced logs through the new one directly.
    Values sent to the writer are kept until it confirms them, so if it dies they are sent again from here
    (MLflow drops a metric point identical to one it holds).
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
        writer: Writer | None = None,
        tracking_uri: str | None = None,
    ):
        if not isinstance(flush_every, int) or flush_every < 1:
            raise ValueError(f"flush_every must be a whole number of epochs >= 1, got {flush_every!r}")
        self.client, self.run_id, self.number = client, run_id, number
        self.metric_name, self.flush_every = metric_name, flush_every
        self.finished = False
        self._last_epoch = logged_epochs
        self._iterations = logged_iterations
        self._buffer: list[MetricT] = []
        self._pairs: tuple[list[Pair], list[Pair], list[DatasetRecord]] = ([], [], [])  # params, tags, inputs
        self._pending_epochs = 0
        self._lock = threading.Lock()
        self._writer = writer if writer is not None and tracking_uri is not None else None
        self._writer_client, self._uri = client, tracking_uri
        # Sent to the writer, not yet confirmed to be in the store: metrics, params, tags, dataset inputs.
        self._sent: tuple[list[MetricT], list[Pair], list[Pair], list[DatasetRecord]] = ([], [], [], [])

    def __repr__(self) -> str:
        return f"TrialRun(number={self.number}, run_id={self.run_id!r}, epochs={self._last_epoch})"

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
            if self._pending_epochs >= self.flush_every and not self._writer_starting():
                self._flush_locked(raise_errors=False)

    def flush(self) -> bool:
        """Put buffered values in the store now; False (values kept for the next try) if it is unavailable.

        Raises TrackingError when the store refuses them.
        """
        with self._lock:
            if not self._flush_locked(raise_errors=False):
                return False
            writer = self._channel()
            if writer is None:
                return True
            try:
                return writer.call("sync", (self._uri, self.run_id))
            except WriterGone:
                self._drop_writer()
                return self._flush_locked(raise_errors=False)
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
            self._pairs[0].extend(params)
            self._pairs[1].extend(tags)
            self._pairs[2].extend(inputs)
            if not self._writer_starting():
                self._flush_locked(raise_errors=False)

    def finish(self, state: str, history: History, reason: str | None = None) -> None:
        """Close the run: curves not yet sent, summary metrics, state tags, and the run status.

        ``state`` is ``complete``/``completed`` (status FINISHED), ``pruned`` (KILLED, partial curve kept,
        tag ``pruned_at_epoch``) or ``fail``/``failed`` (FAILED, ``reason`` in tag ``fail_reason``); Optuna's
        spellings in any case are accepted. Epochs of ``history`` that ``log_epoch`` did not see are logged
        here, so a caller may skip ``log_epoch`` entirely. A second call does nothing.
        Raises ValueError for another state and TrackingError when the store fails after retries.
        """
        trial_state, status = schema.trial_status(state)
        with self._lock:
            if self.finished:
                log.debug("trial %d: run %s already finished", self.number, self.run_id)
                return
            self._add_history(history)
            stamp = _now_ms()
            self._buffer += [_metric(k, v, stamp, 0) for k, v in history.summary().items()]
            tags = {schema.TRIAL_STATE: trial_state}
            if status == "KILLED":
                tags[schema.PRUNED_AT_EPOCH] = str(history.epoch[-1] if history.epoch else 0)
            if status == "FAILED":
                tags[schema.FAIL_REASON] = tag_value(reason or "no reason given")
            try:
                if not self._finish_via_writer(list(tags.items()), status):
                    self._flush_locked(raise_errors=True, tags=tags)
                    with_retries(self.client.set_terminated, self.run_id, status=status, what=f"end run {self.run_id}")
            except Exception as e:
                raise TrackingError(
                    f"could not record trial {self.number} in MLflow run {self.run_id}: "
                    f"{type(e).__name__}: {redact(str(e))[:500]}"
                ) from None
            self.finished = True

    def _add_epoch(self, epoch: int, values: dict[str, float], costs: Sequence[float], ewa: Sequence[float]) -> None:
        stamp = _now_ms()
        self._buffer += [_metric(k, v, stamp, epoch) for k, v in values.items()]
        first = self._iterations + 1
        self._buffer += [_metric(schema.MINIBATCH_COST, v, stamp, first + i) for i, v in enumerate(costs)]
        self._buffer += [_metric(schema.MINIBATCH_COST_EWA, v, stamp, first + i) for i, v in enumerate(ewa)]
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
            self._buffer += [_metric(schema.MINIBATCH_COST, v, stamp, first + i) for i, v in enumerate(costs)]
            self._buffer += [_metric(schema.MINIBATCH_COST_EWA, v, stamp, first + i) for i, v in enumerate(ewa)]
            self._iterations += max(len(costs), len(ewa))

    def _writer_starting(self) -> bool:
        """True while the writer is still loading MLflow and opening the store (1-5 s after it starts) and
        little is buffered.

        Values then wait for it rather than cost this process a synchronous ``log_batch`` (~8 ms of CPU on
        SQLite) per epoch; live curves appear a second or two later. ``finish`` and ``flush`` never wait.
        """
        writer = self._writer
        return (
            writer is not None
            and not writer.broken
            and self.client is self._writer_client
            and len(self._buffer) < MAX_WAITING_VALUES
            and not writer.ready()
        )

    def _channel(self) -> Writer | None:
        """The writer, unless there is none, it is still starting, it broke, or ``client`` was replaced.

        Going from direct logging to the writer is safe at any flush (what was logged directly is in the
        store); going back needs ``_drop_writer``.
        """
        writer = self._writer
        if writer is None or self.client is not self._writer_client:
            return None
        if writer.broken:
            self._drop_writer()
            return None
        return writer if writer.ready() else None

    def _drop_writer(self) -> None:
        """Log from this process from now on, starting with what the writer did not confirm."""
        log.warning("trial %d: the tracking writer is gone; logging from this process", self.number)
        self._writer = None
        self._unsend()

    def _unsend(self) -> None:
        """Put what the writer did not confirm back in front of the buffers, to be sent again."""
        self._buffer[:0] = self._sent[0]
        for pending, sent in zip(self._pairs, self._sent[1:], strict=True):
            pending[:0] = sent
        for sent in self._sent:
            sent.clear()

    def _finish_via_writer(self, tags: list[Pair], status: str) -> bool:
        """True when the writer wrote everything and ended the run; False when there is no writer (any more).
        Raises TrackingError when the store failed there; the values are kept to be sent again."""
        writer = self._channel()
        if writer is None:
            return False
        self._flush_locked(raise_errors=True)  # buffered values go first, in order
        writer = self._channel()
        if writer is None:
            return False
        try:
            writer.call("finish", (self._uri, self.run_id, self._buffer, tags, status))
        except WriterGone:
            self._drop_writer()
            return False
        except TrackingError:
            self._unsend()
            raise
        self._buffer, self._pending_epochs = [], 0
        for sent in self._sent:
            sent.clear()
        return True

    def _flush_locked(self, raise_errors: bool, tags: dict[str, str] | None = None) -> bool:
        params, run_tags, inputs = self._pairs
        if not self._buffer and not params and not run_tags and not inputs and not tags:
            return True
        writer = None if tags else self._channel()  # final tags come with finish, which has its own path
        if writer is not None:
            try:
                writer.send("log", (self._uri, self.run_id, self._buffer, params, run_tags, inputs))
            except WriterGone:
                self._drop_writer()
            else:
                for sent, values in zip(self._sent, (self._buffer, params, run_tags, inputs), strict=True):
                    sent.extend(values)
                self._buffer, self._pairs, self._pending_epochs = [], ([], [], []), 0
                return True
        try:
            _log(self.client, self.run_id, self._buffer, params, [*run_tags, *(tags or {}).items()], inputs)
        except Exception as e:
            if raise_errors:
                raise
            if not is_transient(e):
                raise TrackingError(
                    f"could not log trial {self.number} to MLflow run {self.run_id}: "
                    f"{type(e).__name__}: {redact(str(e))[:500]}"
                ) from None
            log.warning(
                "trial %d: MLflow unavailable (%s); %d values kept for the next flush",
                self.number,
                redact(str(e))[:200],
                len(self._buffer),
            )
            return False
        self._buffer, self._pairs, self._pending_epochs = [], ([], [], []), 0
        return True


def _metric(key: str, value: float, timestamp: int, step: int) -> MetricT:
    return (key, float(value), timestamp, step)


def _log(
    client: MlflowClient,
    run_id: str,
    metrics: Sequence[MetricT],
    params: Sequence[Pair],
    tags: Sequence[Pair],
    inputs: Sequence[DatasetRecord] = (),
):
    from mlflow.entities import Metric, Param, RunTag

    from tracking.datasets import log_dataset_inputs

    log_batched(
        client,
        run_id,
        metrics=[Metric(*m) for m in metrics],
        params=[Param(*p) for p in params],
        tags=[RunTag(*t) for t in tags],
    )
    log_dataset_inputs(client, run_id, inputs)
