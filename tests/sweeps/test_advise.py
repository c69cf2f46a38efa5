"""``sweeps batch-size --advise`` / ``--measure-steps`` through the real CLI against a real MLflow store: bad
combinations fail before anything is written; a run predicts from its pilot by the paper's formulas, measures,
fits, and leaves its runs, report and plots under the batch-size parent."""

from __future__ import annotations

import json

import mlflow
import pytest

import tracking
from sweeps.batchsize.advise import advise_batch_size, check_factors, measure_sizes
from sweeps.errors import UsageError
from sweeps.spec import load_spec
from tests.conftest import TINY_SPEC, new_workdir, run_cli

FIXED = [
    "--set",
    "search.optimizer.value=adam",
    "--set",
    "search.lr.value=0.02",
    "--set",
    "search.beta1.value=0.9",
    "--set",
    "search.schedule.value=constant",
]


def test_advise_without_a_target_fails_before_anything_is_written(tiny_spec, tmp_path):
    proc = run_cli("batch-size", tiny_spec, *FIXED, "--advise", "--workdir", tmp_path / "wd", cwd=tmp_path)
    assert proc.returncode == 2 and "error: --advise needs --target-cost C" in proc.stderr
    assert "Traceback" not in proc.stderr and not (tmp_path / "wd").exists()
    proc = run_cli("batch-size", tiny_spec, *FIXED, "--lr-factors", "1,2", "--workdir", tmp_path / "wd", cwd=tmp_path)
    assert proc.returncode == 2 and "belong to --advise or --measure-steps; add one" in proc.stderr
    assert not (tmp_path / "wd").exists()


@pytest.mark.parametrize(
    ("overrides", "kwargs", "message"),
    [
        ([], {"target_cost": 0.0}, "--target-cost: 0.0 is not allowed; give a validation cost > 0"),
        ([], {"lr_factors": [1, -2]}, "--lr-factors: -2 is not allowed"),
        ([], {"pilot_size": 1}, "--pilot-size: 1 is not allowed"),
        ([], {"sizes": [16, 64], "measure_steps": True}, "--measure-steps: give at least 3 sizes"),
        (["search.schedule.value=cosine"], {}, "hold schedule at constant"),
    ],
)
def test_bad_combinations_fail_before_anything_is_written(tmp_path, overrides, kwargs, message):
    spec = load_spec(TINY_SPEC, [*(a for a in FIXED if a != "--set"), *overrides])
    with pytest.raises(UsageError, match=message):
        advise_batch_size(spec, **{"sizes": [16, 64], "target_cost": 0.3, **kwargs, "workdir": tmp_path / "wd"})
    assert not (tmp_path / "wd").exists()


def test_defaults_and_factor_checks():
    assert measure_sizes(5000) == [8, 16, 32, 64, 128, 256, 512, 1024]
    assert measure_sizes(300) == [8, 16, 32, 64, 128, 256, 300]
    assert check_factors([2, 0.5, 1]) == [0.5, 1.0, 2.0]
    with pytest.raises(UsageError, match="1 is listed twice"):
        check_factors([1, 1.0])
    spec = load_spec(TINY_SPEC, [a for a in FIXED if a != "--set"])
    with pytest.raises(UsageError, match="--advise needs --target-cost"):
        advise_batch_size(spec, [16, 64])


