"""The report of ``sweeps batch-size --advise`` / ``--measure-steps``: per size, what the noise scale predicted
beside what was then measured, the recommendation and (with ``--measure-steps``) the fitted critical batch
size; shown as a table, or as JSON for machines."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from sweeps import console as out
from sweeps.batchsize.report import _plain
from sweeps.batchsize.tradeoff import Fit, Prediction

if TYPE_CHECKING:
    from rich.console import Console


@dataclass(frozen=True)
class Measured:
    """One (size, learning rate) trained to the target with each seed: the means over the seeds of steps,
    samples and training seconds; ``reached`` only when every seed reached the target."""

    batch_size: int
    lr: float
    reached: bool
    diverged: bool
    steps: float
    samples: float
    seconds: float
    run_ids: tuple[str, ...]

    @classmethod
    def over_seeds(cls, batch_size: int, lr: float, results: Sequence[Any], run_ids: Sequence[str]) -> Measured:
        """From :class:`optcore.ToTarget` results, one per seed."""
        return cls(
            batch_size,
            lr,
            all(r.reached for r in results),
            any(r.diverged for r in results),
            float(np.mean([r.steps for r in results])),
            float(np.mean([r.samples for r in results])),
            float(np.mean([r.seconds for r in results])),
            tuple(run_ids),
        )


@dataclass(frozen=True)
class Pilot:
    """The pilot: batch size, its best learning rate, the steps, samples and seconds to the target and the noise
    scale measured, each the mean over the seeds (``b_noise``: mean tr Σ / mean |G|² over a run's steps;
    ``b_noise_end``: smoothed, at the target)."""

    batch_size: int
    lr: float
    steps: float
    samples: float
    seconds: float
    b_noise: float
    b_noise_end: float
    run_ids: tuple[str, ...]

    @classmethod
    def over_seeds(cls, batch_size: int, lr: float, results: Sequence[Any], run_ids: Sequence[str]) -> Pilot:
        """From :class:`optcore.ToTarget` results measured with ``noise_scale=True``, one per seed."""

        def mean(values) -> float:
            return float(np.mean(list(values)))

        return cls(
            batch_size,
            lr,
            mean(r.steps for r in results),
            mean(r.samples for r in results),
            mean(r.seconds for r in results),
            mean(r.noise_scale for r in results),
            mean(r.noise_scale_end for r in results),
            tuple(run_ids),
        )


@dataclass
class AdviceReport:
    """The outcome of :func:`sweeps.batchsize.advise.advise_batch_size`.

    ``predictions`` come from the pilot alone (made before any measurement); ``best`` maps each size to its
    fastest run to the target over the learning-rate grid (None when no rate reached it); ``recommended`` is
    the size of least predicted seconds and ``measured_fastest`` that of least measured seconds. ``fit`` is
    the least-squares S_min, B_crit over the measured sizes (``--measure-steps``), else None.
    """

    name: str
    mode: str  # "advise" or "measure-steps"
    target_cost: float
    cap: str
    lr_factors: list[float]
    seeds: int
    held_params: dict[str, object]
    pilot: Pilot
    throughput: dict[int, float]
    s_min: float
    predictions: list[Prediction]
    runs: list[Measured]
    best: dict[int, Measured | None]
    fit: Fit | None
    experiment: str
    parent_run_id: str
    tracking_uri: str
    notes: list[str] = field(default_factory=list)

    @property
    def sizes(self) -> list[int]:
        return [p.batch_size for p in self.predictions]

    @property
    def b_noise(self) -> float:
        return self.pilot.b_noise

    @property
    def recommended(self) -> int | None:
        from sweeps.batchsize.tradeoff import fastest

        return fastest(self.predictions)

    @property
    def measured_fastest(self) -> int | None:
        reached = [m for m in self.best.values() if m is not None]
        return min(reached, key=lambda m: (m.seconds, m.batch_size)).batch_size if reached else None

    @property
    def noise_to_crit(self) -> float | None:
        """B_noise / B_crit (the paper finds them within an order of magnitude); None without a fit."""
        return self.b_noise / self.fit.b_crit if self.fit is not None else None

    def row_dicts(self) -> list[dict[str, Any]]:
        rows = []
        for p in self.predictions:
            m = self.best.get(p.batch_size)
            rows.append(
                {
                    "batch_size": p.batch_size,
                    "throughput": self.throughput.get(p.batch_size),
                    "predicted_steps": p.steps,
                    "predicted_samples": p.samples,
                    "predicted_seconds": p.seconds,
                    "measured_lr": None if m is None else m.lr,
                    "measured_steps": None if m is None else m.steps,
                    "measured_samples": None if m is None else m.samples,
                    "measured_seconds": None if m is None else m.seconds,
                    "fitted_steps": None if self.fit is None else self.fit.steps(p.batch_size),
                }
            )
        return rows

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON data (NaN becomes null) for ``--json`` and the parent run's report artifact."""
        fit = self.fit
        return _plain(
            {
                "name": self.name,
                "mode": self.mode,
                "target_cost": self.target_cost,
                "cap": self.cap,
                "lr_factors": self.lr_factors,
                "seeds": self.seeds,
                "held_params": self.held_params,
                "pilot": vars(self.pilot),
                "b_noise": self.b_noise,
                "s_min": self.s_min,
                "e_min": self.s_min * self.b_noise,
                "rows": self.row_dicts(),
                "recommended": self.recommended,
                "measured_fastest": self.measured_fastest,
                "fit": None
                if fit is None
                else {
                    "s_min": fit.s_min,
                    "b_crit": fit.b_crit,
                    "e_min": fit.e_min,
                    "rms_relative_error": fit.rms_relative_error,
                    "sizes_used": fit.n,
                },
                "b_noise_over_b_crit": self.noise_to_crit,
                "notes": self.notes,
                "experiment": self.experiment,
                "parent_run_id": self.parent_run_id,
                "tracking_uri": self.tracking_uri,
                "runs": [vars(r) for r in self.runs],
            }
        )


