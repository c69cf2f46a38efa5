"""The embedded journal after a writer died mid-record, or after it was lost (sweeps.study.journal): real files, the
real CLI."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import new_workdir, run_cli
from tests.sweeps.test_cli import child_runs
from tests.sweeps.test_parallel import assert_settled

ONE_EPOCH = ("--set", "training.epochs=1")


def _first_run(tmp_path: Path, spec: Path, template_db: Path) -> Path:
    wd = new_workdir(tmp_path / "wd", template_db)
    run_cli("run", spec, "--trials", "1", *ONE_EPOCH, "--workdir", wd, cwd=tmp_path, check=True)
    return wd


def test_a_torn_last_record_is_cut_off_with_a_copy_kept_and_the_sweep_goes_on(tmp_path, tiny_spec, template_db):
    """Before: the rerun appended onto the torn line and failed with a bare JSONDecodeError, study lost."""
    wd = _first_run(tmp_path, tiny_spec, template_db)
    journal = wd / "optuna.journal"
    whole = journal.read_bytes()
    last = whole.rstrip(b"\n").rfind(b"\n") + 1
    torn = whole[: last + (len(whole) - last) // 2]  # half of the last record, as a kill mid-write leaves it
    journal.write_bytes(torn)

    rerun = run_cli("run", tiny_spec, "--trials", "2", *ONE_EPOCH, "--workdir", wd, cwd=tmp_path)
    assert rerun.returncode == 0, rerun.stderr
    [copy] = wd.glob("optuna.journal.torn-*")
    assert copy.read_bytes() == torn
    said = [line for line in rerun.stderr.splitlines() if "torn" in line]
    assert said == [
        f"warning: the last record of {journal} was torn (a process stopped while writing it): kept a copy in "
        f"{copy.name} and cut the journal back to its last complete record ({len(torn) - last} bytes dropped)"
    ]
    assert journal.read_bytes().startswith(whole[:last])
    assert_settled(wd, "tiny", 2)  # every line readable again, nothing RUNNING in either store


def test_a_damaged_or_emptied_journal_is_refused_naming_the_file(tmp_path, tiny_spec, template_db):
    wd = _first_run(tmp_path, tiny_spec, template_db)
    journal = wd / "optuna.journal"
    lines = journal.read_bytes().splitlines(keepends=True)
    journal.write_bytes(b"".join(lines[:3]) + b'{"op_code": 4, "trial_id"\n' + b"".join(lines[3:]))
    best = run_cli("best", tiny_spec, "--workdir", wd, cwd=tmp_path)
    assert best.returncode == 2
    assert best.stderr.strip() == (
        f"error: the Optuna journal {journal} is damaged: line 4 is not a journal record. Restore it from a copy, "
        "or keep the study up to there: its first 3 lines; to start afresh, use another --workdir."
    )

    # An emptied journal beside the sweep's MLflow parent run: no second study silently started under it.
    c, runs = child_runs(wd, "tiny")
    journal.write_bytes(b"")
    rerun = run_cli("run", tiny_spec, "--trials", "2", *ONE_EPOCH, "--workdir", wd, cwd=tmp_path)
    assert rerun.returncode == 2
    assert f"the sweep 'tiny' has no study in journal file {journal}" in rerun.stderr
    assert "the study was lost" in rerun.stderr and "--set name=tiny-2" in rerun.stderr
    assert len(rerun.stderr.strip().splitlines()) == 1
    experiment = c.get_experiment_by_name("tiny").experiment_id
    assert len(c.search_runs([experiment])) == 1 + len(runs)  # no new parent, no new trial
    assert journal.read_bytes() == b""


def test_only_a_running_trials_own_records_skip_the_fsync_and_optuna_reads_back_what_was_written(tmp_path, monkeypatch):
    import os

    import optuna
    from optuna.storages.journal._storage import JournalOperation

    from sweeps.study import journal as jr

    unsynced = {"SET_TRIAL_PARAM", "SET_TRIAL_INTERMEDIATE_VALUE", "SET_TRIAL_USER_ATTR", "SET_TRIAL_SYSTEM_ATTR"}
    assert {op.name for op in JournalOperation if op.value in jr._UNSYNCED} == unsynced
    path = tmp_path / "optuna.journal"
    syncs = []
    real_fsync = os.fsync
    monkeypatch.setattr(jr.os, "fsync", lambda fd: syncs.append(fd) or real_fsync(fd))

    def synced(step) -> int:
        before = len(syncs)
        step()
        return len(syncs) - before

    storage = jr.open_journal(path)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = None

    def create():
        nonlocal study
        study = optuna.create_study(study_name="s", storage=storage, sampler=optuna.samplers.RandomSampler(seed=1))

    assert synced(create) >= 1
    assert synced(lambda: study.set_user_attr("k", 1)) == 1
    trial = None

    def ask():
        nonlocal trial
        trial = study.ask()

    assert synced(ask) == 1
    assert synced(lambda: trial.suggest_float("lr", 1e-4, 1e-1, log=True)) == 0
    assert synced(lambda: [trial.report(v, step) for step, v in enumerate((0.9, 0.5, 0.4), start=1)]) == 0
    assert synced(lambda: trial.set_user_attr("run_id", "abc")) == 0
    assert synced(lambda: study.tell(trial, 0.4)) == 1

    again = optuna.load_study(
        study_name="s", storage=optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(path)))
    )
    [t] = again.get_trials()
    assert (t.state, t.value, t.params, t.intermediate_values, t.user_attrs) == (
        optuna.trial.TrialState.COMPLETE,
        0.4,
        trial.params,
        {1: 0.9, 2: 0.5, 3: 0.4},
        {"run_id": "abc"},
    )
    assert again.user_attrs == {"k": 1}


def test_a_tail_torn_by_another_writer_after_this_ones_append_is_still_cut(tmp_path, monkeypatch):
    """An append checks the tail only when the journal changed since this process's own last append: a
    record torn by another writer in between is cut off before the next append, as before."""
    import optuna

    from sweeps.study import journal as jr

    path = tmp_path / "optuna.journal"
    reads = []
    real_repair = jr.repair_tail
    monkeypatch.setattr(jr, "repair_tail", lambda p: reads.append(p) or real_repair(p))
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(study_name="s", storage=jr.open_journal(path))
    trial = study.ask()
    reads.clear()
    for step in range(3):
        trial.report(0.5, step)
    assert reads == []  # only this process wrote since its last append: no tail read
    with open(path, "ab") as f:  # another writer killed halfway through a record
        f.write(b'{"op_code": 7, "worker_id": "x", "trial_id": 0, "st')
    trial.report(0.4, 3)
    assert reads == [path] and len(jr.backups(path)) == 1
    study.tell(trial, 0.4)
    again = optuna.load_study(
        study_name="s", storage=optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(path)))
    )
    assert again.trials[0].intermediate_values == {0: 0.5, 1: 0.5, 2: 0.5, 3: 0.4} and again.trials[0].value == 0.4


def test_the_tail_check_reads_long_and_short_last_records_alike(tmp_path):
    import json

    from sweeps.study.journal import _TAIL, repair_tail

    path = tmp_path / "optuna.journal"
    assert repair_tail(path) is None  # no file yet
    short = json.dumps({"op_code": 7, "v": 1}) + "\n"
    long = json.dumps({"op_code": 8, "value": "x" * (3 * _TAIL)}) + "\n"
    for whole in (short, long, short + long, long + short, short * 3):
        path.write_text(whole)
        assert repair_tail(path) is None and path.read_text() == whole
    for whole, torn in ((short + long, long[: _TAIL + 10]), (long + short, short[:5]), (short, long[:-1])):
        path.write_text(whole + torn)
        copy = repair_tail(path)
        assert copy is not None and copy.read_text() == whole + torn
        assert path.read_text() == whole
        copy.unlink()
    # a whole record glued onto a torn one: the last line is not a record, so it is cut off too
    path.write_text(short + long[:50] + short)
    assert repair_tail(path) is not None and path.read_text() == short
