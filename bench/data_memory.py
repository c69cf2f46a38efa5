"""Peak memory of loading a large numeric CSV with ``optcore.load_dataset(path=…)`` and training on it.

Run: ``python bench/data_memory.py [--rows 1000000] [--columns 50] [--folder /tmp]``. It writes a CSV of
``rows × columns`` standard-normal features and a 0/1 label (once; reused when present), then in a fresh
process per step measures the peak resident set (``ru_maxrss``) above that process's resident set just
before the step (after the imports), and divides it by the size of the float64 feature array
``rows × columns × 8`` bytes. Steps: pandas' ``read_csv`` alone (the floor any loader pays), optcore's load,
and optcore's load followed by one training epoch (float32, as sweeps train). Prints one table; never asserted.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np


def write_csv(path: Path, rows: int, columns: int, seed: int = 0) -> None:
    import pandas as pd

    rng = np.random.default_rng(seed)
    names = [f"x{i}" for i in range(columns)]
    with open(path, "w") as f:
        for start in range(0, rows, 100_000):
            X = rng.standard_normal((min(100_000, rows - start), columns))
            frame = pd.DataFrame(X, columns=names).assign(label=(X[:, 0] + X[:, 1] > 0).astype(int))
            frame.to_csv(f, header=start == 0, index=False, float_format="%.6g")


def _rss_now() -> int:
    """Current resident set in bytes (Linux)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()


def _step(kind: str, path: str) -> dict:
    """Run one step in this (fresh) process; return its peak above the resident set it started from."""
    # Imported before the baseline: modules are not the data's cost.
    import pandas as pd
    import sklearn.compose
    import sklearn.model_selection  # noqa: F401

    import optcore

    base = _rss_now()
    start = time.perf_counter()
    if kind == "read_csv":
        pd.read_csv(path)
    else:
        ds = optcore.load_dataset(path=path, target="label", task="binary")
        if kind == "load+train":
            net = optcore.Network.for_dataset(ds, hidden=[16])
            optcore.train(ds, net, optcore.make_optimizer("adam", lr=1e-3), epochs=1, batch_size=1024, seed=0)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
    return {"peak_above_base": peak - base, "base": base, "seconds": seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--columns", type=int, default=50)
    parser.add_argument("--folder", default="/tmp")
    parser.add_argument("--step", help=argparse.SUPPRESS)  # internal: run one step in this process
    parser.add_argument("--path", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.step:
        print(json.dumps(_step(args.step, args.path)))
        return

    path = Path(args.folder) / f"optsweep_bench_{args.rows}x{args.columns}.csv"
    if not path.exists():
        print(f"writing {path} …", flush=True)
        write_csv(path, args.rows, args.columns)
    array = args.rows * args.columns * 8
    print(f"{path.name}: {path.stat().st_size / 2**20:.0f} MiB on disk; float64 features {array / 2**20:.0f} MiB")
    print(f"{'step':<12} {'peak above start':>17} {'× float64 array':>16} {'seconds':>8}")
    for step in ("read_csv", "load", "load+train"):
        cmd = [sys.executable, __file__, "--step", step, "--path", str(path)]
        result = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
        peak = result["peak_above_base"]
        print(f"{step:<12} {peak / 2**20:>13.0f} MiB {peak / array:>16.2f} {result['seconds']:>8.1f}")


if __name__ == "__main__":
    main()
