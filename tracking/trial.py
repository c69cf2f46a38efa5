"""TrialRun: one trial's MLflow child run, fed from the epoch callback and closed with the trial's fate.

Values are buffered and sent with ``log_batch`` once every ``flush_every`` epochs (default: every epoch, so
the UI shows live progress). Per-epoch curves use ``step = epoch``; per-iteration curves use
``step = iteration``, numbered continuously from 1 across epochs.
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

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities import Metric

    from optcore.history import EpochRecord, History

log = logging.getLogger(__name__)


def _now_ms() -> int:
    return int(time.time() * 1000)


class TrialRun:
    """Logs one trial to its child run. Safe to share between threads; one object per trial.

    ``logged_epochs`` and ``logged_iterations`` are what the run already holds (non-zero when an existing
    run is reused): epochs and iterations up to them are not sent again, so no curve gets duplicate steps.
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
    ):
        if not isinstance(flush_every, int) or flush_every < 1:
            raise ValueError(f"flush_every must be a whole number of epochs >= 1, got {flush_every!r}")
        self.client, self.run_id, self.number = client, run_id, number
        self.metric_name, self.flush_every = metric_name, flush_every
        self.finished = False
        self._last_epoch = logged_epochs
        self._iterations = logged_iterations
        self._buffer: list[Metric] = []
        self._pending_epochs = 0
        self._lock = threading.Lock()

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
            values = {
                "train_cost": record.train_cost,
                "val_cost": record.val_cost,
                self.metric_name: record.val_metric,
                "lr": record.lr,
                "epoch_seconds": record.seconds,
            }
            self._add_epoch(record.epoch, values, minibatch_costs, minibatch_ewa)
            if self._pending_epochs >= self.flush_every:
                self._flush_locked(raise_errors=False)

    def flush(self) -> bool:
        """Send buffered values now; False (and values kept for the next try) if the store is unavailable."""
        with self._lock:
            return self._flush_locked(raise_errors=False)

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

    def _flush_locked(self, raise_errors: bool, tags: dict[str, str] | None = None) -> bool:
        if not self._buffer and not tags:
            return True
        from mlflow.entities import RunTag

        run_tags = [RunTag(k, v) for k, v in (tags or {}).items()]
        try:
            log_batched(self.client, self.run_id, metrics=self._buffer, tags=run_tags)
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
        self._buffer = []
        self._pending_epochs = 0
        return True


def _metric(key: str, value: float, timestamp: int, step: int) -> Metric:
    from mlflow.entities import Metric

    return Metric(key, float(value), timestamp, step)
