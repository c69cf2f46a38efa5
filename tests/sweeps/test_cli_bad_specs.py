"""Every malformed spec of the corpus through the real CLI: exit 2, one clear line, nothing written."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

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
