"""Learning-rate schedules: pure functions of the step ``t = 0, 1, 2, …`` (epochs or iterations).

    constant          α(t) = α₀
    step              α(t) = α₀·γ^⌊t/s⌋                                   torch StepLR
    exponential       α(t) = α₀·γ^t   or   α₀·e^(−k·t)                    torch ExponentialLR (γ = e^(−k))
    inverse_time      α(t) = α₀ / (1 + k·⌊t/T⌋)     (T = interval, 1 by default)
    polynomial        α(t) = (α₀ − α_end)·(1 − min(t, N)/N)^p + α_end     torch PolynomialLR (α_end = 0)
    cosine            α(t) = α_min + (α₀ − α_min)·(1 + cos(π·min(t, N)/N))/2   torch CosineAnnealingLR (t ≤ N)
    cosine_restarts   cosine over periods T₀, T₀·m, T₀·m², …              torch CosineAnnealingWarmRestarts
    warmup_<name>     α₀·(f + (1 − f)·t/W) for t < W, then <name> at t − W over N − W steps
                      torch SequentialLR(LinearLR(f, total_iters=W), <name>, milestones=[W]); every <name>
                      above has one (warmup_constant is torch's LinearLR alone: a ramp, then α₀)

Every schedule is a frozen dataclass: calling it with ``t`` gives the rate; it keeps no state. Each
constructor declares the parameters it takes (:func:`schedule_hyperparameters`: name, type, interval,
default), and its arguments are checked against that declaration before it builds.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass

from optcore.errors import OptcoreError, UnknownNameError
from optcore.hyperparameters import REQUIRED, Hyperparameter, bind
from optcore.optimizers.base import LR


class Schedule:
    """A learning rate as a function of the step; subclasses are frozen dataclasses."""

    def __call__(self, t: float) -> float:
        raise NotImplementedError


@dataclass(frozen=True)
class Constant(Schedule):
    lr: float

    def __call__(self, t):
        return self.lr


@dataclass(frozen=True)
class Step(Schedule):
    lr: float
    step_size: int
    gamma: float = 0.1

    def __call__(self, t):
        return self.lr * self.gamma ** (int(t) // self.step_size)


@dataclass(frozen=True)
class Exponential(Schedule):
    lr: float
    gamma: float

    def __call__(self, t):
        return self.lr * self.gamma**t


@dataclass(frozen=True)
class InverseTime(Schedule):
    lr: float
    decay_rate: float
    interval: int = 1

    def __call__(self, t):
        return self.lr / (1.0 + self.decay_rate * (int(t) // self.interval))


@dataclass(frozen=True)
class Polynomial(Schedule):
    lr: float
    total_steps: int
    power: float = 1.0
    end_lr: float = 0.0

    def __call__(self, t):
        frac = 1.0 - min(t, self.total_steps) / self.total_steps
        return (self.lr - self.end_lr) * frac**self.power + self.end_lr


@dataclass(frozen=True)
class Cosine(Schedule):
    lr: float
    total_steps: int
    min_lr: float = 0.0

    def __call__(self, t):
        # Held at min_lr after total_steps (torch's closed form would rise again).
        return (
            self.min_lr
            + (self.lr - self.min_lr) * (1 + math.cos(math.pi * min(t, self.total_steps) / self.total_steps)) / 2
        )


@dataclass(frozen=True)
class CosineRestarts(Schedule):
    lr: float
    t0: int
    t_mult: int = 1
    min_lr: float = 0.0

    def __call__(self, t):
        # Walk the periods (there are O(log t) of them): exact at every restart, where a closed form
        # through a floating-point logarithm can land in the wrong period.
        if self.t_mult == 1:
            start, length = t - t % self.t0, self.t0
        else:
            start, length = 0, self.t0
        while t >= start + length:
            start, length = start + length, length * self.t_mult
        return self.min_lr + (self.lr - self.min_lr) * (1 + math.cos(math.pi * (t - start) / length)) / 2


@dataclass(frozen=True)
class Warmup(Schedule):
    """A linear warmup of ``warmup_steps`` from ``lr·start_factor`` to ``lr``, joined to ``then``."""

    lr: float
    warmup_steps: int
    then: Schedule
    start_factor: float = 0.1

    def __call__(self, t):
        if t < self.warmup_steps:
            return self.lr * (self.start_factor + (1 - self.start_factor) * t / self.warmup_steps)
        return self.then(t - self.warmup_steps)


# -- constructors: declare, validate, then build ------------------------------------------------------


def _whole(name: str, default: object = REQUIRED) -> Hyperparameter:
    """A whole number ≥ 1 (a count of steps)."""
    return Hyperparameter(name, int, 1, default=default)


GAMMA = Hyperparameter("gamma", float, 0.0, 1.0, low_open=True, high_open=False)
DECAY_RATE = Hyperparameter("decay_rate", float, 0.0)
TOTAL_STEPS = _whole("total_steps")  # the length of training: given by make_schedule's caller, not searched
MIN_LR = Hyperparameter("min_lr", float, 0.0, high_open=False, default=0.0, at_most="lr")
# A warmup joined to any schedule (make_schedule's warmup_<name>) takes these besides that schedule's own.
WARMUP = (
    _whole("warmup_steps"),
    Hyperparameter("warmup_start_factor", float, 0.0, 1.0, high_open=False, default=0.1),
)


def _declares(*declared: Hyperparameter) -> Callable[[Callable[..., Schedule]], Callable[..., Schedule]]:
    """The constructor takes keyword arguments ``declared``: each is checked (defaults filled in) first."""

    def wrap(build: Callable[..., Schedule]) -> Callable[..., Schedule]:
        @functools.wraps(build)
        def checked(**given: object) -> Schedule:
            return build(**bind(f"schedule {build.__name__!r}", declared, given, word="parameter"))

        checked.hyperparameters = declared  # type: ignore[attr-defined]
        return checked

    return wrap


@_declares(LR)
def constant(lr: float) -> Schedule:
    return Constant(lr)


@_declares(LR, _whole("step_size"), GAMMA.with_default(0.1))
def step(lr: float, step_size: int, gamma: float) -> Schedule:
    return Step(lr, step_size, gamma)


@_declares(LR, GAMMA.with_default(None), DECAY_RATE.with_default(None))
def exponential(lr: float, gamma: float | None, decay_rate: float | None) -> Schedule:
    """Give exactly one of ``gamma`` (α₀·γ^t) and ``decay_rate`` k (α₀·e^(−k·t), i.e. γ = e^(−k))."""
    if (gamma is None) == (decay_rate is None):
        raise OptcoreError(
            "the exponential schedule needs exactly one of gamma (lr·gamma^t) or decay_rate (lr·e^(−k·t))"
        )
    return Exponential(lr, GAMMA.check(math.exp(-decay_rate)) if gamma is None else gamma)


@_declares(LR, DECAY_RATE, _whole("interval", 1))
def inverse_time(lr: float, decay_rate: float, interval: int) -> Schedule:
    return InverseTime(lr, decay_rate, interval)


@_declares(
    LR,
    TOTAL_STEPS,
    Hyperparameter("power", float, 0.0, low_open=True, default=1.0),
    Hyperparameter("end_lr", float, 0.0, high_open=False, default=0.0, at_most="lr"),
)
def polynomial(lr: float, total_steps: int, power: float, end_lr: float) -> Schedule:
    return Polynomial(lr, total_steps, power, end_lr)


@_declares(LR, TOTAL_STEPS, MIN_LR)
def cosine(lr: float, total_steps: int, min_lr: float) -> Schedule:
    return Cosine(lr, total_steps, min_lr)


@_declares(LR, _whole("t0"), _whole("t_mult", 1), MIN_LR)
def cosine_restarts(lr: float, t0: int, t_mult: int, min_lr: float) -> Schedule:
    return CosineRestarts(lr, t0, t_mult, min_lr)


SCHEDULES = {
    "constant": constant,
    "step": step,
    "exponential": exponential,
    "inverse_time": inverse_time,
    "polynomial": polynomial,
    "cosine": cosine,
    "cosine_restarts": cosine_restarts,
}
WARMUP_PREFIX = "warmup_"


def schedule_names() -> list[str]:
    """Every name :func:`make_schedule` accepts, warmup variants included."""
    return [*SCHEDULES, *(WARMUP_PREFIX + n for n in SCHEDULES)]


def schedule_hyperparameters(name: str) -> tuple[Hyperparameter, ...]:
    """What schedule ``name`` takes (``lr`` first): each parameter's name, type, interval and default."""
    base, warmup = _split(name)
    declared = SCHEDULES[base].hyperparameters
    return (*declared, *WARMUP) if warmup else declared


