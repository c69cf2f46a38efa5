"""One trial's training: a hyperparameter dict in, an optcore History out.

This is the single place where sweep names meet optcore's constructors, so ``run``, ``reproduce`` and
``batch-size`` train exactly alike. Each optimizer and schedule gets the hyperparameters it declares
(:func:`optcore.optimizer_hyperparameters`, :func:`optcore.schedule_hyperparameters`) and no others. A spec
searches an optimizer's hyperparameter only where the chosen optimizer takes it (``when:``, checked by the
spec); a fixed value it does not take (``beta2: 0.999`` in a trial of momentum), or a schedule parameter in
a trial of a schedule that does not take it (``gamma`` for cosine), is recorded with the trial but not passed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

import optcore
import tracking
from optcore import Dataset, EpochCallback, History
from sweeps.spec.domains import GIVEN_BY_TRAINER, SEARCH_NAME
from sweeps.study import interrupts


@dataclass(frozen=True)
class TrainingSetup:
    """Everything but the searched hyperparameters: data, model and training length."""

    dataset: str
    dataset_params: tuple[tuple[str, object], ...]
    val_fraction: float
    data_seed: int
    hidden: tuple[int, ...]
    activation: str = "relu"
    l2: float = 0.0
    init: str | None = None
    dtype: str = "float32"
    epochs: int = 10
    schedule_unit: str = "epoch"
    record_minibatch: bool = False
    ewa_beta: float = 0.9
    noise_scale: bool = False

    def load(self, train_on: str = "train") -> Dataset:
        """The sweep's data; ``train_on="train+val"`` trains on both splits (see :func:`optcore.load_dataset`)."""
        return _load(self.dataset, self.data_seed, self.val_fraction, self.dataset_params, train_on)

    def network(self, data: Dataset) -> optcore.Network:
        """The spec's network, sized for ``data``."""
        return optcore.Network.for_dataset(
            data, hidden=self.hidden, activation=self.activation, l2=self.l2, init=self.init, dtype=self.dtype
        )


@lru_cache(maxsize=8)
def _load(
    name: str, seed: int, val_fraction: float, params: tuple[tuple[str, object], ...], train_on: str = "train"
) -> Dataset:
    # Every trial of a sweep sees the same data; load it once per process, and from optsweep's cache folder
    # when an earlier process generated it (no scikit-learn import: about a second per command).
    folder = tracking.cache_dir()
    return optcore.load_dataset(
        name,
        seed=seed,
        val_fraction=val_fraction,
        train_on=train_on,
        cache_dir=folder / "datasets" if folder is not None else None,
        **dict(params),
    )


def trial_seed(sweep_seed: int, trial_number: int) -> int:
    """The training seed of trial ``trial_number``: independent streams for every (sweep seed, trial)."""
    return int(np.random.SeedSequence([sweep_seed, trial_number]).generate_state(1)[0])


def build_optimizer(hp: Mapping[str, object]) -> optcore.Optimizer:
    """The optimizer named by ``hp["optimizer"]`` with the hyperparameters of ``hp`` it declares."""
    name = str(hp["optimizer"])
    return optcore.make_optimizer(name, **{k: hp[k] for k in optcore.hyperparameter_names(name) if k in hp})


def build_schedule(hp: Mapping[str, object], epochs: int, iterations_per_epoch: int, unit: str) -> optcore.Schedule:
    """The schedule named by ``hp["schedule"]`` (constant by default) over the whole training run.

    It gets the parameters of ``hp`` it declares besides ``lr`` and ``total_steps`` (given here). Its step
    counts epochs or iterations (``unit``); ``warmup_epochs`` (optcore's ``warmup_steps``) is converted to
    that unit, and the other step parameters (``step_size``, ``interval``, ``t0``) are read in it.
    """
    name = str(hp.get("schedule", "constant"))
    per_step = iterations_per_epoch if unit == "iteration" else 1
    params = {}
    for key in optcore.schedule_parameters(name):
        searched = SEARCH_NAME.get(key, key)
        if key != "lr" and key not in GIVEN_BY_TRAINER and searched in hp:
            params[key] = hp[searched]
    if "warmup_steps" in params:
        params["warmup_steps"] = int(params["warmup_steps"]) * per_step
    if name.removeprefix("warmup_") == "exponential" and "decay_rate" in params and "gamma" in params:
        params.pop("gamma")  # both searched for different schedules; decay_rate is exponential's own
    return optcore.make_schedule(name, lr=float(hp["lr"]), total_steps=epochs * per_step, **params)


def train_trial(
    setup: TrainingSetup,
    hp: Mapping[str, object],
    seed: int,
    callback: EpochCallback | None = None,
    max_seconds: float | None = None,
    data: Dataset | None = None,
) -> History:
    """Train one setting (``max_seconds``: a time budget, see :func:`optcore.train`) on ``data``, by default
    the setup's own (``sweeps export --retrain train+val`` passes the dataset it refits on all rows).

    Raises :class:`optcore.DivergenceError` when the cost becomes NaN or infinite.
    """
    data = setup.load() if data is None else data
    batch_size = int(hp["batch_size"])
    network = setup.network(data)
    schedule = build_schedule(hp, setup.epochs, optcore.n_batches(data.n_train, batch_size), setup.schedule_unit)
    # The NumPy loop may be interrupted anywhere; the callback (which writes to the stores) may not.
    with interrupts.interruptible():
        return optcore.train(
            data,
            network,
            build_optimizer(hp),
            epochs=setup.epochs,
            batch_size=batch_size,
            schedule=schedule,
            schedule_unit=setup.schedule_unit,
            seed=seed,
            record_minibatch=setup.record_minibatch,
            ewa_beta=setup.ewa_beta,
            callback=interrupts.shield(callback) if callback is not None else None,
            max_seconds=max_seconds,
            noise_scale=setup.noise_scale,
        )
