"""Where a run came from: package versions (from installed metadata, nothing imported) and the git commit."""

from __future__ import annotations

import os
import subprocess
import threading
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
_begun: dict[Path, subprocess.Popen | None] = {}  # lookups begun and not read yet, by folder
_known: dict[Path, tuple[tuple[str, str], ...]] = {}  # provenance_tags, per folder: a process asks once
_lock = threading.Lock()  # over both


def _here(cwd: Path | str | None) -> Path:
    return Path.cwd().resolve() if cwd is None else Path(cwd).resolve()


def _git(args: tuple[str, ...], cwd: Path) -> subprocess.Popen | None:
    # GIT_OPTIONAL_LOCKS=0: git status does not take the index's lock to refresh it, so a git command the
    # user runs meanwhile never finds the index locked by this one. LC_ALL=C: its messages in English.
    env = {**os.environ, "GIT_OPTIONAL_LOCKS": "0", "LC_ALL": "C"}
    pipe = subprocess.PIPE
    try:
        return subprocess.Popen(args, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=pipe, stderr=pipe, text=True)
    except OSError:  # no git on the machine, or no such folder
        return None


def _answer(proc: subprocess.Popen | None) -> tuple[str | None, str]:
    """(what ``proc`` printed, or None when it failed, was not started or did not end within 10 s; the
    end of what it said on stderr)."""
    if proc is None:
        return None, ""
    try:
        out, err = proc.communicate(timeout=_GIT_SECONDS)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        return None, ""
    return (out if proc.returncode == 0 else None), err[-500:]


def begin_git_state(cwd: Path | str | None = None) -> None:
    """Start :func:`git_state`'s ``git status`` for ``cwd`` (default: the working directory) in the
    background; the next :func:`git_state` of the same folder reads its answer. A lookup begun before and
    never read (a sweep that failed before opening its parent run) is dropped for the new one."""
    cwd = _here(cwd)
    with _lock:
        if cwd in _known:
            return
        stale = _begun.pop(cwd, None)
        _begun[cwd] = _git(_GIT_STATUS, cwd)
    if stale is not None:
        stale.kill()
        stale.communicate()


def git_state(cwd: Path | str | None = None) -> tuple[str | None, bool | None]:
    """``(commit, dirty)`` of the checkout ``cwd`` is in (default: the working directory): the commit checked
    out and whether tracked files differ from it; ``(None, None)`` outside a git repository, without git, or
    when git does not answer within 10 s. A repository without a commit yet has no commit. Where ``git
    status`` fails in a repository (a damaged index, a git older than 2.11) the commit is still read, and
    ``dirty`` is None: not known."""
    cwd = _here(cwd)
    with _lock:
        begun = cwd in _begun
        proc = _begun.pop(cwd, None)
    out, err = _answer(proc if begun else _git(_GIT_STATUS, cwd))
    if out is None:
        if "not a git repository" in err:
            return None, None
        # In a repository whose status git cannot give: the commit alone.
        head, _ = _answer(_git(("git", "rev-parse", "--verify", "--quiet", "HEAD"), cwd))
        return (head.strip() or None) if head else None, None
    lines = out.splitlines()
    oid = next((line.split(" ", 2)[2] for line in lines if line.startswith("# branch.oid ")), None)
    return (None if oid in (None, "(initial)") else oid), any(not line.startswith("#") for line in lines)


def git_commit(cwd: Path | str | None = None) -> str | None:
    """The commit checked out in ``cwd`` (default: the working directory), or None outside a git repository."""
    return git_state(cwd)[0]


def _provenance(cwd: Path) -> tuple[tuple[str, str], ...]:
    with _lock:
        if cwd in _known:
            return _known[cwd]
    tags = package_versions()
    commit, dirty = git_state(cwd)
    if commit:
        tags["git_commit"] = commit
        tags[schema.GIT_COMMIT_SYSTEM] = commit  # shown by the MLflow UI as the run's source version
        tags["git_dirty"] = str(dirty)
    with _lock:
        return _known.setdefault(cwd, tuple(tags.items()))


def provenance_tags(cwd: Path | None = None) -> dict[str, str]:
    """Package versions plus ``git_commit``/``git_dirty`` when ``cwd`` is in a git repository (cached per cwd)."""
    return dict(_provenance(_here(cwd)))
