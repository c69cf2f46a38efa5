"""The report of ``sweeps batch-size``: the per-size rows, the verdict, and how they are shown — a table that
fits the terminal, ``--json`` and ``--csv``.

The table has one row per size. When its natural width exceeds the terminal's, it is printed as two tables
sharing the size column (the validation cost and its test, then time and throughput), so no cell is ever cut.
"""

from __future__ import annotations

import csv
import math
import sys
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from sweeps import console as out
from sweeps.batchsize.stats import CONFIDENCE, Choice, RunResult, SizeStats
from sweeps.results.comparison import Comparison

if TYPE_CHECKING:
    from rich.console import Console

    from sweeps.batchsize.lr_rule import LrChoice
    from sweeps.batchsize.select import Budget


@dataclass
class BatchSizeReport:
    """The outcome of ``select_batch_size``: one row per size, the comparison and the runs.

    ``chosen`` has the lowest mean final validation cost; ``p_value`` is its Holm-corrected p against the
    runner-up and ``distinguishable`` whether that is < alpha; ``tied`` are the sizes tied with it (itself
    included) and ``fastest_tied`` the one of them with the highest pooled throughput.
    """

    name: str
    budget: Budget
    repeats: int
    held_from: str  # "spec" or "best"
    held_params: dict[str, object]
    rows: list[SizeStats]
    choice: Choice
    runs: list[RunResult]
    target_cost: float | None
    experiment: str
    parent_run_id: str
    tracking_uri: str
    notes: list[str] = field(default_factory=list)
    lr: LrChoice | None = None  # each size's learning rate and the rule that set it

    @property
    def varied_lr(self) -> bool:
        """Whether the sizes trained at rates of their own (any ``--lr-rule`` but ``fixed``)."""
        return self.lr is not None and self.lr.plan.rule != "fixed"

    @property
    def comparison(self) -> Comparison:
        return self.choice.comparison

    @property
    def sizes(self) -> list[int]:
        return [row.batch_size for row in self.rows]

    @property
    def chosen(self) -> int | None:
        return self.comparison.best

    @property
    def runner_up(self) -> int | None:
        return self.comparison.runner_up

    @property
    def p_value(self) -> float | None:
        """The Holm-corrected p of the chosen size against the runner-up (None without a test)."""
        if self.runner_up is None or not math.isfinite(p := self.comparison.row(self.runner_up).p_holm):
            return None
        return p

    @property
    def distinguishable(self) -> bool | None:
        return self.comparison.distinguishable

    @property
    def tied(self) -> list[int]:
        return sorted(self.comparison.tied)

    @property
    def fastest_tied(self) -> int | None:
        return self.choice.fastest_tied

    @property
    def alpha(self) -> float:
        return self.comparison.alpha

    def verdict(self) -> str:
        """The comparison's verdict, plus the fastest tied size when more than one is tied."""
        text = self.comparison.verdict("batch size", "mean validation cost")
        if len(self.tied) > 1:
            fastest = next(r for r in self.rows if r.batch_size == self.fastest_tied)
            itself = " (the chosen size itself)" if fastest.batch_size == self.chosen else ""
            text += f"; the fastest of those is {fastest.batch_size}{itself}, {_count(fastest.throughput)} samples/s"
        return text

    def marks(self, size: int) -> str:
        """The last column of the table: chosen, tied, and the fastest of the tied sizes."""
        if size not in self.tied:
            return ""
        words = ["chosen" if size == self.chosen else "tied"]
        if size == self.fastest_tied and len(self.tied) > 1:
            words.append("fastest tied")
        return ", ".join(words)

    def row_dicts(self) -> list[dict[str, Any]]:
        """One dict per size: the cost summary, its test against the chosen size, time and target columns."""
        result = []
        for r in self.rows:
            compared = self.comparison.row(r.batch_size)
            row = {"batch_size": r.batch_size} | ({"lr": self.lr.rates[r.batch_size]} if self.varied_lr else {})
            row |= {
                "runs": r.n_runs,
                "failed": r.n_failed,
                "mean_final_val_cost": r.mean_cost,
                "std_final_val_cost": r.std_cost,
                "ci95": [r.ci_low, r.ci_high],
                "p_vs_chosen": compared.p_value,
                "p_vs_chosen_holm": compared.p_holm,
                "tied": compared.tied,
                "throughput": r.throughput,
                "mean_epochs": r.epochs_run,
                "mean_train_seconds": r.train_seconds,
            }
            if self.target_cost is not None:
                row |= {
                    "reached_target": r.n_reached,
                    "epochs_to_target": r.epochs_to_target,
                    "seconds_to_target": r.seconds_to_target,
                }
            result.append(row)
        return result

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON data (NaN becomes null) for ``--json`` and the parent run's report artifact."""
        runs = [
            {
                "batch_size": r.batch_size,
                "repeat": r.repeat,
                "seed": r.seed,
                "run_id": r.run_id,
                "final_val_cost": r.final_val_cost,
                "epochs": r.epochs_trained,
                "samples": r.samples_seen,
                "train_seconds": r.train_seconds,
                "throughput": r.throughput,
                "failed": r.failed,
                "lr": r.lr,
            }
            for r in self.runs
        ]
        c = self.comparison
        return _plain(
            {
                "name": self.name,
                "budget": {"kind": self.budget.kind, "amount": self.budget.amount, "text": self.budget.describe()},
                "repeats": self.repeats,
                "sizes": self.sizes,
                "held_from": self.held_from,
                "held_params": self.held_params,
                "lr_rule": self.lr.to_dict() if self.lr is not None else None,
                "target_cost": self.target_cost,
                "alpha": self.alpha,
                "confidence": CONFIDENCE,
                "test": {
                    "name": c.test,
                    "paired": c.paired,
                    "correction": "holm",
                    "pairs": c.n_pairs,
                    "text": c.method,
                },
                "rows": self.row_dicts(),
                "chosen": self.chosen,
                "runner_up": self.runner_up,
                "p_value": self.p_value,
                "distinguishable": self.distinguishable,
                "tied": self.tied,
                "fastest_tied": self.fastest_tied,
                "verdict": self.verdict(),
                "notes": self.notes,
                "experiment": self.experiment,
                "parent_run_id": self.parent_run_id,
                "tracking_uri": self.tracking_uri,
                "runs": runs,
            }
        )


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def _num(value: float | None, digits: int = 3, zeros: str = "") -> str:
    """``value`` to ``digits`` significant digits; ``zeros="#"`` keeps trailing zeros (0.180, not 0.18)."""
    return "—" if value is None or not math.isfinite(value) else f"{value:{zeros}.{digits}g}"


def _cost(value: float | None) -> str:
    return _num(value, 3, "#")


def _count(value: float) -> str:
    return f"{value:,.0f}" if math.isfinite(value) else "—"


def _cells(report: BatchSizeReport, r: SizeStats, p_column: str) -> dict[str, str]:
    """One size's row of the table, by column name."""
    cells = {
        "size": str(r.batch_size),
        "lr": _num(report.lr.rates[r.batch_size]) if report.lr is not None else "—",
        "cost mean ± std": f"{_cost(r.mean_cost)} ± {_cost(r.std_cost)}",
        "95% interval": f"[{_cost(r.ci_low)}, {_cost(r.ci_high)}]",
        p_column: _num(report.comparison.row(r.batch_size).p_holm, 2),
        "samples/s": _count(r.throughput),
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
    from rich.table import Table

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
    from rich.markup import escape

    console = console or out.out
    if not console.is_terminal:  # a pipe or a file has no width to fit; wrapping would only garble the table
        from rich.console import Console

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
