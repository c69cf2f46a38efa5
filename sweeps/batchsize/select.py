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
import tempfile
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, NamedTuple

from sweeps import blas_threads as threads
from sweeps import console as out
from sweeps.batchsize import lr_rule as lr_rules
from sweeps.batchsize.report import BatchSizeReport, print_csv, print_report
from sweeps.batchsize.stats import RunResult, choose, size_stats
from sweeps.errors import Interrupted, SweepError, UsageError
from sweeps.spec import Entry, Spec, SpecError
from sweeps.study import interrupts

DEFAULT_SIZES = (64, 128, 256, 512)
DEFAULT_REPEATS = 3
# The most epochs a run may train: the largest epochs budget, and the cap that stops an equal-time run which
# never spends its seconds.
MAX_EPOCHS = 10_000


class Budget(NamedTuple):
    """What every run gets alike: ``("epochs", E)`` or ``("seconds", S)`` of training steps."""

    kind: str
    amount: float

    @property
    def label(self) -> str:
        return f"{self.kind}={self.amount:g}"

    def describe(self) -> str:
        if self.kind == "epochs":
            return f"equal epochs: {self.amount:g} per run"
        return (
            f"equal training time: {self.amount:g} s of training steps per run (evaluation excluded; each run "
            "stops after the step that spends it, mid-epoch if need be)"
        )


def _whole(text: str) -> int:
    value = float(text)
    if not math.isfinite(value) or value != int(value):
        raise ValueError(text)
    return int(value)


# kind -> (parse the amount, whether it is allowed, what is allowed)
BUDGETS: dict[str, tuple[Callable[[str], float], Callable[[float], bool], str]] = {
    "epochs": (
        _whole,
        lambda v: 1 <= v <= MAX_EPOCHS and v == int(v),
        f"a whole number of epochs in [1, {MAX_EPOCHS:,}]",
    ),
    "seconds": (float, lambda v: v > 0, "a number of seconds > 0"),
}


def parse_budget(text: str) -> Budget:
    """``"epochs=20"`` or ``"seconds=7.5"`` → :class:`Budget`; raises UsageError for anything else."""
    kind, sep, amount = (part.strip() for part in text.partition("="))
    if not sep or kind not in BUDGETS:
        raise UsageError(f"--budget: {text!r} is not allowed; give epochs=E or seconds=S (e.g. --budget epochs=20)")
    parse, _, what = BUDGETS[kind]
    try:
        value = parse(amount)
    except ValueError:
        raise UsageError(f"--budget: {text!r} is not allowed; {kind} must be {what}") from None
    return check_budget((kind, value), None)


def check_budget(budget: tuple[str, float] | None, spec: Spec | None) -> Budget:
    """The budget to use: ``budget`` checked, or by default the spec's ``training.epochs``."""
    if budget is None:
        return Budget("epochs", spec.training.epochs)
    kind, amount = budget
    if kind not in BUDGETS:
        raise UsageError(f"--budget: unknown budget {kind!r}; give epochs=E or seconds=S")
    _, allowed, what = BUDGETS[kind]
    number = isinstance(amount, int | float) and not isinstance(amount, bool)
    if not (number and math.isfinite(amount) and allowed(amount)):
        raise UsageError(f"--budget: {kind}={amount} is not allowed; {kind} must be {what}")
    return Budget(kind, int(amount) if kind == "epochs" else float(amount))


def parse_sizes(text: str) -> list[int]:
    """``"64,128,200"`` → ``[64, 128, 200]``; raises UsageError for a part that is not a whole number."""
    sizes = []
    for part in text.split(","):
        try:
            sizes.append(int(part.strip()))
        except ValueError:
            raise UsageError(f"--sizes: {part.strip()!r} is not a whole number; give sizes like 64,128,256") from None
    return sizes


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


