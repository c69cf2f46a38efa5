"""Where a run came from: package versions and the git checkout, read by one `git status`."""

from __future__ import annotations

import subprocess
from pathlib import Path

import mlflow

import tracking
from tests.conftest import new_workdir, run_cli
from tracking import provenance


def git(*args: str, cwd: Path) -> str:
    command = ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args]
    return subprocess.run(command, cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


def repository(folder: Path, commit: bool = True) -> Path:
    """A git repository at ``folder`` holding ``tracked.txt``, committed unless ``commit`` is false."""
    folder.mkdir(parents=True)
    git("init", "-q", cwd=folder)
    (folder / "tracked.txt").write_text("one\n")
    if commit:
        git("add", "tracked.txt", cwd=folder)
        git("commit", "-q", "-m", "first", cwd=folder)
    return folder


def test_the_commit_and_whether_tracked_files_changed(tmp_path):
    repo = repository(tmp_path / "repo")
    head = git("rev-parse", "HEAD", cwd=repo)
    assert tracking.git_state(repo) == (head, False)
    (repo / "untracked.txt").write_text("new\n")  # untracked files do not count
    assert tracking.git_state(repo) == (head, False)
    (repo / "tracked.txt").write_text("two\n")
    assert tracking.git_state(repo) == (head, True)
    assert tracking.git_commit(repo / ".") == head  # any spelling of the folder
    sub = repo / "sub"
    sub.mkdir()
    assert tracking.git_state(sub) == (head, True)  # a folder inside the checkout


def test_no_commit_outside_a_repository_or_before_the_first_commit(tmp_path):
    assert tracking.git_state(tmp_path) == (None, None)
    assert tracking.git_commit(tmp_path) is None
    fresh = repository(tmp_path / "fresh", commit=False)
    assert tracking.git_state(fresh) == (None, False)
    git("add", "tracked.txt", cwd=fresh)
    assert tracking.git_state(fresh) == (None, True)  # staged, not committed
    assert "git_commit" not in tracking.provenance_tags(fresh)


def test_a_status_git_cannot_give_keeps_the_commit(tmp_path):
    """A damaged index makes `git status` fail: the commit is still read (as before, when it had a call of
    its own), and whether files changed is not known."""
    repo = repository(tmp_path / "repo")
    head = git("rev-parse", "HEAD", cwd=repo)
    (repo / ".git" / "index").write_bytes(b"DIRC")
    assert subprocess.run(["git", "status"], cwd=repo, capture_output=True).returncode != 0
    assert tracking.git_state(repo) == (head, None)
    tags = tracking.provenance_tags(repo)
    assert (tags["git_commit"], tags["git_dirty"]) == (head, "None")


def test_provenance_tags_name_versions_and_the_checkout(tmp_path):
    repo = repository(tmp_path / "repo")
    (repo / "tracked.txt").write_text("two\n")
    tags = tracking.provenance_tags(repo)
    assert tags["version.mlflow"] == mlflow.__version__ and tags["version.numpy"]
    head = git("rev-parse", "HEAD", cwd=repo)
    assert (tags["git_commit"], tags["mlflow.source.git.commit"], tags["git_dirty"]) == (head, head, "True")
    outside = tracking.provenance_tags(tmp_path)
    assert "git_commit" not in outside and "git_dirty" not in outside and outside["version.numpy"]


def test_a_lookup_begun_early_is_the_one_read(tmp_path):
    """`begin_git_state` runs `git status` in the background; `git_state` reads its answer (the checkout as
    it was then), and only once: the next call asks again."""
    repo = repository(tmp_path / "repo")
    head = git("rev-parse", "HEAD", cwd=repo)
    tracking.begin_git_state(repo)
    provenance._begun[repo.resolve()].wait(timeout=30)  # its answer is in, before the file changes
    (repo / "tracked.txt").write_text("two\n")
    assert tracking.git_state(repo) == (head, False)
    assert tracking.git_state(repo) == (head, True)
    assert repo.resolve() not in provenance._begun


def test_a_lookup_begun_and_never_read_gives_way_to_the_next(tmp_path):
    """A sweep that fails before opening its parent run leaves its lookup unread: the next sweep in the
    same process begins afresh rather than read that older answer."""
    repo = repository(tmp_path / "repo")
    tracking.begin_git_state(repo)
    first = provenance._begun[repo.resolve()]
    first.wait(timeout=30)
    (repo / "tracked.txt").write_text("two\n")
    git("commit", "-q", "-am", "second", cwd=repo)
    tracking.begin_git_state(repo)
    assert first.returncode is not None and first.stdout.closed  # reaped, its pipe closed
    assert tracking.git_state(repo) == (git("rev-parse", "HEAD", cwd=repo), False)


def test_run_begins_the_lookup_that_its_parent_run_reads(tmp_path, tiny_spec, template_db, monkeypatch):
    """Through the Python API: `run()` begins the lookup as it starts, and opening the parent run reads
    that answer instead of asking git then."""
    import sweeps

    repo = repository(tmp_path / "repo")
    monkeypatch.chdir(repo)
    read = []
    ask = provenance.git_state

    def git_state(cwd=None):
        read.append(Path(cwd).resolve() in provenance._begun)
        return ask(cwd)

    monkeypatch.setattr(provenance, "git_state", git_state)
    spec = sweeps.load_spec(tiny_spec, ["trials=1", "training.epochs=1"])
    result = sweeps.run(spec, workdir=new_workdir(tmp_path / "wd", template_db))
    assert read == [True]
    run = mlflow.MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'wd' / 'mlflow.db'}").get_run(result.parent_run_id)
    assert run.data.tags["git_commit"] == git("rev-parse", "HEAD", cwd=repo)


def test_a_sweep_run_from_a_checkout_tags_its_commit_and_state(tmp_path, tiny_spec, template_db):
    """`sweeps run` begins the lookup as it starts and the parent run and every trial carry its answer."""
    repo = repository(tmp_path / "repo")
    (repo / "tracked.txt").write_text("changed, not committed\n")
    wd = new_workdir(tmp_path / "wd", template_db)
    run_cli("run", tiny_spec, "--workdir", wd, "--set", "trials=2", "--set", "training.epochs=2", cwd=repo, check=True)
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{wd / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("tiny").experiment_id])
    assert len(runs) == 3  # the parent and two trials
    head = git("rev-parse", "HEAD", cwd=repo)
    for run in runs:
        assert (run.data.tags["git_commit"], run.data.tags["git_dirty"]) == (head, "True")
