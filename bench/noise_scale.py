"""What measuring the gradient noise scale costs: seconds per training step with and without it.

bench/core.py's network and data (n_features → 256 → 256 → 1, relu, sigmoid output with log-loss, Adam
lr = 1e-3, float32, 20,000 training rows × 100 features). A step is what ``optcore.train`` does per batch:
``cost_and_grad`` and an Adam update on the flat parameter buffer; a measured step calls
``cost_grad_and_norms`` instead and folds the norms into a :class:`optcore.NoiseScale`
(``train(..., noise_scale=True)``). The two take turns inside every repeat, so a slow spell of a shared
machine falls on both alike. Each cell is the median (``--stat min``: the minimum) over ``--repeats`` of the
seconds per step of ``--epochs`` epochs, after a warm-up epoch each, by the wall clock and by this thread's
CPU time; with ``--threads 1`` the CPU time is the step's own work, which other processes on a busy machine
do not inflate.

    python bench/noise_scale.py                 # batch 128, 7 repeats of 2 epochs, about a minute
    python bench/noise_scale.py --threads 1 --stat min --batches 32 128 512

Target: a measured step costs ≤ 1.15× a plain step at batch 128. Nothing here is asserted: it prints the
ratios from one run.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import numpy as np

import optcore

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
# the same network and data as bench/core.py
from core import HIDDEN, LR, blas_threads, load, print_environment

from optcore.network import pack
from optcore.noise import NoiseScale


def seconds_per_step(ds: optcore.Dataset, batch: int, epochs: int, seed: int, measure: bool) -> tuple[float, float]:
    """(wall-clock, CPU) seconds per step over ``epochs`` epochs of optcore.train's inner loop, measured
    (norms and the noise-scale update) or not; CPU time is this thread's (``time.thread_time``)."""
    net = optcore.Network.for_dataset(ds, hidden=HIDDEN, activation="relu", dtype=np.float32)
    init_rng, shuffle_rng = optcore.seeded_generators(seed)
    flat, params = pack(net.init(init_rng))
    flat_grads, grads = pack(net.new_grads(params))
    opt = optcore.make_optimizer("adam", lr=LR)
    state = opt.init([flat])
    noise = NoiseScale(0.9)
    wall = cpu = 0.0
    for _ in range(epochs):
        batches = list(optcore.minibatches(ds.X_train, ds.Y_train, batch, shuffle_rng))  # shuffled outside the clock
        start_wall, start_cpu = time.perf_counter(), time.thread_time()
        for xb, yb in batches:
            if measure:
                _, _, per_example_sq, batch_sq = net.cost_grad_and_norms(params, xb, yb, grads, n_train=ds.n_train)
                noise.update(per_example_sq, batch_sq)
            else:
                net.cost_and_grad(params, xb, yb, grads, n_train=ds.n_train)
            opt.update([flat], [flat_grads], state, LR)
        wall += time.perf_counter() - start_wall
        cpu += time.thread_time() - start_cpu
    steps = epochs * optcore.n_batches(ds.n_train, batch)
    return wall / steps, cpu / steps


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, nargs="+", default=[128])
    parser.add_argument("--epochs", type=int, default=2, help="timed epochs per repeat (default 2)")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--samples", type=int, default=20_000)
    parser.add_argument("--features", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, help="BLAS threads (default: NumPy's BLAS setting)")
    parser.add_argument("--stat", choices=["median", "min"], default="median", help="how repeats combine")
    args = parser.parse_args(argv)
    if args.threads:
        from threadpoolctl import threadpool_limits

        threadpool_limits(args.threads, user_api="blas")  # stays in force for the whole run

    print_environment(blas_threads(), has_torch=False)
    ds = load(args.samples, args.features, args.seed)
    print(
        f"data: {ds.n_train} × {ds.n_features} float32, "
        f"network {ds.n_features}-{'-'.join(map(str, HIDDEN))}-1 relu, Adam"
    )
    print(
        f"{args.stat} of {args.repeats} × {args.epochs} epoch(s), plain and measured in turn, after a warm-up epoch\n"
    )
    combine = statistics.median if args.stat == "median" else min
    print(
        "| batch | plain µs/step | measured µs/step | measured / plain | plain CPU µs | measured CPU µs | CPU ratio |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for batch in args.batches:
        for measure in (False, True):  # warm-up: workspaces and BLAS thread pools
            seconds_per_step(ds, batch, 1, args.seed, measure)
        times: dict[bool, list[tuple[float, float]]] = {False: [], True: []}
        for r in range(args.repeats):
            for measure in (False, True):
                times[measure].append(seconds_per_step(ds, batch, args.epochs, args.seed + r, measure))
        cells = []
        for clock in (0, 1):
            plain, measured = (combine([t[clock] for t in times[m]]) for m in (False, True))
            cells += [f"{plain * 1e6:.0f}", f"{measured * 1e6:.0f}", f"{measured / plain:.3f}×"]
        print(f"| {batch} | " + " | ".join(cells) + " |")
    print("\ntarget: measured / plain ≤ 1.15 at batch 128")
    if hasattr(os, "getloadavg"):
        print(f"load average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
