"""Completed trials per minute with 1 and with 2 worker processes on the same spec, from one run.

Run: ``python bench/scaling.py [--trials 24] [--epochs 40]`` (trials of ~1.5 s here). Each configuration is a real
``sweeps run --workers K`` in a fresh work folder; throughput is measured between the first trial's start
and the last trial's end (from the Optuna study), so process start-up and the loopback MLflow server's
start are left out — they are paid once per sweep, not per trial. Never asserted.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SPEC = """\
name: scaling
seed: 1
trials: {trials}
dataset: {{name: classification, n_samples: {samples}, n_features: 40, n_informative: 10}}
model: {{hidden: [64, 64], activation: relu}}
training: {{epochs: {epochs}}}
search:
  batch_size: {{value: 64}}  # every trial the same work: only throughput differs
  optimizer: {{value: adam}}
  lr: {{low: 1.0e-3, high: 3.0e-2, log: true}}
  beta1: {{low: 0.8, high: 0.95}}
  schedule: {{value: cosine}}
sampler: {{name: random}}
"""


def measure(workers: int, spec: Path, root: Path) -> tuple[float, float]:
    """(trials per minute between first start and last end, wall seconds of the whole command)."""
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    workdir = root / f"w{workers}"
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"}
    start = time.perf_counter()
    subprocess.run(
        [
            sys.executable,
            "-m",
            "sweeps.cli",
            "run",
            str(spec),
            "--workers",
            str(workers),
            "--quiet",
            "--workdir",
            str(workdir),
        ],
        check=True,
        env=env,
        stdout=subprocess.DEVNULL,
    )
    wall = time.perf_counter() - start
    study = optuna.load_study(
        study_name="scaling", storage=JournalStorage(JournalFileBackend(str(workdir / "optuna.journal")))
    )
    done = [t for t in study.trials if t.datetime_complete is not None]
    span = (max(t.datetime_complete for t in done) - min(t.datetime_start for t in done)).total_seconds()
    return 60.0 * len(done) / span, wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=24)
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--samples", type=int, default=20000, help="dataset size: sets the work per epoch")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="scaling-") as tmp:
        spec = Path(tmp) / "scaling.yaml"
        spec.write_text(SPEC.format(trials=args.trials, epochs=args.epochs, samples=args.samples))
        one, wall1 = measure(1, spec, Path(tmp))
        two, wall2 = measure(2, spec, Path(tmp))
    print(f"cores: {os.cpu_count()}; {args.trials} trials x {args.epochs} epochs of {args.samples} samples")
    print(f"{'workers':>8} {'trials/min':>11} {'command wall s':>15}")
    print(f"{1:>8} {one:>11.1f} {wall1:>15.1f}")
    print(f"{2:>8} {two:>11.1f} {wall2:>15.1f}")
    print(f"speed-up with 2 workers: {two / one:.2f}x (trials per minute)")


if __name__ == "__main__":
    main()
