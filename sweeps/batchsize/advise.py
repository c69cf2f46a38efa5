"""``sweeps batch-size --advise`` and ``--measure-steps``: predict each batch size's time to a target cost from
the gradient noise scale, then measure it; with ``--measure-steps``, fit the critical batch size.

1. Pilot: runs to the target at the pilot size (default: the middle candidate), one per rate of the grid,
   measuring the gradient noise scale (:mod:`optcore.noise`; B_noise = mean tr Σ / mean |G|² over the
   run); the run of fewest steps is the pilot. Then a short timed run per candidate size for its
   throughput (samples per second, no evaluation).
2. Prediction (:mod:`sweeps.batchsize.tradeoff`): S_min = S_pilot / (1 + B_noise/B_pilot), then per size
   S = S_min·(1 + B_noise/B), E = S·B and seconds = E / throughput; recommended: the least predicted time.
3. Measurement (Shallue et al. 2018's protocol): every size at every rate of ``lr × lr_factors`` until the
   target (:func:`optcore.steps_to_target`), each size keeping its rate of fewest steps (the mean over
   ``seeds`` seeds, the same for every size and other than the pilot's). A run that has taken ``GIVE_UP``
   times the steps of its size's fastest so far stops, not reached.
4. ``measure_steps``: sizes from 8 to 1024 (or the training split) by default, S_min and B_crit fitted to
   the measured steps, and the steps-against-samples (Pareto) plot with the fit and B_noise marked.

Every run is capped by the budget (the spec's epochs by default). MLflow: experiment
``<name>-batch-size``, one parent run (tag ``mode`` = advise or measure-steps) holding the report
(``advice_report.json``), per-size metrics at ``step = batch size`` and the plots; one child run per run to
the target (``pilot-bs-0128``, ``bs-0128-lr-0.002``) with its validation-cost curve at ``step = training
step`` (and the noise scale for the pilot).

    report = advise_batch_size(spec, [32, 128, 512], target_cost=0.2)
    report.recommended, report.measured_fastest, report.b_noise
"""

from __future__ import annotations

import json
import math
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import optcore
import tracking
from sweeps import blas_threads as threads
from sweeps.batchsize.advise_report import AdviceReport, Measured, Pilot
from sweeps.batchsize.budget import check_budget
from sweeps.batchsize.held_setting import best_setting, held_setting
from sweeps.batchsize.select import DEFAULT_SIZES, check_sizes
from sweeps.batchsize.target_runs import TargetRuns, outcome
from sweeps.batchsize.tradeoff import fit_steps, predict, s_min_from_pilot
from sweeps.errors import Interrupted, SweepError, UsageError
from sweeps.optcore_adapter import build_optimizer, trial_seed
from sweeps.spec import Spec
from sweeps.study import interrupts
from sweeps.study.storage import resolve_stores
from sweeps.study.trial_lifecycle import setup_from_spec
from tracking import critical_batch_plots as plots
from tracking.summary import write_spec

DEFAULT_LR_FACTORS = (0.5, 1.0, 2.0)
MEASURE_RANGE = (8, 1024)  # --measure-steps sizes: powers of two over this range (capped at the training split)
THROUGHPUT_SECONDS = 0.3
# A run stops without reaching the target once it has taken this many times the steps of the fastest run of
# its size so far: it cannot be that size's best rate, and a rate too high for a size can hover just above
# the target for the whole cap.
GIVE_UP = 5  # of training steps per size in the pilot's throughput measurement


def measure_sizes(n_train: int) -> list[int]:
    """8, 16, …, 1024, those ≤ ``n_train``, and ``n_train`` itself when it is below 1024."""
    low, high = MEASURE_RANGE
    sizes = [2**k for k in range(low.bit_length() - 1, high.bit_length()) if 2**k <= n_train]
    if n_train < high and n_train not in sizes:
        sizes.append(n_train)
    return sizes


def check_factors(factors: Sequence[float]) -> list[float]:
    """The factors sorted; each finite, > 0 and listed once (UsageError otherwise)."""
    factors = list(factors)
    if not factors:
        raise UsageError("--lr-factors: give at least one factor (1 is the held learning rate)")
    for f in factors:
        if isinstance(f, bool) or not isinstance(f, int | float) or not (math.isfinite(f) and f > 0):
            raise UsageError(f"--lr-factors: {f!r} is not allowed; each factor must be a number > 0")
        if factors.count(f) > 1:
            raise UsageError(f"--lr-factors: {f:g} is listed twice; give each factor once")
    return sorted(float(f) for f in factors)


