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

Every schedule is a frozen dataclass: calling it with ``t`` gives the rate; it keeps no state.
"""

from __future__ import annotations

import inspect
import math
from dataclasses import dataclass

from optcore.errors import OptcoreError, UnknownNameError
from optcore.optimizers.base import check


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


# -- constructors: validate, then build ------------------------------------------------------------


def _positive_int(name, value):
    if int(value) != value or value < 1:
        raise OptcoreError(f"{name} must be a whole number ≥ 1; got {value}")
    return int(value)


def constant(lr: float) -> Schedule:
    return Constant(_lr(lr))


def step(lr: float, step_size: int, gamma: float = 0.1) -> Schedule:
    return Step(
        _lr(lr),
        _positive_int("step_size", step_size),
        check("gamma", gamma, 0.0, 1.0, low_open=True, high_open=False),
    )


def exponential(lr: float, gamma: float | None = None, decay_rate: float | None = None) -> Schedule:
    """Give exactly one of ``gamma`` (α₀·γ^t) and ``decay_rate`` k (α₀·e^(−k·t), i.e. γ = e^(−k))."""
    if (gamma is None) == (decay_rate is None):
        raise OptcoreError(
            "the exponential schedule needs exactly one of gamma (lr·gamma^t) or decay_rate (lr·e^(−k·t))"
        )
    if gamma is None:
        gamma = math.exp(-check("decay_rate", decay_rate, 0.0))
    return Exponential(_lr(lr), check("gamma", gamma, 0.0, 1.0, low_open=True, high_open=False))


def inverse_time(lr: float, decay_rate: float, interval: int = 1) -> Schedule:
    return InverseTime(_lr(lr), check("decay_rate", decay_rate, 0.0), _positive_int("interval", interval))


def polynomial(lr: float, total_steps: int, power: float = 1.0, end_lr: float = 0.0) -> Schedule:
    lr = _lr(lr)
    return Polynomial(
        lr,
        _positive_int("total_steps", total_steps),
        check("power", power, 0.0, low_open=True),
        check("end_lr", end_lr, 0.0, lr, high_open=False),
    )


def cosine(lr: float, total_steps: int, min_lr: float = 0.0) -> Schedule:
    lr = _lr(lr)
    return Cosine(lr, _positive_int("total_steps", total_steps), check("min_lr", min_lr, 0.0, lr, high_open=False))


def cosine_restarts(lr: float, t0: int, t_mult: int = 1, min_lr: float = 0.0) -> Schedule:
    lr = _lr(lr)
    return CosineRestarts(
        lr,
        _positive_int("t0", t0),
        _positive_int("t_mult", t_mult),
        check("min_lr", min_lr, 0.0, lr, high_open=False),
    )


def _lr(lr):
    return check("lr", lr, 0.0, low_open=True)


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


def schedule_parameters(name: str) -> list[str]:
    """The keyword arguments schedule ``name`` accepts (``lr`` first)."""
    base, warmup = _split(name)
    params = [p for p in inspect.signature(SCHEDULES[base]).parameters]
    return [*params, "warmup_steps", "warmup_start_factor"] if warmup else params


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
        w = _positive_int("warmup_steps", params.pop("warmup_steps", 0) or 0)
        f = check("warmup_start_factor", params.pop("warmup_start_factor", 0.1), 0.0, 1.0, high_open=False)
        if total_steps is not None and w >= total_steps:
            raise OptcoreError(f"warmup_steps must be < total_steps ({total_steps}); got {w}")
        rest = None if total_steps is None else total_steps - w
        return Warmup(_lr(lr), w, make_schedule(base, lr=lr, total_steps=rest, **params), f)
    builder = SCHEDULES[base]
    accepted = [p for p in inspect.signature(builder).parameters if p != "lr"]
    unknown = sorted(set(params) - set(accepted))
    if unknown:
        raise OptcoreError(f"schedule {name!r} takes no parameter {unknown[0]!r}; it takes: {', '.join(accepted)}")
    if "total_steps" in accepted:
        if total_steps is None:
            raise OptcoreError(f"schedule {name!r} needs total_steps, the length of training")
        params["total_steps"] = total_steps
    try:
        return builder(lr, **params)
    except TypeError:
        missing = [
            p
            for p, v in inspect.signature(builder).parameters.items()
            if v.default is inspect.Parameter.empty and p not in params and p != "lr"
        ]
        raise OptcoreError(f"schedule {name!r} needs {', '.join(missing)}") from None
