"""Wall time of the CLI from a fresh process, next to the training time of the same trials.

Cases, each run ``--repeats`` times, every time from a new Python process:

- ``fresh``: ``sweeps run SPEC`` in a new, empty work folder (stores created, every trial trained, the HTML
  report drawn as a user gets it);
- ``fresh-no-report``: the same with ``--no-report``: the trials, their tracking and the parent run's summary,
  without the HTML report (between ``optuna-alone`` and ``fresh``: what the report adds, and what is left
  without it);
- ``fresh-terminal``: the same with its output on a pseudo-terminal, as a person at a terminal runs it (the
  live progress bar and its thread; not among the default cases);
- ``rerun``: the same command again in a finished work folder (it trains nothing);
- ``best`` and ``trials``: the read-only commands on that folder;
- ``help``: ``sweeps --help``;
- ``optuna-alone``: the same trials with Optuna alone (``bench/optuna_alone.py``: the same data, sampler,
  pruner, training and journal file; no MLflow, CLI, report or summary), also from a fresh process: what
  the trials cost before optsweep adds anything, the floor under the ``fresh`` ratio.

The fresh runs' summed ``train_seconds`` (the trials' own training clock, from the MLflow store) is printed
beside their wall time, and the ratio is what the targets speak of (``optuna-alone`` counts its own):

    python bench/startup.py                       # examples/quickstart.yaml, 3 repeats
    python bench/startup.py --repeats 5 --cases rerun best trials
    python bench/startup.py --cases fresh fresh-terminal
    python bench/startup.py --cases fresh --set dataset.n_samples=16000   # ~3 s of training, as in issue 15

``--set`` overrides the spec in every command (as ``sweeps run SPEC --set ...``): with more samples the
trials train longer and the same fixed costs weigh less, which is how the ratio depends on the training.

Reported: min and median wall seconds, median CPU seconds of the process and its children (the writer
process included). The cases take turns inside every repeat, so a slow spell of a shared machine falls on
all of them alike. The checkout's modules are compiled to bytecode first, as a user's are after their first
command. Nothing is asserted: it prints figures from one run.
"""

from __future__ import annotations

import argparse
import compileall
import os
import resource
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from optuna_alone import TRAIN_SECONDS_FILE

ROOT = Path(__file__).resolve().parents[1]
FRESH = ("fresh", "fresh-no-report", "fresh-terminal", "optuna-alone")  # the cases that train the sweep from nothing
CASES = ("fresh", "fresh-no-report", "fresh-terminal", "optuna-alone", "rerun", "best", "trials", "help")
TARGETS = {  # case -> (what the wall time is compared with, target)
    "fresh": ("× summed train_seconds", 2.0),
    "fresh-no-report": ("× summed train_seconds", 2.0),
    "fresh-terminal": ("× summed train_seconds", 2.0),
    "rerun": ("s", 1.5),
    "best": ("s", 1.0),
    "trials": ("s", 1.0),
}


def compile_bytecode() -> None:
    """This checkout's modules compiled to bytecode (``__pycache__``), as a user's are from their first
    command on (pip compiles an installed package's at install): else a shell with PYTHONDONTWRITEBYTECODE
    set (this machine's) compiles ~90 of them from source in every command, ~0.1 s of each."""
    for package in ("optcore", "sweeps", "tracking"):
        compileall.compile_dir(ROOT / package, quiet=1)


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_TRACKING", "SWEEPS_"))}
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env["MLFLOW_DISABLE_TELEMETRY"] = "true"
    return env


