"""What the CLI shows people: the progress bar, the summary of a sweep, and tables of trials."""

from __future__ import annotations

import json
import math
import sys
import time
from typing import Any

from rich.console import Console
from rich.table import Table

err = Console(stderr=True)
out = Console(soft_wrap=True)


def fmt(value: Any) -> str:
    if isinstance(value, float):
        return "—" if math.isnan(value) else f"{value:.6g}"
    return str(value)


class ProgressBar:
    """Trials done of the total, the best objective so far and the time left, on stderr."""

    def __init__(self, total: int, done: int, enabled: bool = True):
        """``enabled=False`` shows nothing; on a terminal it is a live bar, elsewhere one line per trial."""
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self.quiet = not enabled
        self.enabled = enabled and sys.stderr.isatty()
        self._progress = Progress(
            TextColumn("[bold]trials"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("best {task.fields[best]}"),
            TextColumn("·"),
            TimeRemainingColumn(),
            console=err,
            disable=not self.enabled,
            transient=False,
        )
        self._task = self._progress.add_task("trials", total=total, completed=done, best="—")
        self._start: float | None = None  # the pace is measured from the first trial's end: start-up excluded
        self._done_at_start = done

    def __enter__(self) -> ProgressBar:
        self._progress.start()
        return self

    def __exit__(self, *exc) -> None:
        self._progress.stop()

    def __call__(self, study, done: int, total: int) -> None:
        from sweeps.runner import best_setting

        _, value, _ = best_setting(study)
        best = fmt(value) if not isinstance(value, list) else ", ".join(fmt(v) for v in value)
        self._progress.update(self._task, completed=min(done, total), total=total, best=best or "—")
        if not self.enabled and not self.quiet:
            line = f"trials {min(done, total)}/{total} · best {best or '—'}"
            if (left := self._seconds_left(done, total)) is not None:
                line += f" · {_clock(left)} left"
            print(line, file=sys.stderr, flush=True)

    def _seconds_left(self, done: int, total: int) -> float | None:
        """The trials still to run at this run's pace since its first trial ended; None until then."""
        if self._start is None:
            self._start, self._done_at_start = time.monotonic(), done
        finished = done - self._done_at_start
        if finished <= 0:
            return None
        return max(total - done, 0) * (time.monotonic() - self._start) / finished


def _clock(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def settings_table(params: dict[str, Any], title: str) -> Table:
    table = Table(title=title, title_justify="left", show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold")
    table.add_column()
    for k, v in params.items():
        table.add_row(k, fmt(v))
    return table


def print_summary(spec, result, workdir_hint: str) -> None:
    """The best setting, its cost, and how to look at the sweep in the MLflow UI."""
    from tracking import redact

    objective = " & ".join(spec.objectives)
    n = len(result.trials)
    if result.best_params is None:
        out.print(f"no trial of {n} completed; see `sweeps trials` for their states and reasons")
    elif result.pareto:
        out.print(f"Pareto set of {n} trials ({objective}):")
        for item in result.pareto:
            out.print(
                settings_table(item["params"], f"trial {item['number']}: " + ", ".join(fmt(v) for v in item["values"]))
            )
    else:
        out.print(settings_table(result.best_params, f"best of {n} trials: {objective} = {fmt(result.best_value)}"))
    out.print(f"\nOptuna study '{spec.name}' in {result.stores.describe_storage()}")
    out.print(
        f"MLflow experiment '{spec.name}', parent run {result.parent_run_id}, at {redact(result.stores.tracking_uri)}"
    )
    if result.stores.tracking_uri.startswith("http"):
        out.print(f"open the UI at {redact(result.stores.tracking_uri)}")
    else:
        out.print(f"open the UI: sweeps ui{workdir_hint}   (then http://127.0.0.1:5000)")


def print_trials(frame, as_json: bool) -> None:
    """All trials, one row each: number, state, outcome, objective, the setting (blank where a parameter
    did not apply), and the failure reason if any."""
    if as_json:
        print(frame.to_json(orient="records"))
        return
    shown = frame.drop(columns=[c for c in ("run_id", "fail_reason") if c in frame])
    if "fail_reason" in frame and frame["fail_reason"].astype(bool).any():
        shown = shown.assign(fail_reason=frame["fail_reason"])
    print(shown.to_string(index=False, na_rep="", float_format=lambda v: f"{v:.6g}"))


def print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, default=float))
