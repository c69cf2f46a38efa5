"""``sweeps batch-size`` (and its ``--advise`` / ``--measure-steps`` modes): the options parsed into a call of
:func:`sweeps.batchsize.select.select_batch_size` or :func:`sweeps.batchsize.advise.advise_batch_size`, the
progress lines, the report as a table that fits the terminal, ``--json`` or ``--csv``, and the exit code.

The table has one row per size. When its natural width exceeds the terminal's, it is printed as two tables
sharing the size column (the validation cost and its test, then time and throughput), so no cell is ever cut.
"""

from __future__ import annotations

import csv
import math
import sys
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from sweeps import console as out
from sweeps.batchsize.advise import advise_batch_size
from sweeps.batchsize.advise_report import print_advice
from sweeps.batchsize.budget import parse_budget
from sweeps.batchsize.report import BatchSizeReport, fmt_count
from sweeps.batchsize.select import select_batch_size
from sweeps.batchsize.stats import RunResult, SizeStats
from sweeps.cli.commands import _workdir_hint, load
from sweeps.errors import SweepError, UsageError
from sweeps.results.html_report import draw_after_command, report_enabled
from sweeps.spec import Spec
from sweeps.study.runner import load_result


def parse_sizes(text: str) -> list[int]:
    """``"64,128,200"`` → ``[64, 128, 200]``; raises UsageError for a part that is not a whole number."""
    sizes = []
    for part in text.split(","):
        try:
            sizes.append(int(part.strip()))
        except ValueError:
            raise UsageError(f"--sizes: {part.strip()!r} is not a whole number; give sizes like 64,128,256") from None
    return sizes


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
    if args.json and args.csv:
        raise UsageError("--json and --csv: give one of them, not both")
    if args.advise or args.measure_steps:
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
    if not report_enabled(False):
        return
    try:
        result = load_result(spec, workdir=args.workdir, storage=args.storage, tracking_uri=args.tracking_uri)
    except SweepError:
        return
    draw_after_command(spec, result, args.spec, out.err.print, out.err.print)


def parse_factors(text: str) -> list[float]:
    """``"0.5,1,2"`` → ``[0.5, 1.0, 2.0]``; UsageError for a part that is not a number."""
    factors = []
    for part in text.split(","):
        try:
            factors.append(float(part))
        except ValueError:
            raise UsageError(f"--lr-factors: {part.strip()!r} is not a number; give factors like 0.5,1,2") from None
    return factors


def cmd_advise(args) -> int:
    """``sweeps batch-size SPEC --advise|--measure-steps …``: exit 0 with a recommendation."""
    if args.csv:
        raise UsageError("--csv is for the comparison table; --advise and --measure-steps print a table or --json")
    spec = load(args)
    report = advise_batch_size(
        spec,
        sizes=parse_sizes(args.sizes) if args.sizes is not None else None,
        target_cost=args.target_cost,
        measure_steps=args.measure_steps,
        lr_factors=parse_factors(args.lr_factors) if args.lr_factors is not None else None,
        pilot_size=args.pilot_size,
        seeds=1 if args.seeds is None else args.seeds,
        budget=parse_budget(args.budget) if args.budget is not None else None,
        from_best=args.from_best,
        workdir=args.workdir,
        storage=args.storage,
        tracking_uri=args.tracking_uri,
        on_run=lambda text: out.err.print(text, highlight=False),
    )
    if args.json:
        out.print_json(report.to_dict())
    else:
        print_advice(report, _workdir_hint(args))
    return 0 if report.recommended is not None else 1


def _num(value: float | None, digits: int = 3, zeros: str = "") -> str:
    """``value`` to ``digits`` significant digits; ``zeros="#"`` keeps trailing zeros (0.180, not 0.18)."""
    return "—" if value is None or not math.isfinite(value) else f"{value:{zeros}.{digits}g}"


def _cost(value: float | None) -> str:
    return _num(value, 3, "#")


