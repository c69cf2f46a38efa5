"""The CLI's commands. Each one parses the spec (before touching any store, so a bad spec writes
nothing), resolves the stores with the same defaults, and calls the Python API.

Every command loads this module (``load``), so its functions import what they use themselves: ``sweeps best``
does not pay for the sweep loop, the HTML report or the MLflow server."""

from __future__ import annotations

import contextlib
import shlex
import time

from sweeps import console as report
from sweeps.cli import progress


def load(args):
    from sweeps.spec import load_spec

    overrides: list[str | tuple[str, str]] = list(args.overrides)
    if getattr(args, "trials", None) is not None:  # an override that errors name as the option typed
        overrides.append((f"trials={args.trials}", f"--trials {args.trials}"))
    return load_spec(args.spec, overrides)


def _workdir_hint(args) -> str:
    parts = []
    if args.workdir:
        parts.append(f"--workdir {shlex.quote(args.workdir)}")
    if args.tracking_uri:
        from tracking import redact

        parts.append(f"--tracking-uri {shlex.quote(redact(args.tracking_uri))}")
    return (" " + " ".join(parts)) if parts else ""


def cmd_run(args) -> int:
    from sweeps.errors import UsageError

    spec = load(args)
    started = time.time()
    if args.workers < 1:
        raise UsageError(f"--workers must be ≥ 1; got {args.workers}")
    with contextlib.ExitStack() as stack:
        if (result := _finished(spec, args)) is not None:
            child = None  # nothing to train or write: no data loaded, no MLflow store opened
        else:
            child = stack.enter_context(_report_child(args))
            result = _train(spec, args, child)
        report.print_summary(spec, result, _workdir_hint(args))
        from sweeps.study.stopping import describe

        for line in describe(result.study, spec, since=started):  # why it stopped before `trials`, if it did
            print(line)
        _draw_report(spec, result, args, child)
    return _outcome_code(result)


def _report_child(args):
    """The report's child process (:mod:`sweeps.results.report_child`), forked now, while this process has
    one thread (the progress bar starts another), when the report is to be drawn."""
    from sweeps.results.html_report import report_enabled
    from sweeps.results.report_child import report_child

    return report_child(report_enabled(args.no_report))


def _train(spec, args, child=None):
    """Train the sweep of ``spec`` here, or with ``--workers`` processes; its result. A report ``child`` is
    asked for the report as the trials end here, and for the parent run's summary first on a store written
    directly (else the writer draws it)."""
    if args.workers > 1:
        _say_inferred_task(spec, quiet=args.quiet)
        from sweeps.study.runner import study_counts_for, target_total
        from sweeps.study.workers import run_parallel

        done = study_counts_for(spec, args.workdir, args.storage)
        with progress.ProgressBar(target_total(spec), done, enabled=not args.quiet, spec=spec) as bar:
            return run_parallel(
                spec,
                args.workers,
                workdir=args.workdir,
                storage=args.storage,
                tracking_uri=args.tracking_uri,
                spec_file=args.spec,
                overrides=_overrides(args),
                on_trial=None if args.quiet else bar,
            )
    if spec.dataset.source != "name":  # a registry dataset is loaded by run(), beside the writer's start
        _say_inferred_task(spec, quiet=args.quiet)
    return _run_here(spec, args, child=child)


def _finished(spec, args):
    """The sweep's result if it is finished and summarised (a rerun), shown as a run that trained nothing."""
    from sweeps.study.runner import counts, finished_result, target_total

    result = finished_result(spec, workdir=args.workdir, storage=args.storage, tracking_uri=args.tracking_uri)
    if result is not None:
        with progress.ProgressBar(target_total(spec), counts(result.study)[0], enabled=not args.quiet, spec=spec):
            pass
    return result


def _outcome_code(result) -> int:
    """0, or EXIT_NO_RESULT (with one line on stderr) when the sweep ended with no completed trial and none
    still running elsewhere: every trial failed, diverged or was pruned, and a script must be able to see it."""
    import sys

    from sweeps.cli import EXIT_NO_RESULT
    from sweeps.study.tally import Tally

    tally = Tally.of(result.study)
    if result.best_params is not None or tally.counts.get("running") or tally.counts.get("waiting"):
        return 0
    diverged = sum(1 for t in result.study.get_trials(deepcopy=False) if _diverged(t))
    detail = f"{tally.describe()}" + (f"; {diverged} diverged" if diverged else "")
    print(f"error: no trial of the sweep completed ({detail}); exit {EXIT_NO_RESULT}", file=sys.stderr)
    return EXIT_NO_RESULT


def _diverged(trial) -> bool:
    from sweeps.study.trial_lifecycle import REASON_ATTR

    return str(trial.user_attrs.get(REASON_ATTR, "")).startswith("cost diverged")


def _draw_report(spec, result, args, child=None) -> None:
    """The sweep's HTML report, unless --no-report (or $SWEEPS_NO_REPORT); composed by ``child`` if given."""
    from sweeps.results.html_report import draw_after_command

    if not args.no_report:
        draw_after_command(spec, result, args.spec, report.out.print, report.err.print, child=child)


def _say_inferred_task(spec, quiet: bool) -> None:
    """Load the data before any store is opened (a bad table file writes nothing) and say what was inferred."""
    from sweeps.study.trial_lifecycle import setup_from_spec

    data = setup_from_spec(spec).load()
    if "task_inferred" in data.params and not quiet:
        print(f"dataset {data.name}: task {data.params['task_inferred']} (set dataset.task to choose)")


