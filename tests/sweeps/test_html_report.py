"""The sweep report through the real CLI: drawn at the end of `run` (not with --no-report), logged to the parent
run with the importance metrics, redrawn by `sweeps report --out`, and opened in headless Chromium as a person
would, to see every figure drawn without a network and without console errors."""

from __future__ import annotations

import contextlib
import fcntl
import gc
import json
import os
import pty
import re
import select
import shutil
import struct
import subprocess
import sys
import termios
from dataclasses import dataclass
from pathlib import Path

import mlflow
import pytest

from tests.conftest import SWEEPS, cli_env, new_workdir, run_cli

REPORT_ON = {"SWEEPS_NO_REPORT": ""}  # tests/conftest.py turns the report off for every other test
# The tiny spec searches batch_size, optimizer, lr, beta1 and schedule: history, parallel coordinates,
# importances for final_val_cost and for train_seconds, slices, the (batch_size, lr) contour, the curves.
EXPECTED = [
    "history",
    "parallel",
    "importance-final_val_cost",
    "importance-train_seconds",
    "slice",
    "contour-batch_size-lr",
    "curves",
]
CHROMIUM = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)


def _parent(workdir: Path):
    client = mlflow.MlflowClient(f"sqlite:///{workdir / 'mlflow.db'}")
    exp = client.get_experiment_by_name("tiny")
    (parent,) = client.search_runs([exp.experiment_id], filter_string="tags.role = 'sweep'")
    return client, parent


@dataclass
class AtTerminal:
    """What a command run at a terminal left: its exit code, the screen's text (colours left out), its child
    processes (pid -> (process name, command line)) as seen while it ran, and for each child's name the
    text on the screen when it was first seen."""

    code: int
    screen: str
    children: dict[int, tuple[str, str]]
    screen_before: dict[str, str]


def run_at_terminal(*args: str, cwd: Path, env: dict[str, str]) -> AtTerminal:
    """``sweeps ARGS`` with stdout and stderr on a pseudo-terminal of 80 columns, as a person runs it."""
    main, side = pty.openpty()
    fcntl.ioctl(side, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 80, 0, 0))
    proc = subprocess.Popen(
        [str(SWEEPS), *args], cwd=cwd, env={**cli_env(), **env}, stdin=subprocess.DEVNULL, stdout=side, stderr=side
    )
    os.close(side)
    screen, children, seen_at = b"", {}, {}
    try:
        while True:
            for pid in Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split():
                with contextlib.suppress(OSError):
                    cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
                    children[int(pid)] = name, _ = (Path(f"/proc/{pid}/comm").read_text().strip(), cmdline)
                    seen_at.setdefault(name, len(screen))
            if select.select([main], [], [], 0.05)[0]:
                try:
                    screen += os.read(main, 65536)
                except OSError:  # the command exited: its side of the terminal is closed
                    break
    except FileNotFoundError:  # the command exited between two looks
        pass
    finally:
        proc.wait(timeout=300)
        os.close(main)

    def text(raw: bytes) -> str:
        return re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", raw.decode(errors="replace")).replace("\r\n", "\n")

    return AtTerminal(proc.returncode, text(screen), children, {k: text(screen[:n]) for k, n in seen_at.items()})


@pytest.fixture(scope="module")
def swept_at_terminal(tmp_path_factory, template_db) -> tuple[Path, AtTerminal]:
    """A tiny sweep of 4 trials: 3 with --no-report, then the 4th at a terminal, with its progress bar and
    the report drawn at the end of `run`."""
    from tests.conftest import TINY_SPEC

    root = tmp_path_factory.mktemp("report")
    (root / "tiny.yaml").write_text(TINY_SPEC)
    new_workdir(root / ".sweeps", template_db)
    run_cli("run", "tiny.yaml", "--trials", "3", "--quiet", "--no-report", cwd=root, env=REPORT_ON, check=True)
    assert not list((root / ".sweeps").glob("*.html")), "--no-report drew a report"
    done = run_at_terminal("run", "tiny.yaml", cwd=root, env=REPORT_ON)
    assert done.code == 0, done.screen
    assert f"report: {root / '.sweeps' / 'tiny-report.html'}" in done.screen
    return root, done


