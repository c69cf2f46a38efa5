"""optcore's optimizers and schedules against PyTorch's, to float64 round-off.

Each optimizer runs side by side with its torch counterpart for 400 steps on float64 parameters of several
shapes. The gradient depends on the current parameters (a quadratic pull towards a target, a tanh term and
fixed noise), so any difference in the update rule would send the two trajectories apart instead of merely
offsetting them. Schedules are compared value by value with torch's schedulers stepped iteratively.

    momentum (α, β)         ↔ SGD(lr=α·(1−β), momentum=β, nesterov=…)   (torch's buffer is v/(1−β))
    rmsprop (α, β₂, ε)      ↔ RMSprop(lr=α, alpha=β₂, eps=ε)
    adam / adamw / adagrad  ↔ Adam / AdamW / Adagrad with the same hyperparameters
    gd (α)                  ↔ SGD(lr=α)
    Network l2 λ, m rows    ↔ weight_decay=λ/m on the weights (not the biases), for any batch size
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

import optcore

torch = pytest.importorskip("torch", reason="the PyTorch comparisons need torch (pip install torch, CPU build)")

pytestmark = pytest.mark.torch

STEPS = 400
SHAPES = [(7, 5), (5,), (3, 4, 2), (1,)]
# Measured worst case over every case below (torch 2.13, NumPy 2.4): 9e-16 absolute, 2e-14 relative (on an
# element of size 4e-3). The two sides round differently (torch's lerp against our β·m + (1−β)·g, a division
# against a multiplication by the reciprocal), so exact equality is not expected; an algorithmic difference
# shows up as 1e-3 or more within a few steps (test_a_different_algorithm_is_caught).
RTOL, ATOL = 1e-12, 1e-14


def _problem(seed: int):
    """Starting parameters, per-element curvatures and targets, and 400 steps of fixed gradient noise."""
    rng = np.random.default_rng(seed)
    start = [rng.standard_normal(s) for s in SHAPES]
    curvature = [rng.uniform(0.5, 2.0, s) for s in SHAPES]
    target = [rng.standard_normal(s) for s in SHAPES]
    noise = [[0.3 * rng.standard_normal(s) for s in SHAPES] for _ in range(STEPS)]
    return start, curvature, target, noise


def _gradient(p, curvature, target, noise):
    """∇ of Σ c/2·(p − target)² + log cosh(p), plus noise: it depends on p, so trajectories would diverge."""
    return curvature * (p - target) + np.tanh(p) + noise


def _torch_optimizer(name: str, params, hp: dict):
    lr = hp["lr"]
    if name == "gd":
        return torch.optim.SGD(params, lr=lr)
    if name == "momentum":
        beta = hp["beta1"]
        return torch.optim.SGD(params, lr=lr * (1 - beta), momentum=beta, nesterov=hp.get("nesterov", False))
    if name == "rmsprop":
        return torch.optim.RMSprop(params, lr=lr, alpha=hp["beta2"], eps=hp["eps"])
    if name in ("adam", "adamw"):
        extra = {"weight_decay": hp["weight_decay"]} if name == "adamw" else {}
        cls = torch.optim.Adam if name == "adam" else torch.optim.AdamW
        return cls(params, lr=lr, betas=(hp["beta1"], hp["beta2"]), eps=hp["eps"], **extra)
    if name == "adagrad":
        return torch.optim.Adagrad(params, lr=lr, eps=hp["eps"])
    raise AssertionError(name)


def _torch_lr(name: str, hp: dict, lr: float) -> float:
    """The torch learning rate that corresponds to our ``lr`` (momentum's is scaled by 1 − β)."""
    return lr * (1 - hp["beta1"]) if name == "momentum" else lr


CASES = [
    ("gd", {"lr": 0.05}),
    ("gd", {"lr": 0.3}),
    ("momentum", {"lr": 0.1, "beta1": 0.9}),
    ("momentum", {"lr": 0.05, "beta1": 0.5}),
    ("momentum", {"lr": 0.1, "beta1": 0.0}),
    ("momentum", {"lr": 0.1, "beta1": 0.9, "nesterov": True}),
    ("momentum", {"lr": 0.2, "beta1": 0.99, "nesterov": True}),
    ("rmsprop", {"lr": 0.01, "beta2": 0.99, "eps": 1e-8}),
    ("rmsprop", {"lr": 0.003, "beta2": 0.9, "eps": 1e-3}),
    ("adam", {"lr": 0.01, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8}),
    ("adam", {"lr": 0.05, "beta1": 0.5, "beta2": 0.9, "eps": 1e-6}),
    ("adam", {"lr": 0.001, "beta1": 0.0, "beta2": 0.99, "eps": 1e-8}),
    ("adamw", {"lr": 0.01, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8, "weight_decay": 0.01}),
    ("adamw", {"lr": 0.03, "beta1": 0.8, "beta2": 0.99, "eps": 1e-7, "weight_decay": 0.5}),
    ("adagrad", {"lr": 0.1, "eps": 1e-10}),
    ("adagrad", {"lr": 0.5, "eps": 1e-6}),
]


def _run_side_by_side(name: str, hp: dict, schedule=None, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """Run ours and torch's for STEPS steps; return the final (ours, torch's) parameter pairs."""
    start, curvature, target, noise = _problem(seed)
    ours = [p.copy() for p in start]
    opt = optcore.make_optimizer(name, **hp)
    state = opt.init(ours)
    theirs = [torch.tensor(p, dtype=torch.float64, requires_grad=True) for p in start]
    topt = _torch_optimizer(name, theirs, hp)

    for t in range(STEPS):
        lr = None if schedule is None else schedule(t)
        grads = [_gradient(p, c, s, n) for p, c, s, n in zip(ours, curvature, target, noise[t], strict=True)]
        state = opt.update(ours, grads, state, lr=lr)

        for p, c, s, n in zip(theirs, curvature, target, noise[t], strict=True):
            p.grad = torch.from_numpy(_gradient(p.detach().numpy(), c, s, n))
        if lr is not None:
            for group in topt.param_groups:
                group["lr"] = _torch_lr(name, hp, lr)
        topt.step()

    assert state.step == STEPS
    return [(a, b.detach().numpy()) for a, b in zip(ours, theirs, strict=True)]


def _assert_close(pairs):
    for ours, theirs in pairs:
        np.testing.assert_allclose(ours, theirs, rtol=RTOL, atol=ATOL)


def _case_id(case):
    name, hp = case
    return name + "-" + "-".join(f"{k}={v}" for k, v in hp.items() if k != "lr") + f"-lr={hp['lr']}"


@pytest.mark.parametrize("case", CASES, ids=[_case_id(c) for c in CASES])
def test_optimizer_matches_torch(case):
    name, hp = case
    pairs = _run_side_by_side(name, hp)
    _assert_close(pairs)
    # The trajectories moved: a comparison of two untouched starting points would prove nothing.
    start = _problem(0)[0]
    assert max(float(np.max(np.abs(a - s))) for (a, _), s in zip(pairs, start, strict=True)) > 1e-2


@pytest.mark.parametrize("case", CASES[::2], ids=[_case_id(c) for c in CASES[::2]])
def test_optimizer_matches_torch_with_scheduled_lr(case):
    name, hp = case
    sched = optcore.make_schedule(
        "warmup_cosine", lr=hp["lr"], total_steps=STEPS, warmup_steps=40, warmup_start_factor=0.2, min_lr=0.0
    )
    _assert_close(_run_side_by_side(name, hp, schedule=sched, seed=1))


def test_a_different_algorithm_is_caught():
    """Guard on the test itself: torch's Adam against our AdamW must fail the tolerance by far."""
    hp = {"lr": 0.01, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8, "weight_decay": 1e-3}
    start, curvature, target, noise = _problem(0)
    ours = [p.copy() for p in start]
    opt = optcore.make_optimizer("adamw", **hp)
    state = opt.init(ours)
    theirs = [torch.tensor(p, requires_grad=True) for p in start]
    topt = _torch_optimizer("adam", theirs, {k: v for k, v in hp.items() if k != "weight_decay"})
    for t in range(STEPS):
        grads = [_gradient(p, c, s, n) for p, c, s, n in zip(ours, curvature, target, noise[t], strict=True)]
        state = opt.update(ours, grads, state)
        for p, c, s, n in zip(theirs, curvature, target, noise[t], strict=True):
            p.grad = torch.from_numpy(_gradient(p.detach().numpy(), c, s, n))
        topt.step()
    worst = max(float(np.max(np.abs(a - b.detach().numpy()))) for a, b in zip(ours, theirs, strict=True))
    assert worst > 1e6 * ATOL


# -- schedules ------------------------------------------------------------------------------------------

LR = 0.1


def _torch_schedule_values(make_scheduler, steps: int) -> list[float]:
    """The learning rate torch uses at steps 0 … steps−1 (step 0: before any ``scheduler.step()``)."""
    param = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    topt = torch.optim.SGD([param], lr=LR)
    scheduler = make_scheduler(topt)
    values = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch warns when a scheduler steps before any optimizer.step()
        for _ in range(steps):
            values.append(topt.param_groups[0]["lr"])
            topt.step()
            scheduler.step()
    return values


S = torch.optim.lr_scheduler
SCHEDULE_CASES = [
    ("step", {"step_size": 7, "gamma": 0.5}, lambda o: S.StepLR(o, step_size=7, gamma=0.5), 150),
    ("step", {"step_size": 30}, lambda o: S.StepLR(o, step_size=30), 150),
    ("exponential", {"gamma": 0.97}, lambda o: S.ExponentialLR(o, gamma=0.97), 200),
    ("exponential", {"decay_rate": 0.02}, lambda o: S.ExponentialLR(o, gamma=math.exp(-0.02)), 200),
    ("polynomial", {"total_steps": 120, "power": 1.0}, lambda o: S.PolynomialLR(o, total_iters=120, power=1.0), 150),
    ("polynomial", {"total_steps": 100, "power": 2.5}, lambda o: S.PolynomialLR(o, total_iters=100, power=2.5), 150),
    ("cosine", {"total_steps": 150}, lambda o: S.CosineAnnealingLR(o, T_max=150), 151),
    (
        "cosine",
        {"total_steps": 120, "min_lr": 0.01},
        lambda o: S.CosineAnnealingLR(o, T_max=120, eta_min=0.01),
        121,
    ),
    ("cosine_restarts", {"t0": 10}, lambda o: S.CosineAnnealingWarmRestarts(o, T_0=10), 150),
    (
        "cosine_restarts",
        {"t0": 5, "t_mult": 2, "min_lr": 0.001},
        lambda o: S.CosineAnnealingWarmRestarts(o, T_0=5, T_mult=2, eta_min=0.001),
        200,
    ),
    (
        "cosine_restarts",
        {"t0": 3, "t_mult": 3},
        lambda o: S.CosineAnnealingWarmRestarts(o, T_0=3, T_mult=3),
        200,
    ),
    pytest.param(
        "cosine_restarts",
        {"t0": 1, "t_mult": 3},
        lambda o: S.CosineAnnealingWarmRestarts(o, T_0=1, T_mult=3),
        150,
        # log(243, 3) = 4.999…: a period found through a float logarithm misses the restart at t = 121.
    ),
    (
        "warmup_cosine",
        {"total_steps": 150, "warmup_steps": 20, "warmup_start_factor": 0.1},
        lambda o: S.SequentialLR(
            o,
            [S.LinearLR(o, start_factor=0.1, end_factor=1.0, total_iters=20), S.CosineAnnealingLR(o, T_max=130)],
            milestones=[20],
        ),
        151,
    ),
    (
        "warmup_cosine",
        {"total_steps": 120, "warmup_steps": 7, "warmup_start_factor": 0.5, "min_lr": 0.002},
        lambda o: S.SequentialLR(
            o,
            [
                S.LinearLR(o, start_factor=0.5, end_factor=1.0, total_iters=7),
                S.CosineAnnealingLR(o, T_max=113, eta_min=0.002),
            ],
            milestones=[7],
        ),
        121,
    ),
]


def _schedule_id(case):
    values = case.values if hasattr(case, "values") else case
    name, params = values[0], values[1]
    return name + "-" + "-".join(f"{k}={v}" for k, v in params.items())


@pytest.mark.parametrize(
    ("name", "params", "make_scheduler", "steps"), SCHEDULE_CASES, ids=[_schedule_id(c) for c in SCHEDULE_CASES]
)
def test_schedule_matches_torch(name, params, make_scheduler, steps):
    params = dict(params)
    total_steps = params.pop("total_steps", None)
    sched = optcore.make_schedule(name, lr=LR, total_steps=total_steps, **params)
    expected = _torch_schedule_values(make_scheduler, steps)
    ours = [sched(t) for t in range(steps)]
    # torch multiplies step ratios together, we evaluate the closed form: round-off grows like t ulps.
    np.testing.assert_allclose(ours, expected, rtol=1e-12, atol=1e-15 * LR)


# -- the network's cost and gradient against autograd ----------------------------------------------------------


def _torch_cost(net: optcore.Network, params, X, Y):
    acts = {
        "relu": torch.relu,
        "leaky_relu": torch.nn.functional.leaky_relu,
        "tanh": torch.tanh,
        "sigmoid": torch.sigmoid,
    }
    a = torch.from_numpy(X)
    for l in range(net.n_layers):
        a = a @ params[2 * l] + params[2 * l + 1]
        if l < net.n_layers - 1:
            a = acts[net.activation.name](a)
    y, m = torch.from_numpy(Y), X.shape[0]
    F = torch.nn.functional
    data = {
        "binary": lambda: F.binary_cross_entropy_with_logits(a, y, reduction="sum"),
        "multiclass": lambda: F.cross_entropy(a, y, reduction="sum"),
        "regression": lambda: F.mse_loss(a, y, reduction="sum") / a.shape[1],
    }[net.task]()
    return data / m + net.l2 / (2 * m) * sum((w * w).sum() for w in params[0::2])


@pytest.mark.parametrize(
    ("task", "activation", "l2"),
    [
        ("binary", "relu", 0.0),
        ("binary", "tanh", 0.3),
        ("multiclass", "leaky_relu", 0.1),
        ("regression", "sigmoid", 0.0),
    ],
)
def test_network_cost_and_gradient_match_autograd(task, activation, l2):
    rng = np.random.default_rng(3)
    n_out = 4 if task == "multiclass" else 1
    net = optcore.Network([6, 9, 7, n_out], activation=activation, task=task, l2=l2, dtype=np.float64)
    params = net.init(rng)
    for b in params[1::2]:
        b[:] = 0.1 * rng.standard_normal(b.shape)
    X = rng.standard_normal((33, 6))
    Y = {
        "binary": lambda: (rng.random((33, 1)) < 0.5).astype(float),
        "multiclass": lambda: np.eye(4)[rng.integers(0, 4, 33)],
        "regression": lambda: rng.standard_normal((33, 1)),
    }[task]()
    cost, grads = net.cost_and_grad(params, X, Y)

    tparams = [torch.tensor(p, requires_grad=True) for p in params]
    tcost = _torch_cost(net, tparams, X, Y)
    tcost.backward()
    assert cost == pytest.approx(tcost.item(), rel=1e-13)
    for g, tp in zip(grads, tparams, strict=True):
        np.testing.assert_allclose(g, tp.grad.numpy(), rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("optimizer", ["gd", "adam"])
def test_l2_is_torch_weight_decay_of_lambda_over_m_on_the_weights(optimizer):
    # optcore's L2 λ on a training set of m rows is torch's coupled weight_decay = λ/m on the weights only
    # (biases in a group without decay), whatever the batch size: three steps on batches of 16, 16 and 1 row.
    rng = np.random.default_rng(8)
    m, l2, lr = 33, 2.0, 0.05
    net = optcore.Network([6, 9, 1], activation="tanh", task="binary", l2=l2, dtype=np.float64)
    plain = optcore.Network([6, 9, 1], activation="tanh", task="binary", l2=0.0, dtype=np.float64)
    params = net.init(rng)
    X, Y = rng.standard_normal((m, 6)), (rng.random((m, 1)) < 0.5).astype(float)
    hp = {"lr": lr, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8}
    ours = optcore.make_optimizer(optimizer, **({"lr": lr} if optimizer == "gd" else hp))
    flat, views = optcore.network.pack(params)
    flat_grads, grads = optcore.network.pack(net.new_grads(views))
    state = ours.init([flat])

    theirs = [torch.tensor(p, requires_grad=True) for p in params]
    groups = [{"params": theirs[0::2], "weight_decay": l2 / m}, {"params": theirs[1::2], "weight_decay": 0.0}]
    topt = torch.optim.SGD(groups, lr=lr) if optimizer == "gd" else torch.optim.Adam(groups, lr=lr, betas=(0.9, 0.999))
    for rows in (slice(0, 16), slice(16, 32), slice(32, 33)):
        net.cost_and_grad(views, X[rows], Y[rows], grads, n_train=m)
        state = ours.update([flat], [flat_grads], state)
        topt.zero_grad()
        _torch_cost(plain, theirs, X[rows], Y[rows]).backward()  # the mean data loss, no penalty
        topt.step()
    for p, tp in zip(views, theirs, strict=True):
        np.testing.assert_allclose(p, tp.detach().numpy(), rtol=1e-12, atol=1e-14)
