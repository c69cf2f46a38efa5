"""Where a run came from: package versions (from installed metadata, nothing imported) and the git commit."""

from __future__ import annotations

import os
import subprocess
from importlib import metadata
from pathlib import Path

from tracking import schema

PACKAGES = ("optsweep", "numpy", "optuna", "mlflow")


def package_versions(packages: tuple[str, ...] = PACKAGES) -> dict[str, str]:
    """``{"version.numpy": "2.1.0", ...}`` for the installed packages among ``packages``; missing ones left out.

    Reads distribution metadata only, so Optuna is never imported by tracking.
    """
    versions = {}
    for name in packages:
        try:
            versions[f"version.{name}"] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


# One `git status` answers both questions: the commit checked out (its "# branch.oid" header line, v2
# format, git >= 2.11) and whether tracked files differ from it (any other line). In a large checkout it
# takes seconds, so a sweep starts it early (begin_git_state) and reads it when the parent run is opened.
_GIT_STATUS = ("git", "status", "--porcelain=v2", "--branch", "--untracked-files=no")
_GIT_SECONDS = 10
_begun: dict[Path, subprocess.Popen | None] = {}
_known: dict[Path, tuple[tuple[str, str], ...]] = {}  # provenance_tags, per folder: a process asks once


def _here(cwd: Path | str | None) -> Path:
    return Path.cwd().resolve() if cwd is None else Path(cwd).resolve()


def _spawn(cwd: Path) -> subprocess.Popen | None:
    # GIT_OPTIONAL_LOCKS=0: git status does not take the index's lock to refresh it, so a git command the
    # user runs meanwhile never finds the index locked by this one.
    env = {**os.environ, "GIT_OPTIONAL_LOCKS": "0"}
    try:
        return subprocess.Popen(
            _GIT_STATUS,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
    except OSError:  # no git on the machine, or no such folder
        return None


def begin_git_state(cwd: Path | str | None = None) -> None:
    """Start :func:`git_state`'s ``git status`` for ``cwd`` (default: the working directory) in the
    background; the next :func:`git_state` of the same folder reads its answer."""
    cwd = _here(cwd)
    if cwd not in _begun and cwd not in _known:
        _begun[cwd] = _spawn(cwd)


def git_state(cwd: Path | str | None = None) -> tuple[str | None, bool | None]:
    """``(commit, dirty)`` of the checkout ``cwd`` is in (default: the working directory): the commit checked
    out and whether tracked files differ from it; ``(None, None)`` outside a git repository, without git, or
    when git does not answer within 10 s. A repository without a commit yet has no commit."""
    cwd = _here(cwd)
    proc = _begun.pop(cwd) if cwd in _begun else _spawn(cwd)
    if proc is None:
        return None, None
    try:
        out, _ = proc.communicate(timeout=_GIT_SECONDS)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        return None, None
    if proc.returncode != 0:
        return None, None
    lines = out.splitlines()
    oid = next((line.split(" ", 2)[2] for line in lines if line.startswith("# branch.oid ")), None)
    return (None if oid in (None, "(initial)") else oid), any(not line.startswith("#") for line in lines)


def git_commit(cwd: Path | str | None = None) -> str | None:
    """The commit checked out in ``cwd`` (default: the working directory), or None outside a git repository."""
    return git_state(cwd)[0]


def _provenance(cwd: Path) -> tuple[tuple[str, str], ...]:
    if cwd in _known:
        return _known[cwd]
    tags = package_versions()
    commit, dirty = git_state(cwd)
    if commit:
        tags["git_commit"] = commit
        tags[schema.GIT_COMMIT_SYSTEM] = commit  # shown by the MLflow UI as the run's source version
        tags["git_dirty"] = str(dirty)
    _known[cwd] = tuple(tags.items())
    return _known[cwd]


def provenance_tags(cwd: Path | None = None) -> dict[str, str]:
    """Package versions plus ``git_commit``/``git_dirty`` when ``cwd`` is in a git repository (cached per cwd)."""
    return dict(_provenance(_here(cwd)))
