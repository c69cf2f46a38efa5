"""Training throughput (samples per second) of optcore against mini-batch size, powers of two or not.

Is a batch of 256 faster per sample than one of 200 or 384 on this machine? The table answers it from one run:
every batch size trains the same network (n_features → 256 → 256 → 1, relu, Adam) for whole epochs through
``optcore.train``, and each size that is not a power of two is compared with the log-linear interpolation of
its two neighbouring powers of two (1.00× = on the trend, < 1 = slower than the powers of two around it).

    python bench/batch_throughput.py            # about 40 s on 2 cores
    python bench/batch_throughput.py --quick

Each cell is the median (``--stat min``: the minimum) over ``--repeats`` rounds; within a round every batch
size runs once, in turn, so a slow spell of a shared machine is spread over all sizes instead of landing on one.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's code, not an installed one

import optcore

BATCHES = [32, 48, 64, 96, 100, 128, 192, 200, 256, 384, 512, 768, 1024]
HIDDEN = (256, 256)


def epoch_seconds(ds: optcore.Dataset, batch: int, epochs: int, seed: int) -> float:
    net = optcore.Network.for_dataset(ds, hidden=HIDDEN, activation="relu", dtype=np.float32)
    opt = optcore.make_optimizer("adam", lr=1e-3)
    history = optcore.train(ds, net, opt, epochs=epochs, batch_size=batch, seed=seed)
    return sum(history.epoch_seconds) / epochs


def is_power_of_two(n: int) -> bool:
    return n & (n - 1) == 0


def neighbour_trend(batch: int, throughput: dict[int, float]) -> float | None:
    """Throughput the neighbouring powers of two predict for ``batch``, interpolated linearly in log(batch)."""
    lo, hi = 2 ** math.floor(math.log2(batch)), 2 ** math.ceil(math.log2(batch))
    if lo not in throughput or hi not in throughput:
        return None
    w = (math.log(batch) - math.log(lo)) / (math.log(hi) - math.log(lo))
    return math.exp((1 - w) * math.log(throughput[lo]) + w * math.log(throughput[hi]))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, nargs="+", default=BATCHES)
    parser.add_argument("--epochs", type=int, default=1, help="epochs per measurement (default 1)")
    parser.add_argument("--repeats", type=int, default=9, help="rounds; the median is reported (default 9)")
    parser.add_argument("--samples", type=int, default=20_000, help="training rows (default 20000)")
    parser.add_argument("--features", type=int, default=100)
    parser.add_argument("--quick", action="store_true", help="2 rounds")
    parser.add_argument(
        "--stat",
        choices=["median", "min"],
        default="median",
        help="how repeats combine (default median; min estimates the uncontended time on a shared machine)",
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.quick:
        args.repeats = 2
    batches = sorted(set(args.batches))

    ds = optcore.load_dataset(
        "classification",
        seed=args.seed,
        n_samples=args.samples * 5 // 4,  # the 20 % validation split leaves `samples` training rows
        n_features=args.features,
        n_informative=20,
        n_redundant=10,
    ).astype(np.float32)
    try:
        from threadpoolctl import threadpool_info

        blas = next(i for i in threadpool_info() if i["user_api"] == "blas" and "numpy" in i["filepath"])
        blas_note = (
            f"{blas['internal_api']} {blas['version']} ({blas.get('architecture')}), {blas['num_threads']} threads"
        )
    except (ImportError, StopIteration):
        blas_note = "unknown (threadpoolctl not importable)"
    load = f", load average {os.getloadavg()[0]:.2f}" if hasattr(os, "getloadavg") else ""
    print(f"optcore from {os.path.dirname(optcore.__file__)}")
    print(f"numpy {np.__version__}, BLAS {blas_note}, {os.cpu_count()} logical CPUs{load}")
    print(
        f"data: {ds.n_train} × {ds.n_features} float32, network {ds.n_features}-{'-'.join(map(str, HIDDEN))}-1 "
        f"relu, Adam; {args.stat} of {args.repeats} rounds of {args.epochs} epoch(s)\n"
    )

    for batch in batches:  # warm-up: each batch size's workspace and the BLAS thread pool
        epoch_seconds(ds, batch, 1, args.seed)
    samples: dict[int, list[float]] = {b: [] for b in batches}
    for r in range(args.repeats):
        for batch in batches:
            samples[batch].append(epoch_seconds(ds, batch, args.epochs, args.seed + r))

    combine = statistics.median if args.stat == "median" else min
    seconds = {b: combine(v) for b, v in samples.items()}
    throughput = {b: ds.n_train / s for b, s in seconds.items()}
    print("| batch | power of 2 | steps/epoch | s/epoch | samples/s | µs/step | vs. neighbouring powers of 2 |")
    print("|---:|:---:|---:|---:|---:|---:|---:|")
    for b in batches:
        steps = -(-ds.n_train // b)
        trend = None if is_power_of_two(b) else neighbour_trend(b, throughput)
        vs = "—" if trend is None else f"{throughput[b] / trend:.2f}×"
        print(
            f"| {b} | {'yes' if is_power_of_two(b) else 'no'} | {steps} | {seconds[b]:.3f} "
            f"| {throughput[b]:,.0f} | {seconds[b] / steps * 1e6:,.0f} | {vs} |"
        )


if __name__ == "__main__":
    main()
