"""The spec's ``stop:`` block through the real CLI on the tiny spec: a sweep stops before ``trials`` when more
trials will not help (or time is up), every worker stops, the parent run says why, and a resume with the same
rules trains nothing while a larger ``--trials`` continues."""

from __future__ import annotations

from pathlib import Path

import mlflow
import optuna
import pytest

from sweeps.spec import load_spec
from tests.conftest import TINY_SPEC, new_workdir, requires_postgres, run_cli, start_cli
from tests.sweeps.test_distributed import mlflow_server, rdb_study  # noqa: F401 — a fixture, used by name

optuna.logging.set_verbosity(optuna.logging.WARNING)

# The first trial is the best there will be unless a later one beats it by 0.5 of cross-entropy: none does on
# moons in 2 epochs, so the sweep stops after 1 + 2 trials.
HOPELESS = "stop={after_trials_without_improvement: 2, min_improvement: 0.5}"
FAST = ("--set", "training.epochs=2")


def _study(wd: Path) -> optuna.Study:
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    return optuna.load_study(study_name="tiny", storage=JournalStorage(JournalFileBackend(str(wd / "optuna.journal"))))


def _parent(wd: Path, study: optuna.Study):
    client = mlflow.MlflowClient(f"sqlite:///{wd / 'mlflow.db'}")
    return client.get_run(study.user_attrs["mlflow_parent_run_id"])


def _run(tmp_path: Path, *args: str):
    return run_cli("run", tmp_path / "tiny.yaml", *FAST, *args, "--workdir", tmp_path / "wd", cwd=tmp_path)


def test_a_stop_block_changes_neither_the_search_hash_nor_the_spec_hash_without_it():
    plain = load_spec(TINY_SPEC)
    stopped = load_spec(TINY_SPEC, [HOPELESS])
    assert plain.search_hash() == stopped.search_hash()  # a sweep may resume with other rules for stopping
    assert "stop" not in plain.resolved() and stopped.resolved()["stop"]["min_improvement"] == 0.5
    assert plain.spec_hash() != stopped.spec_hash()


def test_no_improvement_stops_before_trials_and_a_resume_trains_nothing_unless_trials_grow(tmp_path, template_db):
    (tmp_path / "tiny.yaml").write_text(TINY_SPEC)
    new_workdir(tmp_path / "wd", template_db)
    wd = tmp_path / "wd"
    proc = _run(tmp_path, "--trials", "10", "--set", HOPELESS)
    assert proc.returncode == 0, proc.stderr
    assert "stopped after 3 of 10 trials: 2 trials in a row did not improve on trial " in proc.stdout
    last = proc.stderr.splitlines()[-1]  # the progress line says so too, and no time left
    assert "stopped: no improvement" in last and not last.endswith(" left")
    study = _study(wd)
    assert len(study.trials) == 3
    parent = _parent(wd, study)
    assert parent.data.tags["stop_rule"] == "after_trials_without_improvement"
    assert parent.data.tags["stopped_after_trials"] == "3"
    assert "by more than 0.5 (after_trials_without_improvement)" in parent.data.tags["stop_reason"]
    assert parent.info.status == "FINISHED"

    again = _run(tmp_path, "--trials", "10", "--set", HOPELESS)
    assert again.returncode == 0, again.stderr
    assert "it had stopped before this command: nothing was trained" in again.stdout
    assert len(_study(wd).trials) == 3

    # More trials: the sweep continues, and only trials after the resume count toward the new patience.
    more = _run(tmp_path, "--trials", "12", "--set", HOPELESS)
    assert more.returncode == 0, more.stderr
    assert "stopped after 5 of 12 trials" in more.stdout
    study = _study(wd)
    assert len(study.trials) == 5
    assert _parent(wd, study).data.tags["stopped_after_trials"] == "5"


def test_max_minutes_stops_the_sweep(tmp_path, template_db):
    (tmp_path / "tiny.yaml").write_text(TINY_SPEC)
    new_workdir(tmp_path / "wd", template_db)
    proc = _run(tmp_path, "--trials", "10", "--set", "stop={max_minutes: 0.0001}")
    assert "0.0001 minutes have passed (max_minutes)" in proc.stdout
    study = _study(tmp_path / "wd")
    assert len(study.trials) <= 1  # checked before every trial: the 6 ms were up before the second
    completed = [t for t in study.trials if t.state.name == "COMPLETE"]
    # a stop before any trial completed leaves no result, which scripts see as exit 3 (as for diverged trials)
    assert proc.returncode == (0 if completed else 3), proc.stderr
    assert _parent(tmp_path / "wd", study).data.tags["stop_rule"] == "max_minutes"


