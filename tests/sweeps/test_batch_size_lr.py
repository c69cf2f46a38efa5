"""``sweeps batch-size --lr-rule``: the rules' formulas, their checks (before anything is written), the seeded
per-size search on real Optuna, and the tracked runs through the real CLI and a real MLflow store."""

from __future__ import annotations

import io
import json
import math
from pathlib import Path

import mlflow
import pytest
from rich.console import Console

import tracking
from sweeps.batchsize.lr_rule import LR_RULES, LrPlan, choose_rates, plan_lr, scaled_lr
from sweeps.batchsize.select import select_batch_size
from sweeps.cli.batch_size import print_report
from sweeps.errors import UsageError
from sweeps.optcore_adapter import trial_seed
from sweeps.spec import SpecError, load_spec
from tests.conftest import TINY_SPEC, new_workdir, run_cli

HELD = ["search.optimizer.value=adam", "search.beta1.value=0.9", "search.schedule.value=constant"]
FIXED = [*HELD, "search.lr.value=0.02"]


def spec_with(*overrides: str):
    return load_spec(TINY_SPEC, list(overrides))


def sets(items) -> list[str]:
    return [arg for item in items for arg in ("--set", item)]


def children(workdir: Path, parent_id: str):
    c = mlflow.MlflowClient(tracking.default_tracking_uri(workdir))
    runs = c.search_runs(
        [c.get_run(parent_id).info.experiment_id], filter_string=f"tags.`mlflow.parentRunId` = '{parent_id}'"
    )
    return c, sorted(runs, key=lambda r: int(r.data.tags["trial_number"]))


# ---------------------------------------------------------------------------------------------------------
# The rules and their checks.


@pytest.mark.parametrize(
    ("rule", "size", "reference", "expected"),
    [
        ("fixed", 512, 128, 0.02),
        ("linear", 512, 128, 0.02 * 512 / 128),
        ("linear", 32, 128, 0.02 / 4),
        ("sqrt", 512, 128, 0.02 * 2),
        ("sqrt", 32, 128, 0.02 / 2),
        ("sqrt", 200, 128, 0.02 * math.sqrt(200 / 128)),
    ],
)
def test_scaled_rates_follow_their_formulas(rule, size, reference, expected):
    assert scaled_lr(rule, size, reference, 0.02) == pytest.approx(expected, rel=1e-12)
    assert LrPlan(rule, held_lr=0.02, reference=reference).rate(size) == pytest.approx(expected, rel=1e-12)


def test_tuned_is_not_a_formula():
    assert LR_RULES["tuned"].scale is None
    with pytest.raises(ValueError, match="searched per size"):
        scaled_lr("tuned", 64, 64, 0.01)


def test_the_tuned_range_is_the_specs_or_a_decade_either_side_of_the_held_rate():
    plan = plan_lr(spec_with(*HELD), "tuned", trials=3)  # TINY_SPEC: lr {low: 0.001, high: 0.1, log: true}
    assert (plan.low, plan.high, plan.range_from, plan.trials, plan.seed) == (0.001, 0.1, "spec", 3, 7)
    plan = plan_lr(spec_with(*FIXED), "tuned")
    assert (plan.low, plan.high, plan.range_from, plan.trials) == (pytest.approx(0.002), pytest.approx(0.2), "held", 8)
    best = {"batch_size": 64, "optimizer": "adam", "lr": 0.005}
    plan = plan_lr(spec_with(*HELD, "search.lr={choices: [0.01, 0.1]}"), "tuned", best=best)
    assert (plan.low, plan.high, plan.range_from) == (pytest.approx(0.0005), pytest.approx(0.05), "held")


def test_the_reference_size_is_given_or_the_specs_fixed_batch_size():
    assert plan_lr(spec_with(*FIXED), "linear", reference=128).reference == 128
    assert plan_lr(spec_with(*FIXED, "search.batch_size.value=32"), "sqrt").reference == 32
    best = {"batch_size": 64, "optimizer": "adam", "lr": 0.005}
    plan = plan_lr(spec_with(*FIXED), "linear", best=best)
    assert (plan.reference, plan.held_lr) == (64, 0.005)


@pytest.mark.parametrize(
    ("overrides", "kwargs", "message"),
    [
        (FIXED, {"rule": "cubic"}, "--lr-rule: 'cubic' is not a rule; give one of fixed, linear, sqrt, tuned"),
        (FIXED, {"rule": "fixed", "trials": 4}, "--lr-trials: applies to --lr-rule tuned only"),
        (FIXED, {"rule": "tuned", "reference": 64}, "--lr-reference: applies to --lr-rule linear or sqrt only"),
        (FIXED, {"rule": "tuned", "trials": 1}, "--lr-trials: 1 is not allowed; give at least 2 trials"),
        (FIXED, {"rule": "linear", "reference": 0}, "--lr-reference: 0 is not allowed"),
        (FIXED, {"rule": "linear"}, "--lr-rule linear: scales the held lr from the batch size it suits, and the"),
        (
            [*HELD, "search.lr={choices: [0.01, 0.1]}"],
            {"rule": "tuned"},
            r"--lr-rule tuned: the spec's lr is searched over choices \[0.01, 0.1\], which gives neither a range",
        ),
    ],
)
def test_bad_combinations_are_named(overrides, kwargs, message):
    with pytest.raises(UsageError, match=f"^{message}"):
        plan_lr(spec_with(*overrides), **kwargs)


