"""How long `sweeps report` takes on the quickstart sweep, against `sweeps best` (the start-up and store
reads every command pays), and where the time goes inside it.

    python bench/report_time.py [--workdir DIR] [--repeats 5] [--baseline CHECKOUT]

Without --workdir the quickstart sweep is run first in a temporary folder (about a minute, with
--no-report). Two kinds of report are timed: the first one of a sweep (`first`: the importances are
fitted, on a fresh copy of the workdir each time) and a redraw of an unchanged sweep (`redraw`: they are
reused from the study). Prints wall-clock and CPU seconds (user+sys of the child) per command, the median
of the repeats, then an in-process breakdown of each kind (in a fresh process each): imports, MLflow,
importances, figures, HTML; what the command takes beyond "in all" is the interpreter's start and exit.

With --baseline (another checkout of this repository, e.g. `git archive <commit> | tar -x -C /tmp/old`) every
command runs alternately with that code and with this checkout's (through PYTHONPATH), so a shared, loaded
machine slows both alike, and the medians are printed side by side with their ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SPEC = ROOT / "examples" / "quickstart.yaml"
SWEEPS = Path(sys.executable).parent / "sweeps"


def timed(*args: str, cwd: Path, code: Path) -> tuple[float, float]:
    """(wall, CPU) seconds of one `sweeps` command run with the package code of checkout ``code``."""
    env = {**os.environ, "PYTHONPATH": str(code), "MLFLOW_DISABLE_TELEMETRY": "true"}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run([str(SWEEPS), *args], cwd=cwd, check=True, capture_output=True, env=env)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def fresh_copy(pristine: Path, scratch: Path) -> Path:
    """A copy of the quickstart's folder as the sweep left it (no report drawn, nothing cached)."""
    copy = Path(tempfile.mkdtemp(prefix="copy-", dir=scratch))
    shutil.copytree(pristine / ".sweeps", copy / ".sweeps")
    return copy


def breakdown(cwd: Path) -> dict[str, float]:
    """Where one report's time goes, in this process (run it in a fresh one: imports are counted once), with
    the garbage collector paused as `write_report` pauses it."""
    os.chdir(cwd)
    marks = {}
    start = time.perf_counter()
    from sweeps.results.html_report import collector_paused, gather, render
    from sweeps.results.importance import optuna_importance
    from sweeps.results.report_figures import build_figures
    from sweeps.spec import load_spec
    from sweeps.study.runner import load_result
    from tracking.report import sweep_record

    optuna_importance(without_scikit_learn=True)  # as the command loads it
    spec = load_spec(SPEC)
    result = load_result(spec)
    marks["imports (sweeps, Optuna) and study"] = time.perf_counter() - start
    with collector_paused():
        t = time.perf_counter()
        sweep_record(result.stores.tracking_uri, result.parent_run_id)
        marks["MLflow: import, store, reads"] = time.perf_counter() - t
        t = time.perf_counter()
        data, provenance = gather(spec, result)  # reads MLflow again (now cheap), then the importances
        marks["importances (and reads again)"] = time.perf_counter() - t
        t = time.perf_counter()
        figures = build_figures(data)
        marks["figures"] = time.perf_counter() - t
        t = time.perf_counter()
        page = render(spec, result, data, provenance, figures)
        marks[f"HTML ({len(page) / 2**20:.1f} MiB)"] = time.perf_counter() - t
    marks["in all"] = time.perf_counter() - start
    return marks


def breakdown_in_child(cwd: Path) -> dict[str, float]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "MLFLOW_DISABLE_TELEMETRY": "true"}
    done = subprocess.run(
        [sys.executable, __file__, "--breakdown-of", str(cwd)], check=True, capture_output=True, text=True, env=env
    )
    return json.loads(done.stdout.splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=None, help="a folder where the quickstart has run")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--baseline", type=Path, default=None, help="another checkout to compare with")
    parser.add_argument("--breakdown-of", type=Path, default=None, help=argparse.SUPPRESS)  # internal
    args = parser.parse_args()
    if args.breakdown_of is not None:
        print(json.dumps(breakdown(args.breakdown_of)))
        return
    scratch = Path(tempfile.mkdtemp(prefix="report-bench-"))  # every folder this run makes; removed at the end
    try:
        measure(args, scratch)
    finally:
        os.chdir(ROOT)
        shutil.rmtree(scratch, ignore_errors=True)


def measure(args: argparse.Namespace, scratch: Path) -> None:
    pristine = args.workdir or scratch / "quickstart"
    pristine.mkdir(exist_ok=True)
    if args.workdir is None:
        print(f"running the quickstart in {pristine} …", flush=True)
        subprocess.run([str(SWEEPS), "run", str(SPEC), "--quiet", "--no-report"], cwd=pristine, check=True)
    codes = {"this checkout": ROOT} | ({"baseline": args.baseline.resolve()} if args.baseline else {})
    redraw = {name: fresh_copy(pristine, scratch) for name in codes}  # one report drawn there first, then redrawn
    for name, code in codes.items():
        timed("report", str(SPEC), cwd=redraw[name], code=code)
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    commands = {
        "sweeps best": lambda name: (["best", str(SPEC)], pristine),
        "report, first": lambda name: (["report", str(SPEC)], fresh_copy(pristine, scratch)),
        "report, redraw": lambda name: (["report", str(SPEC)], redraw[name]),
    }
    medians: dict[tuple[str, str], tuple[float, float]] = {}
    for label, make in commands.items():
        runs: dict[str, list[tuple[float, float]]] = {name: [] for name in codes}
        for _ in range(args.repeats):
            for name, code in codes.items():  # alternate: a load spike falls on both
                command, cwd = make(name)
                runs[name].append(timed(*command, cwd=cwd, code=code))
        for name in codes:
            wall = statistics.median(r[0] for r in runs[name])
            cpu = statistics.median(r[1] for r in runs[name])
            medians[label, name] = wall, cpu
    width = max(map(len, codes))
    for label in commands:
        for name in codes:
            wall, cpu = medians[label, name]
            print(f"{label:15s} {name:{width}s}  wall {wall:5.1f} s   CPU {cpu:5.1f} s   (median of {args.repeats})")
        if "baseline" in codes:
            (wall, cpu), (old_wall, old_cpu) = medians[label, "this checkout"], medians[label, "baseline"]
            print(f"{'':15s} {'ratio':{width}s}  wall {wall / old_wall:5.2f}     CPU {cpu / old_cpu:5.2f}")
    print(f"in-process breakdown, each in a fresh process (this checkout; load average {os.getloadavg()[0]:.1f}):")
    first = breakdown_in_child(fresh_copy(pristine, scratch))
    again = breakdown_in_child(redraw["this checkout"])
    print(f"  {'':36s} {'first':>6s} {'redraw':>7s}")
    for (step, a), b in zip(first.items(), again.values(), strict=True):
        print(f"  {step:36s} {a:5.2f} s {b:5.2f} s")


if __name__ == "__main__":
    main()