def test_noise_margin_is_measured_by_repeats_of_the_best_setting(tmp_path, template_db):
    (tmp_path / "tiny.yaml").write_text(TINY_SPEC)
    new_workdir(tmp_path / "wd", template_db)
    stop = "stop={after_trials_without_improvement: 2, min_improvement: noise, noise_repeats: 2}"
    proc = _run(tmp_path, "--trials", "8", "--set", stop)
    assert proc.returncode == 0, proc.stderr
    study = _study(tmp_path / "wd")
    repeats = [t for t in study.trials if "noise_repeat_of" in t.user_attrs]
    assert len(repeats) == 2
    of = study.trials[repeats[0].user_attrs["noise_repeat_of"]]
    assert all(t.params == of.params and t.user_attrs["noise_repeat_of"] == of.number for t in repeats)
    assert len({t.user_attrs["seed"] for t in [of, *repeats]}) == 3  # the same setting, new seeds
    # The repeats come once two search trials have finished; the best then was the better of those two.
    assert min(t.number for t in repeats) == 2 and of.value == min(t.value for t in study.trials[:2])
    values = [t.value for t in repeats]
    std = abs(values[0] - values[1]) / 2**0.5  # the sample std of two values
    assert f"noise: std {std:.4g} over 2 repeats of trial {of.number}'s setting" in proc.stdout
    if "stopped after" in proc.stdout:
        tags = _parent(tmp_path / "wd", study).data.tags
        assert float(tags["stop_noise_std"]) == float(f"{std:.6g}")
        said = f"(the noise: the std of 2 repeats of trial {of.number}'s setting)"
        assert said in tags["stop_reason"] and said in proc.stdout


def test_a_confirmed_sweep_stops_on_the_spread_confirm_measured_without_repeats(tmp_path, template_db):
    (tmp_path / "tiny.yaml").write_text(TINY_SPEC)
    wd = new_workdir(tmp_path / "wd", template_db)
    assert _run(tmp_path, "--trials", "2").returncode == 0
    confirm = run_cli(
        "confirm", tmp_path / "tiny.yaml", *FAST, "--top", "2", "--repeats", "2", "--workdir", wd, cwd=tmp_path
    )
    assert confirm.returncode in (0, 1), confirm.stderr
    stop = "stop={after_trials_without_improvement: 1, min_improvement: noise}"
    proc = _run(tmp_path, "--trials", "4", "--set", stop)
    assert proc.returncode == 0, proc.stderr
    study = _study(wd)
    assert not [t for t in study.trials if "noise_repeat_of" in t.user_attrs]  # confirm measured it: no repeats
    said = "the std pooled over 4 runs of 2 settings by sweeps confirm"
    assert f"{said}" in proc.stdout.replace("\n", " ")
    if "stopped after" in proc.stdout:
        tags = _parent(wd, study).data.tags
        assert f"(the noise: {said})" in tags["stop_reason"] and tags["stop_noise_std"]


def test_every_worker_stops(tmp_path, template_db):
    (tmp_path / "tiny.yaml").write_text(TINY_SPEC)
    new_workdir(tmp_path / "wd", template_db)
    proc = _run(tmp_path, "--workers", "2", "--trials", "12", "--set", HOPELESS)
    assert proc.returncode == 0, proc.stderr
    study = _study(tmp_path / "wd")
    # 3 finished trials decide it; the other worker's trial running then finishes. A worker that did not
    # stop would go on to 12.
    assert 3 <= len(study.trials) <= 4
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)
    assert "stopped after" in proc.stdout and "of 12 trials" in proc.stdout
    parent = _parent(tmp_path / "wd", study)
    assert parent.data.tags["stop_rule"] == "after_trials_without_improvement"
    assert parent.info.status == "FINISHED"


@requires_postgres
def test_every_sweeps_worker_on_postgresql_stops(tmp_path, tiny_spec, fresh_db, mlflow_server):  # noqa: F811
    url = fresh_db("optuna")
    env = {"SWEEPS_STORAGE": url, "SWEEPS_TRACKING_URI": mlflow_server.url}
    common = ("worker", tiny_spec, "--trials", "12", *FAST, "--set", HOPELESS, "--workdir", tmp_path / "wd")
    workers = [start_cli(*common, cwd=tmp_path, env=env, log=tmp_path / f"w{i}.log") for i in range(2)]
    for i, w in enumerate(workers):
        assert w.wait(300) == 0, (tmp_path / f"w{i}.log").read_text()
    study = rdb_study(url, "tiny")
    assert 3 <= len(study.trials) <= 4  # a worker that did not stop would go on to 12
    client = mlflow.MlflowClient(mlflow_server.url)
    parent = client.get_run(study.user_attrs["mlflow_parent_run_id"])
    assert parent.data.tags["stop_rule"] == "after_trials_without_improvement"


