"""Does the verdict of ``sweeps batch-size`` depend on the learning-rate rule? ``fixed`` against ``tuned``.

Runs the same comparison twice on one spec — every size at the held rate, then every size at the rate its own
Optuna search found — in a throw-away store, and prints the two side by side: each size's rate, mean final
validation cost ± std over the seeds, Holm-corrected p against the chosen size, and both verdicts.

    python bench/batch_size_lr.py                        # digits, 64–512, 3 seeds, 8 lr trials: ≈ 2 min
    python bench/batch_size_lr.py --rules fixed sqrt tuned --sizes 32,512
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's code, not an installed one

from sweeps.batchsize.select import select_batch_size
from sweeps.cli.batch_size import parse_sizes
from sweeps.spec import load_spec

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spec", default=str(ROOT / "examples" / "digits_batch_size.yaml"))
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY.PATH=VALUE")
    parser.add_argument("--sizes", default="64,128,256,512")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--lr-trials", type=int, default=8)
    parser.add_argument("--lr-reference", type=int, default=None, help="for linear and sqrt")
    parser.add_argument("--rules", nargs="+", default=["fixed", "tuned"])
    args = parser.parse_args(argv)

    spec = load_spec(args.spec, args.overrides)
    sizes = parse_sizes(args.sizes)
    reports = {}
    with tempfile.TemporaryDirectory(prefix="bench-lr-") as workdir:
        for rule in args.rules:
            start = time.perf_counter()
            reports[rule] = select_batch_size(
                spec,
                sizes,
                repeats=args.repeats,
                workdir=workdir,
                lr_rule=rule,
                lr_trials=args.lr_trials if rule == "tuned" else None,
                lr_reference=args.lr_reference if rule in ("linear", "sqrt") else None,
            )
            print(f"{rule}: {time.perf_counter() - start:.0f} s", flush=True)

    print(f"\n{spec.name}: {len(sizes)} sizes, {args.repeats} seeds each, budget {reports[args.rules[0]].budget.label}")
    header = f"{'size':>5}" + "".join(f" | {rule + ' lr':>10} {'cost mean ± std':>17} {'p':>6}" for rule in args.rules)
    print(header)
    print("-" * len(header))
    for size in sorted(sizes):
        line = f"{size:>5}"
        for rule in args.rules:
            report = reports[rule]
            row = next(r for r in report.rows if r.batch_size == size)
            p = report.comparison.row(size).p_holm
            mark = "*" if size == report.chosen else " "
            line += (
                f" | {report.lr.rates[size]:>10.3g} {row.mean_cost:>8.4f} ± {row.std_cost:<6.4f}{mark}"
                f" {'—' if p != p else f'{p:.3f}':>6}"
            )
        print(line)
    print("(* chosen; p: Holm-corrected paired t-test against the chosen size)\n")
    for rule in args.rules:
        print(f"{rule}: {reports[rule].lr.plan.describe()}")
        print(f"  verdict: {reports[rule].verdict()}")
    tuned = reports.get("tuned")
    if tuned is not None:
        print("\ntuned: each size's lr search (lr → final validation cost, seed trial_seed(seed, 0))")
        for size in sorted(sizes):
            trials = sorted((t.lr, t.final_val_cost) for t in tuned.lr.trials if t.batch_size == size)
            print(f"{size:>5}: " + ", ".join(f"{lr:.3g}→{cost:.3f}" for lr, cost in trials))


if __name__ == "__main__":
    main()
