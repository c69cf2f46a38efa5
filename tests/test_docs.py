"""The docs: the generated CLI and spec reference name everything the code accepts, and the site builds.

The expected names are read here from the code itself (the argparse parser, ``sweeps.spec``'s public tables
and models, optcore's registries), not through docs/gen_reference.py's accessors, so a generator that drops
a command, an option or a key fails these tests.
"""

from __future__ import annotations

import argparse
import importlib.util
import re
import subprocess
import sys

import pytest

import optcore
import sweeps.spec as spec
from sweeps.cli import build_parser
from tests.conftest import ROOT


def _generator():
    loaded = importlib.util.spec_from_file_location("gen_reference", ROOT / "docs" / "gen_reference.py")
    module = importlib.util.module_from_spec(loaded)
    loaded.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def gen():
    return _generator()


def _sections(page: str) -> dict[str, str]:
    """``{command: its section}`` of the CLI page (each starts with ``## sweeps NAME``)."""
    parts = re.split(r"^## sweeps (\S+)\n", page, flags=re.M)
    return dict(zip(parts[1::2], parts[2::2], strict=True))


def _commands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    (sub,) = (a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


def test_cli_reference_has_every_command_and_option(gen):
    sections = _sections(gen.cli_markdown())
    commands = _commands()
    assert list(sections) == list(commands)  # every command, in `sweeps --help`'s order, and nothing else
    for name, parser in commands.items():
        text = sections[name]
        assert parser.description in text
        for action in parser._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            if action.help is argparse.SUPPRESS:  # internal (e.g. worker --coordinated): not documented
                assert all(f"`{o}" not in text for o in action.option_strings), (name, action.option_strings)
                continue
            spelled = action.option_strings[0] if action.option_strings else action.metavar
            assert f"`{spelled}" in text, f"sweeps {name}: {spelled} is missing from the CLI reference"
            assert action.help.split("(")[0].strip()[:40] in text, (name, spelled)


def _spec_names() -> dict[str, list[str]]:
    """Every key and name a spec accepts, by where it goes, straight from the code."""
    blocks = [spec.Spec, spec.DatasetSpec, spec.ModelSpec, spec.TrainingSpec, spec.SamplerSpec, spec.PrunerSpec]
    blocks += [spec.StopSpec, spec.Entry]
    keys = [k for model in blocks for k in model.model_fields if k != getattr(model, "extras", None)]
    return {
        "block keys": keys,
        "hyperparameters": list(spec.HYPERPARAMETERS),
        "objectives": list(spec.OBJECTIVES),
        "samplers": list(spec.SAMPLER_ARGS),
        "sampler arguments": [a for args in spec.SAMPLER_ARGS.values() for a in args],
        "pruners": list(spec.PRUNER_ARGS),
        "pruner arguments": [a for args in spec.PRUNER_ARGS.values() for a in args],
        "datasets": list(optcore.DATASETS),
        "dataset parameters": [p for info in optcore.DATASETS.values() for p in info.defaults],
        "optimizers": list(optcore.OPTIMIZERS),
        "schedules": list(optcore.SCHEDULES),
    }


def test_spec_reference_has_every_key_and_name(gen):
    page = gen.spec_markdown()
    for kind, names in _spec_names().items():
        assert names, kind
        missing = [n for n in names if f"`{n}`" not in page]
        assert not missing, f"{kind} missing from the spec reference: {missing}"


def test_generated_pages_are_the_hooks_pages(gen):
    pages = gen.pages()
    assert set(pages) == {gen.CLI_PAGE, gen.SPEC_PAGE}
    assert all(text.startswith(gen.GENERATED_NOTE) for text in pages.values())


def test_site_builds_strict(tmp_path):
    pytest.importorskip("mkdocs", reason="mkdocs is not installed: pip install -e '.[docs]' to build the docs")
    site = tmp_path / "site"
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    cli = (site / "reference" / "cli" / "index.html").read_text()
    assert all(f"sweeps {name}" in cli for name in _commands())
    assert "Benchmarks" in (site / "benchmarks" / "index.html").read_text()
    assert not list(site.rglob("*.py")), "the hook was copied into the site"