def test_patience_counts_trials_since_the_last_improvement_larger_than_the_margin():
    """The count on a real (in-memory) Optuna study: improvements within the margin do not reset it, pruned
    and failed trials count, noise repeats do not, and only trials after the resume mark count."""
    from optuna.distributions import FloatDistribution
    from optuna.trial import TrialState, create_trial

    from sweeps.study.stopping import MARK_ATTR, REPEAT_ATTR, Patience, check

    spec = load_spec(TINY_SPEC, ["stop={after_trials_without_improvement: 4, min_improvement: 0.05}"])
    study = optuna.create_study()
    dist = {"x": FloatDistribution(0, 1)}

    def add(value=None, state=TrialState.COMPLETE, **attrs):
        study.add_trial(create_trial(state=state, value=value, params={"x": 0.5}, distributions=dist, user_attrs=attrs))

    add(1.0)
    add(0.9)  # beats 1.0 by 0.1 > 0.05: the best is now trial 1
    add(0.88)  # within the margin: no improvement
    add(state=TrialState.PRUNED)
    add(0.5, **{REPEAT_ATTR: 1})  # a noise repeat: neither a best nor a count
    add(state=TrialState.FAIL, outcome="failed")
    state = Patience.of(study, spec)
    assert (state.best, state.best_trial.number, state.since, state.margin) == (0.9, 1, 3, 0.05)
    assert check(study, spec) is None
    add(0.86)  # 0.04 below 0.9: still within the margin, and the fourth trial in a row
    record = check(study, spec)
    assert record["after_trials"] == 7 and record["rule"] == "after_trials_without_improvement"
    assert "4 trials in a row did not improve on trial 1's 0.9 by more than 0.05" in record["reason"]
    study.set_user_attr(MARK_ATTR, 4)  # a resume after trial 4: trials 5 and 6 count
    assert Patience.of(study, spec).since == 2


def test_the_noise_is_the_spread_measured_by_confirm_when_there_is_one_else_repeats_of_the_best():
    """On a real (in-memory) study: a confirm record at the spec's epochs gives the margin at once (the std pooled
    over its settings) and no repeats are spent; a record at other epochs is not used, and the best setting
    is repeated instead. The reason and the printed lines say which."""
    from optuna.distributions import FloatDistribution
    from optuna.trial import create_trial

    from sweeps.results.confirm_report import STUDY_ATTR
    from sweeps.study.stopping import NOISE_ATTR, REPEAT_ATTR, check, describe

    stop = "stop={after_trials_without_improvement: 2, min_improvement: noise, noise_repeats: 2}"
    spec = load_spec(TINY_SPEC, ["training.epochs=2", stop])

    def sweep(confirm_epochs: int) -> optuna.Study:
        study = optuna.create_study()
        for value in (1.0, 0.99, 0.985):  # each within any noise below of the first
            dist = {"x": FloatDistribution(0, 1)}
            study.add_trial(create_trial(value=value, params={"x": value / 2}, distributions=dist))
        rows = [{"trial": 0, "values": [0.9, 1.1]}, {"trial": 1, "values": [0.5, None, 0.5, 0.8]}, {"values": [7.0]}]
        budget = {"kind": "epochs", "amount": confirm_epochs}
        study.set_user_attr(STUDY_ATTR, {"objective": "final_val_cost", "budget": budget, "rows": rows})
        return study

    confirmed = sweep(confirm_epochs=2)
    pooled = ((0.1**2 * 2 + 0.1**2 * 2 + 0.2**2) / (1 + 2)) ** 0.5  # squares about each setting's mean / dof
    record = check(confirmed, spec)
    assert record["noise_from"] == "confirm" and record["noise_std"] == pytest.approx(pooled, rel=1e-12)
    assert (
        f"did not improve on trial 0's 1 by more than {pooled:.4g} (the noise: the std pooled over 5 runs of 2 "
        "settings by sweeps confirm) (after_trials_without_improvement)"
    ) in record["reason"]
    assert NOISE_ATTR not in confirmed.user_attrs and len(confirmed.trials) == 3  # no repeats spent
    assert f"noise: std {pooled:.4g}, the std pooled over 5 runs of 2 settings by sweeps confirm" in describe(
        confirmed, spec
    )

    repeated = sweep(confirm_epochs=5)  # confirmed at another length: its spread is not this sweep's
    assert check(repeated, spec) is None  # the best setting (trial 2) is repeated first
    assert repeated.user_attrs[NOISE_ATTR] == {"of_trial": 2, "repeats": 2}
    for value in (0.7, 0.9):
        trial = repeated.ask()
        assert trial.user_attrs[REPEAT_ATTR] == 2
        repeated.tell(trial, value)
    record = check(repeated, spec)
    assert record["noise_from"] == "repeats" and record["noise_std"] == pytest.approx(0.2 / 2**0.5, rel=1e-12)
    assert "(the noise: the std of 2 repeats of trial 2's setting)" in record["reason"]
    assert "noise: std 0.1414 over 2 repeats of trial 2's setting" in "\n".join(describe(repeated, spec))
