"""The report child: a process forked as `sweeps run` starts, which loads what the HTML report is drawn with
while the sweep trains, and composes the report when the sweep ends.

Drawing the report in the command's own process began with importing plotly, matplotlib, pandas and Optuna's
importance package (which the child loads without scikit-learn: see
:func:`sweeps.results.importance.optuna_importance`): ~1 s on a 2-core machine, after the last trial, every
time. The child pays it on the other core while the trials train. At the end the command hands the child the
sweep's result and gets back the page and its importance tables; it writes the file and logs it itself
(:func:`sweeps.results.html_report.write_report`). The child reopens the study from the storage (the journal
file, PostgreSQL or ``sweeps proxy``). On an embedded store written directly it reads the sweep's MLflow
records itself and draws the parent run's summary in a forked copy, beside the report (the command waits for
that answer, then finishes the parent run); from any other store the command reads the records and hands them
over, and its writer draws the summary, since the child is not to load MLflow. The importances are computed in
forked copies of the child (:mod:`tracking.forked`), in its process group: giving up on the child kills
the group.

It is forked only from a process with one thread (:func:`tracking.writer.launch.fork_is_safe`; the progress
bar starts one on a terminal, so the child comes first), and composes one report, then exits; it also exits
when its input closes unasked (the command ended another way). Where it cannot be forked, or when it is gone,
the command draws the report itself as before.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import logging
import os
import pickle
import select
import signal
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from tracking.writer.launch import answer_channel, fork, fork_is_safe

if TYPE_CHECKING:
    from tracking.writer.launch import Child

ENTRY = "sweeps.results.report_child"  # the child's program: this module's ``main()``
NAME = "sweeps-report"  # its process name (``ps -e``, ``top``); its command line is its parent's
NICENESS = 10  # the child's priority below its parent's (Unix niceness): ~10 % of a core when both want one
CLOSE_SECONDS = 5.0  # how long a child that answered is given to exit before it is killed
# How long the command waits for the summary it asked of the child (~0.3 s on 2 cores for the quickstart,
# longer for large sweeps) before it kills the child and has its writer draw the summary: a child that
# hangs must not keep the parent run from being finished.
SUMMARY_SECONDS = 300.0

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Request:
    """What the command asks of its child: the report of ``study_name``'s sweep (``result`` without its study,
    which the child reopens), from ``records`` (None: read them there), with ``bootstrap`` resamples; and
    with ``summary`` (``tracking.SweepRun.summary_request``) the parent run's summary first."""

    spec: object
    study_name: str
    result: object
    records: tuple | None
    bootstrap: int
    summary: object = None


@dataclasses.dataclass(frozen=True)
class Answer:
    """One answer of the child: ``kind`` ("summary", then "report"), and ``value`` or the exception raised."""

    kind: str
    ok: bool
    value: object


class ChildGone(Exception):
    """The report child exited or its pipe broke: the caller composes the report itself."""


class ReportChild:
    """The command's handle on its report child (one report per child): :meth:`begin` hands it a sweep's
    result, :meth:`collect` takes the page back."""

    def __init__(self, proc: Child) -> None:
        self._proc = proc
        self.asked: tuple | None = None  # (study name, bootstrap) of the report asked for
        self._summary_owed = False  # the summary's answer, asked for and not read yet
        self._answered = False

    @property
    def pid(self) -> int:
        return self._proc.pid

    def begin(self, spec, result, records: tuple | None, bootstrap: int, summary=None) -> None:
        """Ask for the report of ``result`` (:func:`sweeps.results.html_report.compose` with ``records``;
        None: the child reads them, which it must do without MLflow,
        :func:`~sweeps.results.html_report.records_for_child`), and with ``summary`` (a request of
        ``tracking.SweepRun.summary_request``, on a store written directly) for the parent run's summary
        first, without waiting. A child that is gone is found out by :meth:`summary_drawn` and
        :meth:`collect`."""
        if self.asked is not None:
            raise RuntimeError("a report child composes one report")
        self.asked = (result.study.study_name, bootstrap)
        self._summary_owed = summary is not None
        request = Request(
            spec, result.study.study_name, dataclasses.replace(result, study=None), records, bootstrap, summary
        )
        try:
            pickle.dump(request, self._proc.stdin, protocol=pickle.HIGHEST_PROTOCOL)
            self._proc.stdin.flush()
        except OSError:
            self.close()

    def summary_drawn(self) -> bool:
        """Wait for the parent run's summary asked of the child (:meth:`begin`): True once it is drawn there;
        False when it was not asked for, failed there, the child is gone, or it has not answered in
        SUMMARY_SECONDS (then it is killed): the caller draws it then."""
        if not self._summary_owed:
            return False
        self._summary_owed = False
        try:
            ok, value = self._answer("summary", SUMMARY_SECONDS)
        except ChildGone:
            return False
        if not ok:
            log.debug("the report child did not draw the summary: %s: %s", type(value).__name__, value)
        return ok

    def collect(self) -> tuple[str, str, list]:
        """The report asked for: ``(its key, page, importance tables)`` (the key as
        :func:`~sweeps.results.html_report.report_key` gives it for the study the child read). Raises
        ChildGone when the child is gone, or the exception composing raised there."""
        if self._summary_owed:  # its answer comes first
            self.summary_drawn()
        ok, value = self._answer("report")
        self._answered = True
        self.close()
        if not ok:
            raise value
        return value

    def _answer(self, kind: str, seconds: float | None = None) -> tuple[bool, object]:
        """The child's next answer, which must be of ``kind``, waited for up to ``seconds`` (None: as long as
        it takes); ChildGone (the child closed, or killed) when there is none."""
        try:
            # (select sees the pipe, not the reader's buffer: only for the first answer, nothing read ahead yet)
            if seconds is not None and not select.select([self._proc.stdout], [], [], seconds)[0]:
                raise TimeoutError(f"no answer in {seconds:g} s")
            answer = pickle.load(self._proc.stdout)
        except (OSError, EOFError, pickle.UnpicklingError, ValueError, TypeError, AttributeError) as e:
            self.close()
            raise ChildGone(f"the report child gave no {kind} ({type(e).__name__}: {e})") from None
        if not isinstance(answer, Answer) or answer.kind != kind:
            self.close()
            raise ChildGone(f"the report child answered {answer!r} for the {kind}")
        return answer.ok, answer.value

    def close(self) -> None:
        """Close the pipe and reap the child: at once (killed) when it was not asked for a report, since it
        holds nothing and may still be loading; else after it exits, which it does after answering."""
        for stream in (self._proc.stdin, self._proc.stdout):
            with contextlib.suppress(OSError):
                stream.close()
        if not self._answered or not self._proc.wait(CLOSE_SECONDS):
            with contextlib.suppress(OSError):  # its copies computing importances too (its process group)
                os.killpg(self._proc.pid, signal.SIGKILL)
            self._proc.kill()