def _check_held(settings: Mapping[int, Mapping[str, object]], factors: Sequence[float]) -> None:
    """A constant learning rate, and an optimizer every rate of the grid can build."""

    for size, hp in settings.items():
        schedule = str(hp.get("schedule", "constant"))
        if schedule != "constant":
            raise UsageError(
                f"--advise: schedule {schedule!r} is held, but runs to a target cost have no fixed length to "
                "schedule over; hold schedule at constant (e.g. --set search.schedule.value=constant)"
            )
        if "lr" not in hp:
            raise UsageError("--advise: the held setting has no lr; fix one (e.g. --set search.lr.value=0.01)")
        for f in factors:
            try:
                build_optimizer({**hp, "lr": float(hp["lr"]) * f})
            except optcore.OptcoreError as e:
                raise UsageError(f"batch size {size} at lr × {f:g}: {e}") from None


@interrupts.handling()
@threads.limited()
def advise_batch_size(
    spec: Spec,
    sizes: Sequence[int] | None = None,
    target_cost: float | None = None,
    *,
    measure_steps: bool = False,
    lr_factors: Sequence[float] | None = None,
    pilot_size: int | None = None,
    seeds: int = 1,
    budget: tuple[str, float] | None = None,
    from_best: bool = False,
    workdir: str | Path | None = None,
    storage: str | None = None,
    tracking_uri: str | None = None,
    throughput_seconds: float = THROUGHPUT_SECONDS,
    on_run: Callable[[str], None] | None = None,
) -> AdviceReport:
    """Predict each size's time to ``target_cost`` from a pilot, measure it, and (``measure_steps``) fit
    B_crit (module docstring).

    ``sizes`` defaults to 64…512 (with ``measure_steps``: 8…1024), those within the training split;
    ``lr_factors`` to 0.5, 1, 2; ``pilot_size`` to the middle size; ``budget`` caps every run (default: the
    spec's epochs). ``on_run(text)`` hears of each finished run. Everything is checked before anything is
    written: UsageError without a target cost or for bad sizes, factors, pilot size, budget or a held
    schedule other than constant; SpecError for a searched entry without ``from_best``; TrackingError when
    MLflow is unreachable. SweepError when the pilot does not reach the target (nothing to predict from).
    """

    if target_cost is None:
        raise UsageError(
            "--advise needs --target-cost C: the validation cost every size must reach, whose steps and time "
            "are predicted and measured (e.g. --target-cost 0.2)"
        )
    if isinstance(target_cost, bool) or not (math.isfinite(target_cost) and target_cost > 0):
        raise UsageError(f"--target-cost: {target_cost} is not allowed; give a validation cost > 0")
    setup = setup_from_spec(spec)
    n_train = spec.dataset.n_train or setup.load().n_train
    notes: list[str] = []
    if sizes is None:
        sizes = measure_sizes(n_train) if measure_steps else [s for s in DEFAULT_SIZES if s <= n_train] or [n_train]
    sizes = check_sizes(sizes, n_train)
    if measure_steps and len(sizes) < 3:
        raise UsageError("--measure-steps: give at least 3 sizes, so that fitting S_min and B_crit is checked")
    factors = check_factors(DEFAULT_LR_FACTORS if lr_factors is None else lr_factors)
    if pilot_size is None:
        pilot_size = sizes[len(sizes) // 2]
    if isinstance(pilot_size, bool) or not isinstance(pilot_size, int) or not 2 <= pilot_size <= n_train:
        raise UsageError(
            f"--pilot-size: {pilot_size!r} is not allowed; the noise scale needs a whole number of rows in "
            f"[2, {n_train}]"
        )
    if isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1:
        raise UsageError(f"--seeds: {seeds!r} is not allowed; give a whole number of seeds ≥ 1")
    cap = check_budget(budget, spec)
    stores = resolve_stores(workdir, storage, tracking_uri)
    best = best_setting(spec, workdir, storage, tracking_uri) if from_best else None
    settings = {s: held_setting(spec, s, best) for s in sorted({*sizes, pilot_size})}
    _check_held(settings, factors)
    tracking.check_reachable(stores.tracking_uri)

    data = setup.load()
    metric = optcore.LOSSES[data.task].metric_name
    held_lr = float(settings[pilot_size]["lr"])
    mode = "measure-steps" if measure_steps else "advise"
    experiment = f"{spec.name}-batch-size"
    sweep = tracking.start_sweep(
        experiment,
        tracking_uri=stores.tracking_uri,
        study_name=f"{experiment}-{mode}",
        tags={
            "dataset": data.name,
            "dataset_fingerprint": data.fingerprint,
            "spec_hash": spec.spec_hash(),
            "budget": cap.label,
            "held_from": "best" if from_best else "spec",
            "mode": mode,
        },
    )
    runs = TargetRuns(sweep, setup, data, cap, target_cost, metric)
    tell = on_run or (lambda text: None)
    try:
        # 1. the pilot: the noise scale and the steps to the target at one size, at its best rate of the grid
        pilots: list[Pilot] = []
        pilot_seed = trial_seed(spec.seed, 0)  # the pilot's seeds: a stream of their own
        for f in factors:
            hp = {**settings[pilot_size], "lr": held_lr * f}
            results, ids = [], []
            for repeat in range(1, seeds + 1):
                name = f"pilot-bs-{pilot_size:04d}-lr-{held_lr * f:.3g}-seed-{repeat}"
                limit = GIVE_UP * min((p.steps for p in pilots), default=math.inf)
                r, run_id = runs.tracked(hp, trial_seed(pilot_seed, repeat), name, noise=True, limit=limit)
                results.append(r)
                ids.append(run_id)
                tell(f"pilot: batch size {pilot_size}, lr {held_lr * f:.3g}, seed {repeat}: {outcome(r)}")
            if all(r.reached and math.isfinite(r.noise_scale) for r in results):
                pilots.append(Pilot.over_seeds(pilot_size, held_lr * f, results, ids))
        if not pilots:
            raise SweepError(
                f"no pilot run at batch size {pilot_size} reached the target ({cap.label}), so there is nothing "
                "to predict from; give a higher --target-cost, a larger --budget or other --lr-factors"
            )
        pilot = min(pilots, key=lambda p: (p.steps, p.lr))
        pilot_lr = pilot.lr
        tell(f"pilot: B_noise = {pilot.b_noise:.3g} at lr {pilot_lr:.3g}")
        runs.train(settings[sizes[0]], 0, target=None, seconds=0.05)  # first BLAS calls off the first clock
        throughput = {
            s: runs.train(settings[s], trial_seed(spec.seed, 0), target=None, seconds=throughput_seconds).throughput
            for s in sizes
        }
        # 2. the prediction, made before anything is measured
        s_min = s_min_from_pilot(pilot.steps, pilot_size, pilot.b_noise)
        predictions = predict(s_min, pilot.b_noise, sizes, throughput)
        # 3. the measurement: every size at every rate of the grid, over the same seeds (not the pilot's)
        measured: list[Measured] = []
        best_runs: dict[int, Measured | None] = {}
        fewest: dict[int, list[int]] = {}  # steps of the runs of each size that reached the target
        for size in sizes:
            for f in factors:
                lr = held_lr * f
                hp = {**settings[size], "lr": lr}
                results, ids = [], []
                for repeat in range(1, seeds + 1):
                    limit = GIVE_UP * min(fewest.get(size, [math.inf]))
                    name = f"bs-{size:04d}-lr-{lr:.3g}-seed-{repeat}"
                    r, run_id = runs.tracked(hp, trial_seed(spec.seed, repeat), name, limit=limit)
                    if r.reached:
                        fewest.setdefault(size, []).append(r.steps)
                    results.append(r)
                    ids.append(run_id)
                    tell(f"batch size {size}, lr {lr:.3g}, seed {repeat}: {outcome(r)}")
                measured.append(Measured.over_seeds(size, lr, results, ids))
            reached = [m for m in measured if m.batch_size == size and m.reached]
            best_runs[size] = min(reached, key=lambda m: (m.steps, m.seconds)) if reached else None
        edges = (held_lr * factors[0], held_lr * factors[-1])
        at_edge = [s for s, m in best_runs.items() if m is not None and len(factors) > 1 and m.lr in edges]
        if pilot_lr in edges and len(factors) > 1:
            at_edge.insert(0, f"{pilot_size} (pilot)")
        if at_edge:
            notes.append(
                f"the best lr of batch size {', '.join(map(str, at_edge))} is at an edge of the grid, so a rate "
                "outside it may reach the target sooner; widen --lr-factors"
            )
        missing = [s for s, m in best_runs.items() if m is None]
        if missing:
            notes.append(f"no rate reached the target at batch size {', '.join(map(str, missing))} ({cap.label})")
        # 4. the fit
        fit = None
        if measure_steps:
            done = [m for m in best_runs.values() if m is not None]
            try:
                fit = fit_steps([m.batch_size for m in done], [m.steps for m in done])
            except ValueError as e:
                notes.append(f"no fit: {e}")
        report = AdviceReport(
            name=spec.name,
            mode=mode,
            target_cost=target_cost,
            cap=cap.label,
            lr_factors=factors,
            seeds=seeds,
            held_params={k: v for k, v in settings[pilot_size].items() if k != "batch_size"},
            pilot=pilot,
            throughput=throughput,
            s_min=s_min,
            predictions=predictions,
            runs=measured,
            best=best_runs,
            fit=fit,
            experiment=experiment,
            parent_run_id=sweep.run_id,
            tracking_uri=tracking.redact(stores.tracking_uri),
            notes=notes,
        )
        _log_parent(sweep, spec, report)
    except BaseException as e:
        sweep.finish("KILLED" if isinstance(e, KeyboardInterrupt | Interrupted) else "FAILED")
        raise
    sweep.finish("FINISHED")
    return report


def _log_parent(sweep, spec: Spec, report: AdviceReport) -> None:
    """Params, the outcome as tags, per-size metrics at ``step = batch size``, the report and the plots."""

    params = {
        "sizes": ",".join(map(str, report.sizes)),
        "target_cost": report.target_cost,
        "budget": report.cap,
        "lr_factors": ",".join(f"{f:g}" for f in report.lr_factors),
        "pilot_size": report.pilot.batch_size,
        "mode": report.mode,
        **report.held_params,
    }
    tags = {
        "recommended_batch_size": report.recommended,
        "measured_fastest_batch_size": report.measured_fastest,
        "b_noise": f"{report.b_noise:.4g}",
    }
    scalars = {"b_noise": report.b_noise, "b_noise_end": report.pilot.b_noise_end, "s_min_pilot": report.s_min}
    if report.fit is not None:
        tags["b_crit"] = f"{report.fit.b_crit:.4g}"
        scalars |= {
            "fit_s_min": report.fit.s_min,
            "fit_b_crit": report.fit.b_crit,
            "fit_rms_relative_error": report.fit.rms_relative_error,
            "b_noise_over_b_crit": report.noise_to_crit,
        }
    metrics = [(k, v, 0) for k, v in scalars.items() if math.isfinite(v)]
    for row in report.row_dicts():
        for key, value in row.items():
            if key != "batch_size" and value is not None and math.isfinite(value):
                metrics.append((key, value, row["batch_size"]))
    sweep.log_record(params=params, tags=tags, metrics=metrics)
    rows = report.row_dicts()
    with tempfile.TemporaryDirectory(prefix="advise-") as tmp:
        folder = Path(tmp)
        (folder / "plots").mkdir()
        (folder / "advice_report.json").write_text(json.dumps(report.to_dict(), indent=2))
        write_spec(spec.resolved(), folder / "spec.yaml")
        sizes = [r["batch_size"] for r in rows]
        plots.plot_prediction(
            sizes,
            [r["predicted_seconds"] for r in rows],
            [r["measured_seconds"] for r in rows],
            [r["predicted_steps"] for r in rows],
            [r["measured_steps"] for r in rows],
            folder / "plots" / "predicted_vs_measured.png",
            recommended=report.recommended,
        )
        plots.plot_pareto(
            [(m.batch_size, m.steps, m.samples) for m in report.best.values() if m is not None],
            folder / "plots" / "steps_vs_samples.png",
            b_noise=report.b_noise,
            s_min_pilot=report.s_min,
            fit=None if report.fit is None else (report.fit.s_min, report.fit.b_crit),
            target=report.target_cost,
        )
        sweep.log_record(artifacts=folder, what="the advice report")
