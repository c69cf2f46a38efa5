"""``sweeps confirm``: retrain the K best settings of a sweep with R new seeds each, and say which one wins.

A sweep trains each trial once, with one seed, so its lowest value is partly luck. Confirming retrains the
K completed trials with the lowest objective (the first objective when there are several), each R times.
Repeat r trains every setting with the same seed, :func:`confirm_seed` ``(spec.seed, r)``, and the runs are
interleaved (every setting of repeat 1, then of repeat 2, …) so that a machine slowing down affects every
setting alike. Sharing seeds makes the design paired: settings are told apart on per-seed differences,
Holm-corrected over all pairs — the statistics of ``sweeps batch-size``, :func:`sweeps.results.comparison.compare`.
The winner has the lowest mean; the *tied* settings cannot be told apart from it; the fastest of them is
the one with the least mean training time per run.

The confirm seeds come from their own stream (``SeedSequence([seed, r], spawn_key=CONFIRM_STREAM)``), not
the trials' (``SeedSequence([seed, trial])``): a trial's own seed would hand its setting the very luck that
made it look best. Any seed that still equals a trial's seed is skipped.

Budget: equal epochs, by default the spec's ``training.epochs`` (what the trials had). A time budget is
refused: it ends each run at a moment that differs between machines, so ``sweeps reproduce`` could not
retrain the run.

MLflow: in the sweep's own experiment, one parent run named ``confirm`` per invocation (tag
``confirms_study``) holding the resolved spec (with the budget's epochs, which ``sweeps reproduce`` reads),
the report ``confirm_report.json`` and per-setting metrics (``step`` = trial number); one child run per
(setting, repeat) named ``confirm-t0003-seed-1``, tagged ``confirms_trial``, ``confirms_run_id``,
``repeat`` and ``role = confirm`` (so tables of the sweep's trials leave them out). The report is also
kept in the Optuna study (user attribute ``confirm``), where ``sweeps best`` reads it.

    record = confirm(spec, top=3, repeats=5)
    record["winner"], record["tied"], record["fastest_tied"]
"""

from __future__ import annotations

import json
import math
import tempfile
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from optuna.trial import TrialState

import optcore
import tracking
from sweeps import blas_threads as threads
from sweeps.batchsize.budget import Budget, parse_budget
from sweeps.batchsize.stats import RunResult
from sweeps.batchsize.train_run import train_one
from sweeps.errors import Interrupted, SweepError, UsageError
from sweeps.optcore_adapter import train_trial
from sweeps.results.comparison import compare
from sweeps.results.confirm_report import STUDY_ATTR, ConfirmReport, Setting
from sweeps.spec import OBJECTIVES, Spec
from sweeps.study import interrupts
from sweeps.study.runner import DATA_ATTR, SPEC_HASH_ATTR, load_result
from sweeps.study.storage import resolve_stores
from sweeps.study.tally import Tally
from sweeps.study.trial_lifecycle import PARAMS_ATTR, RUN_ID_ATTR, SEED_ATTR, setup_from_spec
from tracking import schema
from tracking.summary import write_spec

DEFAULT_TOP = 3
DEFAULT_REPEATS = 5
CONFIRM_STREAM = 0x636F6E66  # "conf": the spawn key that keeps confirm seeds apart from trial seeds


def confirm_seed(sweep_seed: int, repeat: int, avoid: frozenset[int] = frozenset()) -> int:
    """The training seed of confirm repeat ``repeat``: the stream ``SeedSequence([sweep_seed, repeat],
    spawn_key=(CONFIRM_STREAM, k))`` for the first k ≥ 0 whose seed is not in ``avoid`` (the trials' seeds)."""
    for k in range(1000):
        seq = np.random.SeedSequence([sweep_seed, repeat], spawn_key=(CONFIRM_STREAM, k))
        seed = int(seq.generate_state(1)[0])
        if seed not in avoid:
            return seed
    raise AssertionError("unreachable: 1000 seeds in a row taken by trials")


def check_counts(top: int, repeats: int) -> None:
    """UsageError unless ``top`` ≥ 1 and ``repeats`` ≥ 2 (whole numbers)."""
    if isinstance(top, bool) or not isinstance(top, int) or top < 1:
        raise UsageError(f"--top: {top!r} is not allowed; give the number of best settings to confirm, at least 1")
    if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 2:
        raise UsageError(
            f"--repeats: {repeats!r} is not allowed; give at least 2 seeds per setting to measure the noise"
        )