def cmd_worker(args) -> int:
    spec = load(args)
    if args.coordinated:
        from sweeps.study.workers import follow_coordinator

        follow_coordinator()
    result = _run_here(spec, args, finalize=not args.coordinated, worker=True)
    return 0 if args.coordinated else _outcome_code(result)


def _overrides(args) -> list[str]:
    extra = [f"trials={args.trials}"] if args.trials is not None else []
    return [*args.overrides, *extra]


def _run_here(spec, args, finalize: bool = True, worker: bool = False, child=None):
    from sweeps.study.runner import run, study_counts_for, target_total

    def trials_done(result, summary):
        from sweeps.results.html_report import DEFAULT_BOOTSTRAP, records_for_child

        # The child draws the summary too where it reads the records itself: on a store written directly.
        records = records_for_child(result)
        child.begin(spec, result, records, DEFAULT_BOOTSTRAP, summary=summary if records is None else None)
        return child.summary_drawn

    done = study_counts_for(spec, args.workdir, args.storage)
    bar = progress.ProgressBar(target_total(spec), done, enabled=not args.quiet, spec=spec, deferred=True)
    with bar:
        return run(
            spec,
            workdir=args.workdir,
            storage=args.storage,
            tracking_uri=args.tracking_uri,
            on_trial=bar,
            on_start=bar.begin,
            on_trials_done=trials_done if child is not None else None,
            summary_elsewhere=child is not None,
            finalize=finalize,
            worker=worker,
        )


def cmd_best(args) -> int:
    from sweeps.results import confirm_report as confirmed
    from sweeps.study.runner import load_result

    spec = load(args)
    result = load_result(spec, workdir=args.workdir, storage=args.storage, tracking_uri=args.tracking_uri)
    record = confirmed.confirmed(result.study)
    since = confirmed.completed_since(record, result.study) if record else 0
    if args.json:
        confirm = record and {**record, "completed_since": since}
        report.print_json(report.best_json(spec, result) | {"confirmed": confirm})
    elif args.csv:
        report.print_best_csv(result)
    else:
        report.print_summary(spec, result, _workdir_hint(args))
        confirmed.print_confirmed_summary(record, since)
    return 0 if result.best_params is not None else 1


def cmd_trials(args) -> int:
    from sweeps.study.runner import load_result

    spec = load(args)
    result = load_result(spec, workdir=args.workdir, storage=args.storage, tracking_uri=args.tracking_uri)
    report.print_trials(result, "json" if args.json else "csv" if args.csv else "table")
    return 0


def cmd_reproduce(args) -> int:
    from sweeps.errors import UsageError
    from sweeps.results.reproduce import reproduce
    from sweeps.study.storage import resolve_stores
    from tracking.store import sqlite_path

    stores = resolve_stores(args.workdir, args.storage, args.tracking_uri)
    path = sqlite_path(stores.tracking_uri)
    if path is not None and not path.exists():  # opening it would create an empty store
        raise UsageError(f"no MLflow store at {path}; run `sweeps run SPEC` first (or pass --workdir)")
    outcome = reproduce(args.run_id, tracking_uri=stores.tracking_uri, rtol=args.rtol)
    report.out.print(outcome.describe())
    return 0 if outcome.matches else 1


def cmd_ui(args) -> int:
    """The MLflow UI over the sweep's store, on 127.0.0.1 only, until Ctrl-C; prints (and with ``--open``
    opens) the address of each sweep's runs, in the UI's "Model training" view."""
    from sweeps.errors import UsageError
    from sweeps.study.storage import resolve_stores
    from tracking import redact
    from tracking.server import MlflowServer, experiments
    from tracking.store import sqlite_path

    if not 1 <= args.port <= 65535:
        raise UsageError(f"--port must be a TCP port from 1 to 65535; got {args.port}")
    stores = resolve_stores(args.workdir, args.storage, args.tracking_uri)
    uri = stores.tracking_uri
    if uri.startswith("http"):
        report.out.print(f"this sweep is tracked by a server: {redact(uri)}")
        _print_runs(uri, experiments(uri), open_=args.open)
        return 0
    path = sqlite_path(uri)
    if path is not None and not path.exists():
        raise UsageError(f"no MLflow store at {path}; run `sweeps run SPEC` first (or pass --workdir)")
    log = stores.workdir / "mlflow-ui.log"
    with MlflowServer(uri, stores.workdir / "mlartifacts", port=args.port, log_file=log) as server:
        report.out.print(f"MLflow UI on {server.url} (Ctrl-C stops it)")
        _print_runs(server.url, experiments(server.url), open_=args.open)
        while server.process is not None and server.process.poll() is None:
            time.sleep(0.5)
        raise server.stopped_by_itself()


def _print_runs(url: str, found: list[tuple[str, str]], *, open_: bool) -> None:
    """One line per sweep (MLflow experiment) with the address of its runs (credentials left out); open one
    in a browser if asked: the only sweep, or the list of experiments when there are several."""
    from tracking.server import experiments_url, runs_url

    for experiment_id, name in found:
        report.out.print(f"  {name}: {runs_url(url, experiment_id)}")
    if not found:
        report.out.print(f"  no sweep tracked yet: {experiments_url(url)}")
    if open_:
        import webbrowser

        webbrowser.open(runs_url(url, found[0][0]) if len(found) == 1 else experiments_url(url))
