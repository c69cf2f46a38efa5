"""Every malformed spec of the corpus through the real CLI: exit 2, one clear line, nothing written."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml

from tests.conftest import run_cli

BAD_SPECS = Path(__file__).parent / "bad_specs"
EXPECTED = yaml.safe_load((BAD_SPECS / "expected.yaml").read_text(encoding="utf-8"))


def _check(name: str, tmp: Path) -> str | None:
    cwd = tmp / name.replace(".", "_")
    cwd.mkdir()
    proc = run_cli("run", BAD_SPECS / name, "--workdir", cwd / "wd", cwd=cwd)
    lines = proc.stderr.strip().splitlines()
    problems = []
    if proc.returncode != 2:
        problems.append(f"exit {proc.returncode}")
    if len(lines) != 1 or not lines[0].startswith("error: ") or "Traceback" in proc.stderr:
        problems.append(f"stderr is not one error line: {proc.stderr!r}")
    problems += [f"{f!r} missing" for f in EXPECTED[name] if f not in proc.stderr]
    if list(cwd.iterdir()):
        problems.append(f"wrote {sorted(p.name for p in cwd.iterdir())}")
    return f"{name}: {'; '.join(problems)}" if problems else None


def test_bad_specs_exit_2_with_one_message_and_write_nothing(tmp_path):
    assert len(EXPECTED) >= 20
    with ThreadPoolExecutor(max_workers=4) as pool:
        failures = [f for f in pool.map(lambda n: _check(n, tmp_path), sorted(EXPECTED)) if f]
    assert not failures, "\n".join(failures)


def test_unknown_override_path_is_a_usage_error(tmp_path, tiny_spec):
    proc = run_cli("run", tiny_spec, "--set", "training.epoch=3", "--workdir", tmp_path / "wd", cwd=tmp_path)
    assert proc.returncode == 2 and proc.stderr.startswith("error: training.epoch")
    assert not (tmp_path / "wd").exists()


def test_missing_spec_file(tmp_path):
    proc = run_cli("run", tmp_path / "nope.yaml", "--workdir", tmp_path / "wd", cwd=tmp_path)
    assert proc.returncode == 2 and "nope.yaml" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "wd").exists()


def _no_files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


@pytest.mark.parametrize("name", ["alias_bomb_choices.yaml", "alias_bomb_name.yaml", "200k_keys.yaml"])
def test_hostile_specs_are_refused_quickly(tmp_path, name):
    """A YAML alias bomb used to keep the validator at 100% CPU for minutes, and 200,000 keys took minutes
    of duplicate checks; both now end in one line (the timeout is the test's only clock)."""
    spec = BAD_SPECS / name
    if name == "200k_keys.yaml":
        spec = tmp_path / name
        spec.write_text("".join(f"key{i}: {i}\n" for i in range(200_000)), encoding="utf-8")
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    proc = run_cli("run", spec, "--workdir", cwd / "wd", cwd=cwd, timeout=20)
    assert proc.returncode == 2, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "too large" in proc.stderr
    assert _no_files(cwd) == []


def test_every_mistake_is_printed_one_line_each(tmp_path, tiny_spec):
    proc = run_cli(
        "run",
        tiny_spec,
        *("--set", "trials=0", "--set", "model.hidden=[0]", "--set", "search.lr.low=-1", "--set", "~search.nope"),
        "--workdir",
        tmp_path / "wd",
        cwd=tmp_path,
    )
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [
        "error: search.nope: not in the spec, so there is nothing to delete (set by --set ~search.nope)"
    ]
    proc = run_cli(
        "run",
        tiny_spec,
        *("--set", "trials=0", "--set", "model.hidden=[0]", "--set", "search.lr.low=-1"),
        *("--set", "dataset.noise=-1", "--workdir", tmp_path / "wd"),
        cwd=tmp_path,
    )
    assert proc.returncode == 2
    lines = proc.stderr.splitlines()
    assert lines[0] == "error: 4 mistakes in the spec:"
    assert [line.split(":")[0] for line in lines[1:]] == [
        "  trials",
        "  dataset.noise",
        "  model.hidden[0]",
        "  search.lr.low",
    ]
    assert _no_files(tmp_path) == ["tiny.yaml"]


def test_fixing_a_parameter_drops_its_dependants_with_a_note(tmp_path, tiny_spec):
    """tiny's beta1 exists only for momentum and adam: fixing the optimizer to gd leaves a search that runs,
    and Hydra's `~` deletes a key (here the schedule, back to its default)."""
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    overrides = ("--set", "trials=1", "--set", "search.optimizer.value=gd", "--set", "~search.schedule")
    proc = run_cli("run", tiny_spec, *overrides, "--workdir", "wd", "--quiet", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.splitlines() == [
        "note: after --set search.optimizer.value=gd, no trial meets the `when` of search.beta1, "
        "so it is dropped from the search"
    ]
    storage = JournalStorage(JournalFileBackend(str(tmp_path / "wd" / "optuna.journal")))
    (trial,) = optuna.load_study(study_name="tiny", storage=storage).trials
    assert set(trial.params) == {"batch_size", "lr"}  # optimizer and schedule fixed, beta1 gone


def test_a_changed_spec_is_told_how_to_start_a_separate_sweep(tmp_path, tiny_spec):
    run_cli("run", tiny_spec, "--set", "trials=1", "--workdir", "wd", "--quiet", cwd=tmp_path, check=True)
    changed = ("--set", "trials=1", "--set", "model.hidden=[4]", "--workdir", "wd", "--quiet")
    proc = run_cli("run", tiny_spec, *changed, cwd=tmp_path)
    assert proc.returncode == 2
    assert "To start a separate sweep, give it its own name (--set name=tiny-2" in proc.stderr