def held_setting(
    spec: Spec, batch_size: int, best: Mapping[str, object] | None = None, free: Collection[str] = ()
) -> dict[str, object]:
    """Every hyperparameter of a run with ``batch_size``; the others held fixed.

    With ``best`` (the best setting of the spec's sweep) those values are used. Otherwise each entry active
    for this batch size must be fixed in the spec; a searched one is a :class:`SpecError` that names it and
    suggests a value, since any default here would quietly decide the comparison. ``free`` names entries
    left out, to be set per size by the caller (``lr`` under ``--lr-rule tuned``); what depends on them
    counts as searched.
    """
    if best is not None:
        return {"batch_size": batch_size, **{k: v for k, v in best.items() if k not in ("batch_size", *free)}}
    hp: dict[str, object] = {"batch_size": batch_size}
    searched: list[str] = []
    for name in spec.search_order():
        entry = spec.search[name]
        if name == "batch_size" or name in free:
            continue
        if any(dependency in searched or dependency in free for dependency in entry.when or {}):
            searched.append(name)  # might exist once its condition's parameter is fixed: say so now
        elif entry.is_active(hp):
            if entry.kind == "fixed":
                hp[name] = entry.value
            else:
                searched.append(name)
    if searched:
        first = searched[0]
        raise SpecError(
            "search",
            f"{', '.join(searched)} {'is' if len(searched) == 1 else 'are'} searched, but batch-size holds every "
            f"hyperparameter except batch_size fixed; fix {'it' if len(searched) == 1 else 'them'} "
            f"(e.g. --set search.{first}.value={_example_value(spec.search[first])}) "
            "or pass --from-best to use the best setting of the spec's sweep",
        )
    return hp


def _example_value(entry: Entry) -> object:
    """A value to suggest for a searched entry: its first choice, or the middle of its range."""
    if entry.kind == "categorical":
        return entry.choices[0]
    if entry.kind == "int":
        return (entry.low + entry.high) // 2
    middle = math.sqrt(entry.low * entry.high) if entry.log else (entry.low + entry.high) / 2
    return float(f"{middle:.2g}")


def _best_setting(spec: Spec, workdir, storage, tracking_uri) -> dict[str, object]:
    from sweeps.study.runner import load_result

    result = load_result(spec, workdir=workdir, storage=storage, tracking_uri=tracking_uri)
    if result.best_params is None:
        raise SweepError(f"the sweep {spec.name!r} has no completed trial yet, so --from-best has nothing to use")
    return dict(result.best_params)


def _check_runs(setup, settings: Mapping[int, Mapping[str, object]], budget: Budget, n_train: int) -> None:
    """Build every size's optimizer and schedule once, so a bad combination fails before anything is written.

    A time budget has no known length, so a schedule that decays over a fixed horizon is refused with it.
    """
    import optcore
    from sweeps.optcore_adapter import build_optimizer, build_schedule

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


@dataclass
class _Epochs:
    """The epoch callback: live curves to the child run."""

    run: Any
    history: Any = None

    def __call__(self, record, history) -> None:
        self.history = history
        self.run.log_epoch(record)


