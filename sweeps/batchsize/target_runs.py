"""Runs to a target cost for ``sweeps batch-size --advise``: each trained by :func:`optcore.steps_to_target`
under the command's budget and recorded as a child run of the batch-size parent (validation cost at
``step = training step``; for a pilot the smoothed noise scale; summary metrics ``steps_to_target``,
``samples_to_target``, ``seconds_to_target``, ``reached_target``)."""

from __future__ import annotations

import math
from collections.abc import Mapping

from sweeps.batchsize.budget import MAX_EPOCHS, Budget
from sweeps.study import interrupts


class TargetRuns:
    """Runs to a target cost (:func:`optcore.steps_to_target`) under a budget, each in its own child run of
    ``sweep`` (numbered in order), with its validation-cost curve at ``step = training step``."""

    def __init__(self, sweep, setup, data, budget: Budget, target: float, metric: str):
        self.sweep, self.setup, self.data, self.budget = sweep, setup, data, budget
        self.target, self.metric, self.number = target, metric, 0

    def cap(self, size: int) -> tuple[int, float | None]:
        import optcore

        epochs = int(self.budget.amount) if self.budget.kind == "epochs" else MAX_EPOCHS
        seconds = self.budget.amount if self.budget.kind == "seconds" else None
        return epochs * optcore.n_batches(self.data.n_train, size), seconds

    def train(
        self,
        hp: Mapping[str, object],
        seed: int,
        *,
        target: float | None,
        noise: bool = False,
        seconds: float | None = None,
        limit: float = math.inf,
    ):
        import optcore
        from sweeps.optcore_adapter import build_optimizer

        size = int(hp["batch_size"])
        network = optcore.Network.for_dataset(
            self.data,
            hidden=self.setup.hidden,
            activation=self.setup.activation,
            l2=self.setup.l2,
            init=self.setup.init,
            dtype=self.setup.dtype,
        )
        max_steps, max_seconds = self.cap(size)
        with interrupts.interruptible():
            return optcore.steps_to_target(
                self.data,
                network,
                build_optimizer(hp),
                batch_size=size,
                target=target,
                max_steps=int(min(max_steps, limit)),
                max_seconds=seconds if seconds is not None else max_seconds,
                seed=seed,
                noise_scale=noise,
            )

    def tracked(self, hp: Mapping[str, object], seed: int, name: str, noise: bool = False, limit: float = math.inf):
        """Train ``hp`` to the target in a child run named ``name``, for at most ``limit`` steps within the
        cap; returns (result, run id)."""
        from tracking.schema import FAIL_REASON, RUN_NAME, Outcome

        size = int(hp["batch_size"])
        run = self.sweep.trial(
            self.number,
            hp,
            seed=seed,
            tags={"batch_size": size, RUN_NAME: name, "target_cost": self.target},
            metric_name=self.metric,
        )
        self.number += 1
        try:
            result = self.train(hp, seed, target=self.target, noise=noise, limit=limit)
        except BaseException as e:
            reason = "interrupted" if isinstance(e, KeyboardInterrupt) else f"{type(e).__name__}: {e}"
            run.end(Outcome.FAIL, tags={FAIL_REASON: reason[:500]})
            raise
        metrics = [("val_cost", c, s) for s, c in result.checks if math.isfinite(c)]
        metrics += [("noise_scale", v, s) for s, v in result.noise if math.isfinite(v)]
        summary = {
            "reached_target": float(result.reached),
            "steps_to_target": float(result.steps),
            "samples_to_target": float(result.samples),
            "seconds_to_target": result.seconds,
            "throughput": result.throughput,
            "final_val_cost": result.cost,
        }
        if noise:
            summary |= {"b_noise": result.noise_scale, "b_noise_end": result.noise_scale_end}
        metrics += [(k, float(v), 0) for k, v in summary.items() if math.isfinite(v)]
        tags = {}
        if result.diverged:
            tags[FAIL_REASON] = f"cost diverged at step {result.steps}"
        elif not result.reached:
            tags["outcome"] = f"target not reached in {result.steps} steps"
        run.end(Outcome.FAIL if result.diverged else Outcome.COMPLETE, metrics=metrics, tags=tags)
        return result, run.run_id


def outcome(result) -> str:
    """One line on how a run to the target ended."""
    if result.diverged:
        return "diverged"
    what = f"{result.steps:,} steps" if result.reached else f"not reached in {result.steps:,} steps"
    return f"{what}, {result.seconds:.3g} s"
