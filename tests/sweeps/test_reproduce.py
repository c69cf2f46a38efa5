"""``sweeps reproduce`` retrains every trial bit for bit on the same machine: under the BLAS thread count the
trial trained with (tag ``blas_threads``), whether the sweep ran in one process or with ``--workers``."""

from __future__ import annotations

import platform
from pathlib import Path

import mlflow
import optuna
import pytest
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend

from sweeps import blas_threads as threads
from tests.conftest import new_workdir, run_cli

SPEC = """\
name: digits-threads
seed: 3
trials: 2
dataset: {name: digits, val_fraction: 0.2}
model: {hidden: [32], activation: relu, l2: 0.0001}
training: {epochs: 3}
search:
  batch_size: {choices: [128, 256]}
  optimizer: adam
  lr: 0.002
sampler: {name: grid}
pruner: {name: none}
"""


def _kernel_env() -> dict[str, str]:
    """OpenBLAS's AVX2 (Haswell) kernels, where the thread count changes the round-off of these products by
    ~1e-7 (its SkylakeX kernels happen not to): a retraining under another count then fails to match."""
    try:
        avx2 = platform.machine() in ("x86_64", "AMD64") and " avx2" in Path("/proc/cpuinfo").read_text()
    except OSError:
        avx2 = False
    return {"OPENBLAS_CORETYPE": "Haswell"} if avx2 else {}


def _sweep(tmp_path: Path, template_db: Path, *args: str, env: dict[str, str] | None = None):
    spec = tmp_path / "spec.yaml"
    spec.write_text(SPEC)
    workdir = new_workdir(tmp_path / "wd", template_db)
    run_cli("run", spec, "--workdir", workdir, "--quiet", *args, cwd=tmp_path, env=env, check=True)
    client = mlflow.MlflowClient(f"sqlite:///{workdir / 'mlflow.db'}")
    exp = client.get_experiment_by_name("digits-threads")
    runs = client.search_runs([exp.experiment_id], filter_string="tags.role = 'trial'")
    study = optuna.load_study(
        study_name="digits-threads", storage=JournalStorage(JournalFileBackend(str(workdir / "optuna.journal")))
    )
    return workdir, client, sorted(runs, key=lambda r: int(r.data.tags["trial_number"])), study


def _reproduce(run_id: str, workdir: Path, env: dict[str, str]):
    return run_cli("reproduce", run_id, "--workdir", workdir, cwd=workdir.parent, env=env)


def _assert_bit_for_bit(proc, n_threads: int, source: str = "as logged") -> None:
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"with {n_threads} BLAS thread" in proc.stdout and f"({source})" in proc.stdout, proc.stdout
    assert "train_cost max relative difference 0," in proc.stdout, proc.stdout
    assert proc.stdout.rstrip().endswith("val_cost max relative difference 0"), proc.stdout


@pytest.mark.parametrize("workers", [1, 2])
def test_every_trial_reproduces_bit_for_bit_under_its_logged_thread_count(tmp_path, template_db, workers):
    env = _kernel_env()
    workdir, client, runs, study = _sweep(tmp_path, template_db, "--workers", str(workers), env=env)
    assert len(runs) == 2 and all(r.info.status == "FINISHED" for r in runs)
    expected = threads.blas_threads(workers)  # what `run` (workers=1) or each worker process limits BLAS to
    for r in runs:
        assert r.data.tags[threads.TAG] == str(expected)
    assert [t.user_attrs[threads.TAG] for t in study.trials] == [expected] * 2
    for r in runs:
        _assert_bit_for_bit(_reproduce(r.info.run_id, workdir, env), expected)

    if workers == 1:  # a run logged before the count was recorded: retrained as a one-process sweep trains
        client.delete_tag(runs[0].info.run_id, threads.TAG)
        proc = _reproduce(runs[0].info.run_id, workdir, env)
        _assert_bit_for_bit(proc, expected, "none logged; a one-process sweep's count here")


def test_a_thread_count_chosen_by_the_user_is_reproduced_without_setting_it_again(tmp_path, template_db):
    env = _kernel_env()
    workdir, _, runs, _ = _sweep(tmp_path, template_db, "--set", "trials=1", env={**env, "OPENBLAS_NUM_THREADS": "2"})
    assert {r.data.tags[threads.TAG] for r in runs} == {"2"}
    # reproduce runs without the variable, where it would limit BLAS to blas_threads(1) threads
    _assert_bit_for_bit(_reproduce(runs[-1].info.run_id, workdir, env), 2)


@pytest.mark.parametrize("rtol", ["-1", "nan", "inf"])
def test_a_bad_rtol_is_refused_in_one_line(tmp_path, rtol):
    (tmp_path / "wd").mkdir()
    (tmp_path / "wd" / "mlflow.db").touch()  # past the "no store" check, which comes first
    before = sorted(p.name for p in (tmp_path / "wd").iterdir())
    proc = run_cli("reproduce", "0123456789abcdef", "--rtol", rtol, "--workdir", tmp_path / "wd", cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines() == [
        f"error: --rtol {rtol} is not allowed: rtol must be a finite number ≥ 0, e.g. 1e-9"
    ]
    assert sorted(p.name for p in (tmp_path / "wd").iterdir()) == before
    assert (tmp_path / "wd" / "mlflow.db").stat().st_size == 0
