"""What tracking costs: the same sweep with tracking on and off, one ``log_metric`` call per value against
``log_batch``, per-epoch logging, and a trial's run with and without the data as dataset inputs.

Run: ``python bench/tracking_overhead.py [--spec examples/quickstart.yaml] [--tracking-uri URI]``. Without a
URI it uses a fresh embedded SQLite store in a temporary folder. The sweep is timed as given and with
heavier training (``--variant`` overrides, repeatable), because what tracking adds is mostly a fixed cost per
trial and per sweep: its ratio depends on how long a trial trains. "Off" is the same trials, sampler,
pruner, BLAS threads and Optuna journal file as "on", without MLflow (``bench/optuna_alone.py``). The first
variant's "on" includes importing MLflow, as a fresh ``sweeps run`` does, unless ``--mlflow-loaded``. Prints
times and ratios from one run; never asserted.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's code, not an installed one

import tracking
from bench.optuna_alone import sweep_without_tracking
from optcore.history import EpochRecord, History
from tracking.mlflow_requests import log_batched
from tracking.writer import shared_writer


class _Clock:
    """Wall seconds and this process's CPU seconds (a writer process's CPU is not counted) of a block."""

    def __enter__(self):
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc) -> None:
        self.wall, self.cpu = time.perf_counter() - self.wall, time.process_time() - self.cpu


def _seconds(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def per_value_against_batch(sweep: tracking.SweepRun, n_values: int) -> tuple[float, float]:
    """Seconds to log ``n_values`` points of one metric one call each, and in batches."""
    from mlflow.entities import Metric

    client = sweep.client
    single = client.create_run(sweep.experiment_id, run_name="bench-single").info.run_id
    batched = client.create_run(sweep.experiment_id, run_name="bench-batch").info.run_id
    stamp = int(time.time() * 1000)

    def one_by_one() -> None:
        for i in range(n_values):
            client.log_metric(single, "x", float(i), timestamp=stamp, step=i, synchronous=True)

    def in_batches() -> None:
        log_batched(client, batched, metrics=[Metric("x", float(i), stamp, i) for i in range(n_values)])

    return _seconds(one_by_one), _seconds(in_batches)


def epoch_logging(sweep: tracking.SweepRun, epochs: int, minibatches: int) -> tuple[float, float]:
    """Mean seconds of one ``log_epoch`` (5 curves + 2 x ``minibatches`` points) and of ``finish``."""
    run = sweep.trial(0, {"batch_size": 64, "optimizer": "adam", "lr": 1e-3}, seed=0)
    history = History("val_accuracy")
    costs = [1.0 / (k + 1) for k in range(minibatches)]
    start = time.perf_counter()
    for e in range(1, epochs + 1):
        record = EpochRecord(e, 1.0 / e, 1.1 / e, 1 - 1.0 / e, 1e-3, 0.1)
        history.append(record)
        run.log_epoch(record, costs, costs)
    per_epoch = (time.perf_counter() - start) / epochs
    return per_epoch, _seconds(lambda: run.finish("complete", history))


def summary_update(sweep: tracking.SweepRun, trials: int, epochs: int) -> float:
    """Seconds of one ``update_summary`` over ``trials`` finished trials of ``epochs`` epochs."""
    for n in range(1, trials + 1):
        history = History("val_accuracy")
        for e in range(1, epochs + 1):
            history.append(EpochRecord(e, 1.0 / e, 1.0 / e + n / 100, 0.5, 1e-3, 0.1))
        sweep.trial(n, {"batch_size": 2 ** (4 + n % 6), "optimizer": "adam", "lr": 1e-3}, seed=n).finish(
            "complete", history
        )
    return _seconds(lambda: sweep.update_summary({"name": "bench"}))


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far (Linux ``/proc``; 0 elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def inputs_and_settings(uri: str, trials: int, epochs: int = 3) -> dict[str, tuple[float, float, float]]:
    """Per trial (run created, ``epochs`` epochs logged, finished through the writer), for a sweep without
    (``plain``) and one with (``inputs``) the data as two dataset inputs and 16 setting params: mean wall
    seconds, the trainer's CPU seconds and the writer's CPU seconds. Trials of the two alternate, so that the
    host's load falls on both alike; CPU seconds depend less on that load than wall seconds."""
    import numpy as np

    rng = np.random.default_rng(0)
    splits = {
        "training": (rng.normal(size=(3000, 2)), rng.normal(size=(3000, 1))),
        "validation": (rng.normal(size=(1000, 2)), rng.normal(size=(1000, 1))),
    }
    inputs = tracking.describe_dataset("moons", "0123456789abcdef", {"name": "moons", "n_samples": 4000}, splits)
    tracking.start_writer(uri)
    while not (shared_writer() is None or shared_writer().ready()):  # a sweep's trials find it up, too
        time.sleep(0.05)
    writer_pid = shared_writer().child_pid if shared_writer() is not None else None
    settings = {f"setting.{i:02d}": str(i) for i in range(16)}
    stamp = int(time.time())
    arms = {
        "plain": tracking.start_sweep(f"bench-plain-{stamp}", tracking_uri=uri),
        "inputs": tracking.start_sweep(
            f"bench-inputs-{stamp}", tracking_uri=uri, params=settings, trial_params=settings, inputs=inputs
        ),
    }
    totals = {name: np.zeros(3) for name in arms}
    for n in range(trials):
        for name in sorted(arms, reverse=n % 2 == 1):
            sweep = arms[name]
            wall, cpu = time.perf_counter(), time.process_time()
            child = _cpu_seconds(writer_pid) if writer_pid else 0.0
            run = sweep.trial(n, {"batch_size": 64, "optimizer": "adam", "lr": 1e-3}, seed=n, new=True)
            history = History("val_accuracy")
            for e in range(1, epochs + 1):
                record = EpochRecord(e, 1.0 / e, 1.1 / e, 1 - 1.0 / e, 1e-3, 0.1)
                history.append(record)
                run.log_epoch(record)
            run.finish("complete", history)  # returns once the writer has written the whole run
            child = (_cpu_seconds(writer_pid) if writer_pid else 0.0) - child
            totals[name] += (time.perf_counter() - wall, time.process_time() - cpu, child)
    for sweep in arms.values():
        sweep.finish()
    return {name: tuple(total / trials) for name, total in totals.items()}