def _num(value: float | None, digits: int = 3) -> str:
    return "—" if value is None or not math.isfinite(value) else f"{value:.{digits}g}"


def _count(value: float | None) -> str:
    return "—" if value is None or not math.isfinite(value) else f"{value:,.0f}"


def print_advice(report: AdviceReport, workdir_hint: str = "", console: Console | None = None) -> None:
    """The table (predicted beside measured, per size), the pilot, the recommendation and the fit."""
    from rich.table import Table

    if console is None:
        console = out.out
        if not console.is_terminal:  # a pipe or a file has no width to fit; wrapping would only garble the table
            from rich.console import Console

            console = Console(soft_wrap=True, width=250)
    table = Table(box=None, pad_edge=False, header_style="bold")
    names = ["size", "samples/s", "pred. steps", "steps", "pred. samples", "samples", "pred. s", "s", "lr", ""]
    if report.fit is not None:
        names.insert(4, "fit steps")
    for name in names:
        table.add_column(name, justify="right" if name else "left", no_wrap=True)
    for row in report.row_dicts():
        size = row["batch_size"]
        marks = []
        if size == report.recommended:
            marks.append("recommended")
        if size == report.measured_fastest:
            marks.append("fastest measured")
        cells = {
            "size": str(size),
            "samples/s": _count(row["throughput"]),
            "pred. steps": _count(row["predicted_steps"]),
            "steps": _count(row["measured_steps"]),
            "fit steps": _count(row["fitted_steps"]),
            "pred. samples": _count(row["predicted_samples"]),
            "samples": _count(row["measured_samples"]),
            "pred. s": _num(row["predicted_seconds"]),
            "s": _num(row["measured_seconds"]),
            "lr": _num(row["measured_lr"]),
            "": ", ".join(marks),
        }
        table.add_row(*(cells[n] for n in names))
    console.print(table)

    def say(text: str) -> None:
        console.print(text, highlight=False, soft_wrap=True)

    p = report.pilot
    held = ", ".join(f"{k}={out.fmt(v)}" for k, v in report.held_params.items())
    say(f"\ntarget: validation cost ≤ {report.target_cost:g}; each run capped at {report.cap}; held fixed: {held}")
    say(
        f"pilot: batch size {p.batch_size} at its best lr {p.lr:.3g} reached it in {_count(p.steps)} steps; "
        "gradient noise scale "
        f"B_noise = {_num(p.b_noise)} (mean tr Σ / mean |G|² over its steps; {_num(p.b_noise_end)} at the target), so "
        f"S_min = {_num(report.s_min)} steps, E_min = {_count(report.s_min * p.b_noise)} samples"
    )
    factors = ", ".join(f"{f:g}" for f in report.lr_factors)
    seeds = "one seed" if report.seeds == 1 else f"the mean over {report.seeds} seeds"
    say(f"measured: each size at its best lr of the held lr × ({factors}): fewest steps to the target ({seeds})")
    if report.fit is not None:
        f = report.fit
        say(
            f"fit S = S_min·(1 + B_crit/B) over {f.n} sizes: S_min = {_num(f.s_min)}, B_crit = {_num(f.b_crit)} "
            f"(rms relative error {f.rms_relative_error:.1%}); B_noise / B_crit = {_num(report.noise_to_crit)}"
        )
    for note in report.notes:
        say(f"note: {note}")
    rec, fast = report.recommended, report.measured_fastest
    say(f"recommended batch size (least predicted time): {rec if rec is not None else 'none'}")
    say(f"fastest measured: {fast if fast is not None else 'none reached the target'}")
    say(f"\nMLflow experiment '{report.experiment}', parent run {report.parent_run_id}, at {report.tracking_uri}")
    if not report.tracking_uri.startswith("http"):
        say(f"open the UI: sweeps ui{workdir_hint}   (then http://127.0.0.1:5000)")
