"""``sweeps batch-size``: train each batch size R times under an equal budget and choose one, noise included.

Every other hyperparameter is held fixed: at the spec's fixed values (a searched entry is an error that
names it), or with ``from_best`` at the best setting of the spec's sweep. Repeat r trains every size with
the same seed, ``trial_seed(spec.seed, r)``, and the runs are interleaved (all sizes of repeat 1, then of
repeat 2, …) so that a machine slowing down or warming up affects every size alike. Sharing seeds makes
the comparison paired: sizes are told apart on per-seed differences, Holm-corrected over all pairs
(:mod:`sweeps.results.comparison`).

MLflow: experiment ``<name>-batch-size``, one parent run per invocation (role ``sweep``), one child run per
(size, repeat) named ``bs-0128-seed-1`` with tags ``batch_size`` and ``repeat``; the parent holds the
report (``batch_size_report.json``), the plots and per-size metrics logged at ``step = batch size``.

    report = select_batch_size(spec, [64, 128, 256], repeats=3, budget=("seconds", 5.0))
    report.chosen, report.distinguishable, report.fastest_tied
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path

import optcore
import tracking
from sweeps import blas_threads as threads
from sweeps.batchsize import lr_rule as lr_rules
from sweeps.batchsize.budget import MAX_EPOCHS, Budget, check_budget
from sweeps.batchsize.held_setting import best_setting, held_setting
from sweeps.batchsize.report import BatchSizeReport, log_report
from sweeps.batchsize.stats import RunResult, choose, size_stats
from sweeps.batchsize.train_run import train_one
from sweeps.errors import Interrupted, UsageError
from sweeps.optcore_adapter import build_optimizer, build_schedule, train_trial, trial_seed
from sweeps.spec import Spec
from sweeps.study import interrupts
from sweeps.study.storage import resolve_stores
from sweeps.study.trial_lifecycle import setup_from_spec

DEFAULT_SIZES = (64, 128, 256, 512)
DEFAULT_REPEATS = 3


def check_sizes(sizes: Iterable[int], n_train: int) -> list[int]:
    """The sizes sorted; each must lie in [1, n_train] and appear once (UsageError otherwise)."""
    sizes = list(sizes)
    if not sizes:
        raise UsageError("--sizes: give at least one batch size")
    for s in sizes:
        if isinstance(s, bool) or not isinstance(s, int) or not 1 <= s <= n_train:
            raise UsageError(
                f"--sizes: {s!r} is not allowed; a batch size must be a whole number in [1, {n_train}] "
                "(the training split's size)"
            )
        if sizes.count(s) > 1:
            raise UsageError(f"--sizes: {s} is listed twice; give each size once")
    return sorted(sizes)


def _check_runs(setup, settings: Mapping[int, Mapping[str, object]], budget: Budget, n_train: int) -> None:
    """Build every size's optimizer and schedule once, so a bad combination fails before anything is written.

    A time budget has no known length, so a schedule that decays over a fixed horizon is refused with it.
    """
    for size, hp in settings.items():
        name = str(hp.get("schedule", "constant"))
        if budget.kind == "seconds" and "total_steps" in optcore.schedule_parameters(name):
            free = [n for n in optcore.schedule_names() if "total_steps" not in optcore.schedule_parameters(n)]
            raise UsageError(
                f"--budget {budget.label}: schedule {name!r} decays over a fixed number of epochs, which an "
                f"equal-time budget does not have; hold schedule at one of {', '.join(free)}, or use --budget epochs=E"
            )
        try:
            build_optimizer(hp)
            build_schedule(hp, setup.epochs, optcore.n_batches(n_train, size), setup.schedule_unit)
        except optcore.OptcoreError as e:
            raise UsageError(f"batch size {size} with {budget.label}: {e}") from None


@interrupts.handling()
@threads.limited()  # the same BLAS threads as a sweep's trials, warm-up included
def select_batch_size(
    spec: Spec,
    sizes: Sequence[int] | None = None,
    repeats: int = DEFAULT_REPEATS,
    budget: tuple[str, float] | None = None,
    target_cost: float | None = None,
    from_best: bool = False,
    workdir: str | Path | None = None,
    storage: str | None = None,
    tracking_uri: str | None = None,
    on_run: Callable[[RunResult, int, int], None] | None = None,
    lr_rule: str = lr_rules.DEFAULT_LR_RULE,
    lr_trials: int | None = None,
    lr_reference: int | None = None,
) -> BatchSizeReport:
    """Train every size in ``sizes`` ``repeats`` times under ``budget`` and choose one (module docstring).

    ``sizes`` defaults to 64, 128, 256, 512 (those ≤ the training split); ``budget`` to ``("epochs",
    training.epochs)``. ``on_run(result, done, total)`` is called after each run. Everything is checked
    before anything is written: UsageError for bad sizes, repeats (≥ 2: one seed shows no noise), budget or
    target cost; SpecError for a searched entry without ``from_best``; SweepError when ``from_best`` finds
    no finished sweep; TrackingError when MLflow is unreachable.

    ``lr_rule`` sets each size's learning rate (:mod:`sweeps.batchsize.lr_rule`): ``fixed`` (the held rate),
    ``linear`` or ``sqrt`` (scaled from ``lr_reference``), or ``tuned`` (``lr_trials`` trials of an Optuna
    search per size, each a child run, before the repeats); its options are checked with the others.
    """
    n_train, notes = spec.dataset.n_train or setup_from_spec(spec).load().n_train, []
    if sizes is None:
        sizes = [s for s in DEFAULT_SIZES if s <= n_train] or [n_train]
        if len(sizes) < len(DEFAULT_SIZES):
            notes.append(f"default sizes above the training split ({n_train} samples) were left out")
    sizes = check_sizes(sizes, n_train)
    if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 2:
        raise UsageError(f"--repeats: {repeats!r} is not allowed; give at least 2 seeds per size to measure noise")
    budget = check_budget(budget, spec)
    if target_cost is not None and not (math.isfinite(target_cost) and target_cost >= 0):
        raise UsageError(f"--target-cost: {target_cost} is not allowed; give a validation cost ≥ 0")
    stores = resolve_stores(workdir, storage, tracking_uri)
    best = best_setting(spec, workdir, storage, tracking_uri) if from_best else None
    if best is not None and len(spec.objectives) > 1:
        notes.append(
            f"the sweep has {len(spec.objectives)} objectives: held the setting of its Pareto-optimal trial with "
            f"the lowest {spec.objectives[0]}"
        )
    if repeats == 2:
        notes.append(
            "with 2 seeds per size each test has 1 degree of freedom, so only large differences are found; "
            "--repeats 3 or more tells sizes apart sooner"
        )
    settings = {s: held_setting(spec, s, best, lr_rules.free_names(lr_rule)) for s in sizes}
    lr_plan = lr_rules.plan_lr(spec, lr_rule, lr_trials, lr_reference, best)
    if lr_plan.rule == "fixed" and len(sizes) > 1:
        notes.append(
            "every size trains at the same learning rate, which favours small batches; --lr-rule tuned "
            "compares each size at its own best rate"
        )
    epochs = int(budget.amount) if budget.kind == "epochs" else MAX_EPOCHS
    setup = replace(setup_from_spec(spec), epochs=epochs)
    for end in (0, -1):  # the size's rate, or both ends of the range a search may try
        _check_runs(setup, {s: {**hp, "lr": lr_plan.extremes(s)[end]} for s, hp in settings.items()}, budget, n_train)
    tracking.check_reachable(stores.tracking_uri)

    data = setup.load()
    metric = optcore.LOSSES[data.task].metric_name
    if budget.kind == "seconds":  # start-up costs (first BLAS calls) must not fall on the first size's clock
        train_trial(replace(setup, epochs=1), {**settings[sizes[0]], "lr": lr_plan.extremes(sizes[0])[0]}, seed=0)
    experiment = f"{spec.name}-batch-size"
    sweep = tracking.start_sweep(
        experiment,
        tracking_uri=stores.tracking_uri,
        study_name=experiment,
        tags={
            "dataset": data.name,
            "dataset_fingerprint": data.fingerprint,
            "spec_hash": spec.spec_hash(),
            "budget": budget.label,
            "held_from": "best" if from_best else "spec",
            "lr_rule": lr_plan.rule,
        },
    )
    try:
        searched: list[RunResult] = []
        total = len(sizes) * (repeats + (lr_plan.trials or 0))

        def search_trial(size: int, lr: float, number: int) -> tuple[float, str]:
            result = train_one(
                sweep,
                setup,
                {**settings[size], "lr": lr},
                number=len(searched),
                repeat=0,
                seed=trial_seed(spec.seed, 0),  # no repeat's seed: the repeats judge the chosen rates afresh
                budget=budget,
                n_train=data.n_train,
                metric=metric,
                tags={"batch_size": size, "lr_trial": number, "mlflow.runName": f"lr-bs-{size:04d}-trial-{number}"},
            )
            searched.append(result)
            if on_run is not None:
                on_run(result, len(searched), total)
            return result.final_val_cost, result.run_id

        lr_choice = lr_rules.choose_rates(lr_plan, sizes, search_trial)
        notes.extend(lr_choice.notes)
        held_params = {k: v for k, v in settings[sizes[0]].items() if k != "batch_size"}
        settings = {s: {**settings[s], "lr": lr_choice.rates[s]} for s in sizes}
        runs: list[RunResult] = []
        for repeat in range(1, repeats + 1):
            seed = trial_seed(spec.seed, repeat)
            for size in sizes:
                result = train_one(
                    sweep,
                    setup,
                    settings[size],
                    number=len(searched) + len(runs),
                    repeat=repeat,
                    seed=seed,
                    budget=budget,
                    n_train=data.n_train,
                    metric=metric,
                )
                runs.append(result)
                if on_run is not None:
                    on_run(result, len(searched) + len(runs), total)
        rows = [size_stats(s, [r for r in runs if r.batch_size == s], target_cost) for s in sizes]
        # one cost per repeat, in repeat order (NaN for a diverged run): repeat r used seed r for every size
        costs = {s: [r.final_val_cost for r in runs if r.batch_size == s] for s in sizes}
        choice = choose(rows, costs, paired=True)
        if budget.kind == "seconds" and any(r.samples_seen >= epochs * r.n_train for r in runs):
            notes.append(f"some runs reached the cap of {epochs} epochs before spending the time budget")
        result = BatchSizeReport(
            name=spec.name,
            budget=budget,
            repeats=repeats,
            held_from="best" if from_best else "spec",
            held_params=held_params if lr_plan.rule == "fixed" else {k: v for k, v in held_params.items() if k != "lr"},
            rows=rows,
            choice=choice,
            runs=runs,
            target_cost=target_cost,
            experiment=experiment,
            parent_run_id=sweep.run_id,
            tracking_uri=tracking.redact(stores.tracking_uri),
            notes=notes,
            lr=lr_choice,
        )
        log_report(sweep, spec, result)
    except BaseException as e:
        sweep.finish("KILLED" if isinstance(e, KeyboardInterrupt | Interrupted) else "FAILED")
        raise
    sweep.finish("FINISHED")
    return result
