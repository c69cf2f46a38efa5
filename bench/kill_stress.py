"""Kill `sweeps run` at random moments on the embedded store, run it again, and check that nothing is lost.

    PYTHONPATH=$PWD .venv/bin/python bench/kill_stress.py [--seconds 120] [--seed 0] [--workdir DIR]

One uninterrupted first run creates the stores (a kill during their very first creation is another matter:
mlflow.db's schema). Then, until the time is up, each cycle starts `sweeps run` with a total two trials above
what is counted, sends SIGKILL (two cycles in three), SIGINT or SIGTERM at a random moment of a run's length
(that of the last run that was not killed) in odd cycles, within 3 s of a trial starting in even ones (start-up
takes most of a run), and waits for it to end (SIGKILL if a signal is not honoured
within 60 s: counted as a hang). A last uninterrupted run then finishes the sweep. At the end: no trial
RUNNING or WAITING in Optuna, no run RUNNING in MLflow, the parent run FINISHED, every journal line a JSON
record, ``PRAGMA integrity_check`` ok on mlflow.db, and every run's exit code one of 0 / killed / 130 / 143.
Prints the cycle count and the result; exits 1 if anything is wrong.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SPEC = """\
name: stress
seed: 7
trials: 2
dataset: {name: moons, n_samples: 1000, noise: 0.2, val_fraction: 0.25}
model: {hidden: [8], activation: tanh}
training: {epochs: 30}
search:
  batch_size: {choices: [16, 32]}
  optimizer: {choices: [momentum, adam]}
  lr: {low: 0.001, high: 0.1, log: true}
sampler: {name: tpe}
pruner: {name: none}
"""
SIGNALS = [signal.SIGKILL, signal.SIGKILL, signal.SIGKILL, signal.SIGKILL, signal.SIGINT, signal.SIGTERM]
EXPECTED = {0, -signal.SIGKILL, 130, 143}
SWEEPS = [sys.executable, "-m", "sweeps.cli"]


def run(spec: Path, wd: Path, trials: int, log: Path) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SWEEPS_", "MLFLOW_TRACKING"))}
    with open(log, "w") as out:
        return subprocess.Popen(
            [*SWEEPS, "run", str(spec), "--trials", str(trials), "--workdir", str(wd), "--quiet"],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env | {"PYTHONUNBUFFERED": "1"},
        )


def counted(wd: Path) -> int:
    study = load_study(wd)
    return sum(t.user_attrs.get("outcome") in ("completed", "pruned", "failed") for t in study.trials)


def wait_for_a_running_trial(wd: Path, proc: subprocess.Popen) -> None:
    """Until this run has a trial RUNNING (or has ended)."""
    before = {t.number for t in load_study(wd).trials if t.state.name == "RUNNING"}
    while proc.poll() is None:
        if {t.number for t in load_study(wd).trials if t.state.name == "RUNNING"} - before:
            return
        time.sleep(0.3)


def load_study(wd: Path):
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna.load_study(
        study_name="stress", storage=JournalStorage(JournalFileBackend(str(wd / "optuna.journal")))
    )


def check(wd: Path) -> list[str]:
    """Everything wrong with the stores, in words (empty when all is well)."""
    import mlflow

    problems = []
    for number, line in enumerate((wd / "optuna.journal").read_bytes().splitlines(keepends=True), 1):
        try:
            json.loads(line)
            assert line.endswith(b"\n")
        except (ValueError, AssertionError):
            problems.append(f"journal line {number} is not a whole JSON record")
    integrity = sqlite3.connect(wd / "mlflow.db").execute("PRAGMA integrity_check").fetchone()[0]
    if integrity != "ok":
        problems.append(f"mlflow.db integrity_check: {integrity}")
    study = load_study(wd)
    for t in study.trials:
        if t.state.name in ("RUNNING", "WAITING"):
            problems.append(f"Optuna trial {t.number} is {t.state.name}")
    client = mlflow.MlflowClient(f"sqlite:///{wd / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("stress")
    runs = client.search_runs([experiment.experiment_id], max_results=5000)
    for r in runs:
        if r.info.status == "RUNNING":
            problems.append(f"MLflow run {r.info.run_name} ({r.data.tags.get('role')}) is RUNNING")
    parents = [r for r in runs if r.data.tags.get("role") == "sweep"]
    if len(parents) != 1:
        problems.append(f"{len(parents)} parent runs")
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=120.0, help="how long to keep killing (default 120)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workdir", type=Path, help="default: a new temporary folder")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    base = args.workdir or Path(tempfile.mkdtemp(prefix="kill-stress-"))
    base.mkdir(parents=True, exist_ok=True)
    spec, wd, log = base / "stress.yaml", base / "wd", base / "run.log"
    spec.write_text(SPEC)

    started = time.monotonic()
    first = run(spec, wd, 2, log)
    if first.wait() != 0:
        print(f"the first run failed:\n{log.read_text()}")
        return 1
    length = time.monotonic() - started  # a whole run's length sets the range of kill moments
    codes: collections.Counter[str] = collections.Counter()
    notes: collections.Counter[str] = collections.Counter()
    unexpected, hangs, cycles = [], 0, 0
    deadline = time.monotonic() + args.seconds
    while time.monotonic() < deadline:
        cycles += 1
        sig = rng.choice(SIGNALS)
        began = time.monotonic()
        proc = run(spec, wd, counted(wd) + 2, log)
        if cycles % 2:  # any moment of a run: start-up (imports, stores) takes most of it
            time.sleep(rng.uniform(0, length))
        else:  # a moment while a trial trains
            wait_for_a_running_trial(wd, proc)
            time.sleep(rng.uniform(0, 3))
        if proc.poll() is None:
            proc.send_signal(sig)
        try:
            rc = proc.wait(60)
        except subprocess.TimeoutExpired:
            hangs += 1
            proc.kill()
            rc = proc.wait()
        if rc == 0:  # it ended before the signal: a whole run's length now (the first one created the stores)
            length = time.monotonic() - began
        codes[f"{signal.Signals(sig).name}->{rc}"] += 1
        text = log.read_text()
        notes["trials reclaimed"] += text.count("was left RUNNING")
        notes["torn records cut"] += text.count("was torn")
        if rc not in EXPECTED:
            unexpected.append((cycles, signal.Signals(sig).name, rc, text[-2000:]))
    final_rc = run(spec, wd, counted(wd) + 1, log).wait()
    text = log.read_text()
    notes["trials reclaimed"] += text.count("was left RUNNING")
    notes["torn records cut"] += text.count("was torn")
    problems = check(wd)
    if final_rc != 0:
        problems.append(f"the last, uninterrupted run exited {final_rc}: {text[-2000:]}")
    for cycle, name, rc, tail in unexpected:
        problems.append(f"cycle {cycle}: {name} gave exit code {rc}:\n{tail}")
    if hangs:
        problems.append(f"{hangs} run(s) ignored their signal for 60 s")
    study = load_study(wd)
    print(f"{cycles} kill/rerun cycles in {time.monotonic() - started:.0f} s (whole runs ~{length:.0f} s), in {base}")
    print("signal->exit code: " + ", ".join(f"{k} ×{v}" for k, v in sorted(codes.items())))
    print(f"{len(study.trials)} trials, {counted(wd)} counted; " + ", ".join(f"{k}: {v}" for k, v in notes.items()))
    print("result: " + ("OK — nothing RUNNING in either store, every file readable" if not problems else "FAILED"))
    for p in problems:
        print("  " + p)
    return 0 if not problems else 1


if __name__ == "__main__":
    sys.exit(main())
