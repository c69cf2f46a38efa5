"""How the CLI ends when a sweep cannot do its job: store URLs that cannot work, a sweep without a single
completed trial, a full disk. One line on stderr each, an exit code a script can tell apart."""

from __future__ import annotations

import contextlib
import subprocess
import time

import pytest

from tests.conftest import new_workdir, postgres_url, requires_postgres, run_cli, start_cli

ALL_DIVERGE = """\
name: diverge
seed: 1
trials: 2
dataset: {name: moons, n_samples: 400, noise: 0.2}
model: {hidden: [16], activation: relu}
training: {epochs: 2}
search:
  batch_size: {choices: [32, 64]}
  optimizer: {value: gd}
  lr: {value: 1000000.0}
sampler: {name: random}
pruner: {name: none}
"""


def _one_error_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr
    return lines[0]


def test_a_storage_url_that_cannot_work_exits_2_in_one_line_with_nothing_written(tmp_path, tiny_spec):
    ran = run_cli("run", tiny_spec, "--workdir", tmp_path / "w", "--storage", "foo://u:pw@x/y", cwd=tmp_path)
    assert ran.returncode == 2  # before: 1, with SQLAlchemy's "NoSuchModuleError: Can't load plugin"
    line = _one_error_line(ran.stderr)
    assert "'foo' is not a kind of database" in line and "pw" not in line
    assert not (tmp_path / "w").exists()


@requires_postgres
def test_a_missing_postgresql_tracking_database_fails_at_once_naming_it(tmp_path, tiny_spec):
    base = postgres_url().rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://")
    scheme, rest = base.split("://", 1)
    uri = f"{scheme}://{rest.split('@', 1)[0].split(':', 1)[0]}:s3cret@{rest.split('@', 1)[1]}/no_such_tracking_db"
    started = time.monotonic()
    ran = run_cli("run", tiny_spec, "--workdir", tmp_path / "w", cwd=tmp_path, env={"SWEEPS_TRACKING_URI": uri})
    seconds = time.monotonic() - started
    assert ran.returncode == 2, ran.stderr
    line = _one_error_line(ran.stderr)  # before: 112 s of MLflow's retries and 37 warnings, then exit 1
    assert "database 'no_such_tracking_db'" in line and "does not exist" in line and "s3cret" not in line
    assert seconds < 60, seconds  # a bound, not a benchmark
    assert not (tmp_path / "w" / "optuna.journal").exists()


def test_a_sweep_whose_every_trial_diverged_exits_3(tmp_path, template_db):
    spec = tmp_path / "diverge.yaml"
    spec.write_text(ALL_DIVERGE)
    new_workdir(tmp_path / "w", template_db)
    ran = run_cli("run", spec, "--workdir", tmp_path / "w", "--quiet", cwd=tmp_path)
    assert ran.returncode == 3, ran.stderr  # before: 0, as if the sweep had found something
    assert _one_error_line(ran.stderr) == (
        "error: no trial of the sweep completed (0 completed, 0 pruned, 2 failed; 2 diverged); exit 3"
    )
    assert "no trial of 2 completed" in ran.stdout


@pytest.fixture
def small_disk(tmp_path):
    """A real 16 MiB tmpfs (needs root, as in CI's container; skipped otherwise), unmounted afterwards."""
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(disk)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def test_a_disk_that_fills_up_mid_sweep_ends_it_in_one_line(tmp_path, tiny_spec, small_disk):
    work = small_disk / "w"
    log = tmp_path / "log"
    proc = start_cli("run", tiny_spec, "--trials", "40", "--workdir", work, "--quiet", cwd=tmp_path, log=log)
    try:
        deadline = time.monotonic() + 120
        journal = work / "optuna.journal"
        while proc.poll() is None and time.monotonic() < deadline:  # until a trial has completed
            if journal.exists() and '"state":1' in journal.read_text():
                break
            time.sleep(0.1)
        # Every last block (the sweep may have filled the disk already: then even creating the file fails).
        with contextlib.suppress(OSError), open(small_disk / "filler", "wb") as filler:
            while True:
                filler.write(b"\0" * 65536)
                filler.flush()
        returned = proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    output = log.read_text()
    assert returned == 1, output
    # before: ~380 lines with 8 tracebacks (MLflow's ERROR records, retries, SQLAlchemy's text)
    assert "Traceback" not in output and len(output.splitlines()) == 1, output
    assert output.startswith("error: the disk is full (") and "run the same command again to resume" in output