def start() -> ReportChild | None:
    """A new report child, or None where one cannot be forked now (then the report is drawn in process)."""
    if not fork_is_safe():
        return None
    try:
        return ReportChild(fork(ENTRY, NAME))
    except OSError:  # no fork now (out of processes or memory)
        return None


@contextlib.contextmanager
def report_child(wanted: bool) -> Iterator[ReportChild | None]:
    """``with report_child(wanted) as child:`` a child when ``wanted`` and it can be forked, else None;
    closed (killed if never asked) on the way out."""
    child = start() if wanted else None
    try:
        yield child
    finally:
        if child is not None:
            child.close()


# --- the child's side ---------------------------------------------------------------------------------------


def _import_importances() -> None:
    from sweeps.results.importance import optuna_importance

    optuna_importance(without_scikit_learn=True)  # not its scikit-learn and SciPy: ~1 s of CPU


def _import_records() -> None:
    import pandas  # noqa: F401


def _import_summary() -> None:
    import tracking.plots
    import tracking.summary

    tracking.plots.new_figure()  # matplotlib's Agg canvas and its font machinery


def _import_figures() -> None:
    import optuna.visualization  # noqa: F401
    import plotly.graph_objects  # noqa: F401

    import sweeps.results.html_report  # noqa: F401


def _draw_ahead(asked: Callable[[], bool] | None = None) -> None:
    """See :func:`_draw_figures_ahead`; a failure there costs only the head start (said with ``-v``), never
    a traceback on the user's terminal."""
    try:
        _draw_figures_ahead(asked)
    except Exception as e:
        log.debug("drawing the report's figures ahead failed: %s: %s", type(e).__name__, e)


def _draw_figures_ahead(asked: Callable[[], bool] | None = None) -> None:
    """Draw the report's figures once on a made-up six-trial study, and one figure of the summary's kind: the
    first figure of a kind costs plotly (its property validators are imported as they are first used) and
    matplotlib tens of milliseconds more than the next, which the end of the sweep would pay. Only while
    this process waits for the trials to end: ``asked()`` (default: a request is waiting) is checked between
    figures. A fresh quickstart, 6 + 6 alternated runs: composing the report 434 -> 402 ms (median)."""
    import io

    import numpy as np
    import optuna
    import pandas as pd
    from optuna.distributions import CategoricalDistribution, FloatDistribution

    import tracking.plots
    from sweeps.results.html_report import figure_html
    from sweeps.results.report_figures import FIGURES, SHOW_IMPORTANCES, ReportData

    asked = asked or _request_waiting
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    rng = np.random.default_rng(0)
    choices = {"batch_size": [64, 128, 256], "optimizer": ["adam", "rmsprop"], "schedule": ["constant", "cosine"]}
    spaces = {name: CategoricalDistribution(values) for name, values in choices.items()}
    spaces |= {"lr": FloatDistribution(1e-4, 0.1, log=True), "beta1": FloatDistribution(0.8, 0.99)}
    study = optuna.create_study()
    for n in range(6):
        params = {name: values[n % len(values)] for name, values in choices.items()}
        params |= {"lr": float(10 ** rng.uniform(-4, -1)), "beta1": float(rng.uniform(0.8, 0.99))}
        study.add_trial(optuna.trial.create_trial(params=params, distributions=spaces, value=float(rng.uniform())))
    curves = pd.DataFrame(
        [(n, e, 1.0 / e + n) for n in range(6) for e in range(1, 6)], columns=["trial_number", "step", "value"]
    )
    data = ReportData(study, "final_val_cost", 0, curves, {t.number: t.params for t in study.trials})
    for key, build in FIGURES.items():
        if asked():
            return
        if key not in SHOW_IMPORTANCES:
            for figure in build(data):
                figure_html(figure, first=False)
    if not asked():
        figure, ax = tracking.plots.new_figure()
        ax.plot([1, 2, 3], [3.0, 2.0, 1.0], color=tracking.plots.BEST_COLOR)
        ax.set(title="made up", xlabel="epoch", ylabel="val_cost")
        tracking.plots.save_png(figure, io.BytesIO())