def test_a_searched_lr_is_held_for_every_rule_but_tuned(tmp_path):
    with pytest.raises(SpecError, match="lr is searched"):
        select_batch_size(spec_with(*HELD), [16, 64], repeats=2, lr_rule="sqrt", workdir=tmp_path / "wd")
    assert not (tmp_path / "wd").exists()


# ---------------------------------------------------------------------------------------------------------
# The per-size search, on real Optuna with a cost known in closed form.


def bowl(best_by_size):
    """A cost with its minimum at ``best_by_size[size]``: (log10 lr − log10 best)²; a rate > 0.05 diverges."""
    calls = []

    def train(size, lr, number):
        calls.append((size, lr, number))
        cost = math.nan if lr > 0.05 else (math.log10(lr) - math.log10(best_by_size[size])) ** 2
        return cost, f"run-{size}-{number}"

    return train, calls


def test_each_size_takes_its_best_trial_reproducibly():
    plan = plan_lr(spec_with(*HELD), "tuned", trials=6)
    train, calls = bowl({16: 0.003, 64: 0.02})
    choice = choose_rates(plan, [16, 64], train)
    assert [(s, n) for s, _, n in calls] == [(16, n) for n in range(6)] + [(64, n) for n in range(6)]
    for size in (16, 64):
        trials = [t for t in choice.trials if t.batch_size == size]
        assert all(0.001 <= t.lr <= 0.1 for t in trials)
        finite = [t for t in trials if math.isfinite(t.final_val_cost)]
        assert choice.rates[size] == min(finite, key=lambda t: t.final_val_cost).lr
    # the start is the same grid for every size (a paired search): centres of 3 equal cells of log lr
    grid = [0.001 * 100 ** ((i + 0.5) / 3) for i in range(3)]
    assert plan.grid() == pytest.approx(grid, rel=1e-12)
    for size in (16, 64):
        assert [t.lr for t in choice.trials if t.batch_size == size][:3] == pytest.approx(grid, rel=1e-12)
    # each size ends at or nearer its own best than the grid's best point (TPE only adds candidates)
    for size, best in ((16, 0.003), (64, 0.02)):
        assert abs(math.log10(choice.rates[size] / best)) <= min(abs(math.log10(g / best)) for g in grid)
    assert choice.rates[16] < choice.rates[64]
    again = choose_rates(plan, [16, 64], bowl({16: 0.003, 64: 0.02})[0])
    assert again.rates == choice.rates and [t.lr for t in again.trials] == [t.lr for t in choice.trials]
    other = choose_rates(LrPlan(**{**plan.__dict__, "seed": 8}), [16], bowl({16: 0.003})[0])
    assert [t.lr for t in other.trials][3:] != [t.lr for t in choice.trials][3:6]


def test_a_size_whose_every_trial_diverged_keeps_the_lowest_rate_with_a_note():
    plan = LrPlan("tuned", trials=2, low=0.06, high=0.6, range_from="spec", seed=0)
    choice = choose_rates(plan, [32], bowl({32: 0.1})[0])
    assert choice.rates[32] == min(t.lr for t in choice.trials)
    assert choice.notes == ["every lr trial of batch size 32 diverged; it trains at the lowest rate tried"]


# ---------------------------------------------------------------------------------------------------------
# Through the real CLI and stores.


