"""optcore — a NumPy training core: an L-layer network, mini-batch gradient descent, Momentum, RMSProp,
Adam (and AdamW, Adagrad) over one exponentially weighted average, and learning-rate schedules.

It imports neither Optuna nor MLflow. The public entry points are few and stable:

    ds = optcore.load_dataset("moons", seed=0, n_samples=2000, noise=0.2)
    net = optcore.Network.for_dataset(ds, hidden=[32, 32], activation="relu")
    opt = optcore.make_optimizer("adam", lr=1e-2, beta1=0.9, beta2=0.999)
    sched = optcore.make_schedule("cosine", lr=1e-2, total_steps=30)
    history = optcore.train(ds, net, opt, epochs=30, batch_size=64, schedule=sched, seed=0)
    model = optcore.Model.from_training(ds, net, history.params)   # predicts on raw rows
    model.save("model/"); optcore.Model.load("model/")               # weights .npz + fitted preprocessing

Besides registry names, ``load_dataset`` reads a table: ``load_dataset(path="data.csv", target="label")``,
``loader="package.module:function"`` or ``openml="adult"`` (see optcore.tabular).
"""

from optcore.activations import ACTIVATIONS
from optcore.batches import minibatches, n_batches
from optcore.data import DATASETS, Dataset, load_dataset, resolve_params
from optcore.errors import DivergenceError, OptcoreError, UnknownNameError
from optcore.ewa import RunningEWA, bias_correction, ewa, ewa_update
from optcore.gradcheck import gradient_check, numerical_gradient
from optcore.history import EpochRecord, History
from optcore.hyperparameters import Hyperparameter
from optcore.losses import LOSSES
from optcore.model import Model
from optcore.network import INITS, Network
from optcore.noise import NoiseScale, noise_estimates
from optcore.optimizers import (
    OPTIMIZERS,
    Optimizer,
    OptState,
    hyperparameter_names,
    make_optimizer,
    optimizer_hyperparameters,
)
from optcore.preprocess import Preprocessor
from optcore.schedules import (
    SCHEDULES,
    Schedule,
    make_schedule,
    schedule_hyperparameters,
    schedule_names,
    schedule_parameters,
)
from optcore.to_target import ToTarget, steps_to_target
from optcore.train import SCHEDULE_UNITS, EpochCallback, seeded_generators, train

__all__ = [
    "ACTIVATIONS",
    "DATASETS",
    "INITS",
    "LOSSES",
    "OPTIMIZERS",
    "SCHEDULES",
    "SCHEDULE_UNITS",
    "Dataset",
    "DivergenceError",
    "EpochCallback",
    "EpochRecord",
    "History",
    "Hyperparameter",
    "Model",
    "Network",
    "NoiseScale",
    "OptState",
    "OptcoreError",
    "Optimizer",
    "Preprocessor",
    "RunningEWA",
    "Schedule",
    "ToTarget",
    "UnknownNameError",
    "bias_correction",
    "ewa",
    "ewa_update",
    "gradient_check",
    "hyperparameter_names",
    "load_dataset",
    "make_optimizer",
    "make_schedule",
    "minibatches",
    "n_batches",
    "noise_estimates",
    "numerical_gradient",
    "optimizer_hyperparameters",
    "resolve_params",
    "schedule_hyperparameters",
    "schedule_names",
    "schedule_parameters",
    "seeded_generators",
    "steps_to_target",
    "train",
]