# What composing a report imports (~1 s of CPU), in the order the end of a sweep needs it: the importances'
# libraries first (they are computed in copies forked first: a copy forked before them would import them
# itself), then the records' and the summary's, then the figures'; then a first drawing of its figures.
WARM_UP: tuple[Callable[[], None], ...] = (
    _import_importances,
    _import_records,
    _import_summary,
    _import_figures,
    _draw_ahead,
)


def _warm_up(asked: Callable[[], bool]) -> None:
    """Import what composing a report imports (:data:`WARM_UP`), step by step until ``asked()``: a sweep that
    ends before all is loaded has its report begun at once, and what is left is imported when it is needed,
    beside the copies computing the importances."""
    for step in WARM_UP:
        if asked():
            return
        step()


def _request_waiting() -> bool:
    return bool(select.select([0], [], [], 0)[0])


def _compose(request: Request, answer: Callable[[str, tuple[bool, object]], None]) -> tuple[str, str, list]:
    """The report asked for, and first the parent run's summary when asked for too: its answer sent with
    ``answer`` before the report's (also when composing fails first).

    The summary (~0.3 s of matplotlib for the quickstart, the longest single part of the end) is drawn in a
    forked copy of this process begun before anything else, so that it runs beside the copies computing
    the importances and the figures drawn here: composing it here first left the other core idle for most
    of the end. The copy is forked before this process opens the study or the store (it inherits no
    connection) and writes the store itself; this process waits for it once its own figures are drawn."""
    import optuna

    from sweeps.results.html_report import collector_paused, compose, report_key
    from sweeps.study.storage import close_storage, open_storage
    from tracking.forked import Forked

    result = request.result
    summary = Forked(_draw_summary, [request.summary]) if request.summary is not None else None

    def draw_summary() -> None:
        nonlocal summary
        if summary is not None:
            begun, summary = summary, None
            answer("summary", _attempt(_first_result, begun))

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = None
    try:
        _import_importances()  # without scikit-learn, also when the warm-up did not get to it
        storage = open_storage(result.stores)
        result.study = optuna.load_study(study_name=request.study_name, storage=storage)
        with collector_paused():
            page, tables = compose(request.spec, result, request.records, request.bootstrap, meanwhile=draw_summary)
            return report_key(request.spec, result), page, tables
    finally:
        draw_summary()
        if storage is not None:
            close_storage(storage)


def _first_result(forked) -> object:
    return forked.results()[0]


def _draw_summary(summary) -> None:
    from tracking.runs import draw_summary

    draw_summary(summary)


def _attempt(fn: Callable, *args) -> tuple[bool, object]:
    try:
        return True, fn(*args)
    except Exception as e:
        return False, e


def _send(out, kind: str, reply: tuple[bool, object]) -> None:
    """Write the :class:`Answer` ``kind`` of ``reply`` (ok, value) to the command; an exception that does not
    pickle goes as its text."""
    try:
        data = pickle.dumps(Answer(kind, *reply), protocol=pickle.HIGHEST_PROTOCOL)
    except Exception:
        data = pickle.dumps(Answer(kind, False, RuntimeError(f"{type(reply[1]).__name__}: {reply[1]}")))
    with contextlib.suppress(OSError):  # nobody listens any more
        out.write(data)
        out.flush()


def main() -> None:
    code = 0
    try:
        out = answer_channel()
        with contextlib.suppress(OSError):
            # Loading yields to the training and the writer, which the sweep waits for; it uses what they leave.
            os.nice(NICENESS)
        _warm_up(_request_waiting)
        gc.freeze()  # what was imported is never collected: the collections while composing skip it
        try:
            request = pickle.load(os.fdopen(0, "rb", closefd=False))
        except (EOFError, OSError):  # the command ended without asking
            return
        _send(out, "report", _attempt(_compose, request, lambda kind, reply: _send(out, kind, reply)))
    except BaseException:
        import traceback

        traceback.print_exc()
        code = 1
    finally:
        os._exit(code)
