"""``sweeps confirm``: the K best trials retrained over new seeds through the real CLI, against a real Optuna
journal and a real MLflow SQLite store; the statistics recomputed from their formulas; ``sweeps best`` and
``sweeps reproduce`` afterwards; bad input writes nothing."""

from __future__ import annotations

import json
import math
from pathlib import Path

import mlflow
import numpy as np
import optuna
import pytest
from scipy import stats

import tracking
from sweeps.optcore_adapter import trial_seed
from sweeps.results.confirm import confirm_seed
from tests.conftest import new_workdir, run_cli

SHORT = ["--set", "trials=3", "--set", "training.epochs=2"]


@pytest.fixture(scope="module")
def confirmed(tmp_path_factory, template_db):
    """A 3-trial sweep of the tiny spec, `best` before any confirmation, then `confirm --top 2 --repeats 3`."""
    from tests.conftest import TINY_SPEC

    folder = tmp_path_factory.mktemp("confirm")
    spec = folder / "tiny.yaml"
    spec.write_text(TINY_SPEC)
    wd = new_workdir(folder / "wd", template_db)  # migrated once, not in the CLI's clock
    run_cli("run", spec, *SHORT, "--quiet", "--workdir", wd, cwd=folder, check=True)
    before = run_cli("best", spec, *SHORT, "--workdir", wd, cwd=folder, check=True)
    proc = run_cli("confirm", spec, *SHORT, "--top", "2", "--repeats", "3", "--json", "--workdir", wd, cwd=folder)
    assert proc.returncode == 0, proc.stderr
    return folder, spec, wd, before.stdout, json.loads(proc.stdout), proc.stderr


def study(wd: Path) -> optuna.Study:
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(wd / "optuna.journal")))
    return optuna.load_study(study_name="tiny", storage=storage)


def client(wd: Path) -> mlflow.MlflowClient:
    return mlflow.MlflowClient(tracking.default_tracking_uri(wd))


