"""How long `sweeps report` takes on the quickstart sweep, against `sweeps best` (the start-up and store
reads every command pays), and where the time goes inside it.

    python bench/report_time.py [--workdir DIR] [--repeats 3]

Without --workdir the quickstart sweep is run first in a temporary folder (about a minute, with
--no-report). Prints wall-clock and CPU seconds (user+sys of the child) per command, the median of the
repeats, then one in-process breakdown: reading the stores, importances, figures, HTML.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SPEC = ROOT / "examples" / "quickstart.yaml"
SWEEPS = Path(sys.executable).parent / "sweeps"


def timed(*args: str, cwd: Path) -> tuple[float, float]:
    """(wall, CPU) seconds of one `sweeps` command."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run([str(SWEEPS), *args], cwd=cwd, check=True, capture_output=True, env={**os.environ})
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def breakdown(cwd: Path) -> dict[str, float]:
    os.chdir(cwd)
    marks = {}
    start = time.perf_counter()
    from sweeps.html_report import gather, render
    from sweeps.report_figures import build_figures
    from sweeps.runner import load_result
    from sweeps.spec import load_spec

    spec = load_spec(SPEC)
    result = load_result(spec)
    marks["imports and stores"] = time.perf_counter() - start
    t = time.perf_counter()
    data, provenance = gather(spec, result)
    marks["curves, tags and importances"] = time.perf_counter() - t
    t = time.perf_counter()
    figures = build_figures(data)
    marks["figures"] = time.perf_counter() - t
    t = time.perf_counter()
    page = render(spec, result, data, provenance, figures)
    marks[f"HTML ({len(page) / 2**20:.1f} MiB)"] = time.perf_counter() - t
    return marks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=None, help="a folder where the quickstart has run")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    cwd = args.workdir or Path(tempfile.mkdtemp(prefix="report-bench-"))
    if args.workdir is None:
        print(f"running the quickstart in {cwd} …", flush=True)
        subprocess.run([str(SWEEPS), "run", str(SPEC), "--quiet", "--no-report"], cwd=cwd, check=True)
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    for name, command in (("sweeps best", ["best", str(SPEC)]), ("sweeps report", ["report", str(SPEC)])):
        runs = [timed(*command, cwd=cwd) for _ in range(args.repeats)]
        wall = statistics.median(r[0] for r in runs)
        cpu = statistics.median(r[1] for r in runs)
        print(f"{name:14s} wall {wall:5.1f} s   CPU {cpu:5.1f} s   (median of {args.repeats})")
    for step, seconds in breakdown(cwd).items():
        print(f"  {step:32s} {seconds:5.2f} s")


if __name__ == "__main__":
    main()
