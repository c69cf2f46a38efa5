"""``sweeps batch-size``: argument checks, held settings, both budgets, the statistics and the MLflow layout,
against a real MLflow SQLite store (and a real Optuna journal for --from-best)."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import mlflow
import numpy as np
import pytest
from rich.console import Console
from scipy import stats

import tracking
from sweeps.batchsize.budget import MAX_EPOCHS, Budget, check_budget, parse_budget
from sweeps.batchsize.held_setting import held_setting
from sweeps.batchsize.select import check_sizes, select_batch_size
from sweeps.cli.batch_size import parse_sizes, print_report
from sweeps.errors import SweepError, UsageError
from sweeps.optcore_adapter import trial_seed
from sweeps.spec import SpecError, load_spec
from tests.conftest import TINY_SPEC, new_workdir, run_cli

FIXED = [
    "search.optimizer.value=adam",
    "search.lr.value=0.02",
    "search.beta1.value=0.9",
    "search.schedule.value=constant",
]
SIZES = [16, 64]


def fixed_spec(*extra: str):
    return load_spec(TINY_SPEC, [*FIXED, *extra])


def client(workdir: Path) -> mlflow.MlflowClient:
    return mlflow.MlflowClient(tracking.default_tracking_uri(workdir))


def children(workdir: Path, parent_id: str):
    c = client(workdir)
    runs = c.search_runs(
        [c.get_run(parent_id).info.experiment_id], filter_string=f"tags.`mlflow.parentRunId` = '{parent_id}'"
    )
    return sorted(runs, key=lambda r: int(r.data.tags["trial_number"]))


@pytest.fixture(scope="module")
def epochs_run(tmp_path_factory, template_db):
    """One equal-epochs comparison, run twice in the same store (a rerun must work and agree)."""
    wd = new_workdir(tmp_path_factory.mktemp("epochs") / "wd", template_db)
    spec = fixed_spec()
    kwargs = dict(repeats=2, budget=("epochs", 3), target_cost=0.45, workdir=wd)
    return wd, select_batch_size(spec, SIZES, **kwargs), select_batch_size(spec, SIZES, **kwargs)


# ---------------------------------------------------------------------------------------------------------
# Arguments and the held setting: checked before anything is written.


@pytest.mark.parametrize(
    ("text", "expected"),
    [("epochs=5", Budget("epochs", 5)), ("seconds=2.5", Budget("seconds", 2.5)), (" seconds = 3 ", ("seconds", 3.0))],
)
def test_parse_budget(text, expected):
    assert parse_budget(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("epochs", "give epochs=E or seconds=S"),
        ("minutes=3", "give epochs=E or seconds=S"),
        ("epochs=2.5", r"epochs must be a whole number of epochs in \[1, 10,000\]"),
        ("epochs=0", r"epochs must be a whole number of epochs in \[1, 10,000\]"),
        ("epochs=1e400", r"epochs must be a whole number of epochs in \[1, 10,000\]"),
        ("epochs=-inf", r"epochs must be a whole number of epochs in \[1, 10,000\]"),
        ("epochs=1e9", r"epochs=1000000000 is not allowed; epochs must be a whole number of epochs in \[1, 10,000\]"),
        ("seconds=-1", "seconds must be a number of seconds > 0"),
        ("seconds=nan", "seconds must be a number of seconds > 0"),
        ("seconds=abc", "seconds must be a number of seconds > 0"),
    ],
)
def test_bad_budgets_are_usage_errors(text, message):
    with pytest.raises(UsageError, match=message):
        parse_budget(text)


def test_the_default_budget_is_the_specs_epochs():
    assert check_budget(None, fixed_spec("training.epochs=7")) == Budget("epochs", 7)


def test_any_sizes_in_range_are_allowed_and_others_named():
    assert check_sizes(parse_sizes("200, 96,384"), 400) == [96, 200, 384]
    for text, message in [
        ("64,abc", "'abc' is not a whole number"),
        ("0,64", "0 is not allowed; a batch size must be a whole number in \\[1, 300\\]"),
        ("64,301", "301 is not allowed"),
        ("64,64", "64 is listed twice"),
    ]:
        with pytest.raises(UsageError, match=message):
            check_sizes(parse_sizes(text), 300)


def test_held_setting_takes_fixed_values_and_skips_inactive_entries():
    assert held_setting(fixed_spec(), 32) == {
        "batch_size": 32,
        "optimizer": "adam",
        "lr": 0.02,
        "beta1": 0.9,
        "schedule": "constant",
    }
    # beta1 stays searched but exists only for batch size 32: fine for 64, an error for 32
    spec = load_spec(TINY_SPEC, [*FIXED[:2], FIXED[3], "search.beta1.when={batch_size: [32]}"])
    assert "beta1" not in held_setting(spec, 64)
    with pytest.raises(SpecError, match="beta1 is searched"):
        held_setting(spec, 32)
    best = {"batch_size": 128, "optimizer": "momentum", "lr": 0.05, "beta1": 0.85, "schedule": "cosine"}
    assert held_setting(load_spec(TINY_SPEC), 16, best) == {**best, "batch_size": 16}


def test_searched_entries_are_named_with_a_way_out():
    with pytest.raises(SpecError) as e:
        held_setting(load_spec(TINY_SPEC, ["search.lr.value=0.01"]), 32)
    message = str(e.value)
    assert message.startswith("search: optimizer, beta1, schedule are searched")
    assert "--set search.optimizer.value=momentum" in message and "--from-best" in message


def test_a_time_budget_refuses_a_schedule_with_a_fixed_horizon(tmp_path):
    spec = fixed_spec("search.schedule.value=cosine")
    with pytest.raises(UsageError, match="schedule 'cosine' decays over a fixed number of epochs"):
        select_batch_size(spec, SIZES, repeats=2, budget=("seconds", 0.1), workdir=tmp_path / "wd")
    with pytest.raises(UsageError, match="at least 2 seeds"):
        select_batch_size(fixed_spec(), SIZES, repeats=1, workdir=tmp_path / "wd")
    assert not (tmp_path / "wd").exists()


def test_from_best_without_a_sweep_says_so(tmp_path):
    with pytest.raises(SweepError, match="no sweep named 'tiny'"):
        select_batch_size(load_spec(TINY_SPEC), SIZES, repeats=2, from_best=True, workdir=tmp_path / "wd")


# ---------------------------------------------------------------------------------------------------------
# Equal epochs: the statistics, determinism, and the MLflow layout.


def test_equal_epochs_every_run_trains_the_same_epochs(epochs_run):
    _, report, _ = epochs_run
    assert report.budget == Budget("epochs", 3)
    assert [(r.batch_size, r.repeat) for r in report.runs] == [(16, 1), (64, 1), (16, 2), (64, 2)]  # interleaved
    assert all(r.epochs_run == 3 and r.failed is None for r in report.runs)
    assert [r.seed for r in report.runs] == [trial_seed(7, 1)] * 2 + [trial_seed(7, 2)] * 2
    assert report.to_dict()["budget"]["text"] == "equal epochs: 3 per run"
    assert any("2 seeds per size each test has 1 degree of freedom" in note for note in report.notes)


def test_the_statistics_agree_with_scipy(epochs_run):
    _, report, _ = epochs_run
    costs = {s: [r.final_val_cost for r in report.runs if r.batch_size == s] for s in SIZES}
    for row in report.rows:
        x = costs[row.batch_size]
        assert row.mean_cost == pytest.approx(np.mean(x)) and row.std_cost == pytest.approx(np.std(x, ddof=1))
        low, high = stats.t.interval(0.95, len(x) - 1, loc=np.mean(x), scale=stats.sem(x))
        assert (row.ci_low, row.ci_high) == pytest.approx((low, high))
        runs = [r for r in report.runs if r.batch_size == row.batch_size]
        # pooled: every sample trained over every second spent, so it agrees with the epochs and seconds columns
        n_train, seconds = runs[0].n_train, [sum(r.epoch_seconds) for r in runs]
        assert row.throughput == pytest.approx(len(runs) * n_train * 3 / sum(seconds))
        assert row.throughput == pytest.approx(n_train * row.epochs_run / row.train_seconds)
        hits = [next(i for i, c in enumerate(r.val_cost) if c <= 0.45) for r in runs if min(r.val_cost) <= 0.45]
        assert row.n_reached == len(hits)
        assert row.epochs_to_target == (pytest.approx(np.mean([i + 1 for i in hits])) if hits else None)
        reaching = [r for r in runs if min(r.val_cost) <= 0.45]
        to_seconds = [sum(r.epoch_seconds[: i + 1]) for r, i in zip(reaching, hits, strict=True)]
        assert row.seconds_to_target == (pytest.approx(np.mean(to_seconds)) if hits else None)
    chosen, other = sorted(SIZES, key=lambda s: np.mean(costs[s]))
    assert (report.chosen, report.runner_up) == (chosen, other)
    # repeat r trained both sizes with seed r: the paired test on per-seed differences (one pair: Holm is a no-op)
    p = stats.ttest_rel(costs[chosen], costs[other]).pvalue
    assert report.p_value == pytest.approx(p)
    assert report.distinguishable == (p < 0.05)
    assert report.tied == ([chosen] if p < 0.05 else sorted(SIZES))
    test = report.to_dict()["test"]
    assert test == {
        "name": "paired t-test on per-seed differences",
        "paired": True,
        "correction": "holm",
        "pairs": 1,
        "text": "paired t-test on per-seed differences, Holm-corrected over 1 pair, alpha 0.05",
    }
    assert test["text"] in report.verdict()


def test_the_same_seeds_give_the_same_choice(epochs_run):
    _, first, second = epochs_run
    assert [r.final_val_cost for r in first.runs] == [r.final_val_cost for r in second.runs]
    assert (first.chosen, first.p_value, first.tied) == (second.chosen, second.p_value, second.tied)
    assert first.parent_run_id != second.parent_run_id  # a rerun is a new comparison, not a crash


def test_runs_are_laid_out_in_mlflow(epochs_run):
    wd, report, _ = epochs_run
    c = client(wd)
    parent = c.get_run(report.parent_run_id)
    assert c.get_experiment(parent.info.experiment_id).name == "tiny-batch-size"
    assert parent.info.status == "FINISHED" and parent.data.tags["role"] == "sweep"
    assert parent.data.tags["chosen_batch_size"] == str(report.chosen)
    assert parent.data.tags["budget"] == "epochs=3"
    assert parent.data.tags["test"] == "paired t-test on per-seed differences, Holm-corrected over 1 pair, alpha 0.05"
    assert parent.data.params["alpha"] == "0.05"
    assert parent.data.params["sizes"] == "16,64" and parent.data.params["lr"] == "0.02"
    history = c.get_metric_history(report.parent_run_id, "mean_final_val_cost")
    assert {m.step: m.value for m in history} == pytest.approx({r.batch_size: r.mean_cost for r in report.rows})
    artifacts = {a.path for a in c.list_artifacts(report.parent_run_id, "plots")}
    names = ("val_cost_curves", "throughput", "cost_vs_seconds", "final_cost", "paired_differences")
    assert artifacts == {f"plots/{n}.png" for n in names}
    saved = json.loads(Path(c.download_artifacts(report.parent_run_id, "batch_size_report.json")).read_text())
    assert saved["chosen"] == report.chosen and len(saved["runs"]) == 4

    runs = children(wd, report.parent_run_id)
    assert len(runs) == 4
    for number, (run, result) in enumerate(zip(runs, report.runs, strict=True)):
        tags, params = run.data.tags, run.data.params
        assert run.info.run_name == f"bs-{result.batch_size:04d}-seed-{result.repeat}"
        assert (tags["batch_size"], tags["repeat"], tags["trial_number"]) == tuple(
            map(str, (result.batch_size, result.repeat, number))
        )
        assert run.info.run_id == result.run_id and run.info.status == "FINISHED"
        assert params["batch_size"] == str(result.batch_size) and params["seed"] == str(result.seed)
        assert params["optimizer"] == "adam"
        curve = c.get_metric_history(run.info.run_id, "val_cost")
        assert {m.step: m.value for m in curve} == pytest.approx(dict(enumerate(result.val_cost, start=1)))


# ---------------------------------------------------------------------------------------------------------
# Equal time, --from-best, and the real CLI.


def test_equal_time_trains_until_the_seconds_are_spent(tmp_path, template_db):
    wd = new_workdir(tmp_path / "wd", template_db)
    report = select_batch_size(fixed_spec(), [8, 150], repeats=2, budget=("seconds", 0.03), workdir=wd)
    assert report.budget == Budget("seconds", 0.03)
    assert "equal training time: 0.03 s" in report.to_dict()["budget"]["text"]
    for r in report.runs:
        # the budget is spent (optcore's tests check that the stop comes right after the step that spends it)
        assert r.train_seconds >= 0.03 and r.samples_seen < MAX_EPOCHS * r.n_train
        assert r.samples_seen % r.n_train % r.batch_size == 0  # whole steps: full batches of the last epoch
        assert r.epochs_trained == pytest.approx(r.samples_seen / r.n_train)
    row = {row.batch_size: row for row in report.rows}
    runs = [r for r in report.runs if r.batch_size == 150]
    assert row[150].throughput == pytest.approx(sum(r.samples_seen for r in runs) / sum(r.train_seconds for r in runs))
    assert row[150].epochs_run == pytest.approx(np.mean([r.epochs_trained for r in runs]))
    states = {r.data.tags["trial_state"] for r in children(wd, report.parent_run_id)}
    assert states == {"complete"}


def test_from_best_holds_the_best_setting_of_the_sweep_and_redraws_its_report(tiny_spec, tmp_path, template_db):
    from sweeps.results.html_report import REPORT_FILE
    from sweeps.study.runner import run

    wd = new_workdir(tmp_path / "wd", template_db)
    overrides = ["trials=2", "training.epochs=2"]
    sweep = run(load_spec(tiny_spec, overrides), workdir=wd)
    best, report_file = sweep.best_params, wd / f"tiny-{REPORT_FILE}"
    assert not report_file.exists()  # the API draws no report: what follows is batch-size's
    sets = [arg for item in overrides for arg in ("--set", item)]
    args = ["batch-size", tiny_spec, *sets, "--sizes", "16,64", "--repeats", "2", "--budget", "epochs=2"]
    env = {"SWEEPS_NO_REPORT": ""}  # the tests' default turns the report off
    proc = run_cli(*args, "--from-best", "--json", "--workdir", wd, cwd=tmp_path, check=True, env=env)
    data = json.loads(proc.stdout)  # the report's line went to stderr: stdout is the JSON alone
    assert data["held_from"] == "best"
    assert data["held_params"] == {k: v for k, v in best.items() if k != "batch_size"}
    for child in children(wd, data["parent_run_id"]):
        assert child.data.params["lr"] == str(best["lr"]) and child.data.params["optimizer"] == best["optimizer"]
    assert f"report: {report_file}" in proc.stderr.replace("\n", "")  # rich wraps long lines on stderr
    assert "<html" in report_file.read_text()
    logged = client(wd).list_artifacts(sweep.parent_run_id, "report")
    assert [a.path for a in logged] == [f"report/{report_file.name}"]


def test_cli_prints_json_and_tracks_the_runs(tiny_spec, tmp_path, template_db):
    wd = new_workdir(tmp_path / "wd", template_db)
    fixed = [arg for item in FIXED for arg in ("--set", item)]
    args = ["batch-size", tiny_spec, *fixed, "--sizes", "64,16", "--repeats", "2", "--budget", "epochs=2"]
    proc = run_cli(*args, "--json", "--workdir", wd, cwd=tmp_path, check=True)
    data = json.loads(proc.stdout)
    assert data["sizes"] == [16, 64] and data["budget"]["kind"] == "epochs" and data["chosen"] in (16, 64)
    assert [row["batch_size"] for row in data["rows"]] == [16, 64]
    assert len(children(wd, data["parent_run_id"])) == 4
    assert "[4/4] batch size 64, seed 2" in proc.stderr


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--sizes", "0,16"], "error: --sizes: 0 is not allowed"),
        (["--budget", "hours=1"], "error: --budget: 'hours=1' is not allowed"),
        (["--repeats", "1"], "error: --repeats: 1 is not allowed"),
    ],
)
def test_cli_usage_errors_write_nothing(tiny_spec, tmp_path, extra, message):
    fixed = [arg for item in FIXED for arg in ("--set", item)]
    proc = run_cli("batch-size", tiny_spec, *fixed, *extra, "--workdir", tmp_path / "wd", cwd=tmp_path)
    assert proc.returncode == 2 and proc.stderr.startswith(message) and proc.stderr.count("\n") == 1
    assert not (tmp_path / "wd").exists()


def test_cli_names_the_searched_entries(tiny_spec, tmp_path):
    proc = run_cli("batch-size", tiny_spec, "--workdir", tmp_path / "wd", cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: search: optimizer, lr, beta1, schedule are searched")
    assert not (tmp_path / "wd").exists()


def test_cli_csv_is_the_table_at_full_precision(tiny_spec, tmp_path, template_db, epochs_run):
    _, report, _ = epochs_run
    wd = new_workdir(tmp_path / "wd", template_db)
    fixed = [arg for item in FIXED for arg in ("--set", item)]
    args = ["batch-size", tiny_spec, *fixed, "--sizes", "16,64", "--repeats", "2", "--budget", "epochs=3"]
    proc = run_cli(*args, "--target-cost", "0.45", "--csv", "--workdir", wd, cwd=tmp_path, check=True)
    rows = list(csv.DictReader(io.StringIO(proc.stdout)))
    assert list(rows[0]) == [
        "batch_size", "runs", "failed", "mean_final_val_cost", "std_final_val_cost", "ci95_low", "ci95_high",
        "p_vs_chosen", "p_vs_chosen_holm", "tied", "throughput", "mean_epochs", "mean_train_seconds",
        "reached_target", "epochs_to_target", "seconds_to_target", "chosen", "fastest_tied",
    ]  # fmt: skip
    # the same seeds as the in-process comparison: the same costs, to the last digit printed
    for row, expected in zip(rows, report.rows, strict=True):
        assert int(row["batch_size"]) == expected.batch_size and row["runs"] == "2"
        assert float(row["mean_final_val_cost"]) == pytest.approx(expected.mean_cost, rel=1e-9)
        assert float(row["ci95_low"]) == pytest.approx(expected.ci_low, rel=1e-9)
        assert row["chosen"] == str(expected.batch_size == report.chosen)
        assert (row["p_vs_chosen"] == "") == (expected.batch_size == report.chosen)  # no test against itself


def test_cli_json_and_csv_together_is_a_usage_error(tiny_spec, tmp_path):
    proc = run_cli("batch-size", tiny_spec, "--json", "--csv", "--workdir", tmp_path / "wd", cwd=tmp_path)
    assert proc.returncode == 2 and proc.stderr == "error: --json and --csv: give one of them, not both\n"
    assert not (tmp_path / "wd").exists()


@pytest.mark.parametrize("width", [80, 100, 250])
def test_the_table_fits_the_terminal_without_cutting_a_cell(epochs_run, width):
    _, report, _ = epochs_run
    console = Console(file=io.StringIO(), width=width, force_terminal=True, color_system=None)
    print_report(report, console=console)
    text = console.file.getvalue()
    lines = text.splitlines()
    assert max(map(len, lines)) <= width and "…" not in text
    for row in report.rows:  # every size's cells, whole
        line = next(line for line in lines if line.lstrip().startswith(f"{row.batch_size} "))
        assert f"{row.mean_cost:#.3g} ± {row.std_cost:#.3g}" in line
        assert f"{row.throughput:,.0f}" in text
    assert " ".join(report.verdict().split()) in " ".join(text.split())  # wrapped at words, whole
    # one table when it fits (size, cost, interval, p, time columns, targets), two when it does not
    # (a header's first column is padded; the verdict, wrapped at words, may start a line with "size itself)")
    headers = [line for line in lines if line.startswith("size  ")]
    assert text.count("samples/s ") == 1 and len(headers) == (1 if width == 250 else 2)