def _train_one(
    sweep,
    setup,
    hp,
    *,
    number: int,
    repeat: int,
    seed: int,
    budget: Budget,
    n_train: int,
    metric: str,
    tags: Mapping[str, object] | None = None,
) -> RunResult:
    """Train one (size, seed) in its own child run; a diverged cost is recorded, not raised. ``tags``
    replace the repeat's tags and run name (an lr search trial has its own)."""
    from sweeps.study.trial_lifecycle import train_and_record

    size = int(hp["batch_size"])
    run = sweep.trial(
        number,
        hp,
        seed=seed,
        tags=tags or {"batch_size": size, "repeat": repeat, "mlflow.runName": f"bs-{size:04d}-seed-{repeat}"},
        metric_name=metric,
        flush_every=1 if budget.kind == "epochs" else 10,  # short timed epochs: fewer store round trips
    )
    max_seconds = budget.amount if budget.kind == "seconds" else None
    ending = train_and_record(setup, hp, seed, run, _Epochs(run), max_seconds=max_seconds)
    if ending.error is not None:  # not a diverged cost: a bug or a bad combination stops the comparison
        raise ending.error
    history, failed = ending.history, ending.reason
    curves = tuple(history.val_cost), tuple(history.epoch_seconds)
    return RunResult(
        size,
        repeat,
        seed,
        run.run_id,
        n_train,
        *curves,
        failed,
        samples=history.samples_seen,
        lr=float(hp["lr"]),
        final_train_cost=history.final_train_cost,
    )


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
    import tracking
    from sweeps.optcore_adapter import train_trial, trial_seed
    from sweeps.study.storage import resolve_stores
    from sweeps.study.trial_lifecycle import setup_from_spec

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
    best = _best_setting(spec, workdir, storage, tracking_uri) if from_best else None
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

    import optcore

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
            result = _train_one(
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
                result = _train_one(
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
        _log_parent(sweep, spec, result)
    except BaseException as e:
        sweep.finish("KILLED" if isinstance(e, KeyboardInterrupt | Interrupted) else "FAILED")
        raise
    sweep.finish("FINISHED")
    return result


def _log_parent(sweep, spec: Spec, report: BatchSizeReport) -> None:
    """The parent run's record: command params, the verdict as tags, per-size metrics, report and plots."""
    import json

    from tracking import batch_size_plots as plots
    from tracking.summary import write_spec

    params = {
        "sizes": ",".join(map(str, report.sizes)),
        "repeats": report.repeats,
        "budget": report.budget.label,
        "target_cost": report.target_cost,
        "held_from": report.held_from,
        "alpha": report.alpha,
        **report.held_params,
        **(report.lr.params() if report.lr else {}),
    }
    tags = {
        "chosen_batch_size": report.chosen,
        "runner_up": report.runner_up,
        "test": report.comparison.method,
        "p_value": report.p_value,
        "within_noise": None if report.distinguishable is None else not report.distinguishable,
        "tied_sizes": ",".join(map(str, report.tied)),
        "fastest_tied_size": report.fastest_tied,
        "verdict": report.verdict(),
        **(report.lr.tags() if report.lr else {}),
    }
    per_size = {
        "mean_final_val_cost": lambda r: r.mean_cost,
        "std_final_val_cost": lambda r: r.std_cost,
        "ci95_low": lambda r: r.ci_low,
        "ci95_high": lambda r: r.ci_high,
        "p_vs_chosen_holm": lambda r: report.comparison.row(r.batch_size).p_holm,
        "throughput": lambda r: r.throughput,
        "epochs_to_target": lambda r: r.epochs_to_target,
        "seconds_to_target": lambda r: r.seconds_to_target,
    }
    metrics = [
        (key, value(row), row.batch_size)  # step = batch size: the UI charts it over sizes
        for row in report.rows
        for key, value in per_size.items()
        if value(row) is not None and math.isfinite(value(row))
    ]
    if report.chosen is not None:
        metrics.append(("chosen_batch_size", report.chosen, 0))
    if report.lr is not None:  # each size's rate, a curve over sizes like the others
        metrics += [("lr", lr, size) for size, lr in report.lr.rates.items()]
    sweep.log_record(params=params, tags=tags, metrics=metrics)
    by_size = {s: [r for r in report.runs if r.batch_size == s] for s in report.sizes}
    costs = {s: [r.val_cost for r in rs] for s, rs in by_size.items()}
    seconds = {s: [r.epoch_seconds for r in rs] for s, rs in by_size.items()}
    with tempfile.TemporaryDirectory(prefix="batch-size-") as tmp:
        folder = Path(tmp)
        (folder / "plots").mkdir()
        (folder / "batch_size_report.json").write_text(json.dumps(report.to_dict(), indent=2))
        write_spec(spec.resolved(), folder / "spec.yaml")
        plots.plot_cost_curves(costs, folder / "plots" / "val_cost_curves.png", chosen=report.chosen)
        plots.plot_throughput(
            {s: [r.throughput for r in rs if r.failed is None] for s, rs in by_size.items()},
            {row.batch_size: row.throughput for row in report.rows},
            folder / "plots" / "throughput.png",
        )
        plots.plot_cost_vs_seconds(costs, seconds, folder / "plots" / "cost_vs_seconds.png")
        rows = report.rows
        plots.plot_final_cost(
            report.sizes,
            [r.mean_cost for r in rows],
            [r.ci_low for r in rows],
            [r.ci_high for r in rows],
            folder / "plots" / "final_cost.png",
        )
        if report.chosen is not None:
            finals = {s: [r.final_val_cost for r in rs] for s, rs in by_size.items()}
            plots.plot_paired_differences(
                finals, report.chosen, report.tied, folder / "plots" / "paired_differences.png"
            )
        if report.lr is not None and report.lr.trials:
            plots.plot_lr_search(report.lr.search_by_size(), report.lr.rates, folder / "plots" / "lr_search.png")
        sweep.log_record(artifacts=folder, what="the batch-size report")


def _progress(result: RunResult, done: int, total: int) -> None:
    outcome = f"failed: {result.failed}" if result.failed else f"val cost {out.fmt(result.final_val_cost)}"
    which = f"lr search at {result.lr:.4g}" if result.repeat == 0 else f"seed {result.repeat}"
    out.err.print(
        f"[{done}/{total}] batch size {result.batch_size}, {which}: {outcome} "
        f"after {result.epochs_trained:.3g} epochs, {result.train_seconds:.3g} s",
        highlight=False,
    )


def cmd_batch_size(args) -> int:
    """``sweeps batch-size SPEC …``: exit 0 with a chosen size, 1 when no size finished all its runs."""
    from sweeps.cli.commands import _workdir_hint, load

    if args.json and args.csv:
        raise UsageError("--json and --csv: give one of them, not both")
    if args.advise or args.measure_steps:
        from sweeps.batchsize.advise import cmd_advise

        return cmd_advise(args)
    if args.lr_factors is not None or args.pilot_size is not None or args.seeds is not None:
        raise UsageError("--lr-factors, --pilot-size and --seeds belong to --advise or --measure-steps; add one")
    spec = load(args)
    result = select_batch_size(
        spec,
        sizes=parse_sizes(args.sizes) if args.sizes is not None else None,
        repeats=args.repeats,
        budget=parse_budget(args.budget) if args.budget is not None else None,
        target_cost=args.target_cost,
        from_best=args.from_best,
        workdir=args.workdir,
        storage=args.storage,
        tracking_uri=args.tracking_uri,
        on_run=_progress,
        lr_rule=args.lr_rule,
        lr_trials=args.lr_trials,
        lr_reference=args.lr_reference,
    )
    if args.json:
        out.print_json(result.to_dict())
    elif args.csv:
        print_csv(result)
    else:
        print_report(result, _workdir_hint(args))
    _draw_sweep_report(spec, args)
    return 0 if result.chosen is not None else 1


def _draw_sweep_report(spec: Spec, args) -> None:
    """The spec's sweep report, drawn again at the end as ``run`` and ``confirm`` do (unless $SWEEPS_NO_REPORT),
    its lines on stderr (stdout may be JSON or CSV). A comparison held at the spec's fixed values may have no
    sweep to report on: then nothing is drawn or said."""
    from sweeps.results.html_report import draw_after_command, report_enabled
    from sweeps.study.runner import load_result

    if not report_enabled(False):
        return
    try:
        result = load_result(spec, workdir=args.workdir, storage=args.storage, tracking_uri=args.tracking_uri)
    except SweepError:
        return
    draw_after_command(spec, result, args.spec, out.err.print, out.err.print)