@pytest.fixture(scope="module")
def swept(swept_at_terminal) -> Path:
    return swept_at_terminal[0]


def test_at_a_terminal_the_writer_and_the_report_child_are_forked_before_the_bar_starts(swept_at_terminal):
    """rich redraws the bar from a thread of its own, and a process with two threads must not fork: the bar
    starts after the tracking writer and the report child are forked (a spawned writer loads MLflow again,
    ~2 s of a core)."""
    _, done = swept_at_terminal
    names = {name for name, _ in done.children.values()}
    assert {"sweeps-report", "tracking-writer"} <= names, done.children  # forked: named as such
    assert not [cmd for _, cmd in done.children.values() if "tracking.writer.server" in cmd], "a spawned writer"
    assert "4/4" in done.screen and "━" in done.screen, "the live bar was drawn"


def test_at_a_terminal_the_bar_shows_at_once_and_the_live_bar_takes_its_line(swept_at_terminal):
    """The bar is drawn once as the command starts (no thread: the children are still to be forked), so a
    person sees the sweep starting while MLflow loads; the live bar then goes up a line and redraws it."""
    _, done = swept_at_terminal
    starting = done.screen_before["tracking-writer"]  # the writer is forked once MLflow is loaded
    assert re.search(r"trials [━╸╺]+\s+3/4 · best — · starting", starting), done.screen
    raw_bar_lines = [line for line in done.screen.split("\n") if "━" in line]
    assert raw_bar_lines and "4/4" in raw_bar_lines[-1]


def test_run_draws_a_self_contained_report_logged_to_the_parent_run(swept):
    page = (swept / ".sweeps" / "tiny-report.html").read_text()
    assert re.findall(r'data-figure="([^"]+)"', page) == EXPECTED
    assert page.count("plotly.js v") == 1, "plotly.js embedded once"
    assert not re.search(r"<script[^>]+src=|<link[^>]+href=\"http", page), "nothing to fetch when opened"
    # provenance: spec, dataset fingerprint, versions, and the confirmed-winner place
    client, parent = _parent(swept / ".sweeps")
    assert parent.data.tags["dataset_fingerprint"] in page and "optuna" in page and "n_samples: 400" in page
    assert 'id="confirmed"' in page and "No setting confirmed yet" in page
    assert "within noise" in page and "consider fixing" in page
    # the parent run holds the file and importance.<param> (fANOVA on the objective) with its interval
    assert [a.path for a in client.list_artifacts(parent.info.run_id, "report")] == ["report/tiny-report.html"]
    metrics = parent.data.metrics
    for param in ("batch_size", "optimizer", "lr", "beta1", "schedule"):
        key = f"importance.{param}"
        assert metrics[f"{key}.low"] <= metrics[key] <= metrics[f"{key}.high"]
    assert sum(metrics[f"importance.{p}"] for p in ("batch_size", "optimizer", "lr", "beta1", "schedule")) == (
        pytest.approx(1.0)
    )
    assert any(k.startswith("importance.train_seconds.ped_anova.") for k in metrics)


@pytest.mark.skipif(CHROMIUM is None, reason="needs Chromium (/usr/bin/chromium; apt-get install chromium)")
def test_report_opens_in_chromium_with_every_figure_drawn(swept):
    out = swept / "out" / "tiny.html"
    done = run_cli("report", "tiny.yaml", "--out", out, "--bootstrap", "4", cwd=swept, check=True)
    assert done.stdout.strip() == f"report: {out}"
    # --dump-dom prints the page after its scripts ran; file:// and no network: it must draw from what it holds
    shown = subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            f"--user-data-dir={swept / 'chromium'}",
            "--enable-logging=stderr",
            "--v=0",
            "--virtual-time-budget=20000",
            "--dump-dom",
            out.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=180,
    )
    dom = shown.stdout
    sections = re.findall(r'<section class="figure" data-figure="([^"]+)">(.*?)</section>', dom, flags=re.S)
    assert [key for key, _ in sections] == EXPECTED
    for key, body in sections:
        assert "js-plotly-plot" in body and 'class="main-svg"' in body, f"figure {key} not drawn"
    # the page's console messages (console.error, uncaught exceptions) appear as INFO:CONSOLE lines: none at all
    assert [line for line in shown.stderr.splitlines() if ":CONSOLE" in line] == []


