"""Where a trial's writes go: the process's writer (:mod:`tracking.writer`) or this process's own client.

A :class:`Transport` takes a run's values (:class:`~tracking.writer.messages.RunValues`) and ends the run.
:class:`WriterTransport` hands them to the writer process without waiting (only ``sync`` and ``finish``
wait) and keeps what it sent until an answer shows it is in the store, so that a trial whose writer dies
sends it again through a :class:`DirectTransport`, which writes with ``log_batch`` from this process.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from tracking import run_writes
from tracking.writer.client import Writer, WriterGone
from tracking.writer.messages import Finish, Log, RunValues, Sync

if TYPE_CHECKING:
    from mlflow import MlflowClient


class Transport(Protocol):
    """Where one run's values go. ``WriterGone`` from a method means: use another transport, starting
    with :meth:`unconfirmed`."""

    def starting(self) -> bool:
        """True while values are better held than sent (the writer is still loading MLflow)."""
        ...

    def log(self, run_id: str, values: RunValues) -> None:
        """Hand ``values`` over; may return before they are in the store. Raises the store's errors when
        it writes them itself."""
        ...

    def sync(self, run_id: str) -> bool:
        """True once everything handed over is in the store; False when the store is unavailable for now
        (values kept). TrackingError when the store refused some."""
        ...

    def finish(self, run_id: str, values: RunValues, status: str) -> None:
        """Write everything handed over and ``values``, then end the run with ``status``; returns once it is
        in the store. Raises when it is not (the values handed over are then in :meth:`unconfirmed`)."""
        ...

    def unconfirmed(self) -> RunValues:
        """Values handed over that may not be in the store, to be sent again elsewhere; forgets them."""
        ...


def write_values(client: MlflowClient, run_id: str, values: RunValues, end: str | None = None) -> bool:
    """Write ``values`` to the run (:func:`tracking.run_writes.log_values`: one transaction on an embedded
    store, else as few ``log_batch`` requests as MLflow's limits allow); dataset inputs after them (what is
    left is sent again on a transient failure; MLflow keeps one copy of each). ``end``: the status to end
    the run with in the values' transaction where that is one (see ``log_values``; not with inputs, which
    come after the values); returns whether it was ended so."""
    from tracking.datasets import log_dataset_inputs

    ended = run_writes.log_values(
        client, run_id, values.metrics, values.params, values.tags, end=None if values.inputs else end
    )
    if values.inputs:
        log_dataset_inputs(client, run_id, values.inputs)
    return ended


class DirectTransport:
    """Writes from this process, through ``client``, before returning."""

    def __init__(self, client: MlflowClient) -> None:
        self.client = client

    def starting(self) -> bool:
        return False

    def log(self, run_id: str, values: RunValues) -> None:
        write_values(self.client, run_id, values)

    def sync(self, run_id: str) -> bool:
        return True  # log wrote everything before returning

    def finish(self, run_id: str, values: RunValues, status: str) -> None:
        if not write_values(self.client, run_id, values, end=status):
            run_writes.set_terminated(self.client, run_id, status)

    def unconfirmed(self) -> RunValues:
        return RunValues()


class WriterTransport:
    """Sends to the writer process at ``tracking_uri``; keeps what it sent until an answer confirms it."""

    def __init__(self, writer: Writer, tracking_uri: str) -> None:
        self.writer, self.uri = writer, tracking_uri
        self._sent = RunValues()

    def starting(self) -> bool:
        return not self.writer.broken and not self.writer.ready()

    def log(self, run_id: str, values: RunValues) -> None:
        self._check()
        self.writer.send(Log(self.uri, run_id, values))
        self._sent.extend(values)

    def sync(self, run_id: str) -> bool:
        self._check()
        written = self.writer.call(Sync(self.uri, run_id))
        if written:
            self._sent = RunValues()
        return written

    def finish(self, run_id: str, values: RunValues, status: str) -> None:
        # Waits for the writer's answer, and must: the caller tells Optuna how the trial ended next, and
        # that has to come after the run's end is in MLflow. Were it the other way round, a kill of both
        # processes in between (a Slurm job cancelled, the machine lost) would leave Optuna's trial finished
        # and its run RUNNING without its last values; and a store that refuses the values must stop the
        # trial from counting. In this order, a kill leaves Optuna's trial RUNNING, and the next run fails
        # it in both stores and trains it again (sweeps.study.owners).
        self._check()
        self.writer.call(Finish(self.uri, run_id, values, status))
        self._sent = RunValues()

    def unconfirmed(self) -> RunValues:
        return self._sent.take()

    def _check(self) -> None:
        if self.writer.broken:
            raise WriterGone("the tracking writer process was stopped")