def test_the_best_trials_are_retrained_with_shared_new_seeds_under_a_confirm_parent(confirmed):
    _, _, wd, _, record, stderr = confirmed
    s = study(wd)
    complete = sorted((t for t in s.trials if t.state.name == "COMPLETE"), key=lambda t: (t.value, t.number))
    assert [row["trial"] for row in record["rows"]] == [t.number for t in complete[:2]]
    assert [row["sweep_value"] for row in record["rows"]] == [t.value for t in complete[:2]]
    # new seeds: one per repeat, shared by every setting, none of them a trial's training seed
    assert record["seeds"] == [confirm_seed(7, r) for r in (1, 2, 3)] and len(set(record["seeds"])) == 3
    assert not set(record["seeds"]) & {t.user_attrs["seed"] for t in s.trials}
    assert not set(record["seeds"]) & {trial_seed(7, n) for n in range(1000)}
    c = client(wd)
    parent = c.get_run(record["parent_run_id"])
    experiment = c.get_experiment_by_name("tiny").experiment_id  # the sweep's own experiment
    assert parent.info.run_name == "confirm" and parent.info.experiment_id == experiment
    assert parent.data.tags["confirms_study"] == "tiny" and parent.data.tags["winner_trial"] == str(record["winner"])
    kids = c.search_runs([experiment], filter_string=f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'")
    assert len(kids) == 6 and {k.data.tags["role"] for k in kids} == {"confirm"}
    by_run = {k.info.run_id: k for k in kids}
    for run in record["runs"]:
        kid = by_run[run["run_id"]]
        trial = s.trials[run["trial"]]
        assert kid.data.tags["confirms_trial"] == str(run["trial"])
        assert kid.data.tags["confirms_run_id"] == trial.user_attrs["mlflow_run_id"]
        assert int(kid.data.params["seed"]) == record["seeds"][run["repeat"] - 1] == run["seed"]
        assert kid.data.params["lr"] == str(trial.user_attrs["hyperparameters"]["lr"])
        assert kid.data.metrics["final_val_cost"] == pytest.approx(run["value"], rel=1e-12)
    # the sweep's own trials table is left as it was
    assert sorted(tracking.runs_table("tiny", tracking.default_tracking_uri(wd))["trial_number"]) == [0, 1, 2]
    assert "[6/6] trial" in stderr


def test_the_statistics_are_the_paired_t_test_and_t_intervals(confirmed):
    record = confirmed[4]
    rows = record["rows"]
    values = [np.array(row["values"]) for row in rows]
    for row, x in zip(rows, values, strict=True):
        half = stats.t.ppf(0.975, len(x) - 1) * x.std(ddof=1) / math.sqrt(len(x))
        assert row["mean"] == pytest.approx(x.mean(), rel=1e-12) and row["std"] == pytest.approx(x.std(ddof=1))
        assert row["ci95"] == pytest.approx([x.mean() - half, x.mean() + half], rel=1e-9)
    best, other = sorted(range(2), key=lambda i: values[i].mean())
    assert record["winner"] == rows[best]["trial"] == record["tied"][0]
    p = stats.ttest_rel(values[other], values[best]).pvalue  # one pair: Holm leaves it as it is
    assert rows[other]["p_vs_winner_holm"] == pytest.approx(p, rel=1e-9)
    assert (rows[other]["trial"] in record["tied"]) == (p >= 0.05)
    assert record["test"]["paired"] and record["winner_ci95"] == rows[best]["ci95"]
    seconds = {row["trial"]: row["mean_train_seconds"] for row in rows}
    assert record["fastest_tied"] == min(record["tied"], key=seconds.get)


def test_best_reports_the_confirmed_winner_and_says_before_that_none_was(confirmed):
    folder, spec, wd, before, record, _ = confirmed
    assert "not confirmed over seeds yet: `sweeps confirm SPEC`" in before
    text = run_cli("best", spec, *SHORT, "--workdir", wd, cwd=folder, check=True).stdout
    winner = next(row for row in record["rows"] if row["trial"] == record["winner"])
    assert f"winner: trial {record['winner']}, mean final_val_cost {winner['mean']:#.3g}" in text
    assert f"95% interval of its mean: [{winner['ci95'][0]:#.3g}, {winner['ci95'][1]:#.3g}]" in text
    data = json.loads(run_cli("best", spec, *SHORT, "--json", "--workdir", wd, cwd=folder, check=True).stdout)
    assert {k: data["confirmed"][k] for k in ("winner", "winner_ci95", "tied", "fastest_tied", "parent_run_id")} == {
        k: record[k] for k in ("winner", "winner_ci95", "tied", "fastest_tied", "parent_run_id")
    }
    assert data["confirmed"]["completed_since"] == 0


def test_reproduce_retrains_a_confirm_run(confirmed):
    folder, _, wd, _, record, _ = confirmed
    run = record["runs"][-1]
    proc = run_cli("reproduce", run["run_id"], "--workdir", wd, cwd=folder)
    assert proc.returncode == 0, proc.stderr
    assert f"trial {run['trial']}, confirm seed {run['repeat']}" in proc.stdout and "matches" in proc.stdout


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--top", "0"], "error: --top: 0 is not allowed"),
        (["--repeats", "1"], "error: --repeats: 1 is not allowed; give at least 2 seeds"),
        (["--budget", "seconds=3"], "error: --budget: 'seconds=3' is not allowed; confirm trains equal epochs"),
        ([], "error: the sweep 'tiny' has no completed trial yet"),
        (["--set", "training.epochs=9"], "error: the sweep 'tiny' ran a different spec"),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(tmp_path, tiny_spec, extra, message):
    from sweeps.spec import load_spec

    wd = tmp_path / "wd"
    wd.mkdir()
    journal = optuna.storages.journal.JournalFileBackend(str(wd / "optuna.journal"))
    empty = optuna.create_study(study_name="tiny", storage=optuna.storages.JournalStorage(journal))
    empty.set_user_attr("spec_hash", load_spec(tiny_spec).search_hash())  # as `sweeps run` records it
    empty.enqueue_trial({"lr": 0.01})  # a trial that never completed
    size = (wd / "optuna.journal").stat().st_size
    proc = run_cli("confirm", tiny_spec, *extra, "--workdir", wd, cwd=tmp_path)
    assert proc.returncode == 2 and proc.stderr.startswith(message) and proc.stderr.count("\n") == 1, proc.stderr
    # reading the journal takes its (empty) lock file; nothing else appears and the journal is unchanged
    assert sorted(p.name for p in wd.iterdir()) in (["optuna.journal"], ["optuna.journal", "optuna.journal.flock"])
    assert (wd / "optuna.journal").stat().st_size == size


def test_confirm_seeds_skip_a_trial_seed():
    taken = confirm_seed(7, 1)
    assert confirm_seed(7, 1, frozenset({taken})) not in (taken, confirm_seed(7, 2))


def test_the_sweep_report_holds_the_confirmed_winner(confirmed):
    from sweeps.results.html_report import confirmed_winner_html
    from sweeps.spec import load_spec
    from sweeps.study.runner import load_result

    _, spec, wd, _, record, _ = confirmed
    loaded = load_spec(spec, ["trials=3", "training.epochs=2"])
    section = confirmed_winner_html(loaded, load_result(loaded, workdir=wd))
    assert f'data-confirmed="{record["winner"]}"' in section
    assert f"confirmed winner: trial {record['winner']}" in section
    for row in record["rows"]:
        assert f"<td>{row['trial']}</td>" in section
