"""The result of ``sweeps confirm`` and how it is shown: the record kept in the study, the table, the verdict.

The record (:meth:`ConfirmReport.to_dict`, plain JSON) is what ``sweeps confirm --json`` prints, what the
parent run holds as ``confirm_report.json`` and what the Optuna study keeps (user attribute ``confirm``),
so ``sweeps best`` and the sweep report read it without retraining or asking MLflow:

    record = load_confirmed(spec, workdir=".sweeps")  # None when nothing was confirmed yet
    record["winner"], record["rows"][0]["ci95"], record["tied"], record["fastest_tied"]

Every printer here works from the record, so what ``confirm`` prints and what ``best`` prints later agree.
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.table import Table

from sweeps import console as out
from sweeps.batchsize.report import _plain
from sweeps.results.comparison import CONFIDENCE, Comparison
from sweeps.study.tally import Tally

if TYPE_CHECKING:
    from sweeps.batchsize.budget import Budget
    from sweeps.batchsize.stats import RunResult
    from sweeps.spec import Spec

STUDY_ATTR = "confirm"  # the Optuna study's user attribute holding the latest record


@dataclass(frozen=True)
class Setting:
    """One confirmed trial: its run in the sweep, its one-seed value there, its hyperparameters, its
    objective per confirm repeat (NaN for a diverged run) and the mean training seconds of its runs."""

    trial: int
    run_id: str
    sweep_value: float
    params: dict[str, Any]
    values: list[float]
    train_seconds: float


@dataclass
class ConfirmReport:
    """The outcome of :func:`sweeps.results.confirm.confirm`: the settings in the sweep's order (best first), the
    comparison of their repeats (labels: trial numbers) and the runs as ``(trial, RunResult)``."""

    name: str
    objective: str
    budget: Budget
    repeats: int
    top: int
    seeds: list[int]
    settings: list[Setting]
    comparison: Comparison
    runs: list[tuple[int, RunResult]]
    n_completed: int  # completed trials of the sweep when it was confirmed
    experiment: str
    parent_run_id: str
    tracking_uri: str
    notes: list[str] = field(default_factory=list)

    @property
    def fastest_tied(self) -> int | None:
        """The tied trial with the least mean training time per run (ties: the better mean, listed first)."""
        seconds = {s.trial: s.train_seconds for s in self.settings}
        return min(
            self.comparison.tied, key=lambda n: seconds[n] if math.isfinite(seconds[n]) else math.inf, default=None
        )

    def verdict(self) -> str:
        text = self.comparison.verdict("trial", f"mean {self.objective}")
        tied = self.comparison.tied
        if len(tied) > 1 and (fastest := self.fastest_tied) is not None:
            itself = " (the winner itself)" if fastest == self.comparison.best else ""
            seconds = next(s.train_seconds for s in self.settings if s.trial == fastest)
            text += f"; the fastest of those is trial {fastest}{itself}, {seconds:.3g} s per run"
        return text

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON data (NaN becomes null); see the module docstring."""
        c = self.comparison
        rows = []
        for s in self.settings:
            r = c.row(s.trial)
            rows.append(
                {
                    "trial": s.trial,
                    "run_id": s.run_id or None,
                    "sweep_value": s.sweep_value,
                    "runs": len(s.values),
                    "failed": r.n_failed,
                    "mean": r.mean,
                    "std": r.std,
                    "ci95": [r.ci_low, r.ci_high],
                    "p_vs_winner": r.p_value,
                    "p_vs_winner_holm": r.p_holm,
                    "tied": r.tied,
                    "mean_train_seconds": s.train_seconds,
                    "values": s.values,
                    "params": s.params,
                }
            )
        winner = next((s for s in self.settings if s.trial == c.best), None)
        return _plain(
            {
                "name": self.name,
                "objective": self.objective,
                "budget": {"kind": self.budget.kind, "amount": self.budget.amount, "text": self.budget.describe()},
                "top": self.top,
                "repeats": self.repeats,
                "seeds": self.seeds,
                "alpha": c.alpha,
                "confidence": CONFIDENCE,
                "test": {
                    "name": c.test,
                    "paired": c.paired,
                    "correction": "holm",
                    "pairs": c.n_pairs,
                    "text": c.method,
                },
                "rows": rows,
                "winner": c.best,
                "winner_params": winner.params if winner else None,
                "winner_ci95": [c.row(c.best).ci_low, c.row(c.best).ci_high] if winner else None,
                "runner_up": c.runner_up,
                "distinguishable": c.distinguishable,
                "tied": list(c.tied),
                "fastest_tied": self.fastest_tied,
                "verdict": self.verdict(),
                "notes": self.notes,
                "n_completed": self.n_completed,
                "experiment": self.experiment,
                "parent_run_id": self.parent_run_id,
                "tracking_uri": self.tracking_uri,
                "runs": [
                    {
                        "trial": n,
                        "repeat": r.repeat,
                        "seed": r.seed,
                        "run_id": r.run_id,
                        "value": v,
                        "train_seconds": r.train_seconds,
                        "failed": r.failed,
                    }
                    for (n, r), v in zip(self.runs, _run_values(self), strict=True)
                ],
            }
        )


def _run_values(report: ConfirmReport) -> list[float]:
    """Each run's objective, in run order (the settings' values hold them by repeat)."""
    seen: dict[int, int] = {}
    values = []
    for n, _ in report.runs:
        i = seen.get(n, 0)
        seen[n] = i + 1
        values.append(next(s.values[i] for s in report.settings if s.trial == n))
    return values


# --- reading it back ----------------------------------------------------------------------------------------


def confirmed(study) -> dict[str, Any] | None:
    """The latest confirm record of an Optuna study, or None when its sweep was never confirmed."""
    return study.user_attrs.get(STUDY_ATTR)