CHILD_SCRIPT = """
import json, os, sys
from sweeps.results import report_child
from sweeps.results.html_report import compose, read_records, records_for_child, report_key, write_report
from sweeps.spec import load_spec
from sweeps.study.runner import load_result

# Forked first, while this program has one thread, as `sweeps run` forks its child: they load what they
# need while this one loads the study and MLflow's records.
child, gone, unasked, early, reader, drawer, lost, stuck = (report_child.start() for _ in range(8))
gone._proc.kill()
unasked._proc.stdin.close()  # the command ended without asking: the child leaves by itself
spec = load_spec("tiny.yaml")
result = load_result(spec)
records = read_records(result)
child.begin(spec, result, records, 2)
key, *by_child = child.collect()
handed = records_for_child(result)  # None: the embedded store is read directly, by the child itself
reader.begin(spec, result, handed, 2)
_, *read_by_child = reader.collect()
# Asked for the parent run's summary too (as `sweeps run` asks on a store written directly): it answers that
# first, then the report; a child gone answers nothing, and the command draws the summary itself.
import tracking
from sweeps.study.parent_run import summary_settings
client = tracking.make_client(result.stores.tracking_uri)
sweep = tracking.SweepRun(
    client=client, tracking_uri=result.stores.tracking_uri, experiment_name="tiny", study_name="tiny",
    experiment_id=client.get_run(result.parent_run_id).info.experiment_id, run_id=result.parent_run_id,
)
summaries = lambda: len(client.get_metric_history(result.parent_run_id, "n_trials"))
before = summaries()
drawer.begin(spec, result, None, 2, summary=sweep.summary_request(**summary_settings(spec)))
drawn = drawer.summary_drawn()
summary_drawn_there = drawn and summaries() == before + 1
_, *drawn_by_child = drawer.collect()
lost._proc.kill()
lost.begin(spec, result, None, 2, summary=sweep.summary_request(**summary_settings(spec)))
lost_drawn = lost.summary_drawn()
# One that does not answer in time (stopped, as a hung child would be) is given up on and killed.
import signal, time
stuck.begin(spec, result, None, 2, summary=sweep.summary_request(**summary_settings(spec)))
os.kill(stuck.pid, signal.SIGSTOP)
report_child.SUMMARY_SECONDS = 1.0
started = time.monotonic()
stuck_drawn = stuck.summary_drawn()
stuck_waited = time.monotonic() - started
stuck_killed = not os.path.exists(f"/proc/{stuck.pid}")
key_is_the_results = key == report_key(spec, result)
alive = os.path.exists(f"/proc/{child.pid}") and open(f"/proc/{child.pid}/stat").read().split()[2] != "Z"
loaded_here = [m for m in ("sklearn", "plotly") if m in sys.modules]
here = compose(spec, result, records, 2)
fallback = write_report(spec, result, "fallback.html", bootstrap=2, log=False, child=gone)
early.begin(spec, result, records, 2)  # asked as the trials ended; then the study changes
result.study.set_user_attr("changed", "after the child was asked")
late = open(write_report(spec, result, "late.html", bootstrap=2, log=False, child=early)).read()
print(json.dumps({
    "pages": [by_child[0], here[0], read_by_child[0], drawn_by_child[0]], "tables": len(here[1]),
    "tables_equal": by_child[1] == here[1] == read_by_child[1] == drawn_by_child[1], "handed": handed is not None,
    "summary_drawn_there": summary_drawn_there, "lost_drawn": lost_drawn,
    "stuck": [stuck_drawn, stuck_waited < 10, stuck_killed],
    "key_is_the_results": key_is_the_results,
    "child_alive_after_answering": alive, "loaded_here_before_composing_here": loaded_here,
    "fallback": open(fallback).read(), "unasked_exited": unasked._proc.wait(60),
    "late_is_of_the_changed_study": f'content="{report_key(spec, result)}"' in late,
}))
"""