def test_cli_tuned_tracks_every_trial_and_compares_at_the_chosen_rates(tiny_spec, tmp_path, template_db):
    wd = new_workdir(tmp_path / "wd", template_db)
    args = ["batch-size", tiny_spec, *sets(HELD), "--sizes", "16,64", "--repeats", "2", "--budget", "epochs=2"]
    proc = run_cli(*args, "--lr-rule", "tuned", "--lr-trials", "2", "--json", "--workdir", wd, cwd=tmp_path, check=True)
    data = json.loads(proc.stdout)
    lr = data["lr_rule"]
    assert (lr["rule"], lr["trials"], lr["range"], lr["range_from"], lr["sampler_seed"]) == (
        "tuned", 2, [0.001, 0.1], "spec", 7,
    )  # fmt: skip
    assert len(lr["search"]) == 4 and "lr" not in data["held_params"]
    for size in (16, 64):
        trials = [t for t in lr["search"] if t["batch_size"] == size]
        assert lr["rates"][str(size)] == min(trials, key=lambda t: t["final_val_cost"])["lr"]
        assert next(r for r in data["rows"] if r["batch_size"] == size)["lr"] == lr["rates"][str(size)]
    assert "[1/8] batch size 16, lr search at" in proc.stderr and "[8/8] batch size 64, seed 2" in proc.stderr

    c, runs = children(wd, data["parent_run_id"])
    assert len(runs) == 8
    search, repeats = runs[:4], runs[4:]
    for run, trial in zip(search, lr["search"], strict=True):
        tags = run.data.tags
        assert run.info.run_name == f"lr-bs-{trial['batch_size']:04d}-trial-{trial['trial']}"
        assert (tags["batch_size"], tags["lr_trial"]) == (str(trial["batch_size"]), str(trial["trial"]))
        assert run.info.run_id == trial["run_id"] and run.info.status == "FINISHED"
        assert float(run.data.params["lr"]) == trial["lr"] and run.data.params["seed"] == str(trial_seed(7, 0))
        assert len(c.get_metric_history(run.info.run_id, "val_cost")) == 2  # curves, as every run
    for run, result in zip(repeats, data["runs"], strict=True):
        assert run.info.run_name == f"bs-{result['batch_size']:04d}-seed-{result['repeat']}"
        assert float(run.data.params["lr"]) == lr["rates"][str(result["batch_size"])] == result["lr"]
    parent = c.get_run(data["parent_run_id"])
    assert parent.data.tags["lr_rule"] == "tuned" and parent.data.params["lr_trials"] == "2"
    assert parent.data.tags["lr_by_size"] == ",".join(f"{s}:{lr['rates'][str(s)]:.4g}" for s in (16, 64))
    rates = {m.step: m.value for m in c.get_metric_history(data["parent_run_id"], "lr")}
    assert rates == {s: pytest.approx(lr["rates"][str(s)]) for s in (16, 64)}
    saved = json.loads(Path(c.download_artifacts(data["parent_run_id"], "batch_size_report.json")).read_text())
    assert saved["lr_rule"]["rates"] == lr["rates"]
    assert "plots/lr_search.png" in {a.path for a in c.list_artifacts(data["parent_run_id"], "plots")}


def test_linear_scales_every_run_and_the_report_says_so(tmp_path, template_db):
    wd = new_workdir(tmp_path / "wd", template_db)
    spec = spec_with(*FIXED)
    report = select_batch_size(
        spec, [16, 64], repeats=2, budget=("epochs", 1), workdir=wd, lr_rule="linear", lr_reference=32
    )
    assert report.lr.rates == {16: pytest.approx(0.01), 64: pytest.approx(0.04)}
    assert all(r.lr == report.lr.rates[r.batch_size] for r in report.runs)
    assert "lr" not in report.held_params and report.to_dict()["lr_rule"]["reference"] == 32
    c, runs = children(wd, report.parent_run_id)
    assert [float(r.data.params["lr"]) for r in runs] == pytest.approx([0.01, 0.04, 0.01, 0.04])
    parent = c.get_run(report.parent_run_id).data
    assert (parent.tags["lr_rule"], parent.params["lr_reference"], parent.params["lr_held"]) == ("linear", "32", "0.02")
    assert "lr" not in parent.params and "plots/lr_search.png" not in {
        a.path for a in c.list_artifacts(report.parent_run_id, "plots")
    }  # nothing was searched
    console = Console(file=io.StringIO(), width=250, force_terminal=True, color_system=None)
    print_report(report, console=console)
    text = console.file.getvalue()
    header = next(line for line in text.splitlines() if line.startswith("size "))
    assert header.split()[:2] == ["size", "lr"]
    assert next(line for line in text.splitlines() if line.lstrip().startswith("64 ")).split()[1] == "0.04"
    assert "learning rate: linear, η(B) = η₀ · B / B_ref with η₀ = 0.02, B_ref = 32" in text
    assert "held fixed (from the spec): optimizer=adam, beta1=0.9, schedule=constant" in text


@pytest.mark.parametrize(
    ("overrides", "extra", "message"),
    [
        (
            [*HELD, "search.lr={choices: [0.01, 0.1]}"],
            ["--lr-rule", "tuned"],
            "error: --lr-rule tuned: the spec's lr is searched over choices [0.01, 0.1]",
        ),
        (FIXED, ["--lr-rule", "linear"], "error: --lr-rule linear: scales the held lr from the batch size it suits"),
    ],
)
def test_cli_bad_lr_options_write_nothing(tiny_spec, tmp_path, overrides, extra, message):
    proc = run_cli("batch-size", tiny_spec, *sets(overrides), *extra, "--workdir", tmp_path / "wd", cwd=tmp_path)
    assert proc.returncode == 2 and proc.stderr.startswith(message) and proc.stderr.count("\n") == 1
    assert not (tmp_path / "wd").exists()