def _cells(report: BatchSizeReport, r: SizeStats, p_column: str) -> dict[str, str]:
    """One size's row of the table, by column name."""
    cells = {
        "size": str(r.batch_size),
        "lr": _num(report.lr.rates[r.batch_size]) if report.lr is not None else "—",
        "cost mean ± std": f"{_cost(r.mean_cost)} ± {_cost(r.std_cost)}",
        "95% interval": f"[{_cost(r.ci_low)}, {_cost(r.ci_high)}]",
        p_column: _num(report.comparison.row(r.batch_size).p_holm, 2),
        "samples/s": fmt_count(r.throughput),
        "epochs": _num(r.epochs_run),
        "seconds": _num(r.train_seconds),
        "runs": f"{r.n_runs - r.n_failed}/{r.n_runs}",
        "": report.marks(r.batch_size),
    }
    if report.target_cost is not None:
        cells |= {
            f"≤ {report.target_cost:g}": f"{r.n_reached}/{r.n_runs - r.n_failed}",
            "epochs to it": _num(r.epochs_to_target),
            "seconds to it": _num(r.seconds_to_target),
        }
    return cells


def _tables(report: BatchSizeReport, split: bool) -> list[Any]:
    """The report's table, or with ``split`` two narrower ones: the cost and its test, then time."""
    p_column = "p" if report.chosen is None else f"p vs {report.chosen}"  # Holm-corrected, as in the verdict
    cost = ["size", *(["lr"] if report.varied_lr else []), "cost mean ± std", "95% interval", p_column, ""]
    time = ["size", "samples/s", "epochs", "seconds", "runs"]
    if report.target_cost is not None:
        time += [f"≤ {report.target_cost:g}", "epochs to it", "seconds to it"]
    rows = [_cells(report, r, p_column) for r in report.rows]
    tables = []
    for names in [cost, time] if split else [[*cost[:-1], *time[1:], ""]]:
        table = Table(box=None, pad_edge=False, header_style="bold")
        for name in names:
            table.add_column(name, justify="right" if name else "left", no_wrap=True)
        for cells in rows:
            table.add_row(*(cells[name] for name in names))
        tables.append(table)
    return tables


def print_report(report: BatchSizeReport, workdir_hint: str = "", console: Console | None = None) -> None:
    """The table of sizes (split in two when the terminal is too narrow), the budget, what was held fixed,
    the verdict (which names the test) and where the runs are tracked; on ``console`` (default: stdout's)."""
    console = console or out.out
    if not console.is_terminal:  # a pipe or a file has no width to fit; wrapping would only garble the table
        console = Console(soft_wrap=True, width=250)
    (whole,) = _tables(report, split=False)
    natural = console.measure(whole, options=console.options.update_width(10_000)).maximum  # uncapped
    tables = [whole] if natural <= console.width else _tables(report, split=True)
    for i, table in enumerate(tables):
        if i:
            console.print()
        console.print(table)

    def say(text: str) -> None:  # wrapped at words on a terminal
        console.print(text, highlight=False, soft_wrap=not console.is_terminal)

    held = ", ".join(f"{k}={out.fmt(v)}" for k, v in report.held_params.items())
    source = "the best trial of the spec's sweep" if report.held_from == "best" else "the spec"
    say(f"\nbudget: {report.budget.describe()}; {report.repeats} seeds per size")
    say(f"held fixed (from {source}): {held}")
    if report.lr is not None:
        say(f"learning rate: {escape(report.lr.plan.describe())}")
    for note in report.notes:
        say(f"note: {note}")
    say(f"chosen batch size: {report.chosen if report.chosen is not None else 'none'}")
    say(report.verdict())
    say(f"\nMLflow experiment '{report.experiment}', parent run {report.parent_run_id}, at {report.tracking_uri}")
    if not report.tracking_uri.startswith("http"):
        say(f"open the UI: sweeps ui{workdir_hint}   (then http://127.0.0.1:5000)")


def print_csv(report: BatchSizeReport, stream=None) -> None:
    """The table as CSV on ``stream`` (default stdout): one row per size, the fields of ``--json``'s rows
    (the interval as ``ci95_low``, ``ci95_high``) plus ``chosen`` and ``fastest_tied``; full precision,
    empty for none."""
    rows = []
    for row in report.row_dicts():
        flat: dict[str, Any] = {}
        for key, value in row.items():
            if key == "ci95":
                flat["ci95_low"], flat["ci95_high"] = value
            else:
                flat[key] = value
        size = row["batch_size"]
        rows.append(flat | {"chosen": size == report.chosen, "fastest_tied": size == report.fastest_tied})
    writer = csv.DictWriter(stream or sys.stdout, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _csv_cell(v) for k, v in row.items()})


def _csv_cell(value: Any) -> Any:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return ""
    return value
