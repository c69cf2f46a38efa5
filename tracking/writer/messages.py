"""The writer protocol: what a training process sends its writer process, and what comes back.

Every message is a frozen dataclass, pickled whole through the pipe as an :class:`Envelope` (the token of a
request that waits for an answer, 0 for one that does not) and answered with a :class:`Reply` (token 0: the
writer is up). Values are plain tuples (:class:`RunValues`), cheap to build and to pickle; the writer turns
them into MLflow entities. Imports nothing of MLflow: both ends load this module first.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tracking.datasets import DatasetRecord
    from tracking.plots import ParetoFront

# The writer writes a run's values at most this often (and at once before answering any request). The UI
# still sees a trial progress every second, and short epochs cost the store (and, with several workers, the
# cores they share with the MLflow server) one request per second instead of one per epoch.
LINGER_SECONDS = 1.0

# (key, value, timestamp, step), (key, value), (key, value)
MetricT = tuple[str, float, int, int]
Pair = tuple[str, str]


@dataclass
class RunValues:
    """Values for one run not yet in the store: metrics, params, tags and dataset inputs, in sending order."""

    metrics: list[MetricT] = field(default_factory=list)
    params: list[Pair] = field(default_factory=list)
    tags: list[Pair] = field(default_factory=list)
    inputs: list[DatasetRecord] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.metrics or self.params or self.tags or self.inputs)

    def extend(self, other: RunValues) -> None:
        self.metrics += other.metrics
        self.params += other.params
        self.tags += other.tags
        self.inputs += other.inputs

    def prepend(self, other: RunValues) -> None:
        """Put ``other`` in front (values sent elsewhere first, sent again before the newer ones)."""
        self.metrics[:0] = other.metrics
        self.params[:0] = other.params
        self.tags[:0] = other.tags
        self.inputs[:0] = other.inputs

    def take(self) -> RunValues:
        """A copy holding everything; this one is emptied."""
        taken = RunValues(self.metrics, self.params, self.tags, self.inputs)
        self.metrics, self.params, self.tags, self.inputs = [], [], [], []
        return taken


# --- messages: the first one is sent without waiting, the others are requests answered in order ----------


@dataclass(frozen=True)
class Log:
    """Values for a run, written within ``LINGER_SECONDS`` (all that arrived meanwhile in one write)."""

    uri: str
    run_id: str
    values: RunValues


@dataclass(frozen=True)
class Sync:
    """Write the run's values now. Answer: True when written, False when the store is unavailable for now."""

    uri: str
    run_id: str


@dataclass(frozen=True)
class Finish:
    """Write the run's values with these last ones, then end the run with ``status``. Answer: None; an
    error when the store failed (the values sent for the run are then dropped there: the sender resends)."""

    uri: str
    run_id: str
    values: RunValues
    status: str


@dataclass(frozen=True)
class Barrier:
    """Answer (None) once everything sent before is written or failed."""


@dataclass(frozen=True)
class Summary:
    """Rewrite a sweep's parent-run summary (see ``SweepRun.update_summary``). Answer: the trials table, or
    None when not ``table`` (unpickling it imports pandas in the asking process)."""

    sweep: dict[str, Any]  # SweepRun's fields without its client
    spec: Any
    metric: str
    direction: str
    table: bool = True
    front: ParetoFront | None = None  # two objectives: the Pareto front to plot with the summary


@dataclass(frozen=True)
class Status:
    """Answer: which of MLflow, matplotlib and pandas the writer has loaded (``{"mlflow": bool, ...}``), for
    diagnostics and tests."""


@dataclass(frozen=True)
class Stop:
    """Answer (None) once everything sent before is written, then exit."""


Request = Sync | Finish | Barrier | Summary | Status | Stop
Message = Log | Request


@dataclass(frozen=True)
class Envelope:
    token: int  # 0: no answer wanted
    message: Message


@dataclass(frozen=True)
class Reply:
    token: int  # 0: the writer is up (the only message sent unasked)
    ok: bool
    value: Any  # the answer, or the exception the request raised


UP = 0
