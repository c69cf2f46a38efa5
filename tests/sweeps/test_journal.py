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