def test_measure_steps_predicts_measures_fits_and_tracks(tiny_spec, tmp_path, template_db):
    wd = new_workdir(tmp_path / "wd", template_db)  # migrated before the clock of the CLI starts
    proc = run_cli(
        # he init pinned: with optcore's pick for tanh (xavier) this tiny problem reaches the target in about
        # as many steps at every size, and the fit of S_min(1 + B_crit/B) is refused (a note, no fit)
        "batch-size", tiny_spec, *FIXED, "--set", "model.init=he", "--measure-steps", "--target-cost", "0.35",
        "--sizes", "16,64,256",
        "--lr-factors", "1", "--budget", "epochs=60", "--json", "--workdir", wd, cwd=tmp_path, check=True,
    )  # fmt: skip
    report = json.loads(proc.stdout)
    assert report["mode"] == "measure-steps" and "pilot: batch size 64" in proc.stderr

    # the prediction, recomputed from the pilot by the paper's formulas
    pilot, b_noise = report["pilot"], report["b_noise"]
    assert pilot["batch_size"] == 64 and b_noise == pilot["b_noise"] > 0
    s_min = pilot["steps"] / (1 + b_noise / 64)
    assert report["s_min"] == pytest.approx(s_min)
    for row in report["rows"]:
        b = row["batch_size"]
        assert row["predicted_steps"] == pytest.approx(s_min * (1 + b_noise / b))
        assert row["predicted_samples"] == pytest.approx(s_min * b_noise * (1 + b / b_noise))
        assert row["predicted_seconds"] == pytest.approx(row["predicted_samples"] / row["throughput"])
        assert row["measured_steps"] is not None and row["measured_lr"] == 0.02
    best = min(report["rows"], key=lambda r: (r["predicted_seconds"], r["batch_size"]))
    assert report["recommended"] == best["batch_size"]
    fit = report["fit"]
    assert fit["sizes_used"] == 3 and report["b_noise_over_b_crit"] == pytest.approx(b_noise / fit["b_crit"])

    # MLflow: the batch-size experiment's parent holds the outcome, the report, the plots; one child per run
    client = mlflow.MlflowClient(f"sqlite:///{wd / 'mlflow.db'}")
    parent = client.get_run(report["parent_run_id"])
    assert client.get_experiment(parent.info.experiment_id).name == "tiny-batch-size"
    assert parent.info.status == "FINISHED" and parent.data.tags["mode"] == "measure-steps"
    assert parent.data.tags["recommended_batch_size"] == str(report["recommended"])
    assert parent.data.metrics["fit_b_crit"] == pytest.approx(fit["b_crit"])
    assert [m.step for m in client.get_metric_history(parent.info.run_id, "measured_steps")] == [16, 64, 256]
    files = {f.path for f in client.list_artifacts(parent.info.run_id)}
    files |= {f.path for f in client.list_artifacts(parent.info.run_id, "plots")}
    assert {"advice_report.json", "plots/steps_vs_samples.png", "plots/predicted_vs_measured.png"} <= files
    kids = client.search_runs(
        [parent.info.experiment_id], filter_string=f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'"
    )
    names = sorted(r.data.tags["mlflow.runName"] for r in kids)
    assert names == [*(f"bs-{b:04d}-lr-0.02-seed-1" for b in (16, 64, 256)), "pilot-bs-0064-lr-0.02-seed-1"]
    pilot_run = next(r for r in kids if r.info.run_id == pilot["run_ids"][0])
    curve = client.get_metric_history(pilot_run.info.run_id, "val_cost")
    assert curve[-1].step == pilot["steps"] and curve[-1].value <= 0.35 < min(p.value for p in curve[:-1])
    assert client.get_metric_history(pilot_run.info.run_id, "noise_scale")


def test_advise_from_python_reports_and_prints(tmp_path):
    from rich.console import Console

    from sweeps.batchsize.advise_report import print_advice

    spec = load_spec(TINY_SPEC, [a for a in FIXED if a != "--set"])
    cheap = {"lr_factors": [1], "budget": ("epochs", 60), "throughput_seconds": 0.05}
    report = advise_batch_size(spec, [16, 64], target_cost=0.35, workdir=tmp_path, **cheap)
    assert report.mode == "advise" and report.fit is None and report.noise_to_crit is None
    assert report.recommended in (16, 64) and set(report.best) == {16, 64}
    console = Console(record=True, width=200)
    print_advice(report, console=console)
    text = console.export_text()
    assert "recommended" in text and f"pilot: batch size {report.pilot.batch_size} at its best lr 0.02" in text
    assert "fit S = " not in text and report.to_dict()["fit"] is None
    parent = mlflow.MlflowClient(tracking.default_tracking_uri(tmp_path)).get_run(report.parent_run_id)
    assert parent.data.tags["mode"] == "advise" and parent.info.status == "FINISHED"


def test_a_pilot_that_never_reaches_the_target_is_an_error_and_a_failed_parent(tmp_path):
    from sweeps.errors import SweepError

    spec = load_spec(TINY_SPEC, [a for a in FIXED if a != "--set"])
    with pytest.raises(SweepError, match="no pilot run at batch size 64 reached the target \\(epochs=1\\)"):
        advise_batch_size(spec, [16, 64], target_cost=1e-6, lr_factors=[1], budget=("epochs", 1), workdir=tmp_path)
    client = mlflow.MlflowClient(tracking.default_tracking_uri(tmp_path))
    (parent,) = client.search_runs(
        [client.get_experiment_by_name("tiny-batch-size").experiment_id], filter_string="tags.role = 'sweep'"
    )
    assert parent.info.status == "FAILED"