def test_the_report_child_composes_the_same_report_in_another_process(swept):
    """`sweeps run` forks a child that loads the report's libraries while the sweep trains and composes the
    page at the end: the same page and importances as composing it here, without this process loading
    scikit-learn or plotly, whether handed the MLflow records or reading them itself (and drawing the parent
    run's summary first when asked); the child leaves
    after answering, or when never asked; one that is gone, or that composed the report of a study that
    changed since, leaves the report to this process."""
    done = subprocess.run(
        [sys.executable, "-c", CHILD_SCRIPT], cwd=swept, capture_output=True, text=True, timeout=300, check=True
    )
    got = json.loads(done.stdout)
    # what differs between two drawings: the time drawn and plotly's random ids of its figures' elements
    varies = re.compile(r" · drawn [^<]*|[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
    pages = (varies.sub("", page) for page in [*got["pages"], got["fallback"]])
    by_child, here, read_by_child, drawn_by_child, fallback = pages
    assert by_child == here and re.findall(r'data-figure="([^"]+)"', here) == EXPECTED
    assert not got["handed"] and read_by_child == here  # the child read the MLflow records itself
    assert got["summary_drawn_there"] and drawn_by_child == here  # and drew the summary first when asked
    assert got["lost_drawn"] is False
    assert got["stuck"] == [False, True, True]  # not drawn, given up on after SUMMARY_SECONDS, killed
    assert got["key_is_the_results"]
    assert got["tables_equal"] and got["tables"] == 4  # two targets by two evaluators, same seeded intervals
    assert got["loaded_here_before_composing_here"] == [], "the page was composed in this process"
    assert not got["child_alive_after_answering"] and got["unasked_exited"]
    assert fallback == here
    assert got["late_is_of_the_changed_study"], "a report composed from other trials was drawn again here"


NO_SCIKIT_LEARN_SCRIPT = """
import json, sys
from sweeps.results import report_child
from sweeps.results.html_report import compose, read_records
from sweeps.spec import load_spec
from sweeps.study.runner import load_result

for step in report_child.WARM_UP:  # what the child loads while the trials train
    step()
spec = load_spec("tiny.yaml")
result = load_result(spec)
page, tables = compose(spec, result, read_records(result), 2)
loaded = "sklearn" in sys.modules
import optuna.importance
try:
    optuna.importance.FanovaImportanceEvaluator()
    optunas_fanova = "works"
except ImportError:
    optunas_fanova = "says scikit-learn is missing"
import sklearn.ensemble  # importable as ever
print(json.dumps({"loaded": loaded, "evaluators": sorted({t.evaluator for t in tables}), "optunas": optunas_fanova}))
"""


def test_the_report_child_composes_without_scikit_learn(swept):
    """The child loads Optuna's importance package with scikit-learn hidden (~1 s of CPU it never uses: our
    forest is NumPy), computes both evaluators' tables, and leaves scikit-learn importable; only Optuna's
    own fANOVA evaluator, unused, says it is missing in that process."""
    done = subprocess.run(
        [sys.executable, "-c", NO_SCIKIT_LEARN_SCRIPT], cwd=swept, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    got = json.loads(done.stdout)
    assert got == {"loaded": False, "evaluators": ["fanova", "ped_anova"], "optunas": "says scikit-learn is missing"}


def test_the_child_draws_the_figures_once_ahead_only_until_it_is_asked(monkeypatch, capfd):
    """The warm-up's last step draws each figure that does not show the importances once, on a made-up study,
    quietly, and stops as soon as a request is waiting (checked between figures)."""
    from sweeps.results import report_child, report_figures

    drawn: list[str] = []
    for key, build in list(report_figures.FIGURES.items()):
        monkeypatch.setitem(report_figures.FIGURES, key, lambda data, _b=build, _k=key: drawn.append(_k) or _b(data))
    ahead = [key for key in report_figures.FIGURES if key not in report_figures.SHOW_IMPORTANCES]
    report_child._draw_ahead(asked=lambda: True)
    assert drawn == []
    report_child._draw_ahead(asked=lambda: len(drawn) >= 2)
    assert drawn == ahead[:2]
    drawn.clear()
    report_child._draw_ahead(asked=lambda: False)
    assert drawn == ahead and len(ahead) >= 4
    assert capfd.readouterr() == ("", "")


def test_bad_options_say_so_and_write_nothing(tmp_path, tiny_spec):
    bad = run_cli("report", tiny_spec, "--bootstrap", "-1", cwd=tmp_path)
    assert bad.returncode == 2 and bad.stderr.strip() == "error: --bootstrap must be ≥ 0; got -1"
    none = run_cli("report", tiny_spec, "--out", tmp_path / "r.html", cwd=tmp_path)
    assert none.returncode == 2 and "no sweep named 'tiny'" in none.stderr and len(none.stderr.splitlines()) == 1
    assert not (tmp_path / "r.html").exists() and not (tmp_path / ".sweeps").exists()


def test_the_collector_is_paused_while_drawing_and_restored_after():
    from sweeps.results.html_report import collector_paused

    assert gc.isenabled()
    with pytest.raises(RuntimeError), collector_paused():
        assert not gc.isenabled()
        raise RuntimeError("a failed draw")
    assert gc.isenabled() and gc.get_freeze_count() == 0, "what it left went to the oldest generation"
    assert gc.collect() >= 0  # and is collected as usual
    gc.disable()
    try:
        with collector_paused():
            pass
        assert not gc.isenabled(), "a collector paused by the caller stays paused"
    finally:
        gc.enable()


def test_the_within_noise_advice_names_the_parameters_or_says_there_are_none():
    """The advice under an importance table names the parameters whose interval reaches the smallest
    importance; when none does (the least important one's own resamples all above its value, as happens
    with a bounded importance) it says so, rather than advising to fix an empty list."""
    from sweeps.results.html_report import importance_html
    from sweeps.results.importance import Importance, ImportanceTable

    noisy = ImportanceTable(
        "final_val_cost",
        "fanova",
        (Importance("optimizer", 0.8, 0.4, 0.9, False), Importance("lr", 0.05, 0.01, 0.2, True)),
        13,
        12,
    )
    clear = ImportanceTable(
        "train_seconds",
        "fanova",
        (Importance("batch_size", 0.97, 0.57, 0.97, False), Importance("lr", 0.001, 0.004, 0.15, False)),
        13,
        12,
    )
    page = importance_html([noisy, clear])
    assert "Within noise (interval reaches the smallest importance, 0.050): lr — consider fixing it" in page
    assert "No interval reaches the smallest importance (0.001): none is marked within noise." in page
    assert page.count("consider fixing") == 1


@pytest.mark.parametrize(
    ("resamples", "heading", "rough"),
    [(12, "80% interval", True), (200, "94% interval", True), (400, "95% interval", False), (0, "interval", False)],
)
def test_the_importance_interval_is_labelled_with_what_it_encloses(resamples, heading, rough):
    """A percentile interval over 12 resamples encloses ~80 % of the resampled importances on average, not
    95 %: the table's heading says the level its resamples give and the caption says why it is rough; no
    interval without resamples."""
    from sweeps.results.html_report import importance_html
    from sweeps.results.importance import Importance, ImportanceTable

    rows = (Importance("optimizer", 0.8, 0.4, 0.9, False), Importance("lr", 0.05, 0.01, 0.2, True))
    page = importance_html([ImportanceTable("final_val_cost", "fanova", rows, 20, resamples)])
    assert f"<th>{heading}</th>" in page
    assert "95% interval" not in page or heading == "95% interval"
    assert ("not 95%: a rough spread" in page) == rough
    assert (f"{resamples} bootstrap resamples: no interval" in page) == (resamples == 0)
