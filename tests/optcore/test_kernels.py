"""optcore._kernels: each optimizer's compiled one-pass update gives the bits of its NumPy passes, and declines
what it does not take (the NumPy path then runs)."""

import os

import numpy as np
import pytest

import optcore
from optcore.optimizers import adagrad, adam, momentum, rmsprop
from optcore.optimizers.kernels import kernel

MODULES = {"adam": adam, "adamw": adam, "rmsprop": rmsprop, "adagrad": adagrad, "momentum": momentum}
KERNELS = {name: kernel(name) for name in ("adam", "rmsprop", "adagrad", "momentum")}
needs_kernels = pytest.mark.skipif(
    not all(KERNELS.values()),
    reason="optcore._kernels is not built (no C compiler at install): optcore makes its updates in NumPy",
)


@pytest.mark.skipif(
    not os.environ.get("OPTSWEEP_REQUIRE_KERNELS"),
    reason="OPTSWEEP_REQUIRE_KERNELS is unset: the kernels are optional here (.ci/run requires them)",
)
def test_the_kernels_are_built_where_they_are_required():
    assert all(KERNELS.values()), "optcore._kernels did not build (or is stale): is a C compiler installed?"


class Calls:
    """How often the optimizers called a kernel, and how often it made the update."""

    def __init__(self):
        self.made, self.declined = 0, 0

    def wrap(self, kernel):
        def counted(*args):
            made = kernel(*args)
            self.made, self.declined = self.made + made, self.declined + (not made)
            return made

        return counted


def _use_kernels(monkeypatch, use: bool) -> Calls:
    """The optimizers with their kernels (counted) or without (NumPy only)."""
    calls = Calls()
    for name, module in MODULES.items():
        monkeypatch.setattr(module, "fused", calls.wrap(KERNELS[name.removesuffix("w")]) if use else None)
    return calls


def _run_updates(monkeypatch, use_kernel, opt, dtype, steps=40, size=1000, seed=0, lrs=None):
    calls = _use_kernels(monkeypatch, use_kernel)
    rng = np.random.default_rng(seed)
    # Magnitudes over many decades, exact zeros, and gradients much larger and smaller than the weights.
    params = [(rng.standard_normal(size) * 10.0 ** rng.integers(-6, 3, size)).astype(dtype), np.zeros(7, dtype)]
    state = opt.init(params)
    for step in range(steps):
        grads = [(rng.standard_normal(p.shape) * 10.0 ** rng.integers(-8, 4, p.shape)).astype(dtype) for p in params]
        grads[0][:: 11 + step] = 0.0
        state = opt.update(params, grads, state, lr=None if lrs is None else lrs[step])
    if use_kernel:  # every update went through the kernel, none through NumPy
        assert (calls.made, calls.declined) == (steps * len(params), 0)
    return params, state


@needs_kernels
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(
    "opt",
    [
        optcore.make_optimizer("adam", lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8),
        optcore.make_optimizer("adam", lr=0.3, beta1=0.5, beta2=0.9, eps=1e-3),
        optcore.make_optimizer("adam", lr=2e-2, beta1=0.0, beta2=0.0, eps=1e-12),
        optcore.make_optimizer("adamw", lr=1e-2, beta1=0.95, beta2=0.98, eps=1e-6, weight_decay=0.1),
        optcore.make_optimizer("rmsprop", lr=1e-3, beta2=0.99, eps=1e-8),
        optcore.make_optimizer("rmsprop", lr=0.2, beta2=0.5, eps=1e-2),
        optcore.make_optimizer("adagrad", lr=0.05, eps=1e-10),
        optcore.make_optimizer("momentum", lr=0.1, beta1=0.9),
        optcore.make_optimizer("momentum", lr=0.03, beta1=0.6, nesterov=True),
        optcore.make_optimizer("momentum", lr=0.5, beta1=0.0),
    ],
    ids=repr,
)
def test_the_fused_update_gives_numpys_bits(monkeypatch, opt, dtype):
    lrs = list(np.geomspace(0.05, 1e-4, 40))  # a schedule's learning rate, step by step
    want, want_state = _run_updates(monkeypatch, False, opt, dtype, lrs=lrs)
    got, got_state = _run_updates(monkeypatch, True, opt, dtype, lrs=lrs)
    for w, g in zip(want, got, strict=True):
        assert g.dtype == dtype
        np.testing.assert_array_equal(g, w, strict=True)
    for name in opt.moment_names:
        for w, g in zip(want_state.moments[name], got_state.moments[name], strict=True):
            np.testing.assert_array_equal(g, w, strict=True)
    assert not np.array_equal(want[0], _run_updates(monkeypatch, False, opt, dtype, steps=0)[0][0])  # it moved


