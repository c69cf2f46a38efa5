"""``sweeps confirm``, ``sweeps export`` and ``sweeps report``: the options parsed into calls of
:func:`sweeps.results.confirm.confirm`, :func:`sweeps.results.export.export_model` and
:func:`sweeps.results.html_report.write_report`, what they print, and the exit code."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sweeps import console as out
from sweeps.batchsize.stats import RunResult
from sweeps.cli.commands import _workdir_hint, load
from sweeps.errors import UsageError
from sweeps.results.confirm import check_counts, confirm
from sweeps.results.confirm_report import print_confirm
from sweeps.results.export import export_model
from sweeps.results.html_report import REPORT_FILE, draw_after_command, write_report
from sweeps.results.importance import optuna_importance
from sweeps.study.runner import load_result


def _confirm_progress(trial: int, result: RunResult, done: int, total: int) -> None:
    outcome = f"failed: {result.failed}" if result.failed else f"val cost {out.fmt(result.final_val_cost)}"
    out.err.print(
        f"[{done}/{total}] trial {trial}, seed {result.repeat}: {outcome} after {result.train_seconds:.3g} s",
        highlight=False,
    )


def cmd_confirm(args) -> int:
    """``sweeps confirm SPEC …``: exit 0 with a confirmed winner, 1 when no setting finished all its runs."""
    check_counts(args.top, args.repeats)  # before the spec is read: the cheapest mistakes first
    spec = load(args)
    report = confirm(
        spec,
        top=args.top,
        repeats=args.repeats,
        budget=args.budget,
        workdir=args.workdir,
        storage=args.storage,
        tracking_uri=args.tracking_uri,
        on_run=_confirm_progress,  # on stderr: --json's stdout stays clean
    )
    record: Mapping[str, Any] = report.to_dict()
    if args.json:
        out.print_json(record)
    else:
        print_confirm(record, _workdir_hint(args))
    _redraw_report(spec, args)
    return 0 if record["winner"] is not None else 1


def _redraw_report(spec, args) -> None:
    """The sweep's HTML report again, now with the confirmed winner; its lines on stderr (stdout may be JSON)."""

    def result():
        return load_result(spec, workdir=args.workdir, storage=args.storage, tracking_uri=args.tracking_uri)

    draw_after_command(spec, result, args.spec, out.err.print, out.err.print)


def cmd_export(args) -> int:
    spec = load(args)
    outcome = export_model(
        spec,
        trial=args.trial,
        retrain=args.retrain,
        register=args.register,
        workdir=args.workdir,
        storage=args.storage,
        tracking_uri=args.tracking_uri,
    )
    if args.json:
        out.print_json(outcome.to_dict())
    else:
        out.out.print(outcome.describe(), markup=False, highlight=False)
    return 0


def cmd_report(args) -> int:
    spec = load(args)
    if args.bootstrap < 0:
        raise UsageError(f"--bootstrap must be ≥ 0; got {args.bootstrap}")
    if args.out is not None and Path(args.out).is_dir():
        raise UsageError(f"--out {args.out} is a folder; give the file to write, e.g. {Path(args.out) / REPORT_FILE}")
    result = load_result(spec, workdir=args.workdir, storage=args.storage, tracking_uri=args.tracking_uri)
    optuna_importance(without_scikit_learn=True)  # this process uses no evaluator of Optuna's that needs it
    path = write_report(spec, result, args.out, bootstrap=args.bootstrap)
    print(f"report: {path}")
    return 0
