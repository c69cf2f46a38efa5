"""Where a run came from: package versions (from installed metadata, nothing imported) and the git commit."""

from __future__ import annotations

import subprocess
from functools import cache
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


def _git(args: list[str], cwd: Path) -> str | None:
    try:
        done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return None  # no git on the machine, or it hung
    return done.stdout.strip() if done.returncode == 0 else None


def git_commit(cwd: Path | None = None) -> str | None:
    """The commit checked out in ``cwd`` (default: the working directory), or None outside a git repository."""
    return _git(["rev-parse", "HEAD"], Path.cwd() if cwd is None else Path(cwd)) or None


def git_dirty(cwd: Path | None = None) -> bool | None:
    """Whether tracked files differ from the commit; None outside a git repository."""
    out = _git(["status", "--porcelain", "--untracked-files=no"], Path.cwd() if cwd is None else Path(cwd))
    return None if out is None else bool(out)


@cache
def _provenance(cwd: Path) -> tuple[tuple[str, str], ...]:
    tags = package_versions()
    commit = git_commit(cwd)
    if commit:
        tags["git_commit"] = commit
        tags[schema.GIT_COMMIT_SYSTEM] = commit  # shown by the MLflow UI as the run's source version
        tags["git_dirty"] = str(git_dirty(cwd))
    return tuple(tags.items())


def provenance_tags(cwd: Path | None = None) -> dict[str, str]:
    """Package versions plus ``git_commit``/``git_dirty`` when ``cwd`` is in a git repository (cached per cwd)."""
    return dict(_provenance(Path.cwd().resolve() if cwd is None else Path(cwd).resolve()))