def check_budget(budget: str | None, spec: Spec) -> Budget:
    """``--budget epochs=E`` (default: the spec's ``training.epochs``); a time budget is a UsageError."""
    if budget is None:
        return Budget("epochs", spec.training.epochs)
    parsed = parse_budget(budget)
    if parsed.kind != "epochs":
        raise UsageError(
            f"--budget: {budget!r} is not allowed; confirm trains equal epochs (give epochs=E), since a time "
            "budget ends each run at a moment that differs between machines and `sweeps reproduce` could not "
            "retrain it"
        )
    return parsed


def check_same_sweep(spec: Spec, study) -> None:
    """SweepError unless ``spec`` is the one the sweep ran (its search hash, as resuming requires): the
    settings are retrained with its data, model and training, which must be the trials' own."""
    stored = study.user_attrs.get(SPEC_HASH_ATTR)
    if stored is not None and stored != spec.search_hash():
        raise SweepError(
            f"the sweep {spec.name!r} ran a different spec (search hash {stored}, this spec {spec.search_hash()}); "
            "confirm retrains its settings as the sweep trained them, so give the spec and --set overrides it "
            "ran with (only trials may differ; --budget epochs=E changes the epochs)"
        )


def top_trials(study, top: int) -> list[Any]:
    """The ``top`` completed trials with the lowest (first) objective value, best first; ties to the lower
    number. SweepError when none completed."""
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not complete:
        raise SweepError(
            f"the sweep {study.study_name!r} has no completed trial yet, so there is nothing to confirm; "
            "run `sweeps run SPEC` first"
        )
    return sorted(complete, key=lambda t: (t.values[0], t.number))[:top]


@interrupts.handling()
@threads.limited()  # the same BLAS threads as a sweep's trials: `sweeps reproduce` retrains under them
def confirm(
    spec: Spec,
    top: int = DEFAULT_TOP,
    repeats: int = DEFAULT_REPEATS,
    budget: str | None = None,
    workdir: str | Path | None = None,
    storage: str | None = None,
    tracking_uri: str | None = None,
    on_run: Callable[[int, RunResult, int, int], None] | None = None,
) -> ConfirmReport:
    """Retrain the ``top`` best settings of ``spec``'s sweep ``repeats`` times each (module docstring).

    Everything is checked before anything is written: UsageError for ``top`` < 1, ``repeats`` < 2 or a
    budget other than ``epochs=E``; SweepError when the sweep does not exist or has no completed trial;
    TrackingError when MLflow is unreachable. ``on_run(trial, result, done, total)`` follows each run.
    """
    check_counts(top, repeats)
    budget_ = check_budget(budget, spec)
    stores = resolve_stores(workdir, storage, tracking_uri)
    study = load_result(spec, workdir=workdir, storage=storage, tracking_uri=tracking_uri).study
    check_same_sweep(spec, study)
    chosen = top_trials(study, top)
    objective = spec.objectives[0]
    notes = []
    if len(chosen) < top:
        notes.append(f"asked for the best {top}, but the sweep has {len(chosen)} completed trials")
    if len(spec.objectives) > 1:
        notes.append(f"the sweep has {len(spec.objectives)} objectives: ranked and compared on {objective}")
    if repeats == 2:
        notes.append("with 2 seeds per setting each test has 1 degree of freedom; --repeats 3 or more tells more apart")
    settings = {t.number: dict(t.user_attrs.get(PARAMS_ATTR) or t.params) for t in chosen}
    trials = study.get_trials(deepcopy=False)
    trial_seeds = frozenset(int(t.user_attrs[SEED_ATTR]) for t in trials if SEED_ATTR in t.user_attrs)
    seeds = [confirm_seed(spec.seed, r, trial_seeds) for r in range(1, repeats + 1)]
    setup = replace(setup_from_spec(spec), epochs=int(budget_.amount))
    data = setup.load()
    if study.user_attrs.get(DATA_ATTR, data.fingerprint) != data.fingerprint:
        raise SweepError(
            f"the sweep {spec.name!r} was run on other data: dataset {data.name!r} has fingerprint "
            f"{data.fingerprint}, the sweep's was {study.user_attrs[DATA_ATTR]}; its settings cannot be confirmed "
            "on this data"
        )
    tracking.check_reachable(stores.tracking_uri)
    # start-up costs (first BLAS calls, caches) must not fall on the first setting's clock: "fastest" compares them
    train_trial(replace(setup, epochs=1), settings[chosen[0].number], seed=0)

    metric = optcore.LOSSES[data.task].metric_name
    sweep = tracking.start_sweep(
        spec.name,
        tracking_uri=stores.tracking_uri,
        study_name="confirm",
        tags={
            "dataset": data.name,
            "dataset_fingerprint": data.fingerprint,
            "spec_hash": spec.spec_hash(),
            "budget": budget_.label,
            "confirms_study": spec.name,
        },
    )
    blas = {threads.TAG: str(n)} if (n := threads.current()) is not None else {}
    try:
        runs: list[tuple[int, RunResult]] = []
        total = len(chosen) * repeats
        for repeat, seed in enumerate(seeds, start=1):
            for t in chosen:
                result = train_one(
                    sweep,
                    setup,
                    settings[t.number],
                    number=len(runs),
                    repeat=repeat,
                    seed=seed,
                    budget=budget_,
                    n_train=data.n_train,
                    metric=metric,
                    tags={
                        schema.ROLE: schema.ROLE_CONFIRM,
                        "confirms_trial": t.number,
                        "confirms_run_id": t.user_attrs.get(RUN_ID_ATTR, ""),
                        "repeat": repeat,
                        "mlflow.runName": f"confirm-t{t.number:04d}-seed-{repeat}",
                        **blas,
                    },
                )
                runs.append((t.number, result))
                if on_run is not None:
                    on_run(t.number, result, len(runs), total)
        value = OBJECTIVES[objective].of_run
        labels = [t.number for t in chosen]
        # one value per repeat, in repeat order (NaN for a diverged run): repeat r used seed r everywhere
        values = {n: [value(r) for m, r in runs if m == n] for n in labels}
        comparison = compare([values[n] for n in labels], paired=True, labels=labels)
        report = ConfirmReport(
            name=spec.name,
            objective=objective,
            budget=budget_,
            repeats=repeats,
            top=top,
            seeds=seeds,
            settings=[
                Setting(
                    t.number,
                    t.user_attrs.get(RUN_ID_ATTR, ""),
                    float(t.values[0]),
                    settings[t.number],
                    values[t.number],
                    _mean_seconds([r for m, r in runs if m == t.number]),
                )
                for t in chosen
            ],
            comparison=comparison,
            runs=[(n, r) for n, r in runs],
            n_completed=Tally.of(study).completed,
            experiment=spec.name,
            parent_run_id=sweep.run_id,
            tracking_uri=tracking.redact(stores.tracking_uri),
            notes=notes,
        )
        _log_parent(sweep, spec, report, setup.epochs)
        study.set_user_attr(STUDY_ATTR, report.to_dict())
    except BaseException as e:
        sweep.finish("KILLED" if isinstance(e, KeyboardInterrupt | Interrupted) else "FAILED")
        raise
    sweep.finish("FINISHED")
    return report


