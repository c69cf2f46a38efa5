"""Time per ask, and time under the study-wide lock, at 100, 1,000 and 10,000 trials in the study (PostgreSQL).

    OPTSWEEP_TEST_POSTGRES_URL=postgresql://postgres@127.0.0.1:5432/test \\
        PYTHONPATH=$PWD .venv/bin/python bench/ask_latency.py [--sizes 100,1000,10000] [--asks 30]

For each size, a fresh database gets a study of that many finished trials (``study.add_trials``; settings drawn
at random from the spec's space, a tenth of them failed), then ``--asks`` asks are timed two ways, one after
the other in this process:

- before: the runner's old loop body, under the advisory lock: fail stale trials, count every trial, ``ask``,
  record the owner;
- now: :func:`sweeps.study.claims.claim` under the same lock, then ``optuna.Trial`` outside it.

Each asked trial is then sampled (the spec's TPE, outside the lock in both) and told COMPLETE, so the study
grows by ``--asks`` during a size. Prints, per size and way, the median and p99 of the time under the lock and
of the whole ask (lock + sampling): the time under the lock is what every worker queues behind.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

SPEC = """\
name: latency
seed: 7
trials: 1000000
dataset: {name: moons, n_samples: 400, noise: 0.2, val_fraction: 0.25}
model: {hidden: [8], activation: tanh}
training: {epochs: 1}
search:
  batch_size: {choices: [32, 64]}
  optimizer: {choices: [momentum, adam]}
  lr: {low: 0.001, high: 0.1, log: true}
  beta1: {low: 0.8, high: 0.95, when: {optimizer: [momentum, adam]}}
  schedule: {choices: [constant, cosine]}
sampler: {name: tpe}
pruner: {name: none}
"""


def seed_study(url: str, spec, n: int):
    import numpy as np
    import optuna

    from sweeps.study.runner import open_study
    from sweeps.study.space import distribution
    from sweeps.study.storage import resolve_stores

    stores = resolve_stores("/tmp/ask-latency", url, "unused")
    study = open_study(spec, stores)
    rng = np.random.default_rng(0)
    dists = {name: distribution(e) for name, e in spec.search.items()}
    trials = []
    for i in range(n):
        params = {}
        for name, d in dists.items():
            if isinstance(d, optuna.distributions.CategoricalDistribution):
                params[name] = d.choices[int(rng.integers(len(d.choices)))]
            elif d.log:
                params[name] = float(np.exp(rng.uniform(np.log(d.low), np.log(d.high))))
            else:
                params[name] = float(rng.uniform(d.low, d.high))
        failed = i % 10 == 9
        trials.append(
            optuna.trial.create_trial(
                params=params,
                distributions=dists,
                value=None if failed else float(rng.uniform(0.2, 0.8)),
                state=optuna.trial.TrialState.FAIL if failed else optuna.trial.TrialState.COMPLETE,
                user_attrs={"outcome": "failed" if failed else "completed"},
            )
        )
    for start in range(0, n, 500):
        study.add_trials(trials[start : start + 500])
    return study, stores


def time_asks(study, stores, spec, asks: int, way: str) -> tuple[list[float], list[float]]:
    import optuna

    from sweeps.study import claims, owners
    from sweeps.study.runner import _ask, _fail_stale, counts
    from sweeps.study.space import suggest
    from sweeps.study.storage import TrialLock

    lock = TrialLock(stores, spec.name)
    held, whole = [], []
    try:
        for _ in range(asks):
            t0 = time.perf_counter()
            with lock.held():
                t1 = time.perf_counter()
                if way == "before":
                    _fail_stale(study)
                    counts(study)
                    trial = _ask(study)
                    owners.claim(study, trial)
                else:
                    trial_id = claims.claim(study, spec.trials, owners.owner_attr()).trial_id
                t2 = time.perf_counter()
            if way == "now":
                trial = optuna.Trial(study, trial_id)
            suggest(trial, spec)
            t3 = time.perf_counter()
            study.tell(trial, 0.5)
            held.append(t2 - t1)
            whole.append(t3 - t0)
    finally:
        lock.close()
    return held, whole


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, round(q * (len(xs) - 1)))] * 1000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="100,1000,10000")
    parser.add_argument("--asks", type=int, default=30)
    args = parser.parse_args()
    base = os.environ.get("OPTSWEEP_TEST_POSTGRES_URL")
    if not base:
        print("set OPTSWEEP_TEST_POSTGRES_URL (postgresql://postgres@127.0.0.1:5432/test)", file=sys.stderr)
        return 2
    import psycopg

    from sweeps.spec import load_spec

    spec = load_spec(SPEC)
    print(f"{'trials':>7} {'way':>7} {'lock p50 ms':>12} {'lock p99 ms':>12} {'ask p50 ms':>11} {'ask p99 ms':>11}")
    for n in map(int, args.sizes.split(",")):
        name = f"optsweep_latency_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(base, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        try:
            study, stores = seed_study(f"{base.rsplit('/', 1)[0]}/{name}", spec, n)
            for way in ("before", "now"):
                held, whole = time_asks(study, stores, spec, args.asks, way)
                print(
                    f"{n:>7} {way:>7} {pct(held, 0.5):>12.1f} {pct(held, 0.99):>12.1f} "
                    f"{pct(whole, 0.5):>11.1f} {pct(whole, 0.99):>11.1f}",
                    flush=True,
                )
                del held, whole
            study._storage._backend.engine.dispose()
        finally:
            with psycopg.connect(base, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    return 0


if __name__ == "__main__":
    sys.exit(main())
