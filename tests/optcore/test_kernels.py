"""optcore._kernels: Adam's compiled one-pass update gives NumPy's twelve passes' bits, and declines what it
does not take (the NumPy path then runs)."""

import os

import numpy as np
import pytest

import optcore
from optcore.optimizers import adam as adam_module

fused = adam_module.fused_adam
needs_kernels = pytest.mark.skipif(
    fused is None and not os.environ.get("OPTSWEEP_REQUIRE_KERNELS"),
    reason="optcore._kernels is not built (no C compiler at install); optcore runs Adam in NumPy",
)


@pytest.mark.skipif(
    not os.environ.get("OPTSWEEP_REQUIRE_KERNELS"),
    reason="OPTSWEEP_REQUIRE_KERNELS is unset: the kernels are optional here (.ci/run requires them)",
)
def test_the_kernels_are_built_where_they_are_required():
    assert fused is not None, "optcore._kernels did not build: is a C compiler installed?"


def _run_updates(monkeypatch, use_kernel, opt, dtype, steps=40, size=1000, seed=0, lrs=None):
    monkeypatch.setattr(adam_module, "fused_adam", fused if use_kernel else None)
    rng = np.random.default_rng(seed)
    # Magnitudes over many decades, exact zeros, and gradients much larger and smaller than the weights.
    params = [(rng.standard_normal(size) * 10.0 ** rng.integers(-6, 3, size)).astype(dtype), np.zeros(7, dtype)]
    state = opt.init(params)
    for step in range(steps):
        grads = [(rng.standard_normal(p.shape) * 10.0 ** rng.integers(-8, 4, p.shape)).astype(dtype) for p in params]
        grads[0][:: 11 + step] = 0.0
        state = opt.update(params, grads, state, lr=None if lrs is None else lrs[step])
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
    for name in ("m", "v"):
        for w, g in zip(want_state.moments[name], got_state.moments[name], strict=True):
            np.testing.assert_array_equal(g, w, strict=True)
    assert not np.array_equal(want[0], _run_updates(monkeypatch, False, opt, dtype, steps=0)[0][0])  # it moved


@needs_kernels
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_training_with_the_fused_update_is_bit_for_bit_the_numpy_training(monkeypatch, dtype):
    digits = optcore.load_dataset("digits", seed=0)

    def train(use_kernel):
        monkeypatch.setattr(adam_module, "fused_adam", fused if use_kernel else None)
        net = optcore.Network.for_dataset(digits, hidden=[32, 16], dtype=dtype)
        opt = optcore.make_optimizer("adam", lr=0.01, beta1=0.9, beta2=0.99, eps=1e-7)
        return optcore.train(digits, net, opt, epochs=2, batch_size=64, seed=2, record_minibatch=True)

    want, got = train(False), train(True)
    for w, g in zip(want.params, got.params, strict=True):
        np.testing.assert_array_equal(g, w, strict=True)
    assert got.minibatch_cost == want.minibatch_cost and got.val_cost == want.val_cost


@needs_kernels
@pytest.mark.parametrize(
    "case",
    ["strided", "mixed types", "lengths", "same array", "read-only", "float16", "integers", "not an array"],
)
def test_the_kernel_declines_what_it_does_not_take_and_changes_nothing(case):
    n = 64
    p, g, m, v = (np.linspace(1, 2, n) for _ in range(4))
    if case == "strided":
        p = np.linspace(1, 2, 2 * n)[::2]
    elif case == "mixed types":
        g = g.astype(np.float32)
    elif case == "lengths":
        v = np.linspace(1, 2, n + 1)
    elif case == "same array":
        m = v
    elif case == "read-only":
        p.flags.writeable = False
    elif case == "float16":
        p, g, m, v = (a.astype(np.float16) for a in (p, g, m, v))
    elif case == "integers":
        p, g, m, v = (np.arange(n) for _ in range(4))
    elif case == "not an array":
        g = list(g)
    before = [np.array(a, copy=True) for a in (p, g, m, v)]
    assert fused(p, g, m, v, 0.9, 0.1, 0.99, 0.01, 1e-8, 1e-3) is False
    for b, a in zip(before, (p, g, m, v), strict=True):
        np.testing.assert_array_equal(np.asarray(a), b)


@needs_kernels
def test_adam_on_arrays_the_kernel_declines_still_takes_the_numpy_update(monkeypatch):
    opt = optcore.make_optimizer("adam", lr=0.1, beta1=0.9, beta2=0.99, eps=1e-8)

    def step(use_kernel):
        monkeypatch.setattr(adam_module, "fused_adam", fused if use_kernel else None)
        base = np.linspace(-1, 1, 40)
        p = base[::2]  # a strided view: not C-contiguous
        state = opt.init([p])
        opt.update([p], [np.full(20, 0.5)], state)
        return base

    np.testing.assert_array_equal(step(True), step(False))
    assert not np.array_equal(step(True), np.linspace(-1, 1, 40))