def schedule_parameters(name: str) -> list[str]:
    """The keyword arguments schedule ``name`` accepts (``lr`` first)."""
    return [h.name for h in schedule_hyperparameters(name)]


def _split(name: str) -> tuple[str, bool]:
    warmup = name.startswith(WARMUP_PREFIX)
    base = name[len(WARMUP_PREFIX) :] if warmup else name
    if base not in SCHEDULES:
        raise UnknownNameError("schedule", name, schedule_names())
    return base, warmup


def make_schedule(name: str, *, lr: float, total_steps: int | None = None, **params) -> Schedule:
    """Build schedule ``name``: a callable ``t ↦ learning rate``.

    ``total_steps`` (N) is the length of training in the schedule's unit; ``polynomial``, ``cosine`` and the
    warmup variants need it, the others ignore it. ``warmup_<name>`` also takes ``warmup_steps`` (W < N)
    and ``warmup_start_factor`` (f in [0, 1], default 0.1).

    Raises :class:`UnknownNameError` for an unknown name and :class:`OptcoreError` for a missing, unknown or
    out-of-range parameter.
    """
    base, warmup = _split(name)
    if warmup:
        mine = {h.name for h in WARMUP}
        given = {k: params.pop(k) for k in list(params) if k in mine}
        values = bind(f"schedule {name!r}", WARMUP, given, word="parameter")
        w, f = values["warmup_steps"], values["warmup_start_factor"]
        if total_steps is not None and w >= total_steps:
            raise OptcoreError(f"warmup_steps must be < total_steps ({total_steps}); got {w}")
        rest = None if total_steps is None else total_steps - w
        return Warmup(LR.check(lr), w, make_schedule(base, lr=lr, total_steps=rest, **params), f)
    accepted = schedule_parameters(name)
    if "total_steps" in accepted and not set(params) - set(accepted):
        if total_steps is None:
            raise OptcoreError(f"schedule {name!r} needs total_steps, the length of training")
        params["total_steps"] = total_steps
    return SCHEDULES[base](lr=lr, **params)
