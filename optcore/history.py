"""The record of one training run: per-epoch curves and, optionally, per-iteration costs.

Epochs are numbered from 1 (the first pass over the data is epoch 1); the learning-rate schedule sees
step ``t = epoch - 1`` (or the iteration count, when it counts iterations), so epoch 1 trains at ``lr(0)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class EpochRecord:
    """What one epoch produced; handed to the epoch callback and appended to the History.

    ``train_cost`` is the mean of the epoch's mini-batch costs J_B weighted by batch size (what was
    minimised): the mean data loss over the epoch's rows plus the L2 term (λ/2m)·Σ‖W‖² once, averaged over
    the steps, so it is on the scale of the full-batch J whatever the batch size; ``val_cost`` is the data
    loss on the validation set (no L2 term), so trials with different ``l2`` compare fairly. ``val_metric``
    is accuracy (classification) or R² (regression).

    When training measured the gradient noise scale (``train(..., noise_scale=True)``, :mod:`optcore.noise`)
    ``noise_scale`` is B_simple = tr Σ / |G|² after the epoch's last step (NaN while the smoothed |G|² is
    ≤ 0, or when no batch had two rows), ``noise_grad_sq`` the smoothed |G|² and ``noise_trace_sigma`` the
    smoothed tr Σ, all of the data loss's gradient; otherwise the three are None.
    """

    epoch: int
    train_cost: float
    val_cost: float
    val_metric: float
    lr: float
    seconds: float
    noise_scale: float | None = None
    noise_grad_sq: float | None = None
    noise_trace_sigma: float | None = None

    def values(self, metric_name: str) -> dict[str, float]:
        """The epoch's values by their tracked names (:meth:`History.curves`'s), ``val_metric`` as
        ``metric_name``; the noise-scale values only when they were measured."""
        values = {
            "train_cost": self.train_cost,
            "val_cost": self.val_cost,
            metric_name: self.val_metric,
            "lr": self.lr,
            "epoch_seconds": self.seconds,
        }
        if self.noise_scale is not None:
            values.update(
                noise_scale=self.noise_scale,
                noise_grad_sq=self.noise_grad_sq,
                noise_trace_sigma=self.noise_trace_sigma,
            )
        return values


@dataclass
class History:
    """Per-epoch curves of one training run.

    ``metric_name`` is ``"val_accuracy"`` or ``"val_r2"``. ``minibatch_cost`` and ``minibatch_cost_ewa`` hold
    one value per iteration (mini-batch step) when training recorded them, else stay empty.
    ``stopped_early`` is True when the epoch callback asked training to stop. ``samples_seen`` counts the
    training rows stepped on (epochs × m, unless a time budget ended the last epoch part-way).
    ``noise_scale``, ``noise_grad_sq`` and ``noise_trace_sigma`` hold one value per epoch when training
    measured the gradient noise scale (see :class:`EpochRecord`), else stay empty.
    """

    metric_name: str
    epoch: list[int] = field(default_factory=list)
    train_cost: list[float] = field(default_factory=list)
    val_cost: list[float] = field(default_factory=list)
    val_metric: list[float] = field(default_factory=list)
    lr: list[float] = field(default_factory=list)
    epoch_seconds: list[float] = field(default_factory=list)
    minibatch_cost: list[float] = field(default_factory=list)
    minibatch_cost_ewa: list[float] = field(default_factory=list)
    noise_scale: list[float] = field(default_factory=list)
    noise_grad_sq: list[float] = field(default_factory=list)
    noise_trace_sigma: list[float] = field(default_factory=list)
    stopped_early: bool = False
    samples_seen: int = 0
    params: list[np.ndarray] | None = None

    def append(self, record: EpochRecord) -> None:
        self.epoch.append(record.epoch)
        self.train_cost.append(record.train_cost)
        self.val_cost.append(record.val_cost)
        self.val_metric.append(record.val_metric)
        self.lr.append(record.lr)
        self.epoch_seconds.append(record.seconds)
        if record.noise_scale is not None:
            self.noise_scale.append(record.noise_scale)
            self.noise_grad_sq.append(record.noise_grad_sq)
            self.noise_trace_sigma.append(record.noise_trace_sigma)

    @property
    def epochs_run(self) -> int:
        return len(self.epoch)

    @property
    def final_val_cost(self) -> float:
        return self.val_cost[-1] if self.val_cost else math.nan

    @property
    def final_train_cost(self) -> float:
        return self.train_cost[-1] if self.train_cost else math.nan

    @property
    def best_val_cost(self) -> float:
        return min(self.val_cost) if self.val_cost else math.nan

    @property
    def best_epoch(self) -> int:
        """Epoch (from 1) of the lowest validation cost; the earliest one on ties; 0 when none ran."""
        if not self.val_cost:
            return 0
        return self.epoch[int(np.argmin(self.val_cost))]

    @property
    def train_seconds(self) -> float:
        return float(sum(self.epoch_seconds))

    def curves(self) -> dict[str, list[float]]:
        """The per-epoch curves by their tracked names (``step = epoch``); the noise-scale curves only when
        they were measured."""
        curves = {
            "train_cost": self.train_cost,
            "val_cost": self.val_cost,
            self.metric_name: self.val_metric,
            "lr": self.lr,
            "epoch_seconds": self.epoch_seconds,
        }
        if self.noise_scale:
            curves.update(
                noise_scale=self.noise_scale,
                noise_grad_sq=self.noise_grad_sq,
                noise_trace_sigma=self.noise_trace_sigma,
            )
        return curves

    def summary(self) -> dict[str, float]:
        """Scalars that let a runs table compare trials without opening curves."""
        return {
            "final_val_cost": self.final_val_cost,
            "best_val_cost": self.best_val_cost,
            "best_epoch": float(self.best_epoch),
            "epochs_run": float(self.epochs_run),
            "train_seconds": self.train_seconds,
            "final_train_cost": self.final_train_cost,
        }
