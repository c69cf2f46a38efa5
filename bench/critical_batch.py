"""How far the gradient noise scale is from the measured critical batch size, on two problems.

For each problem, ``advise_batch_size(..., measure_steps=True)`` (the engine of ``sweeps batch-size
--measure-steps``): a pilot run measures B_noise, then every batch size 8 … 1024 is trained to the target
validation cost at each learning rate of ``lr × factors`` (the fewest steps kept: Shallue et al.'s
protocol), and S_min, B_crit are fitted to S = S_min·(1 + B_crit/B). Printed: the fit, B_noise and their
ratio (McCandlish et al. report agreement within an order of magnitude; the aim here is a factor of 3), and
the recommendation against the measured fastest size.

The target of each problem is set by a probe, not by hand: the validation cost a batch-128 run at the held
lr reaches after ``--probe-epochs`` epochs.

    python bench/critical_batch.py                       # digits and a 25,000-row make_classification
    python bench/critical_batch.py --problems digits --factors 0.5,1,2

Nothing is asserted; the stores go to a temporary folder (``--workdir`` keeps them, plots included).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's code, not an installed one

import optcore
from sweeps.batchsize.advise import advise_batch_size
from sweeps.spec import load_spec

PROBLEMS = {
    "digits": """
name: bench-digits
seed: 0
trials: 1
dataset: {name: digits, val_fraction: 0.2}
model: {hidden: [64], activation: relu, l2: 0.0001}
training: {epochs: 20}
search:
  batch_size: {value: 128}
  optimizer: {value: adam}
  lr: {value: 0.004}
  schedule: {value: constant}
""",
    "classification": """
name: bench-classification
seed: 0
trials: 1
dataset: {name: classification, n_samples: 25000, n_features: 20, n_informative: 10, n_classes: 2,
          val_fraction: 0.2}
model: {hidden: [64], activation: relu}
training: {epochs: 20}
search:
  batch_size: {value: 128}
  optimizer: {value: adam}
  lr: {value: 0.004}
  schedule: {value: constant}
""",
}


def probe_target(spec, epochs: int) -> float:
    """The validation cost a batch-128 run at the held lr reaches after ``epochs`` epochs."""
    from sweeps.optcore_adapter import build_optimizer
    from sweeps.study.trial_lifecycle import setup_from_spec

    setup = setup_from_spec(spec)
    data = setup.load()
    net = optcore.Network.for_dataset(data, hidden=setup.hidden, activation=setup.activation, l2=setup.l2)
    hp = {"optimizer": "adam", "lr": spec.search["lr"].value}
    history = optcore.train(data, net, build_optimizer(hp), epochs=epochs, batch_size=128, seed=1)
    return float(f"{history.final_val_cost:.3g}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problems", nargs="+", choices=list(PROBLEMS), default=list(PROBLEMS))
    parser.add_argument("--factors", default="0.5,1,2,4,8,16", help="lr factors per size (default 0.5,1,2,4,8,16)")
    parser.add_argument("--seeds", type=int, default=2, help="seeds per size and rate (default 2)")
    parser.add_argument("--probe-epochs", type=int, default=10)
    parser.add_argument("--cap-epochs", type=int, default=400, help="each run's cap in epochs (default 400)")
    parser.add_argument("--workdir", default=None)
    args = parser.parse_args(argv)
    factors = [float(f) for f in args.factors.split(",")]
    workdir = args.workdir or tempfile.mkdtemp(prefix="critical-batch-")
    summary = []
    for name in args.problems:
        spec = _spec(PROBLEMS[name])
        target = probe_target(spec, args.probe_epochs)
        start = time.perf_counter()
        report = advise_batch_size(
            spec,
            target_cost=target,
            measure_steps=True,
            lr_factors=factors,
            pilot_size=128,
            seeds=args.seeds,
            budget=("epochs", args.cap_epochs),
            workdir=workdir,
            on_run=lambda text: print("  " + text, flush=True),
        )
        took = time.perf_counter() - start
        print(f"\n{name}: target validation cost {target:g} ({took:.0f} s)")
        for row in report.row_dicts():
            r = {k: float("nan") if v is None else v for k, v in row.items()}
            predicted = f"predicted {r['predicted_steps']:8.0f} steps {r['predicted_seconds']:7.3f} s"
            measured = f"measured {r['measured_steps']:8.0f} steps {r['measured_seconds']:7.3f} s"
            print(f"  B={row['batch_size']:5d}  {predicted}   {measured} at lr {r['measured_lr']:.3g}")
        fit, ratio = report.fit, report.noise_to_crit
        fitted = (
            f"fit S_min = {fit.s_min:.3g}, B_crit = {fit.b_crit:.3g} (rms rel. error {fit.rms_relative_error:.1%})"
            if fit
            else "no fit"
        )
        print(f"  B_noise = {report.b_noise:.3g} (at the target: {report.pilot.b_noise_end:.3g}); {fitted}")
        print(f"  B_noise / B_crit = {ratio:.2f}" if ratio else "")
        print(f"  recommended {report.recommended}, measured fastest {report.measured_fastest}; notes: {report.notes}")
        summary.append((name, target, report))
    print(f"\nstores in {workdir}")


def _spec(text: str):
    import pathlib

    path = pathlib.Path(tempfile.mkdtemp(prefix="critical-batch-spec-")) / "spec.yaml"
    path.write_text(text)
    return load_spec(path)


if __name__ == "__main__":
    main()
