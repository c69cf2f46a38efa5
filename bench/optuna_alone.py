"""The sweep's trials with Optuna alone: the reference that says what a sweep costs before optsweep adds anything.

The same data (loaded on the clock, as ``sweeps.study.runner.run`` loads it), sampler, pruner, search space,
training, BLAS threads and Optuna journal file as a tracked sweep; no MLflow, no CLI, no report, no summary.
``bench/tracking_overhead.py`` times it in-process as its "off" arm; ``bench/startup.py`` runs this file as a
command, from a fresh process, as its ``optuna-alone`` case (interpreter start and imports included):

    python bench/optuna_alone.py SPEC --workdir DIR [--set KEY.PATH=VALUE ...]

writes the trials' summed ``train_seconds`` to ``DIR/train_seconds`` (the ratio's denominator) and prints
the in-process wall seconds.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's code, not an installed one

TRAIN_SECONDS_FILE = "train_seconds"


def sweep_without_tracking(spec, workdir: Path) -> tuple[float, float]:
    """(wall seconds, summed ``train_seconds``) of ``spec``'s trials with Optuna alone, in a journal file in
    ``workdir``; the clock starts before the data is loaded."""
    import optuna

    from sweeps import blas_threads as threads
    from sweeps.study.pruners import build_pruner
    from sweeps.study.samplers import build_sampler
    from sweeps.study.storage import open_storage, resolve_stores
    from sweeps.study.trial_lifecycle import setup_from_spec

    optuna.logging.set_verbosity(optuna.logging.WARNING)

    setup = setup_from_spec(spec)
    start = time.perf_counter()
    with threads.limited():
        setup.load()
        study = optuna.create_study(
            storage=open_storage(resolve_stores(workdir, None, None)),
            study_name=spec.name,
            sampler=build_sampler(spec),
            pruner=build_pruner(spec),
            directions=spec.directions,
        )
        trained = _trials(spec, study, setup)
    return time.perf_counter() - start, trained


def _trials(spec, study, setup) -> float:
    """Ask, train and tell ``spec.trials`` trials, pruning as the sweep prunes; their summed train seconds."""
    import optuna

    from sweeps.optcore_adapter import train_trial, trial_seed
    from sweeps.study.space import suggest
    from sweeps.study.trial_lifecycle import objective_values

    trained = 0.0
    for _ in range(spec.trials):
        trial = study.ask()
        hp = suggest(trial, spec)

        def report(record, history, trial=trial):
            trial.report(record.val_cost, record.epoch)
            return trial.should_prune()

        history = train_trial(setup, hp, trial_seed(spec.seed, trial.number), callback=report)
        trained += history.train_seconds
        if history.stopped_early:
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        else:
            study.tell(trial, objective_values(spec, history)[0])
    return trained


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("spec")
    parser.add_argument("--workdir", type=Path, required=True, help="where the journal file is created")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY.PATH=VALUE")
    args = parser.parse_args(argv)
    from sweeps.spec import load_spec

    wall, trained = sweep_without_tracking(load_spec(args.spec, args.overrides), args.workdir)
    (args.workdir / TRAIN_SECONDS_FILE).write_text(f"{trained!r}\n")
    print(f"{wall:.3f} s in-process, {trained:.3f} s of training")


if __name__ == "__main__":
    main()