def load_confirmed(
    spec: Spec, *, workdir: str | Path | None = None, storage: str | None = None, tracking_uri: str | None = None
) -> dict[str, Any] | None:
    """The latest confirm record of ``spec``'s sweep (None if none); SweepError when there is no sweep."""
    from sweeps.study.runner import load_result  # here: runner imports stopping, which imports this module

    return confirmed(load_result(spec, workdir=workdir, storage=storage, tracking_uri=tracking_uri).study)


def completed_since(record: Mapping[str, Any], study) -> int:
    """Trials completed in the sweep after it was confirmed: their settings were not among the candidates."""
    return max(0, Tally.of(study).completed - int(record["n_completed"]))


# --- showing it ---------------------------------------------------------------------------------------------


def _num(value: float | None, digits: int = 3) -> str:
    return "—" if value is None or not math.isfinite(value) else f"{value:#.{digits}g}"


def _interval(ci: Sequence[float | None] | None) -> str:
    return "—" if not ci else f"[{_num(ci[0])}, {_num(ci[1])}]"


def _marks(record: Mapping[str, Any], trial: int) -> str:
    if trial not in record["tied"]:
        return ""
    words = ["winner" if trial == record["winner"] else "tied"]
    if trial == record["fastest_tied"] and len(record["tied"]) > 1:
        words.append("fastest")
    return ", ".join(words)


def _trials(n: int) -> str:
    return "trial" if n == 1 else f"{n} trials"


def _say(console, text: str) -> None:
    """``text`` wrapped at words to the console's width (80 on a pipe), continuation lines indented."""
    for line in text.split("\n"):
        lead = " " * (len(line) - len(line.lstrip(" ")))
        wrapped = textwrap.fill(
            line,
            width=console.width,
            subsequent_indent=lead + "  ",
            break_long_words=False,
            break_on_hyphens=False,
        )
        console.print(wrapped or "", highlight=False, markup=False, soft_wrap=True)


def confirm_table(record: Mapping[str, Any]):
    """One row per confirmed trial: its one-seed value in the sweep, the mean ± std and 95% interval over
    the confirm seeds, the Holm-corrected p against the winner, seconds per run, and winner/tied marks."""
    p_column = "p" if record["winner"] is None else f"p vs {record['winner']}"
    table = Table(box=None, pad_edge=False, header_style="bold")
    for name in ("trial", "sweep", "mean ± std", "95% interval", p_column, "s/run", ""):
        table.add_column(name, justify="left" if not name else "right", no_wrap=True)
    for row in record["rows"]:
        runs = f" ({row['runs'] - row['failed']}/{row['runs']} ran)" if row["failed"] else ""
        table.add_row(
            str(row["trial"]),
            _num(row["sweep_value"]),
            f"{_num(row['mean'])} ± {_num(row['std'], 2)}",
            _interval(row["ci95"]),
            _num(row["p_vs_winner_holm"], 2),
            _num(row["mean_train_seconds"], 2),
            _marks(record, row["trial"]) + runs,
        )
    return table


def print_confirm(record: Mapping[str, Any], workdir_hint: str = "", console=None) -> None:
    """What ``sweeps confirm`` prints: the table, the budget and seeds, each setting, the verdict, where."""
    console = console or out.out

    def say(text: str) -> None:
        _say(console, text)

    say(
        f"{record['objective']} of the best {_trials(len(record['rows']))} of '{record['name']}', "
        f"retrained with {record['repeats']} new seeds each ({record['budget']['text']}):"
    )
    out.print_table(confirm_table(record))
    say("")
    for row in record["rows"]:
        say(f"trial {row['trial']}: " + " ".join(f"{k}={out.fmt(v, 4)}" for k, v in row["params"].items()))
    for note in record["notes"]:
        say(f"note: {note}")
    say(record["verdict"])
    say(f"\nMLflow experiment '{record['experiment']}', parent run 'confirm'\n  {record['parent_run_id']}")
    if not record["tracking_uri"].startswith("http"):
        say(f"open the UI: sweeps ui{workdir_hint}; retrain any run: sweeps reproduce RUN_ID{workdir_hint}")


def print_confirmed_summary(record: Mapping[str, Any] | None, since: int = 0, console=None) -> None:
    """What ``sweeps best`` adds: the confirmed winner, its interval and the tied set, or that nothing was
    confirmed yet; and a warning when trials completed after the confirmation."""
    console = console or out.out

    def say(text: str) -> None:
        _say(console, text)

    if record is None:
        say("\nnot confirmed over seeds yet: `sweeps confirm SPEC` retrains the best settings with new seeds")
        return
    say(
        f"\nconfirmed over {record['repeats']} new seeds each ({record['budget']['text']}), "
        f"trials {', '.join(str(r['trial']) for r in record['rows'])}:"
    )
    if record["winner"] is None:
        say("  no setting finished all its confirm runs (each had a run that diverged)")
    else:
        row = next(r for r in record["rows"] if r["trial"] == record["winner"])
        spread = f"{_num(row['mean'])} ± {_num(row['std'], 2)}"
        say(f"  winner: trial {record['winner']}, mean {record['objective']} {spread}")
        say(f"  95% interval of its mean: {_interval(row['ci95'])}")
        tied = record["tied"]
        others = [n for n in tied if n != record["winner"]]
        if others:
            say(
                f"  tied with it (cannot be told apart): trials {', '.join(map(str, tied))}; the fastest of "
                f"them: trial {record['fastest_tied']}"
            )
        else:
            say("  told apart from every other confirmed trial")
    if since:
        say(f"  note: {since} trial{'s' if since != 1 else ''} completed since; run `sweeps confirm` again")
