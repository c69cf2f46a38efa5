"""The progress display of a running sweep, on stderr: trials done of the total, the best objective so far,
how many trials were pruned or failed (and how many run now), and the time left. A live bar on a terminal,
one line per finished trial elsewhere. ``sweeps run`` and ``sweeps run --workers K`` show the same."""

from __future__ import annotations

import sys
import time

from sweeps.console import err, fmt_value
from sweeps.study.tally import Tally

# Shown in the bar when they occur; completed trials are the rest of "done", waiting ones are retries.
_BRIEF = ("pruned", "failed", "interrupted", "lost", "running")


def brief(tally: Tally) -> str:
    """``1 pruned, 1 failed, 2 running``: what a reader of the bar needs besides the count done."""
    return ", ".join(f"{tally.counts[o]} {o}" for o in _BRIEF if tally.counts.get(o))


class ProgressBar:
    """``with ProgressBar(total, done) as bar: ... bar(study, done, total)`` after each trial (or whenever the
    study changed, for a coordinator watching workers)."""

    def __init__(self, total: int, done: int, enabled: bool = True, spec=None, deferred: bool = False):
        """``enabled=False`` shows nothing; on a terminal it is a live bar, elsewhere one line per trial.
        ``deferred``: live from :meth:`begin` (or the first trial), not on entering: a process that still has
        children to fork (`sweeps run`'s tracking writer) must not have rich's thread running yet. On a
        terminal it is drawn once on entering all the same (``· starting``, no thread), so the command shows
        at once that it runs while MLflow loads (~1.5 s); the live bar then takes that line."""
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self.quiet = not enabled
        self.spec = spec  # its stop block: the bar says when the sweep stopped early (sweeps.study.stopping)
        self.enabled = enabled and sys.stderr.isatty()
        self.deferred, self._begun = deferred, False
        self._drawn = 0  # lines of the bar drawn on entering, which the live bar takes over
        self._progress = Progress(
            TextColumn("[bold]trials"),
            BarColumn(bar_width=None),  # the room the text leaves, so the line fits the terminal
            MofNCompleteColumn(),
            TextColumn("· best {task.fields[best]}{task.fields[tally]} ·"),
            TimeRemainingColumn(),
            console=err,
            disable=not self.enabled,
            transient=False,
            expand=True,
        )
        self._task = self._progress.add_task("trials", total=total, completed=done, best="—", tally="")
        self._start: float | None = None  # the pace is measured from the first trial's end: start-up excluded
        self._done_at_start = done
        self._last_line_done = done  # a line when a trial ends, not when one starts

    def __enter__(self) -> ProgressBar:
        if not self.deferred:
            self.begin()
        elif self.enabled:  # drawn once now, without rich's thread, so the command shows it has started
            self._progress.update(self._task, tally=" · starting")
            bar = self._progress.get_renderable()
            self._drawn = len(err.render_lines(bar, pad=False))  # one, unless the terminal is very narrow
            err.print(bar)
        return self

    def begin(self) -> None:
        """Show the bar: on a terminal rich redraws it from a thread of its own, which this starts."""
        if not self._begun:
            self._begun = True
            if self._drawn:  # the live bar takes the lines of the one drawn on entering
                err.file.write(f"\x1b[{self._drawn}A\r\x1b[J")  # up, then clear to the end of the screen
                err.file.flush()
            self._progress.start()

    def __exit__(self, *exc) -> None:
        if self._begun:
            self._progress.stop()

    def __call__(self, study, done: int, total: int) -> None:
        from sweeps.study.result import best_setting

        if self.quiet:
            return
        self.begin()
        _, value, _ = best_setting(study)
        best, counts = fmt_value(value), brief(Tally.of(study))
        if self.spec is not None and self.spec.stop is not None:
            from sweeps.study.stopping import bar_note

            counts = ", ".join(filter(None, (counts, bar_note(study, self.spec))))
        self._progress.update(
            self._task, completed=min(done, total), total=total, best=best, tally=f" · {counts}" if counts else ""
        )
        if not self.enabled and done != self._last_line_done:
            self._last_line_done = done
            line = " · ".join(filter(None, (f"trials {min(done, total)}/{total}", f"best {best}", counts)))
            left = self._seconds_left(done, total)
            if left is not None and "stopped: " not in counts:  # nothing is left once the sweep stopped early
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