def sweep_with_tracking(spec, workdir: Path, uri: str) -> _Clock:
    """Seconds of the same sweep through ``sweeps.study.runner.run`` (Optuna journal + MLflow), stores created first."""
    from sweeps.study.runner import check_stores, run
    from sweeps.study.storage import resolve_stores

    check_stores(resolve_stores(workdir, None, uri))  # creating the MLflow database is a one-off, not per trial
    with _Clock() as clock:
        run(spec, workdir=workdir, tracking_uri=uri)
    return clock


# As given (a trial trains ~0.05 s), then trials ~5x and ~25x longer.
DEFAULT_VARIANTS = ["", "dataset.n_samples=20000", "dataset.n_samples=20000;model.hidden=[128,128]"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tracking-uri", help="default: a fresh SQLite store in a temporary folder")
    parser.add_argument("--values", type=int, default=2000, help="points for the per-value comparison")
    parser.add_argument("--spec", default=str(Path(__file__).parents[1] / "examples" / "quickstart.yaml"))
    parser.add_argument("--trials", type=int, default=None, help="override the spec's trials")
    parser.add_argument("--inputs-trials", type=int, default=40, help="trials per arm of the dataset-inputs comparison")
    parser.add_argument(
        "--inputs-only", action="store_true", help="time only the trials with and without dataset inputs"
    )
    parser.add_argument(
        "--mlflow-loaded",
        action="store_true",
        help="import MLflow and its SQL store before the clocks start (as the tables before 2026-12-03 had it); "
        "by default the first sweep's 'on' pays that import, as a fresh `sweeps run` does",
    )
    parser.add_argument(
        "--variant",
        action="append",
        help="overrides (KEY=VALUE separated by semicolons) for one more timed variant of the sweep; "
        f"default: {' | '.join(DEFAULT_VARIANTS)}",
    )
    args = parser.parse_args()
    from sweeps.spec import load_spec

    if args.mlflow_loaded:
        import mlflow.store.tracking.sqlalchemy_store  # noqa: F401 — the import is what is kept off the clock
    base = [f"trials={args.trials}"] if args.trials else []
    variants = args.variant or DEFAULT_VARIANTS
    with tempfile.TemporaryDirectory(prefix="tracking-bench-") as tmp:
        print(f"sweep {args.spec}, on/off = with and without MLflow tracking")
        print(f"{'variant':48s} s/trial   off (s)    on (s)   on/off   per trial")
        for i, variant in enumerate([] if args.inputs_only else variants):
            overrides = [*base, *(o for o in variant.split(";") if o)]
            spec = load_spec(args.spec, overrides)
            folder = Path(tmp) / f"v{i}"
            uri = args.tracking_uri or tracking.default_tracking_uri(folder / "on")
            off, _ = sweep_without_tracking(spec, folder / "off")
            on = sweep_with_tracking(spec, folder / "on", uri)
            per_trial = (on.wall - off) / spec.trials
            print(
                f"{variant or '(as given)':48s} {off / spec.trials:7.3f} {off:9.2f} "
                f"{on.wall:9.2f} {on.wall / off:8.2f} {1000 * per_trial:8.0f} ms"
            )

        uri = args.tracking_uri or tracking.default_tracking_uri(Path(tmp) / "micro")
        tracking.check_reachable(uri)
        print(f"store: {tracking.redact(uri)}")
        if not args.inputs_only:
            single_operations(uri, args.values)
        arms = inputs_and_settings(uri, trials=args.inputs_trials)
        print("a trial's run, 3 epochs, finish     wall ms  trainer CPU ms  writer CPU ms")
        for name, label in (("plain", "as before"), ("inputs", "+ dataset inputs, 16 setting params")):
            wall, cpu, child = (1000 * x for x in arms[name])
            print(f"  {label:36s} {wall:7.1f} {cpu:15.1f} {child:14.1f}")


def single_operations(uri: str, n_values: int) -> None:
    """Print the cost of one value at a time against batches, of an epoch, a finish and a summary."""
    sweep = tracking.start_sweep(f"bench-{int(time.time())}", tracking_uri=uri)
    single, batch = per_value_against_batch(sweep, n_values)
    print(f"{n_values} values, one log_metric each : {single:8.3f} s")
    print(f"{n_values} values, log_batch           : {batch:8.3f} s   ratio {single / batch:6.1f}x")
    per_epoch, finish = epoch_logging(sweep, epochs=30, minibatches=100)
    print(f"log_epoch (5 curves + 200 mini-batch points): {1000 * per_epoch:8.1f} ms per epoch")
    print(f"finish (summary metrics, tags, status)     : {1000 * finish:8.1f} ms")
    print(f"update_summary (30 trials x 30 epochs)     : {summary_update(sweep, 30, 30):8.2f} s")
    sweep.finish()


if __name__ == "__main__":
    main()
