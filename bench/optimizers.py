"""One optimizer update: the NumPy passes against the compiled one-pass kernel (optcore/_kernels.c).

For each optimizer and size, the same update (one flat parameter array, its gradient and moments) is timed
with the kernel and without it, in turns inside every repeat, on the main thread's CPU clock; the table gives
the minimum over the repeats of the mean over ``--updates`` updates, and the ratio. Sizes: issue 15's
network (100 → 256 → 256 → 10, 94,218 parameters) and the quickstart's (2 → 32 → 32 → 1, 1,217).

    python bench/optimizers.py                  # a few seconds
    python bench/optimizers.py --dtype float64 --repeats 9

Nothing is asserted: it prints figures from one run. Without the kernels built (no C compiler at install)
it says so and stops.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's code, not an installed one

import optcore
from optcore.optimizers import adagrad, adam, momentum, rmsprop
from optcore.optimizers.kernels import kernel

MODULES = {"adam": adam, "rmsprop": rmsprop, "adagrad": adagrad, "momentum": momentum}
CASES = [  # (label, optimizer name, hyperparameters)
    ("adam", "adam", {}),
    ("rmsprop", "rmsprop", {}),
    ("adagrad", "adagrad", {}),
    ("momentum", "momentum", {}),
    ("momentum, Nesterov", "momentum", {"nesterov": True}),
]
SIZES = {"94,218 (issue 15)": 94_218, "1,217 (quickstart)": 1_217}


def per_update(name: str, hyper: dict, size: int, dtype, fused: bool, updates: int) -> float:
    """Mean main-thread CPU seconds of one update, after a warm-up."""
    MODULES[name].fused = kernel(name) if fused else None
    rng = np.random.default_rng(0)
    opt = optcore.make_optimizer(name, lr=1e-3, **hyper)
    params = [rng.standard_normal(size).astype(dtype)]
    grads = [(rng.standard_normal(size) * 1e-2).astype(dtype)]
    state = opt.init(params)
    for _ in range(20):
        opt.update(params, grads, state)
    start = time.thread_time()
    for _ in range(updates):
        opt.update(params, grads, state)
    return (time.thread_time() - start) / updates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    parser.add_argument("--repeats", type=int, default=7, help="repeats; the minimum is reported (default 7)")
    parser.add_argument("--updates", type=int, default=None, help="updates per repeat (default: by size)")
    args = parser.parse_args()
    if not all(kernel(name) for name in MODULES):
        raise SystemExit("optcore._kernels is not built (or is stale): `pip install -e .` with a C compiler")
    dtype = np.dtype(args.dtype)
    saved = {name: module.fused for name, module in MODULES.items()}
    print(f"one update, {args.dtype}, main-thread CPU time, min of {args.repeats} repeats")
    print()
    print("| optimizer | parameters | NumPy µs | one pass µs | NumPy / one pass |")
    print("|---|---|---:|---:|---:|")
    try:
        for label, name, hyper in CASES:
            for size_label, size in SIZES.items():
                updates = args.updates or (400 if size > 10_000 else 4_000)
                times = {True: [], False: []}
                for _ in range(args.repeats):
                    for fused in (False, True):
                        times[fused].append(per_update(name, hyper, size, dtype, fused, updates))
                numpy_us, fused_us = 1e6 * min(times[False]), 1e6 * min(times[True])
                print(f"| {label} | {size_label} | {numpy_us:.1f} | {fused_us:.1f} | {numpy_us / fused_us:.1f}× |")
    finally:
        for name, module in MODULES.items():
            module.fused = saved[name]


if __name__ == "__main__":
    main()