def timed(command: list[str], cwd: Path, terminal: bool = False) -> tuple[float, float, int]:
    """(wall seconds, CPU seconds of the command and its children, exit code) of ``command``; with
    ``terminal``, its output goes to a pseudo-terminal of 80 columns (the live progress bar), not a pipe."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    code, tail = (_at_terminal if terminal else _piped)(command, cwd)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if code != 0:
        print(f"  {' '.join(command)} exited {code}: {tail}", file=sys.stderr)
    return wall, cpu, code


def _piped(command: list[str], cwd: Path) -> tuple[int, str]:
    """(exit code, the end of its stderr) of ``command``, its output on pipes."""
    proc = subprocess.run(
        command,
        cwd=cwd,
        env=_env(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    return proc.returncode, proc.stderr.strip()[-500:]


def _at_terminal(command: list[str], cwd: Path) -> tuple[int, str]:
    """(exit code, the end of what it showed) of ``command``, its output on a pseudo-terminal."""
    import fcntl
    import pty
    import select
    import struct
    import termios

    main_fd, side = pty.openpty()
    fcntl.ioctl(side, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 80, 0, 0))
    proc = subprocess.Popen(command, cwd=cwd, env=_env(), stdin=subprocess.DEVNULL, stdout=side, stderr=side)
    os.close(side)
    tail = b""
    while True:  # read what it shows, as a terminal does, until it exits
        if select.select([main_fd], [], [], 0.5)[0]:
            try:
                tail = (tail + os.read(main_fd, 65536))[-2000:]
            except OSError:  # its side closed: it exited
                break
        elif proc.poll() is not None:
            break
    proc.wait()
    os.close(main_fd)
    return proc.returncode, tail.decode(errors="replace")


def summed_train_seconds(workdir: Path) -> float:
    """The trials' summed ``train_seconds`` metric, read from the embedded MLflow store (or the file that
    ``bench/optuna_alone.py`` writes)."""
    own = workdir / TRAIN_SECONDS_FILE
    if own.exists():
        return float(own.read_text())
    with sqlite3.connect(workdir / ".sweeps" / "mlflow.db") as conn:
        row = conn.execute(
            "SELECT SUM(m.value) FROM latest_metrics m JOIN tags t ON t.run_uuid = m.run_uuid "
            "WHERE m.key = 'train_seconds' AND t.key = 'mlflow.parentRunId'"
        ).fetchone()
    return float(row[0] or 0.0)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spec", default=str(ROOT / "examples" / "quickstart.yaml"))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--cases",
        nargs="+",
        default=["fresh", "fresh-no-report", "optuna-alone", "rerun", "best", "trials", "help"],
        choices=CASES,
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY.PATH=VALUE",
        help="override a spec value in every command, e.g. --set dataset.n_samples=16000 (repeatable)",
    )
    args = parser.parse_args(argv)
    compile_bytecode()
    spec = str(Path(args.spec).resolve())
    overrides = [arg for value in args.overrides for arg in ("--set", value)]
    sweeps = [sys.executable, "-m", "sweeps.cli"]
    commands = {
        "fresh": [*sweeps, "run", spec, *overrides],
        "fresh-no-report": [*sweeps, "run", spec, "--no-report", *overrides],
        "fresh-terminal": [*sweeps, "run", spec, *overrides],
        "optuna-alone": [sys.executable, str(ROOT / "bench" / "optuna_alone.py"), spec, *overrides, "--workdir", "."],
        "rerun": [*sweeps, "run", spec, *overrides],
        "best": [*sweeps, "best", spec, *overrides],
        "trials": [*sweeps, "trials", spec, *overrides],
        "help": [*sweeps, "--help"],
    }
    samples: dict[str, list[tuple[float, float]]] = {case: [] for case in args.cases}
    trained: dict[str, list[float]] = {case: [] for case in FRESH}
    with tempfile.TemporaryDirectory(prefix="bench-startup-") as tmp:
        finished = Path(tmp) / "finished"  # a work folder with the sweep done, for the other cases
        finished.mkdir()
        if set(args.cases) - {*FRESH, "help"}:
            timed(commands["fresh"], finished)
        for r in range(args.repeats):
            for case in args.cases:
                if case in FRESH:
                    here = Path(tmp) / f"{case}-{r}"
                    here.mkdir()
                    wall, cpu, _ = timed(commands[case], here, terminal=case == "fresh-terminal")
                    trained[case].append(summed_train_seconds(here))
                    shutil.rmtree(here)
                else:
                    wall, cpu, _ = timed(commands[case], finished)
                samples[case].append((wall, cpu))
            print(f"  repeat {r + 1}/{args.repeats} done", file=sys.stderr)

    load = f", load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}" if hasattr(os, "getloadavg") else ""
    changed = f" with {' '.join(args.overrides)}" if args.overrides else ""
    print(f"spec {Path(spec).name}{changed}, {args.repeats} repeats, {os.cpu_count()} CPUs{load}\n")
    print("| case | min wall s | median wall s | median CPU s | target |")
    print("|---|---:|---:|---:|---|")
    for case, values in samples.items():
        walls = [w for w, _ in values]
        cpu = statistics.median(c for _, c in values)
        target = ""
        if case in FRESH and trained[case]:
            train = statistics.median(trained[case])
            ratios = [w / t for w, t in zip(walls, trained[case], strict=True) if t > 0]
            target = (
                f"summed train_seconds median {train:.2f} s; wall / train min {min(ratios):.2f}×, median "
                f"{statistics.median(ratios):.2f}×"
            )
            target += f" (target ≤ {TARGETS[case][1]}×)" if case in TARGETS else " (no target: the floor)"
        elif case in TARGETS:
            target = f"≤ {TARGETS[case][1]} s"
        print(f"| {case} | {min(walls):.2f} | {statistics.median(walls):.2f} | {cpu:.2f} | {target} |")


if __name__ == "__main__":
    main()
