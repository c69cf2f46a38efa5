"""Seconds per training epoch: optcore against scikit-learn's MLPClassifier, PyTorch on the CPU and bare matmuls.

The same network (n_features → 256 → 256 → K, relu, log-loss on a sigmoid output for K = 1 or on a softmax
for ``--classes`` K ≥ 3, Adam lr = 1e-3, no L2) on the same float32 training set (make_classification,
20,000 training rows × 100 features), for each batch size. Every library shuffles once per epoch and takes
⌈m / batch⌉ steps. The "bare matmul" column times only what any NumPy implementation must do: the epoch's
row gather (one permuted copy of X and Y, as optcore and the torch loop make) and the matrix products
optcore's forward and backward pass make for the epoch's batches (3 forward, 5 backward: ∂W for every layer
and ∂A for all but the first; the one with an inner dimension of 1 as a broadcast multiply).

    python bench/core.py                  # the README table, about 2 minutes on 2 cores
    python bench/core.py --classes 10     # the 10-class problem of issue 15
    python bench/core.py --quick          # a smoke run, about 20 s
    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python bench/core.py
    python bench/core.py --classes 10 --against ../main --clock thread --repeats 7   # before/after a change

``--against CHECKOUT`` times only optcore and the floor, in fresh processes that alternate between that
checkout's optcore and this one's, and prints each one's ratio to the floor and after / before.
``--clock thread`` measures the main thread's CPU time (``time.thread_time``, BLAS at 1 thread) instead of
the wall clock: on a shared, loaded machine that is the figure that stays put, since time spent waiting for
a core does not count (cache traffic from the neighbours still does).

Each cell is the median (``--stat min``: the minimum) over ``--repeats`` of (time of ``--epochs`` epochs) /
epochs, after one warm-up epoch per library and batch size; the libraries take turns inside every repeat, so
a slow spell of a shared machine falls on all of them alike. Nothing here is asserted: it prints ratios from
one run.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import statistics
import subprocess
import sys
import time
import types
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's code, not an installed one

import optcore

HIDDEN = (256, 256)
LR = 1e-3
clock = time.perf_counter  # --clock thread: time.thread_time, here and in optcore.train


def use_thread_clock() -> None:
    """Time by the main thread's CPU time: the floor through ``clock``, optcore's epochs by pointing the
    ``time`` that optcore.train reads its clock from at ``time.thread_time`` (a benchmark's patch)."""
    global clock
    clock = time.thread_time
    sys.modules["optcore.train"].time = types.SimpleNamespace(perf_counter=time.thread_time)


# -- one epoch (or E epochs) per library -----------------------------------------------------------------------


def time_optcore(ds: optcore.Dataset, batch: int, epochs: int, seed: int) -> tuple[float, float]:
    """(seconds per epoch, final validation accuracy) of ``optcore.train``; its own per-epoch clock."""
    net = optcore.Network.for_dataset(ds, hidden=HIDDEN, activation="relu", dtype=np.float32)
    opt = optcore.make_optimizer("adam", lr=LR)
    history = optcore.train(ds, net, opt, epochs=epochs, batch_size=batch, seed=seed)
    return sum(history.epoch_seconds) / epochs, history.val_metric[-1]


def time_sklearn(ds: optcore.Dataset, batch: int, epochs: int, seed: int) -> tuple[float, float]:
    """(fit seconds / epochs, validation accuracy) of MLPClassifier with the same architecture and Adam."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier

    clf = MLPClassifier(
        hidden_layer_sizes=HIDDEN,
        activation="relu",
        solver="adam",
        alpha=0.0,
        batch_size=batch,
        learning_rate_init=LR,
        max_iter=epochs,
        shuffle=True,
        tol=0.0,
        n_iter_no_change=10**9,  # with tol = 0: never stop early
        early_stopping=False,
        random_state=seed,
    )
    y = ds.Y_train[:, 0] if ds.n_outputs == 1 else ds.Y_train.argmax(axis=1)
    start = clock()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # max_iter is reached on purpose
        clf.fit(ds.X_train, y)
    seconds = clock() - start
    assert clf.coefs_[0].dtype == np.float32, "MLPClassifier should keep float32 input in float32"
    y_val = ds.Y_val[:, 0] if ds.n_outputs == 1 else ds.Y_val.argmax(axis=1)
    return seconds / epochs, float(clf.score(ds.X_val, y_val))


def time_torch(ds: optcore.Dataset, batch: int, epochs: int, seed: int) -> tuple[float, float]:
    """(seconds per epoch, validation accuracy): nn.Sequential, BCEWithLogitsLoss (CrossEntropyLoss on one-hot
    targets for K classes), Adam, a randperm per epoch."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    sizes = [ds.n_features, *HIDDEN, ds.n_outputs]
    layers: list = []
    for fan_in, fan_out in itertools.pairwise(sizes):
        layers += [torch.nn.Linear(fan_in, fan_out), torch.nn.ReLU()]
    model = torch.nn.Sequential(*layers[:-1])
    loss_fn = torch.nn.BCEWithLogitsLoss() if ds.n_outputs == 1 else torch.nn.CrossEntropyLoss()
    opt = torch.optim.Adam(model.parameters(), lr=LR)
    X, Y = torch.from_numpy(ds.X_train), torch.from_numpy(ds.Y_train)
    m = X.shape[0]

    start = clock()
    for _ in range(epochs):
        perm = torch.randperm(m, generator=gen)
        Xs, Ys = X[perm], Y[perm]  # one gather per epoch, then contiguous slices, as optcore does
        for s in range(0, m, batch):
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(model(Xs[s : s + batch]), Ys[s : s + batch])
            loss.backward()
            opt.step()
    seconds = clock() - start
    with torch.no_grad():
        logits = model(torch.from_numpy(ds.X_val))
    if ds.n_outputs == 1:
        accuracy = float(((logits > 0).numpy() == (ds.Y_val > 0.5)).mean())
    else:
        accuracy = float((logits.argmax(dim=1).numpy() == ds.Y_val.argmax(axis=1)).mean())
    return seconds / epochs, accuracy


def time_matmuls(ds: optcore.Dataset, batch: int, epochs: int, seed: int) -> tuple[float, float]:
    """Seconds per epoch of the epoch's row gather and the 8 matrix products per batch of optcore's
    cost_and_grad.

    The floor: no bias, activation, loss or optimizer, buffers reused.
    """
    rng = np.random.default_rng(seed)
    sizes = [ds.n_features, *HIDDEN, ds.n_outputs]
    W = [rng.standard_normal(s, dtype=np.float32) * 0.05 for s in itertools.pairwise(sizes)]
    dW = [np.empty_like(w) for w in W]
    m, L = ds.X_train.shape[0], len(W)
    buffers: dict[int, tuple[list[np.ndarray], list[np.ndarray]]] = {}

    start = clock()
    for _ in range(epochs):
        perm = rng.permutation(m)
        X, _Y = ds.X_train[perm], ds.Y_train[perm]  # the gather optcore.minibatches makes
        for s in range(0, m, batch):
            xb = X[s : s + batch]
            n = xb.shape[0]
            if n not in buffers:
                buffers[n] = tuple([np.empty((n, k), dtype=np.float32) for k in sizes[1:]] for _ in range(2))
            acts, deltas = buffers[n]
            a = xb
            for l in range(L):  # forward: Z_l = A_{l−1} W_l
                np.matmul(a, W[l], out=acts[l])
                a = acts[l]
            dz = acts[-1]  # stands in for ∂J/∂Z_L
            for l in range(L - 1, -1, -1):  # backward: dW_l = A_{l−1}ᵀ dZ_l, dA_{l−1} = dZ_l W_lᵀ
                np.matmul((acts[l - 1] if l else xb).T, dz, out=dW[l])
                if l:
                    # With one output unit dZ_L W_Lᵀ is an outer product: BLAS's gemm is 2–4× slower at it
                    # than a broadcast multiply, so the floor takes the multiply.
                    product = np.multiply if dz.shape[1] == 1 else np.matmul
                    product(dz, W[l].T, out=deltas[l - 1])
                    dz = deltas[l - 1]
    return (clock() - start) / epochs, float("nan")


# -- environment, driver, table --------------------------------------------------------------------------------


def blas_threads() -> int:
    """Threads NumPy's BLAS uses (threadpoolctl), else the CPU count."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return os.cpu_count() or 1
    blas = [i for i in threadpool_info() if i["user_api"] == "blas" and "numpy" in i["filepath"]]
    return int(blas[0]["num_threads"]) if blas else os.cpu_count() or 1


def print_environment(threads: int, has_torch: bool) -> None:
    import sklearn

    print(f"optcore from {os.path.dirname(optcore.__file__)}")
    print(f"python {platform.python_version()}, numpy {np.__version__}, scikit-learn {sklearn.__version__}", end="")
    if has_torch:
        import torch

        print(f", torch {torch.__version__} ({torch.get_num_threads()} threads)", end="")
    print()
    print(f"cpu: {platform.processor() or platform.machine()}, {os.cpu_count()} logical CPUs", end="")
    if hasattr(os, "getloadavg"):
        print(f", load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}", end="")
    print()
    try:
        from threadpoolctl import threadpool_info

        for info in threadpool_info():
            if info["user_api"] == "blas":
                owner = next((n for n in ("numpy", "scipy", "torch") if n in info["filepath"]), "?")
                arch = info.get("architecture") or "?"
                print(f"{owner} BLAS: {info['internal_api']} {info['version']} ({arch}), {info['num_threads']} threads")
    except ImportError:
        print(f"numpy BLAS: threadpoolctl not importable; assuming {threads} threads")
    openblas = {k: v for k, v in os.environ.items() if k.startswith(("OPENBLAS", "OMP_", "MKL_"))}
    print("BLAS/OpenMP environment: " + (", ".join(f"{k}={v}" for k, v in sorted(openblas.items())) or "none set"))


def load(n_train: int, n_features: int, seed: int, classes: int = 2) -> optcore.Dataset:
    # val_fraction 0.2 of n_train / 0.8 samples leaves exactly n_train training rows.
    ds = optcore.load_dataset(
        "classification",
        seed=seed,
        n_samples=n_train * 5 // 4,
        n_features=n_features,
        n_informative=20,
        n_redundant=10,
        n_classes=classes,
    )
    return ds.astype(np.float32)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, nargs="+", default=[64, 128, 256, 512])
    parser.add_argument("--epochs", type=int, default=2, help="timed epochs per repeat (default 2)")
    parser.add_argument("--repeats", type=int, default=5, help="repeats; the median is reported (default 5)")
    parser.add_argument("--samples", type=int, default=20_000, help="training rows (default 20000)")
    parser.add_argument("--features", type=int, default=100)
    parser.add_argument("--classes", type=int, default=2, help="classes (default 2: one sigmoid output)")
    parser.add_argument("--no-sklearn", action="store_true")
    parser.add_argument("--no-torch", action="store_true")
    parser.add_argument("--quick", action="store_true", help="1 epoch, 2 repeats, batches 64 and 512")
    parser.add_argument("--threads", type=int, help="BLAS and torch threads (default: NumPy's BLAS setting)")
    parser.add_argument(
        "--stat",
        choices=["median", "min"],
        default="median",
        help="how repeats combine (default median; min estimates the uncontended time on a shared machine)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--clock", choices=["wall", "thread"], default="wall", help="wall, or main-thread CPU time")
    parser.add_argument("--against", metavar="CHECKOUT", help="alternate with that checkout's optcore (see above)")
    parser.add_argument("--child", type=int, metavar="BATCH", help=argparse.SUPPRESS)  # one --against run
    args = parser.parse_args(argv)
    if args.quick:
        args.epochs, args.repeats, args.batches = 1, 2, [64, 512]
    if args.clock == "thread":
        args.threads = 1
        use_thread_clock()
    if args.child:
        child(args)
        return
    if args.against:
        against(args)
        return
    if args.threads:
        from threadpoolctl import threadpool_limits

        threadpool_limits(args.threads, user_api="blas")  # stays in force for the whole run

    threads = blas_threads()
    has_torch = False
    if not args.no_torch:
        try:
            import torch

            torch.set_num_threads(threads)
            has_torch = True
        except ImportError:
            print("torch is not importable: its column is left out")
    print_environment(threads, has_torch)

    ds = load(args.samples, args.features, args.seed, args.classes)
    print(
        f"data: {ds.n_train} × {ds.n_features} float32 (make_classification, {args.classes} classes), network "
        f"{ds.n_features}-{'-'.join(map(str, HIDDEN))}-{ds.n_outputs} relu, Adam lr={LR}; "
        f"{args.stat} of {args.repeats} × {args.epochs} epoch(s) after a warm-up epoch\n"
    )
    runners = {"optcore": time_optcore, "matmul": time_matmuls}
    if not args.no_sklearn:
        runners["sklearn"] = time_sklearn
    if has_torch:
        runners["torch"] = time_torch

    combine = statistics.median if args.stat == "median" else min
    rows = []
    for batch in args.batches:
        for run in runners.values():  # warm-up: workspaces, BLAS thread pools, torch's allocator
            run(ds, batch, 1, args.seed)
        samples: dict[str, list[float]] = {name: [] for name in runners}
        accuracy: dict[str, float] = {}
        for r in range(args.repeats):
            for name, run in runners.items():
                seconds, acc = run(ds, batch, args.epochs, args.seed + r)
                samples[name].append(seconds)
                accuracy[name] = acc
        per_epoch = {name: combine(v) for name, v in samples.items()}
        rows.append((batch, per_epoch, accuracy))
        spread = ", ".join(f"{k} {min(v):.3f}–{max(v):.3f}s" for k, v in samples.items())
        print(f"  batch {batch}, s/epoch over the repeats: {spread}", file=sys.stderr)

    print_table(rows)


def child(args) -> None:
    """One --against run: a warm-up epoch of each, then optcore's and the floor's seconds per epoch as JSON."""
    from threadpoolctl import threadpool_limits

    if args.threads:
        threadpool_limits(args.threads, user_api="blas")
    ds = load(args.samples, args.features, args.seed, args.classes)
    for run in (time_optcore, time_matmuls):
        run(ds, args.child, 1, args.seed)
    result = {name: run(ds, args.child, args.epochs, args.seed)[0] for name, run in TWO.items()}
    print(json.dumps({**result, "load": os.getloadavg()[0]}))


TWO = {"optcore": time_optcore, "matmul": time_matmuls}


def against(args) -> None:
    """Alternate fresh processes of ``args.against``'s optcore (before) and this checkout's (after)."""
    here = str(Path(__file__).resolve().parent.parent)
    sides = {"before": str(Path(args.against).resolve()), "after": here}
    print(f"before: {sides['before']}, after: {sides['after']}; clock {args.clock}; load {os.getloadavg()}")
    runs: dict[tuple[str, int], list[dict]] = {(s, b): [] for s in sides for b in args.batches}
    for r in range(args.repeats):
        for batch in args.batches:
            for side in list(sides)[:: 1 if r % 2 == 0 else -1]:  # who goes first alternates too
                cmd = [sys.executable, __file__, *child_args(args), "--child", str(batch), "--seed", str(args.seed + r)]
                env = dict(os.environ, PYTHONPATH=sides[side])
                out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout
                runs[(side, batch)].append(json.loads(out.strip().splitlines()[-1]))
                print(f"  repeat {r}, batch {batch}, {side}: {runs[(side, batch)][-1]}", file=sys.stderr)
    med = statistics.median
    print(
        "| batch | before s/epoch | after s/epoch | floor s/epoch | before / floor | after / floor | after / before |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for b in args.batches:
        ratio = {s: [d["optcore"] / d["matmul"] for d in runs[(s, b)]] for s in sides}
        opt = {s: [d["optcore"] for d in runs[(s, b)]] for s in sides}
        floor = [d["matmul"] for s in sides for d in runs[(s, b)]]
        change = [a / z for a, z in zip(opt["after"], opt["before"], strict=True)]
        spread = {s: f"{med(v):.2f}× ({min(v):.2f}–{max(v):.2f})" for s, v in ratio.items()}
        print(
            f"| {b} | {med(opt['before']):.4f} | {med(opt['after']):.4f} | {med(floor):.4f} "
            f"| {spread['before']} | {spread['after']} | {med(change):.2f} |"
        )
    loads = [d["load"] for v in runs.values() for d in v]
    print(f"medians of {args.repeats} alternating runs; 1-minute load {min(loads):.2f}–{max(loads):.2f}")


def child_args(args) -> list[str]:
    """The options a child needs to train the same problem the same way."""
    out = ["--epochs", str(args.epochs), "--samples", str(args.samples), "--features", str(args.features)]
    out += ["--classes", str(args.classes), "--clock", args.clock]
    return out + (["--threads", str(args.threads)] if args.threads else [])


def print_table(rows) -> None:
    def cell(d, key, fmt, unit=""):
        return format(d[key], fmt) + unit if key in d else "—"

    header = (
        "| batch | optcore s/epoch | sklearn s/epoch | torch s/epoch | bare matmul s/epoch "
        "| sklearn / optcore | torch / optcore | optcore / matmul |"
    )
    print(header)
    print("|" + "|".join("---:" for _ in range(header.count("|") - 1)) + "|")
    for batch, t, _ in rows:
        o = t["optcore"]
        ratios = {k: t[k] / o for k in ("sklearn", "torch") if k in t}
        print(
            f"| {batch} | {o:.3f} | {cell(t, 'sklearn', '.3f')} | {cell(t, 'torch', '.3f')} | {t['matmul']:.3f} "
            f"| {cell(ratios, 'sklearn', '.2f', '×')} | {cell(ratios, 'torch', '.2f', '×')} | {o / t['matmul']:.2f}× |"
        )
    print("\nvalidation accuracy after the last repeat (a check that all three train the same problem):")
    for batch, _, acc in rows:
        print(f"  batch {batch}: " + ", ".join(f"{k} {v:.3f}" for k, v in acc.items() if k != "matmul"))

    checks = [("sklearn", "sklearn / optcore ≥ 2 at every batch size", lambda b, t: t["sklearn"] / t["optcore"] >= 2)]
    checks += [("torch", "torch / optcore ≥ 1.25 at every batch size", lambda b, t: t["torch"] / t["optcore"] >= 1.25)]
    checks += [
        ("matmul", "optcore / matmul ≤ 1.3 at batch ≥ 256", lambda b, t: b < 256 or t["optcore"] / t["matmul"] <= 1.3)
    ]
    print("\ntargets:")
    for key, text, ok in checks:
        if all(key in t for _, t, _ in rows):
            missed = [b for b, t, _ in rows if not ok(b, t)]
            print(f"  {text}: " + ("met" if not missed else f"missed at batch {', '.join(map(str, missed))}"))
    if hasattr(os, "getloadavg"):
        print(f"load average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
