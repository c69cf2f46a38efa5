"""The ``sweeps`` command line. Parsing only imports argparse, so ``sweeps --help`` answers at once; each
command imports what it needs when it runs.

Exit codes: 0 success, 2 bad spec or usage (a store URL that cannot work included), 3 the sweep ended without
a completed trial (every trial failed, diverged or was pruned), 130 interrupted (SIGINT), 143 terminated
(SIGTERM), 129 hung up (SIGHUP: the terminal closed), 1 any other failure. User mistakes get one line on stderr,
never a traceback.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import gc
import os
import signal
import sys
from collections.abc import Callable

EXIT_OK, EXIT_FAILURE, EXIT_USAGE, EXIT_NO_RESULT, EXIT_SIGINT, EXIT_SIGTERM, EXIT_SIGHUP = 0, 1, 2, 3, 130, 143, 129


def _store_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("where the sweep lives (the same defaults for every command)")
    g.add_argument(
        "--workdir",
        default=None,
        metavar="DIR",
        help="folder of the embedded stores (default: .sweeps in the current directory)",
    )
    # Store URLs may carry passwords: the environment keeps them off command lines and shell history.
    g.add_argument(
        "--storage",
        default=os.environ.get("SWEEPS_STORAGE") or None,
        metavar="URL",
        help="Optuna storage URL, e.g. postgresql://user@host/db (default: $SWEEPS_STORAGE, else DIR/optuna.journal)",
    )
    g.add_argument(
        "--tracking-uri",
        default=os.environ.get("SWEEPS_TRACKING_URI") or None,
        metavar="URI",
        help="MLflow tracking URI, e.g. http://127.0.0.1:5000 (default: $SWEEPS_TRACKING_URI, else "
        "sqlite:///DIR/mlflow.db)",
    )


def _spec_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("spec", metavar="SPEC", help="the sweep's spec file (.yaml, .yml or .toml)")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY.PATH=VALUE",
        help="override a spec value, e.g. --set trials=5 --set training.epochs=3 (repeatable)",
    )


def _add_run(p):
    _spec_arg(p)
    p.add_argument("--trials", type=int, default=None, metavar="N", help="total trials (overrides the spec)")
    p.add_argument(
        "--workers",
        type=int,
        default=1,
        metavar="K",
        help="worker processes on this machine sharing the study (default 1)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument(
        "--no-report",
        action="store_true",
        help="do not draw the HTML report at the end (also: SWEEPS_NO_REPORT=1); `sweeps report` draws it later",
    )
    _store_options(p)


def _add_report(p):
    _spec_arg(p)
    p.add_argument("--out", default=None, metavar="FILE", help="the HTML file to write (default: DIR/NAME-report.html)")
    p.add_argument(
        "--bootstrap",
        type=int,
        default=12,  # sweeps.results.importance.DEFAULT_BOOTSTRAP (not imported: --help stays instant)
        metavar="B",
        help="resamples of the trials for the importance intervals (default 12, whose intervals enclose ~80%% "
        "of what resampling gives; 200: 94%%, 380: 95%%; slower)",
    )
    _store_options(p)


def _add_worker(p):
    _spec_arg(p)
    p.add_argument("--trials", type=int, default=None, metavar="N", help="total trials (overrides the spec)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    # Set by `run --workers`: the coordinator, not each worker, writes the sweep's summary.
    p.add_argument("--coordinated", action="store_true", help=argparse.SUPPRESS)
    _store_options(p)


def _output_format(p: argparse.ArgumentParser, json_help: str) -> None:
    g = p.add_mutually_exclusive_group()
    g.add_argument("--json", action="store_true", help=json_help)
    g.add_argument("--csv", action="store_true", help="print CSV (every column, full precision) instead of a table")


def _add_best(p):
    _spec_arg(p)
    _output_format(p, "print JSON for machines (with the winning trial's number and MLflow run id)")
    _store_options(p)


def _add_trials(p):
    _spec_arg(p)
    _output_format(p, "print JSON records instead of a table")
    _store_options(p)


def _add_reproduce(p):
    p.add_argument("run_id", metavar="RUN_ID", help="the MLflow run id of a tracked trial")
    p.add_argument("--rtol", type=float, default=1e-9, help="relative tolerance of the curve comparison")
    _store_options(p)


def _add_ui(p):
    p.add_argument("--port", type=int, default=5000, help="port on 127.0.0.1 (default 5000)")
    p.add_argument("--open", action="store_true", help="open the sweep's runs in a web browser")
    _store_options(p)


def _add_batch_size(p):
    _spec_arg(p)
    p.add_argument("--sizes", default=None, metavar="B1,B2,…", help="batch sizes to compare (default: 64,128,256,512)")
    p.add_argument("--repeats", type=int, default=3, metavar="R", help="seeds per size (default 3)")
    p.add_argument(
        "--budget",
        default=None,
        metavar="epochs=E|seconds=S",
        help="equal budget per run: epochs (default: the spec's epochs) or wall-clock seconds",
    )
    p.add_argument(
        "--target-cost",
        type=float,
        default=None,
        metavar="C",
        help="also report epochs and seconds to reach this validation cost",
    )
    p.add_argument(
        "--from-best",
        action="store_true",
        help="hold the other hyperparameters at the best setting of the spec's sweep",
    )
    p.add_argument(
        "--lr-rule",
        default="fixed",
        metavar="fixed|linear|sqrt|tuned",
        help="each size's learning rate: the held one (default), scaled from --lr-reference linearly or by the "
        "square root, or tuned per size by a small Optuna search",
    )
    p.add_argument("--lr-trials", type=int, default=None, metavar="N", help="lr trials per size for tuned (default 8)")
    p.add_argument(
        "--lr-reference",
        type=int,
        default=None,
        metavar="B",
        help="the batch size the held lr suits, for linear and sqrt (default: the spec's fixed batch size)",
    )
    p.add_argument("--json", action="store_true", help="print JSON for machines")
    p.add_argument("--csv", action="store_true", help="print the table of sizes as CSV")
    _advise_options(p)
    _store_options(p)


def _advise_options(p):
    g = p.add_argument_group("predict, then check: the critical batch size (needs --target-cost)")
    g.add_argument(
        "--advise",
        action="store_true",
        help="predict each size's steps and time to --target-cost from the gradient noise scale of a pilot run, "
        "recommend the fastest, then measure every size to check",
    )
    g.add_argument(
        "--measure-steps",
        action="store_true",
        help="as --advise over sizes 8…1024 by default, and fit S_min and B_crit to the measured steps",
    )
    g.add_argument(
        "--lr-factors",
        default=None,
        metavar="F1,F2,…",
        help="learning rates tried per size, as multiples of the held lr (default 0.5,1,2)",
    )
    g.add_argument("--pilot-size", type=int, default=None, metavar="B", help="the pilot's batch size (default: middle)")
    g.add_argument(
        "--seeds",
        type=int,
        default=None,
        metavar="N",
        help="seeds per size and rate, steps averaged (default 1; --repeats is for the comparison)",
    )


def _add_export(p):
    _spec_arg(p)
    p.add_argument("--trial", type=int, default=None, metavar="N", help="export trial N (default: the best trial)")
    p.add_argument(
        "--retrain",
        default="train",
        metavar="train|train+val",
        help="train on the trial's training split (default: the trial's own network) or on train+val, with "
        "the preprocessing refitted on both",
    )
    p.add_argument("--register", default=None, metavar="NAME", help="also register the model in the Model Registry")
    p.add_argument("--json", action="store_true", help="print JSON for machines (with the model URI)")
    _store_options(p)


def _add_confirm(p):
    _spec_arg(p)
    p.add_argument("--top", type=int, default=3, metavar="K", help="how many of the best settings (default 3)")
    p.add_argument("--repeats", type=int, default=5, metavar="R", help="new seeds per setting (default 5)")
    p.add_argument(
        "--budget",
        default=None,
        metavar="epochs=E",
        help="epochs per run (default: the spec's, as the trials had)",
    )
    p.add_argument("--json", action="store_true", help="print JSON for machines")
    _store_options(p)


def _add_proxy(p):
    # The database URL may carry a password: the environment keeps it off command lines.
    p.add_argument(
        "--storage",
        default=os.environ.get("SWEEPS_STORAGE") or None,
        metavar="URL",
        help="the PostgreSQL database behind the proxy, postgresql://user@host/db (default: $SWEEPS_STORAGE)",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=13000, help="port (default 13000); workers use grpc://HOST:PORT")
    p.add_argument(
        "--pool", type=int, default=8, metavar="C", help="database connections kept (default 8; one more for a moment)"
    )
    p.add_argument("--threads", type=int, default=16, metavar="T", help="calls served at once (default 16)")


# name -> (help, add arguments, "module:function" run lazily)
COMMANDS: dict[str, tuple[str, Callable[[argparse.ArgumentParser], None], str]] = {
    "run": ("run (or resume) a sweep from a spec", _add_run, "sweeps.cli.commands:cmd_run"),
    "worker": ("join a sweep's study as one more worker (any machine)", _add_worker, "sweeps.cli.commands:cmd_worker"),
    "proxy": (
        "serve a PostgreSQL storage to many workers over gRPC (they use --storage grpc://HOST:PORT)",
        _add_proxy,
        "sweeps.cli.proxy:cmd_proxy",
    ),
    "best": ("print the lowest-cost setting of a sweep", _add_best, "sweeps.cli.commands:cmd_best"),
    "trials": ("print a table of all trials of a sweep", _add_trials, "sweeps.cli.commands:cmd_trials"),
    "reproduce": (
        "retrain one tracked trial and compare its curve with the logged one",
        _add_reproduce,
        "sweeps.cli.commands:cmd_reproduce",
    ),
    "report": (
        "write the sweep's report: one self-contained HTML file, logged to its parent run",
        _add_report,
        "sweeps.cli.results:cmd_report",
    ),
    "ui": ("start the MLflow UI on the sweep's tracking store, on 127.0.0.1", _add_ui, "sweeps.cli.commands:cmd_ui"),
    "batch-size": (
        "compare batch sizes with repeats under an equal budget",
        _add_batch_size,
        "sweeps.cli.batch_size:cmd_batch_size",
    ),
    "export": (
        "retrain the best (or a chosen) trial and log it as an MLflow model",
        _add_export,
        "sweeps.cli.results:cmd_export",
    ),
    "confirm": (
        "retrain the best settings with new seeds and say which cannot be told apart",
        _add_confirm,
        "sweeps.cli.results:cmd_confirm",
    ),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sweeps",
        description="Reproducible, tracked Optuna sweeps of batch size, optimizer betas, learning rate and "
        "decay schedule, trained with optcore and logged to MLflow.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (help_text, add, _) in COMMANDS.items():
        add(sub.add_parser(name, help=help_text, description=help_text[0].upper() + help_text[1:] + "."))
    return parser


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("optsweep")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown (not installed)"


def _on_stop(signum, frame):
    """SIGTERM, or SIGHUP (the terminal closed): the command ends as if stopped, cleaning up on its way out
    (`sweeps ui` stops the MLflow server it started, which runs in a session of its own and would stay up)."""
    from sweeps.errors import Interrupted

    if signum == signal.SIGHUP:
        raise Interrupted("SIGHUP", EXIT_SIGHUP)
    raise Interrupted("SIGTERM", EXIT_SIGTERM)


_interrupted_exit: list[int] = []  # set when the command ends interrupted


def _skip_teardown() -> None:
    """The last exit handler: an interrupted command ends here, after the others (the tracking writer's
    flush among them) and without tearing down the interpreter, which with MLflow, SQLAlchemy and pandas
    loaded takes 1-4 s that a process manager's grace period (Kubernetes: 30 s) should not pay. Any other
    exit still tears the interpreter down, with every loaded object frozen first so that the teardown's
    garbage collections skip them (~0.7 s of `sweeps report`), and SIGINT, SIGTERM and SIGHUP ignored: the
    command's work is done, and late in the teardown Python puts the default handlers back, so that a Ctrl-C
    landing there killed the process by the signal (returncode -2) instead of letting it exit with its code."""
    if _interrupted_exit:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        os._exit(_interrupted_exit[0])
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)
    gc.freeze()


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if argv is None:  # the command line, not a call from Python code
        atexit.register(_skip_teardown)  # registered first, so it runs last
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")  # no internet here; MLflow would try
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")  # not "Creating initial MLflow database tables"
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    signal.signal(signal.SIGTERM, _on_stop)
    if signal.getsignal(signal.SIGHUP) is not signal.SIG_IGN:  # ignored (nohup): the terminal is not ours
        signal.signal(signal.SIGHUP, _on_stop)
    module, func = COMMANDS[args.command][2].split(":")
    try:
        import importlib

        handler = getattr(importlib.import_module(module), func)
        return int(handler(args) or 0)
    except KeyboardInterrupt:
        print(f"\ninterrupted (SIGINT){_resume_hint(args.command)}", file=sys.stderr)
        _interrupted_exit.append(EXIT_SIGINT)
        return EXIT_SIGINT
    except BaseException as e:  # every exit below is deliberate
        return _exit_for(e, args.command)


def _resume_hint(command: str) -> str:
    return "; run the same command again to resume" if command in ("run", "worker") else ""


def _exit_for(e: BaseException, command: str) -> int:
    from sweeps.errors import Interrupted, SweepError, UsageError

    # Before importing anything more: a SIGTERM as the command starts can land inside an import (of the
    # spec's YAML parser, say), which it leaves half done; importing that module again here would fail.
    if isinstance(e, Interrupted):
        print(f"\ninterrupted ({e.signal_name}){_resume_hint(command)}", file=sys.stderr)
        _interrupted_exit.append(e.exit_code)
        return e.exit_code
    if isinstance(e, SystemExit):
        raise e
    if isinstance(e, BrokenPipeError):  # `sweeps trials --json | head`: the reader has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error when Python flushes
        return EXIT_FAILURE
    from optcore import DivergenceError, OptcoreError
    from sweeps.spec import SpecError

    # optcore's errors for what the user gave (a table file, its columns, a loader) are usage errors too.
    if isinstance(e, SpecError | UsageError | SweepError) or (
        isinstance(e, OptcoreError) and not isinstance(e, DivergenceError)
    ):
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USAGE
    from tracking import TrackingError, redact
    from tracking.errors import BadStoreUrl

    if isinstance(e, BadStoreUrl):  # the URL as given cannot work: a usage error
        print(f"error: {redact(str(e))}", file=sys.stderr)
        return EXIT_USAGE
    if isinstance(e, TrackingError):
        print(f"error: {redact(str(e))}", file=sys.stderr)
        return EXIT_FAILURE
    if os.environ.get("SWEEPS_DEBUG"):
        raise e
    from tracking.disk_full import disk_full

    if full := disk_full(e):
        print(
            f"error: the disk is full ({redact(full)}); free some space, then run the same command again to resume",
            file=sys.stderr,
        )
        return EXIT_FAILURE
    first = (redact(str(e)).strip().splitlines() or [""])[0]  # library texts go on for lines (SQL, parameters)
    print(f"error: {type(e).__name__}: {first} (set SWEEPS_DEBUG=1 for the traceback)", file=sys.stderr)
    return EXIT_FAILURE


if __name__ == "__main__":
    sys.exit(main())
