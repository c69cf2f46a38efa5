"""One training run of a comparison (a batch size or a confirmed setting with one seed) in its own child run
of the comparison's parent, recorded through the trial lifecycle a sweep's trials use."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sweeps.batchsize.budget import Budget
from sweeps.batchsize.stats import RunResult
from sweeps.study.trial_lifecycle import train_and_record


@dataclass
class _Epochs:
    """The epoch callback: live curves to the child run."""

    run: Any
    history: Any = None

    def __call__(self, record, history) -> None:
        self.history = history
        self.run.log_epoch(record)


def train_one(
    sweep,
    setup,
    hp,
    *,
    number: int,
    repeat: int,
    seed: int,
    budget: Budget,
    n_train: int,
    metric: str,
    tags: Mapping[str, object] | None = None,
) -> RunResult:
    """Train one (size, seed) in its own child run; a diverged cost is recorded, not raised. ``tags``
    replace the repeat's tags and run name (an lr search trial has its own)."""
    size = int(hp["batch_size"])
    run = sweep.trial(
        number,
        hp,
        seed=seed,
        tags=tags or {"batch_size": size, "repeat": repeat, "mlflow.runName": f"bs-{size:04d}-seed-{repeat}"},
        metric_name=metric,
        flush_every=1 if budget.kind == "epochs" else 10,  # short timed epochs: fewer store round trips
    )
    max_seconds = budget.amount if budget.kind == "seconds" else None
    ending = train_and_record(setup, hp, seed, run, _Epochs(run), max_seconds=max_seconds)
    if ending.error is not None:  # not a diverged cost: a bug or a bad combination stops the comparison
        raise ending.error
    history, failed = ending.history, ending.reason
    curves = tuple(history.val_cost), tuple(history.epoch_seconds)
    return RunResult(
        size,
        repeat,
        seed,
        run.run_id,
        n_train,
        *curves,
        failed,
        samples=history.samples_seen,
        lr=float(hp["lr"]),
        final_train_cost=history.final_train_cost,
    )
