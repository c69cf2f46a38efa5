"""The report of ``sweeps batch-size``: the per-size rows, the verdict, its JSON (``--json`` and the parent run's
``batch_size_report.json``) and its record in MLflow. The CLI shows it as a table (:mod:`sweeps.cli.batch_size`).
"""

from __future__ import annotations

import json
import math
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from sweeps.batchsize.stats import CONFIDENCE, Choice, RunResult, SizeStats
from sweeps.results.comparison import Comparison
from tracking import batch_size_plots as plots
from tracking.summary import write_spec

if TYPE_CHECKING:
    from sweeps.batchsize.budget import Budget
    from sweeps.batchsize.lr_rule import LrChoice
    from sweeps.spec import Spec


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
            text += f"; the fastest of those is {fastest.batch_size}{itself}, {fmt_count(fastest.throughput)} samples/s"
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


def fmt_count(value: float) -> str:
    return f"{value:,.0f}" if math.isfinite(value) else "—"


def log_report(sweep, spec: Spec, report: BatchSizeReport) -> None:
    """The parent run's record: command params, the verdict as tags, per-size metrics, report and plots."""
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
