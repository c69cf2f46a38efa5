"""The training loop: mini-batch steps, a scheduled learning rate, per-epoch evaluation and a callback."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence

import numpy as np

from optcore.batches import minibatches
from optcore.data import Dataset
from optcore.errors import DivergenceError, OptcoreError
from optcore.ewa import RunningEWA
from optcore.history import EpochRecord, History
from optcore.network import Network, pack
from optcore.noise import NoiseScale
from optcore.optimizers import Optimizer
from optcore.schedules import Schedule

EpochCallback = Callable[[EpochRecord, History], "bool | None"]
SCHEDULE_UNITS = ("epoch", "iteration")


def seeded_generators(seed: int) -> tuple[np.random.Generator, np.random.Generator]:
    """Independent generators for (initialisation, shuffling) derived from one seed."""
    init_seq, shuffle_seq = np.random.SeedSequence(seed).spawn(2)
    return np.random.default_rng(init_seq), np.random.default_rng(shuffle_seq)


# Overflow on the way to a NaN cost is reported once, as a DivergenceError, not as numpy warnings.
@np.errstate(over="ignore", invalid="ignore")
def train(
    dataset: Dataset,
    network: Network,
    optimizer: Optimizer,
    *,
    epochs: int,
    batch_size: int,
    schedule: Schedule | None = None,
    schedule_unit: str = "epoch",
    seed: int = 0,
    params: Sequence[np.ndarray] | None = None,
    record_minibatch: bool = False,
    ewa_beta: float = 0.9,
    callback: EpochCallback | None = None,
    max_seconds: float | None = None,
    noise_scale: bool = False,
) -> History:
    """Train ``network`` on ``dataset`` with ``optimizer`` and return the :class:`History`.

    Each epoch reshuffles the training set (``seed`` fixes the order and the initial parameters, so the same
    seed gives a bit-identical History) and takes ⌈m / batch_size⌉ steps, each on the batch's cost J_B
    with the L2 term scaled by the training-set size m (:mod:`optcore.network`). The learning rate is
    ``schedule(t)`` with ``t`` the epochs (or iterations, ``schedule_unit="iteration"``) completed before
    the step; without a schedule it is the optimizer's ``lr``. ``params`` starts from a copy of
    given parameters instead of fresh ones; the final parameters are ``history.params``.
    ``callback(record, history)`` runs after every epoch; a true return value stops training
    (``history.stopped_early``). ``max_seconds`` is a time budget for the training steps (evaluation
    excluded): training stops after the step that spends it, mid-epoch if need be, and that last, partial
    epoch is recorded and evaluated like any other (``history.samples_seen`` counts the rows trained on).
    ``noise_scale=True`` measures the gradient noise scale B_simple = tr Σ / |G|² at every step from the
    per-example gradient norms (:mod:`optcore.noise`; its |G|² and tr Σ smoothed with ``ewa_beta``) and
    records its value at the end of each epoch (``history.noise_scale``, ``noise_grad_sq``,
    ``noise_trace_sigma``); the same seed trains the same parameters with or without it.

    Raises :class:`DivergenceError` (with the History so far) when a cost becomes NaN or infinite.
    """
    if int(epochs) != epochs or epochs < 1:
        raise OptcoreError(f"epochs must be a whole number ≥ 1; got {epochs}")
    if schedule_unit not in SCHEDULE_UNITS:
        raise OptcoreError(f"schedule_unit must be one of {', '.join(SCHEDULE_UNITS)}; got {schedule_unit!r}")
    if not 1 <= batch_size <= dataset.n_train:
        raise OptcoreError(f"batch_size must be in [1, {dataset.n_train}] (the training set size); got {batch_size}")
    if max_seconds is not None and not (math.isfinite(max_seconds) and max_seconds > 0):
        raise OptcoreError(f"max_seconds must be a number of seconds > 0; got {max_seconds}")

    data = dataset.astype(network.dtype)
    init_rng, shuffle_rng = seeded_generators(seed)
    start_params = list(params) if params is not None else network.init(init_rng)
    # One flat buffer for parameters and one for gradients: the network works on views of them and the
    # optimizer updates each buffer with a single vectorised expression.
    flat, params = pack(start_params)
    flat_grads, grads = pack(network.new_grads(params))
    state = optimizer.init([flat])
    lr_at: Callable[[int], float] = schedule if schedule is not None else (lambda t: optimizer.lr)
    per_iteration = schedule_unit == "iteration"
    smoother = RunningEWA(ewa_beta)
    noise = NoiseScale(ewa_beta) if noise_scale else None
    history = History(network.loss.metric_name)
    iteration = 0
    spent = 0.0  # seconds of training steps in the epochs before this one
    budget = math.inf if max_seconds is None else max_seconds

    for epoch in range(1, epochs + 1):
        start = time.perf_counter()
        epoch_lr = lr_at(iteration if per_iteration else epoch - 1)
        lr = epoch_lr
        total, rows = 0.0, 0
        for xb, yb in minibatches(data.X_train, data.Y_train, batch_size, shuffle_rng):
            if noise is None:
                cost, _ = network.cost_and_grad(params, xb, yb, grads, n_train=data.n_train)
            else:
                cost, _, per_example_sq, batch_sq = network.cost_grad_and_norms(
                    params, xb, yb, grads, n_train=data.n_train
                )
                noise.update(per_example_sq, batch_sq)
            iteration += 1
            if not math.isfinite(cost):
                raise DivergenceError(epoch, iteration, cost, history)
            if per_iteration:
                lr = lr_at(iteration - 1)
            optimizer.update([flat], [flat_grads], state, lr)
            total += cost * xb.shape[0]
            rows += xb.shape[0]
            if record_minibatch:
                history.minibatch_cost.append(cost)
                history.minibatch_cost_ewa.append(smoother.update(cost))
            if spent + (time.perf_counter() - start) >= budget:
                break
        seconds = time.perf_counter() - start
        spent += seconds
        history.samples_seen += rows

        val_cost, metric = network.evaluate(params, data.X_val, data.Y_val)
        if not math.isfinite(val_cost):
            raise DivergenceError(epoch, iteration, val_cost, history)
        measured = {} if noise is None else noise.record_fields()
        record = EpochRecord(epoch, total / rows, val_cost, metric, float(epoch_lr), seconds, **measured)
        history.append(record)
        if callback is not None and callback(record, history):
            history.stopped_early = True
            break
        if spent >= budget:
            break

    history.params = params
    return history
