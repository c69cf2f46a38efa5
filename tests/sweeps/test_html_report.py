"""The sweep report through the real CLI: drawn at the end of `run` (not with --no-report), logged to the parent
run with the importance metrics, redrawn by `sweeps report --out`, and opened in headless Chromium as a person
would, to see every figure drawn without a network and without console errors."""

from __future__ import annotations

import gc
import re
import shutil
import subprocess
from pathlib import Path

import mlflow
import pytest

from tests.conftest import new_workdir, run_cli

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


@pytest.fixture(scope="module")
def swept(tmp_path_factory, template_db) -> Path:
    """A tiny sweep of 4 trials: 3 with --no-report, then the 4th with the report drawn at the end of `run`."""
    from tests.conftest import TINY_SPEC

    root = tmp_path_factory.mktemp("report")
    (root / "tiny.yaml").write_text(TINY_SPEC)
    new_workdir(root / ".sweeps", template_db)
    run_cli("run", "tiny.yaml", "--trials", "3", "--quiet", "--no-report", cwd=root, env=REPORT_ON, check=True)
    assert not list((root / ".sweeps").glob("*.html")), "--no-report drew a report"
    done = run_cli("run", "tiny.yaml", "--quiet", cwd=root, env=REPORT_ON, check=True)
    assert f"report: {root / '.sweeps' / 'tiny-report.html'}" in done.stdout
    return root


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