def _mean_seconds(runs: list[RunResult]) -> float:
    done = [r.train_seconds for r in runs if r.failed is None]
    return float(np.mean(done)) if done else math.nan


def _log_parent(sweep, spec: Spec, report: ConfirmReport, epochs: int) -> None:
    """The parent run's record: params, the verdict as tags, per-setting metrics (step = trial number), the
    report and the spec with the budget's epochs (what ``sweeps reproduce`` retrains a child run from)."""
    record = report.to_dict()
    params = {
        "top": report.top,
        "repeats": report.repeats,
        "budget": report.budget.label,
        "objective": report.objective,
        "trials": ",".join(str(s.trial) for s in report.settings),
        "alpha": report.comparison.alpha,
    }
    tags = {
        "winner_trial": record["winner"],
        "tied_trials": ",".join(map(str, record["tied"])),
        "fastest_tied_trial": record["fastest_tied"],
        "test": report.comparison.method,
        "verdict": record["verdict"],
    }
    metrics = [
        (key, row[field] if not isinstance(field, int) else row["ci95"][field], row["trial"])
        for row in record["rows"]
        for key, field in (
            (f"mean_{report.objective}", "mean"),
            (f"std_{report.objective}", "std"),
            ("ci95_low", 0),
            ("ci95_high", 1),
            ("p_vs_winner_holm", "p_vs_winner_holm"),
            ("mean_train_seconds", "mean_train_seconds"),
        )
    ]
    sweep.log_record(params=params, tags=tags, metrics=metrics)  # None values are left out
    resolved = spec.resolved()
    resolved["training"]["epochs"] = epochs
    with tempfile.TemporaryDirectory(prefix="confirm-") as tmp:
        folder = Path(tmp)
        (folder / "confirm_report.json").write_text(json.dumps(record, indent=2))
        write_spec(resolved, folder / "spec.yaml")
        sweep.log_record(artifacts=folder, what="the confirm report")
