"""Every malformed spec of the corpus through the CLI: exit 2, one clear line, nothing written. The corpus goes
through ``sweeps.cli.main`` in this process (one process per spec cost ~1 s of CPU each for 60+ specs); a sample
from every stage of validation goes through the real ``sweeps`` command too, which must say the same."""

from __future__ import annotations

import signal
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml

from tests.conftest import new_workdir, run_cli

BAD_SPECS = Path(__file__).parent / "bad_specs"
EXPECTED = yaml.safe_load((BAD_SPECS / "expected.yaml").read_text(encoding="utf-8"))


# One spec per stage of validation, also run as the real command: the file's syntax, a duplicate key, the
# schema, a field's range, a cross-field rule, a rule that needs the dataset's size, and the spec format's registry.
THROUGH_THE_COMMAND = [
    "toml_syntax_error.toml",
    "duplicate_key.yaml",
    "unknown_entry_key.yaml",
    "lr_negative.yaml",
    "cyclic_conditions.yaml",
    "batch_size_above_n_train.yaml",
    "n_samples_too_large.yaml",
]


def _in_process(name: str, cwd: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch):
    """``sweeps run SPEC --workdir wd`` through ``sweeps.cli.main`` in ``cwd``: (exit status, stderr)."""
    from sweeps.cli import main

    monkeypatch.chdir(cwd)
    handler = signal.getsignal(signal.SIGTERM)  # main() installs its own
    capsys.readouterr()
    try:
        code = main(["run", str(BAD_SPECS / name), "--workdir", str(cwd / "wd")])
    except SystemExit as e:
        code = e.code
    finally:
        signal.signal(signal.SIGTERM, handler)
    return code, capsys.readouterr().err


def _problems(name: str, cwd: Path, code: int, stderr: str) -> str | None:
    lines = stderr.strip().splitlines()
    problems = []
    if code != 2:
        problems.append(f"exit {code}")
    if len(lines) != 1 or not lines[0].startswith("error: ") or "Traceback" in stderr:
        problems.append(f"stderr is not one error line: {stderr!r}")
    problems += [f"{f!r} missing" for f in EXPECTED[name] if f not in stderr]
    if list(cwd.iterdir()):
        problems.append(f"wrote {sorted(p.name for p in cwd.iterdir())}")
    return f"{name}: {'; '.join(problems)}" if problems else None


def test_bad_specs_exit_2_with_one_message_and_write_nothing(tmp_path, capsys, monkeypatch):
    assert len(EXPECTED) >= 20
    failures = []
    for name in sorted(EXPECTED):
        cwd = tmp_path / name.replace(".", "_")
        cwd.mkdir()
        with monkeypatch.context() as m:
            code, stderr = _in_process(name, cwd, capsys, m)
        failures.append(_problems(name, cwd, code, stderr))
    assert not [f for f in failures if f], "\n".join(f for f in failures if f)


def test_the_command_says_the_same_and_writes_nothing(tmp_path, capsys, monkeypatch):
    assert set(THROUGH_THE_COMMAND) <= set(EXPECTED)

    def check(name: str) -> str | None:
        cwd = tmp_path / "command" / name.replace(".", "_")
        cwd.mkdir(parents=True)
        proc = run_cli("run", BAD_SPECS / name, "--workdir", cwd / "wd", cwd=cwd)
        return _problems(name, cwd, proc.returncode, proc.stderr) or (
            None if proc.stderr == said[name] else f"{name}: {proc.stderr!r} != in process {said[name]!r}"
        )

    said = {}
    for name in THROUGH_THE_COMMAND:
        here = tmp_path / "in-process" / name.replace(".", "_")
        here.mkdir(parents=True)
        with monkeypatch.context() as m:
            said[name] = _in_process(name, here, capsys, m)[1]
    with ThreadPoolExecutor(max_workers=2) as pool:
        failures = [f for f in pool.map(check, THROUGH_THE_COMMAND) if f]
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


def test_fixing_a_parameter_drops_its_dependants_with_a_note(tmp_path, tiny_spec, template_db):
    """tiny's beta1 exists only for momentum and adam: fixing the optimizer to gd leaves a search that runs,
    and Hydra's `~` deletes a key (here the schedule, back to its default)."""
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    overrides = ("--set", "trials=1", "--set", "search.optimizer.value=gd", "--set", "~search.schedule")
    new_workdir(tmp_path / "wd", template_db)
    proc = run_cli("run", tiny_spec, *overrides, "--workdir", "wd", "--quiet", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.splitlines() == [
        "note: after --set search.optimizer.value=gd, no trial meets the `when` of search.beta1, "
        "so it is dropped from the search"
    ]
    storage = JournalStorage(JournalFileBackend(str(tmp_path / "wd" / "optuna.journal")))
    (trial,) = optuna.load_study(study_name="tiny", storage=storage).trials
    assert set(trial.params) == {"batch_size", "lr"}  # optimizer and schedule fixed, beta1 gone


def test_a_changed_spec_is_told_how_to_start_a_separate_sweep(tmp_path, tiny_spec, template_db):
    new_workdir(tmp_path / "wd", template_db)
    run_cli("run", tiny_spec, "--set", "trials=1", "--workdir", "wd", "--quiet", cwd=tmp_path, check=True)
    changed = ("--set", "trials=1", "--set", "model.hidden=[4]", "--workdir", "wd", "--quiet")
    proc = run_cli("run", tiny_spec, *changed, cwd=tmp_path)
    assert proc.returncode == 2
    assert "To start a separate sweep, give it its own name (--set name=tiny-2" in proc.stderr