@needs_kernels
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name", list(MODULES))
def test_training_with_the_fused_update_is_bit_for_bit_the_numpy_training(monkeypatch, dtype, name):
    digits = optcore.load_dataset("digits", seed=0)

    def train(use_kernel):
        calls = _use_kernels(monkeypatch, use_kernel)
        net = optcore.Network.for_dataset(digits, hidden=[32, 16], dtype=dtype)
        opt = optcore.make_optimizer(name, lr=0.01)
        history = optcore.train(digits, net, opt, epochs=2, batch_size=64, seed=2, record_minibatch=True)
        return history, calls

    (want, _), (got, calls) = train(False), train(True)
    assert calls.made > 0 and calls.declined == 0  # the training's flat buffers are what the kernels take
    for w, g in zip(want.params, got.params, strict=True):
        np.testing.assert_array_equal(g, w, strict=True)
    assert got.minibatch_cost == want.minibatch_cost and got.val_cost == want.val_cost


# name -> (arrays: p, g and the moments; scalars)
SIGNATURES = {"adam": (4, 6), "rmsprop": (3, 4), "adagrad": (3, 2), "momentum": (3, 4)}


@needs_kernels
@pytest.mark.parametrize("name", list(SIGNATURES))
@pytest.mark.parametrize(
    "case",
    [
        "strided",
        "mixed types",
        "lengths",
        "shapes",
        "same array",
        "overlapping views",
        "read-only",
        "float16",
        "integers",
        "not an array",
    ],
)
def test_a_kernel_declines_what_it_does_not_take_and_changes_nothing(name, case):
    n_arrays, n_scalars = SIGNATURES[name]
    n = 64
    arrays = [np.linspace(1, 2, n) for _ in range(n_arrays)]
    if case == "strided":
        arrays[0] = np.linspace(1, 2, 2 * n)[::2]
    elif case == "mixed types":
        arrays[1] = arrays[1].astype(np.float32)
    elif case == "lengths":
        arrays[-1] = np.linspace(1, 2, n + 1)
    elif case == "shapes":
        arrays[0], arrays[1] = arrays[0].reshape(8, 8), arrays[1].reshape(4, 16)
        arrays[2:] = [a.reshape(8, 8) for a in arrays[2:]]
    elif case == "same array":
        arrays[-1] = arrays[0]
    elif case == "overlapping views":  # two views of one buffer, one element in common
        base = np.linspace(1, 2, 2 * n - 1)
        arrays[0], arrays[-1] = base[:n], base[n - 1 :]
    elif case == "read-only":
        arrays[-1].flags.writeable = False
    elif case == "float16":
        arrays = [a.astype(np.float16) for a in arrays]
    elif case == "integers":
        arrays = [np.arange(n) for _ in arrays]
    elif case == "not an array":
        arrays[1] = list(arrays[1])
    before = [np.array(a, copy=True) for a in arrays]
    assert KERNELS[name](*arrays, *[0.5] * n_scalars) is False
    for b, a in zip(before, arrays, strict=True):
        np.testing.assert_array_equal(np.asarray(a), b)
    with pytest.raises(TypeError):  # a wrong call is an error, not a silent decline
        KERNELS[name](*arrays)


@needs_kernels
@pytest.mark.parametrize("name", list(SIGNATURES))
@pytest.mark.parametrize("case", ["1-D", "2-D", "read-only gradient", "adjacent views", "empty"])
def test_a_kernel_takes_contiguous_arrays_of_one_shape_and_type(name, case):
    n_arrays, n_scalars = SIGNATURES[name]
    arrays = [np.linspace(1, 2, 64, dtype=np.float32) for _ in range(n_arrays)]
    if case == "2-D":
        arrays = [a.reshape(8, 8) for a in arrays]
    elif case == "read-only gradient":
        arrays[1].flags.writeable = False
    elif case == "adjacent views":  # one buffer cut in pieces that touch but do not overlap
        base = np.linspace(1, 2, 64 * n_arrays, dtype=np.float32)
        arrays = [base[64 * i : 64 * (i + 1)] for i in range(n_arrays)]
    elif case == "empty":
        arrays = [np.empty(0, np.float64) for _ in range(n_arrays)]
    before = [a.copy() for a in arrays]
    assert KERNELS[name](*arrays, *[0.5] * n_scalars) is True
    if case != "empty":
        assert not np.array_equal(arrays[0], before[0])  # the parameters moved
        np.testing.assert_array_equal(arrays[1], before[1])  # the gradient is only read


@needs_kernels
@pytest.mark.parametrize("name", list(MODULES))
def test_an_optimizer_on_arrays_the_kernel_declines_still_takes_the_numpy_update(monkeypatch, name):
    opt = optcore.make_optimizer(name, lr=0.1)

    def step(use_kernel):
        _use_kernels(monkeypatch, use_kernel)
        base = np.linspace(-1, 1, 40)
        p = base[::2]  # a strided view: not C-contiguous
        state = opt.init([p])
        opt.update([p], [np.full(20, 0.5)], state)
        return base

    np.testing.assert_array_equal(step(True), step(False))
    assert not np.array_equal(step(True), np.linspace(-1, 1, 40))
