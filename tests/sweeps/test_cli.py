"""The main job end to end: the real ``sweeps`` CLI in subprocesses against real Optuna and MLflow stores."""

from __future__ import annotations

import csv
import io
import json
import signal
import subprocess
import sys
import time
from functools import partial
from pathlib import Path

import mlflow
import optuna
import pytest
from optuna.trial import TrialState

from tests.conftest import (
    ROOT,
    SWEEPS,
    TINY_SPEC,
    cli_env,
    new_workdir,
    processes_with,
    requires_postgres,
    run_cli,
    stop_server_groups,
)

optuna.logging.set_verbosity(optuna.logging.WARNING)


def study(workdir: Path, name: str) -> optuna.Study:
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    return optuna.load_study(
        study_name=name, storage=JournalStorage(JournalFileBackend(str(workdir / "optuna.journal")))
    )


def client(workdir: Path) -> mlflow.MlflowClient:
    return mlflow.MlflowClient(f"sqlite:///{workdir / 'mlflow.db'}")


def child_runs(workdir: Path, name: str):
    c = client(workdir)
    exp = c.get_experiment_by_name(name)
    runs = c.search_runs([exp.experiment_id], filter_string="tags.role = 'trial'", max_results=1000)
    return c, sorted(runs, key=lambda r: int(r.data.tags["trial_number"]))


QUICK = ["--set", "trials=3", "--set", "training.epochs=3", "--set", "search.warmup_epochs.high=2"]
QUICK += ["--set", "dataset.n_samples=1000"]


@pytest.fixture(scope="module")
def quickstart(tmp_path_factory):
    """The quickstart shrunk to 3 short trials, in a new workdir as a newcomer runs it (the store created by
    the CLI): (folder, the options naming the sweep, the finished `run`). Read by the table test; the
    quickstart test goes on to resume it."""
    folder = tmp_path_factory.mktemp("quickstart")
    quick = [*QUICK, "--workdir", folder / "wd"]
    proc = run_cli("run", ROOT / "examples" / "quickstart.yaml", *quick, cwd=folder, check=True)
    return folder, quick, proc


@pytest.fixture(scope="module")
def tiny_sweep(tmp_path_factory, template_db):
    """The tiny spec's sweep (4 trials) as `sweeps run SPEC` leaves it: (folder, workdir, the trials' params and
    values right after the run). Tests that only read it, or are refused before writing, share it."""
    folder = tmp_path_factory.mktemp("tiny")
    (folder / "tiny.yaml").write_text(TINY_SPEC)
    wd = new_workdir(folder / "wd", template_db)
    run_cli("run", folder / "tiny.yaml", "--workdir", wd, cwd=folder, check=True)
    return folder, wd, [(t.params, t.value) for t in study(wd, "tiny").trials]


def test_help_does_not_import_the_heavy_packages():
    code = (
        "import sys; from sweeps.cli import build_parser; build_parser().format_help(); "
        "print(sorted(m for m in ('mlflow', 'optuna', 'sklearn', 'pandas', 'torch') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
    for command in (
        "",
        "run",
        "worker",
        "best",
        "trials",
        "report",
        "reproduce",
        "ui",
        "batch-size",
        "confirm",
        "export",
    ):
        proc = run_cli(*([command] if command else []), "--help", cwd=ROOT)
        assert proc.returncode == 0 and "usage: sweeps" in proc.stdout


def test_quickstart_shrunk_then_best_trials_and_resume(quickstart):
    tmp_path, quick, proc = quickstart
    wd = tmp_path / "wd"
    assert "best of 3 completed trials: final_val_cost = " in proc.stdout
    # without a terminal: a progress line per trial, with the time left once a trial has set the pace
    lines = [line for line in proc.stderr.splitlines() if line.startswith("trials ")]
    assert [line.split(" · ")[0] for line in lines] == ["trials 1/3", "trials 2/3", "trials 3/3"]
    assert lines[-1].endswith(" left") and "left" not in lines[0]
    assert "sweeps ui --workdir" in proc.stdout

    s = study(wd, "moons-quickstart")
    assert len(s.trials) == 3
    c, runs = child_runs(wd, "moons-quickstart")
    parent_id = s.user_attrs["mlflow_parent_run_id"]
    assert [r.data.tags["trial_number"] for r in runs] == ["0", "1", "2"]
    for r, t in zip(runs, s.trials, strict=True):
        assert r.data.tags["mlflow.parentRunId"] == parent_id
        assert r.info.run_name == f"trial-{t.number:04d}"
        assert t.user_attrs["mlflow_run_id"] == r.info.run_id
        epochs = int(r.data.metrics["epochs_run"])
        for key in ("train_cost", "val_cost", "val_accuracy", "lr", "epoch_seconds"):
            assert [m.step for m in c.get_metric_history(r.info.run_id, key)] == list(range(1, epochs + 1)), key
        for k, v in t.params.items():
            assert r.data.params[k] == str(v)
        if t.state == optuna.trial.TrialState.COMPLETE:
            assert r.info.status == "FINISHED"
            assert r.data.metrics["final_val_cost"] == pytest.approx(t.value)

    best = json.loads(
        run_cli("best", ROOT / "examples" / "quickstart.yaml", *quick, "--json", cwd=tmp_path, check=True).stdout
    )
    completed = [t for t in s.trials if t.state == optuna.trial.TrialState.COMPLETE]
    winner = min(completed, key=lambda t: (t.value, t.number))
    assert best["best_value"] == pytest.approx(winner.value)
    assert {k: best["best_params"][k] for k in winner.params} == winner.params
    table = run_cli("trials", ROOT / "examples" / "quickstart.yaml", *quick, cwd=tmp_path, check=True).stdout
    assert "completed" in table and "batch_size" in table

    # Resume: the same spec with a larger total continues the study and reuses the parent run.
    run_cli("run", ROOT / "examples" / "quickstart.yaml", *quick, "--trials", "5", cwd=tmp_path, check=True)
    s = study(wd, "moons-quickstart")
    assert len(s.trials) == 5
    assert s.user_attrs["mlflow_parent_run_id"] == parent_id
    _, runs = child_runs(wd, "moons-quickstart")
    assert sorted(int(r.data.tags["trial_number"]) for r in runs) == [0, 1, 2, 3, 4]
    parents = client(wd).search_runs([runs[0].info.experiment_id], filter_string="tags.role = 'sweep'")
    assert [p.info.run_id for p in parents] == [parent_id]
    # Running once more with the total already reached trains nothing new.
    run_cli("run", ROOT / "examples" / "quickstart.yaml", *quick, "--trials", "5", cwd=tmp_path, check=True)
    assert len(study(wd, "moons-quickstart").trials) == 5


def test_same_spec_and_seed_give_identical_trials(tmp_path, tiny_spec, tiny_sweep, template_db):
    wd = new_workdir(tmp_path / "b", template_db)
    run_cli("run", tiny_spec, "--workdir", wd, cwd=tmp_path, check=True)
    results = [tiny_sweep[2], [(t.params, t.value) for t in study(wd, "tiny").trials]]  # the same command twice
    assert results[0] == results[1]
    assert len({json.dumps(p, sort_keys=True) for p, _ in results[0]}) > 1  # it did search


def test_a_resumed_sweep_proposes_new_settings_and_is_reproducible(tmp_path, tiny_spec, template_db):
    results = []
    for wd in ("a", "b"):
        new_workdir(tmp_path / wd, template_db)
        run_cli("run", tiny_spec, "--trials", "2", "--workdir", tmp_path / wd, cwd=tmp_path, check=True)
        run_cli("run", tiny_spec, "--trials", "4", "--workdir", tmp_path / wd, cwd=tmp_path, check=True)
        results.append([(t.params, t.value) for t in study(tmp_path / wd, "tiny").trials])
    assert results[0] == results[1]
    # Reseeded with the spec's seed, the resumed sampler would replay trials 0 and 1 as trials 2 and 3.
    assert len({params["lr"] for params, _ in results[0]}) == 4


def _cli_loading(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> tuple[subprocess.CompletedProcess, list[str], str]:
    """The CLI's ``main`` with ``args`` in a new interpreter: the process, the lines it printed, and which of
    MLflow, pandas and scikit-learn it loaded (which the probe prints last)."""
    code = (
        "import sys; from sweeps.cli import main; rc = main(sys.argv[1:]); "
        "print(sorted(m for m in ('mlflow', 'pandas', 'sklearn') if m in sys.modules)); sys.exit(rc)"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env={**cli_env(), **(env or {})},
        timeout=300,
    )
    *said, loaded = proc.stdout.strip().splitlines() or [""]  # nothing printed: it failed before main returned
    return proc, said, loaded


def test_changed_search_on_resume_is_refused_before_mlflow_loads(tiny_sweep):
    tmp_path, wd, trials = tiny_sweep
    changed = ("run", "tiny.yaml", "--set", "trials=5", "--set", "model.hidden=[4]", "--workdir", str(wd))
    for workers in ("1", "2"):
        proc, _, loaded = _cli_loading(*changed, "--workers", workers, cwd=tmp_path)
        assert proc.returncode == 2
        assert "was started from a different spec" in proc.stderr and "Traceback" not in proc.stderr
        assert loaded == "[]"  # refused from the study the progress bar reads, before MLflow's ~2 s
    assert len(study(wd, "tiny").trials) == len(trials)


def test_pruned_and_diverged_trials_end_right_in_both_stores(tmp_path, template_db):
    """A grid of 2 batch sizes × 3 learning rates: lr = 1e6 diverges, lr = 1e-6 barely moves and is pruned
    against the median of the good runs, lr = 0.5 completes."""
    spec = tmp_path / "prune.yaml"
    spec.write_text("""\
name: prune-and-diverge
seed: 3
trials: 6
dataset: {name: moons, n_samples: 400, noise: 0.2}
model: {hidden: [16], activation: relu}
training: {epochs: 6}
search:
  batch_size: {choices: [32, 64]}
  optimizer: {value: gd}
  lr: {choices: [0.5, 0.000001, 1000000.0]}
sampler: {name: grid}
pruner: {name: median, n_startup_trials: 1, warmup_epochs: 0}
""")
    ran = run_cli("run", spec, "--workdir", new_workdir(tmp_path / "wd", template_db), cwd=tmp_path, check=True)
    s = study(tmp_path / "wd", "prune-and-diverge")
    c, runs = child_runs(tmp_path / "wd", "prune-and-diverge")
    check_counts_and_best_trial(ran, s, spec, tmp_path)
    by_number = {int(r.data.tags["trial_number"]): r for r in runs}
    states = {t.number: t.state for t in s.trials}
    assert len(s.trials) == 6 and len(runs) == 6
    seen = set()
    for t in s.trials:
        r = by_number[t.number]
        lr = t.params["lr"]
        if lr == 1e6:
            assert t.state == optuna.trial.TrialState.FAIL
            assert t.user_attrs["fail_reason"].startswith("cost diverged at epoch 1, iteration")
            assert r.info.status == "FAILED" and r.data.tags["fail_reason"] == t.user_attrs["fail_reason"]
            seen.add("fail")
        elif t.state == optuna.trial.TrialState.PRUNED:
            pruned_at = int(r.data.tags["pruned_at_epoch"])
            assert r.info.status == "KILLED" and 1 <= pruned_at < 6
            assert len(c.get_metric_history(r.info.run_id, "val_cost")) == pruned_at
            assert max(t.intermediate_values) == pruned_at
            seen.add("pruned")
        else:
            assert t.state == optuna.trial.TrialState.COMPLETE and r.info.status == "FINISHED"
            assert len(c.get_metric_history(r.info.run_id, "val_cost")) == 6
            seen.add("complete")
    assert seen == {"fail", "pruned", "complete"}, states

    # `reproduce` confirms a diverged trial (it diverges again at the same epoch and iteration) and a pruned one.
    for t in (next(t for t in s.trials if t.state == state) for state in (TrialState.FAIL, TrialState.PRUNED)):
        proc = run_cli("reproduce", by_number[t.number].info.run_id, "--workdir", tmp_path / "wd", cwd=tmp_path)
        assert proc.returncode == 0 and "the new curve matches the logged one" in proc.stdout, proc.stdout
        if t.state == TrialState.FAIL:
            assert f"now: {t.user_attrs['fail_reason'].split(' (')[0]}" in proc.stdout
            # a divergence logged at another iteration is not reproduced by this one
            c.set_tag(
                by_number[t.number].info.run_id, "fail_reason", "cost diverged at epoch 1, iteration 999 (cost = nan)"
            )
            proc = run_cli("reproduce", by_number[t.number].info.run_id, "--workdir", tmp_path / "wd", cwd=tmp_path)
            assert proc.returncode == 1 and "DOES NOT match" in proc.stdout, proc.stdout


def check_counts_and_best_trial(ran, s, spec, tmp_path):
    """The summary, the progress lines, `best` and `trials` say what became of every trial (issue 10.8, 10.9,
    10.11, 17.8): counts by outcome with the epochs pruned trials stopped at, and the winning trial's number and
    MLflow run id — the input of `sweeps reproduce`."""
    by_state = {state: [t for t in s.trials if t.state == state] for state in TrialState}
    complete, pruned, failed = by_state[TrialState.COMPLETE], by_state[TrialState.PRUNED], by_state[TrialState.FAIL]
    winner = min(complete, key=lambda t: (t.value, t.number))
    epochs = sorted(t.last_step for t in pruned)
    span = f"epoch {epochs[0]}" if epochs[0] == epochs[-1] else f"epochs {epochs[0]}–{epochs[-1]}"
    counts = f"{len(complete)} completed, {len(pruned)} pruned (at {span}), {len(failed)} failed"
    assert f"{len(s.trials)} trials: {counts}" in ran.stdout
    assert f"best of {len(complete)} completed trials: final_val_cost = " in ran.stdout
    assert f"trial {winner.number}, MLflow run {winner.user_attrs['mlflow_run_id']}" in ran.stdout
    progress = [line for line in ran.stderr.splitlines() if line.startswith("trials ")]
    assert progress[-1].startswith(f"trials 6/6 · best {winner.value:.6g} · {len(pruned)} pruned, ")

    wd = ["--workdir", tmp_path / "wd"]
    best = json.loads(run_cli("best", spec, *wd, "--json", cwd=tmp_path, check=True).stdout)
    assert (best["best_trial"], best["best_run_id"]) == (winner.number, winner.user_attrs["mlflow_run_id"])
    assert best["counts"]["completed"] == len(complete) and best["counts"]["pruned"] == len(pruned)
    assert best["counts"]["failed"] == len(failed) and sorted(best["counts"]["pruned_at_epochs"]) == epochs
    rows = list(csv.DictReader(io.StringIO(run_cli("best", spec, *wd, "--csv", cwd=tmp_path, check=True).stdout)))
    assert [(r["trial"], r["run_id"], r["batch_size"]) for r in rows] == [
        (str(winner.number), winner.user_attrs["mlflow_run_id"], str(winner.params["batch_size"]))
    ]

    # Every trial as JSON and CSV: integers stay integers, every column is there.
    records = json.loads(run_cli("trials", spec, *wd, "--json", cwd=tmp_path, check=True).stdout)
    assert [r["batch_size"] for r in records] == [t.params["batch_size"] for t in s.trials]
    assert all(type(r["batch_size"]) is int and type(r["number"]) is int for r in records)
    assert [r["pruned_at_epoch"] for r in records] == [t.last_step if t in pruned else None for t in s.trials]
    table = run_cli("trials", spec, *wd, "--csv", cwd=tmp_path, check=True).stdout
    rows = list(csv.DictReader(io.StringIO(table)))
    assert [r["batch_size"] for r in rows] == [str(t.params["batch_size"]) for t in s.trials]
    assert [r["run_id"] for r in rows] == [t.user_attrs["mlflow_run_id"] for t in s.trials]
    assert {r["fail_reason"] for r in rows if r["state"] == "FAIL"} == {t.user_attrs["fail_reason"] for t in failed}

    # The table fits 80 columns; failure reasons follow it, one line each.
    shown = run_cli("trials", spec, *wd, cwd=tmp_path, check=True, env={"COLUMNS": "80"}).stdout.splitlines()
    assert max(map(len, shown)) <= 80, "\n".join(shown)
    for t in pruned:
        assert any(line.split()[:2] == [str(t.number), f"pruned@{t.last_step}"] for line in shown)
    for t in failed:
        assert f"trial {t.number} failed: {t.user_attrs['fail_reason']}" in shown


def test_tables_fit_80_columns_with_many_parameters(quickstart):
    """The quickstart's ten parameters do not fit a column each in 80 columns: the table then shows one
    wrapped `setting` column, naming only the parameters that applied to each trial."""
    tmp_path, quick, _ = quickstart
    s = study(tmp_path / "wd", "moons-quickstart")
    for columns in (80, 60):
        lines = run_cli(
            "trials",
            ROOT / "examples" / "quickstart.yaml",
            *quick,
            cwd=tmp_path,
            check=True,
            env={"COLUMNS": str(columns)},
        ).stdout.splitlines()
        assert max(map(len, lines)) <= columns, "\n".join(lines)
        assert lines[0].split() == ["#", "outcome", "value", "setting"]
        text = " ".join(lines[1:])
        for t in s.trials:
            assert all(f"{k}=" in text for k in t.params)
    wide = run_cli(
        "trials", ROOT / "examples" / "quickstart.yaml", *quick, cwd=tmp_path, check=True, env={"COLUMNS": "400"}
    ).stdout.splitlines()
    assert wide[0].split()[:4] == ["#", "outcome", "value", "batch_size"]  # a column each when there is room


def test_a_signal_that_cut_an_import_short_still_exits_as_interrupted(monkeypatch, capsys):
    """A SIGTERM as the command starts can land inside an import (the kill loop caught one in the spec's YAML
    parser): the command still says it was interrupted and exits 143, without importing again what the
    signal left half imported (it used to die there with a traceback, exit code 1)."""
    import sweeps.cli as cli
    from sweeps.errors import Interrupted

    monkeypatch.setattr(cli, "_interrupted_exit", [])
    monkeypatch.setitem(sys.modules, "sweeps.spec", None)  # importing it now fails, as a half-imported module's
    assert cli._exit_for(Interrupted("SIGTERM", cli.EXIT_SIGTERM), "run") == cli.EXIT_SIGTERM == 143
    assert capsys.readouterr().err == "\ninterrupted (SIGTERM); run the same command again to resume\n"
    assert cli._interrupted_exit == [143]


def test_version_is_the_package_version():
    from importlib.metadata import version

    proc = run_cli("--version", cwd=ROOT)
    assert proc.returncode == 0 and proc.stdout.strip() == f"sweeps {version('optsweep')}"


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_as_the_command_ends_does_not_kill_it_after_its_work_is_done(tiny_sweep, sig):
    """A Ctrl-C (or SIGTERM) that lands as a finished command tears its interpreter down finds Python's
    default handlers back in place, late in the teardown, and used to kill the process by the signal
    (returncode -2 / -15; `bench/kill_stress.py` saw it) although everything was written. Sent the moment
    the last line is out, it now either interrupts the command (130 / 143: it had not ended) or is ignored
    (0). `sweeps report` loads plotly, matplotlib and pandas, so its teardown is long: unguarded, most
    tries here hit it."""
    folder, wd, _ = tiny_sweep
    codes = []
    for i in range(2):
        out = folder / f"signalled-{sig.name}-{i}.html"
        proc = subprocess.Popen(
            [str(SWEEPS), "report", "tiny.yaml", "--workdir", str(wd), "--out", str(out), "--bootstrap", "2"],
            cwd=folder,
            env=cli_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            stdin=subprocess.DEVNULL,
            text=True,
        )
        for line in proc.stdout:
            if line.startswith("report: "):
                proc.send_signal(sig)
        codes.append(proc.wait(timeout=120))
    interrupted = {signal.SIGINT: 130, signal.SIGTERM: 143}[sig]
    assert set(codes) <= {0, interrupted}, codes


def test_reproduce_retrains_a_tracked_trial(tiny_sweep):
    tmp_path = tiny_sweep[0]
    _, runs = child_runs(tmp_path / "wd", "tiny")
    proc = run_cli("reproduce", runs[1].info.run_id, "--workdir", tmp_path / "wd", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "matches the logged one" in proc.stdout and "max relative difference 0" in proc.stdout

    proc = run_cli("reproduce", runs[1].info.run_id, "--workdir", tmp_path / "nowhere", cwd=tmp_path)
    assert proc.returncode == 2 and "no MLflow store at" in proc.stderr and not (tmp_path / "nowhere").exists()

    proc = run_cli("reproduce", "0123456789abcdef", "--workdir", tmp_path / "wd", cwd=tmp_path)
    assert proc.returncode == 1 and "no run '0123456789abcdef'" in proc.stderr and "Traceback" not in proc.stderr


def test_reading_a_missing_sweep_creates_nothing(tmp_path, tiny_spec):
    proc = run_cli("best", tiny_spec, "--workdir", tmp_path / "nothing", cwd=tmp_path)
    assert proc.returncode == 2 and "no sweep named 'tiny'" in proc.stderr
    assert not (tmp_path / "nothing").exists()


def test_gp_without_torch_fails_before_creating_any_store(tmp_path, tiny_spec):
    hide = tmp_path / "no_torch"
    hide.mkdir()
    # Python reads sitecustomize at start-up: an import hook then refuses torch, as on a machine without the
    # extra. (A None in sys.modules would not do: scipy looks torch up there and trips over the None.)
    (hide / "sitecustomize.py").write_text(
        "import sys\n"
        "class NoTorch:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] == 'torch':\n"
        "            raise ModuleNotFoundError(f'No module named {name!r}', name=name)\n"
        "sys.meta_path.insert(0, NoTorch())\n"
    )
    wd = tmp_path / "wd"
    proc = run_cli(
        "run", tiny_spec, "--set", "sampler=gp", "--workdir", wd, cwd=tmp_path, env={"PYTHONPATH": str(hide)}
    )
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip() == "error: sampler.name: the gp sampler needs PyTorch: pip install 'optsweep[torch]'"
    assert not wd.exists()
    proc = run_cli(
        "run",
        tiny_spec,
        "--set",
        "sampler=gp",
        "--workers",
        "2",
        "--workdir",
        wd,
        cwd=tmp_path,
        env={"PYTHONPATH": str(hide)},
    )
    assert proc.returncode == 2 and "needs PyTorch" in proc.stderr and not wd.exists()


def test_two_objectives_give_a_pareto_set(tmp_path, tiny_spec, template_db):
    wd = new_workdir(tmp_path / "wd", template_db)
    moo = [
        "--set",
        "training.objective=[final_val_cost, train_seconds]",
        "--set",
        "sampler.name=nsga2",
        "--set",
        "trials=6",
        "--workdir",
        wd,
    ]
    proc = run_cli("run", tiny_spec, *moo, cwd=tmp_path, check=True)
    assert "Pareto set of 6 completed trials (final_val_cost & train_seconds)" in proc.stdout
    best = json.loads(run_cli("best", tiny_spec, *moo, "--json", cwd=tmp_path, check=True).stdout)
    s = study(wd, "tiny")
    complete = [t for t in s.trials if t.state == optuna.trial.TrialState.COMPLETE]

    def dominated(t):
        return any(
            all(a <= b for a, b in zip(o.values, t.values, strict=True)) and o.values != t.values for o in complete
        )

    front = sorted(t.number for t in complete if not dominated(t))
    assert [p["number"] for p in best["pareto"]] == front
    by_number = {t.number: t for t in complete}
    assert [p["run_id"] for p in best["pareto"]] == [by_number[n].user_attrs["mlflow_run_id"] for n in front]
    # the one setting for machines (and for batch-size --from-best): the Pareto trial with the lowest cost
    lowest = min((t for t in complete if t.number in front), key=lambda t: (t.values[0], t.number))
    assert best["best_value"] == lowest.values
    assert (best["best_trial"], best["best_run_id"]) == (lowest.number, lowest.user_attrs["mlflow_run_id"])
    parent = s.user_attrs["mlflow_parent_run_id"]
    assert "plots/pareto_front.png" in {a.path for a in client(wd).list_artifacts(parent, "plots")}


def test_ui_serves_the_store_on_loopback_and_stops_on_ctrl_c(tmp_path, tiny_sweep):
    import signal
    import socket
    import urllib.request

    from tests.conftest import start_cli
    from tracking.server import free_port

    port = free_port()
    ui = start_cli("ui", "--workdir", tiny_sweep[1], "--port", str(port), cwd=tmp_path, log=tmp_path / "ui.log")
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
                    assert r.status == 200
                    break
            except OSError:
                assert time.monotonic() < deadline and ui.poll() is None, (tmp_path / "ui.log").read_text()
                time.sleep(0.3)
        experiments = urllib.request.urlopen(
            f"http://127.0.0.1:{port}/api/2.0/mlflow/experiments/get-by-name?experiment_name=tiny", timeout=5
        )
        experiment = json.load(experiments)["experiment"]
        assert experiment["name"] == "tiny"
        # The address of the sweep's runs in the UI's "Model training" view (not MLflow 3's GenAI traces page).
        runs = f"http://127.0.0.1:{port}/#/experiments/{experiment['experiment_id']}/runs?workflowType=machine_learning"
        wait_for_text(tmp_path / "ui.log", f"  tiny: {runs}")
        listening = subprocess.run(["ss", "-ltnH", f"sport = :{port}"], capture_output=True, text=True).stdout
        local_addresses = {line.split()[3] for line in listening.splitlines()}
        assert local_addresses == {f"127.0.0.1:{port}"}
        ui.send_signal(signal.SIGINT)
        assert ui.wait(60) == 130
    finally:
        left = _stop_ui(ui, port)
    assert not left
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", port)) != 0  # the server went with it


def test_ui_stops_its_server_when_the_terminal_closes(tmp_path, tiny_sweep):
    """SIGHUP (the terminal closed) ends `sweeps ui` with 129, and the MLflow server it started, which runs in
    a session of its own where the terminal's signal does not reach it, goes with it."""
    import signal
    import socket

    from tests.conftest import start_cli
    from tracking.server import free_port

    port = free_port()
    ui = start_cli("ui", "--workdir", tiny_sweep[1], "--port", str(port), cwd=tmp_path, log=tmp_path / "ui.log")
    try:
        wait_for_text(tmp_path / "ui.log", "MLflow UI on", timeout=90)
        assert processes_with("mlflow", "server", str(port))
        ui.send_signal(signal.SIGHUP)
        assert ui.wait(60) == 129
    finally:
        left = _stop_ui(ui, port)
    assert "interrupted (SIGHUP)" in (tmp_path / "ui.log").read_text()
    assert not left and not processes_with("uvicorn", str(port))
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", port)) != 0


def _stop_ui(ui: subprocess.Popen, port: int) -> dict[int, str]:
    """Stop a `sweeps ui` still running (SIGINT first: its server runs in its own session and goes down with
    it; SIGKILL if it will not), then any MLflow server on ``port`` it left behind; returns those left."""
    import signal

    if ui.poll() is None:
        ui.send_signal(signal.SIGINT)
        try:
            ui.wait(30)
        except subprocess.TimeoutExpired:
            ui.kill()
    left = processes_with("mlflow", "server", str(port))
    stop_server_groups(left)
    return left


def wait_for_text(path: Path, text: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while text not in path.read_text():
        assert time.monotonic() < deadline, f"{text!r} not in:\n{path.read_text()}"
        time.sleep(0.2)


def test_ui_refuses_a_port_out_of_range_at_once(tmp_path):
    proc = run_cli("ui", "--port", "99999", "--workdir", tmp_path / "wd", cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr == "error: --port must be a TCP port from 1 to 65535; got 99999\n"
    assert not (tmp_path / "wd").exists()


def test_ui_refuses_a_port_another_server_holds(tmp_path):
    """Another web server holds the port and answers /health: `ui` must not take it for its own MLflow
    server (it used to report success, then exit when its server could not bind)."""
    import http.server
    import threading

    from tracking.server import free_port

    (tmp_path / "wd").mkdir()
    (tmp_path / "wd" / "mlflow.db").touch()
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "health").write_text("ok")
    port = free_port()
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path / "site"))
    other = http.server.HTTPServer(("127.0.0.1", port), handler)
    threading.Thread(target=other.serve_forever, daemon=True).start()
    try:
        proc = run_cli("ui", "--port", port, "--workdir", tmp_path / "wd", cwd=tmp_path, timeout=60)
    finally:
        other.shutdown()
        other.server_close()
    assert proc.returncode == 1 and "MLflow UI on" not in proc.stdout
    assert proc.stderr.startswith(f"error: port {port} on 127.0.0.1 is already in use") and proc.stderr.count("\n") == 1


@requires_postgres
@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads the command lines of processes in /proc")
def test_ui_keeps_the_database_password_out_of_the_process_list(tmp_path):
    """`sweeps ui` over a PostgreSQL tracking store given with a password: the `mlflow server` it starts, and
    that server's uvicorn child, must not show the password in their command lines (issue 17.4)."""
    import signal
    import urllib.request
    import uuid

    import psycopg

    from tests.conftest import postgres_url, start_cli
    from tracking.server import free_port

    admin = postgres_url().replace("postgresql+psycopg://", "postgresql://")
    name = f"optsweep_ui_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    password = "Pw" + uuid.uuid4().hex[:12]  # trust authentication: the server ignores it
    uri = f"postgresql+psycopg://postgres:{password}@127.0.0.1:5432/{name}"
    port = free_port()
    ui = start_cli(
        "ui",
        "--port",
        port,
        "--workdir",
        tmp_path / "wd",
        cwd=tmp_path,
        env={"SWEEPS_TRACKING_URI": uri},
        log=tmp_path / "ui.log",
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
                    assert r.status == 200
                    break
            except OSError:
                assert time.monotonic() < deadline and ui.poll() is None, (tmp_path / "ui.log").read_text()
                time.sleep(0.5)
        servers = processes_with(f"--port {port}").values()
        assert any("mlflow server" in c for c in servers) and any("uvicorn" in c for c in servers), servers
        assert not processes_with(password)
        ui.send_signal(signal.SIGINT)
        assert ui.wait(60) == 130
        assert password not in (tmp_path / "ui.log").read_text()
        assert password not in (tmp_path / "wd" / "mlflow-ui.log").read_text()  # nor in the server's log
    finally:
        if ui.poll() is None:
            ui.kill()
            ui.wait(30)
        stop_server_groups(processes_with("mlflow", "server", f"--port {port}"))  # left by a `ui` killed above
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_python_api_mirrors_the_cli(tmp_path, tiny_spec):
    import sweeps

    spec = sweeps.load_spec(tiny_spec, ["trials=3", "training.epochs=2"])
    result = sweeps.run(spec, workdir=tmp_path / "wd")
    assert isinstance(result, sweeps.SweepResult)
    s = study(tmp_path / "wd", "tiny")
    best = min((t for t in s.trials if t.state == optuna.trial.TrialState.COMPLETE), key=lambda t: (t.value, t.number))
    assert result.best_value == best.value and result.best_params == best.user_attrs["hyperparameters"]
    assert result.parent_run_id == s.user_attrs["mlflow_parent_run_id"]
    assert list(result.trials["number"]) == [0, 1, 2] and set(result.trials["state"]) == {"COMPLETE"}
    again = sweeps.load_result(spec, workdir=tmp_path / "wd")
    assert again.best_params == result.best_params


def test_unreachable_tracking_server_fails_before_any_training(tmp_path, tiny_spec):
    from tracking.server import free_port

    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    wait = {"SWEEPS_TRACKING_WAIT_SECONDS": "2"}  # how long to keep asking (default 30 s)
    proc = run_cli("run", tiny_spec, "--tracking-uri", url, "--workdir", tmp_path / "wd", cwd=tmp_path, env=wait)
    assert proc.returncode == 1
    assert proc.stderr.startswith(f"error: cannot reach the MLflow tracking server at {url} (")
    assert " attempts); start it" in proc.stderr and proc.stderr.count("\n") == 1
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "wd").exists()  # no study, no trial


def test_a_rerun_of_a_finished_sweep_writes_nothing_and_loads_neither_data_nor_mlflow(tmp_path, tiny_spec):
    """Before, a rerun that trained nothing took ~9 s: it loaded the data, created the writer, opened MLflow,
    redrew the parent run's plots and the HTML report. The stores and the report stay as they were, and it
    says the same as the run that finished the sweep."""
    report_on = {"SWEEPS_NO_REPORT": ""}
    wd = tmp_path / "wd"
    first = run_cli("run", tiny_spec, "--workdir", wd, cwd=tmp_path, check=True, env=report_on)
    files = {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in wd.iterdir() if p.is_file()}
    assert "tiny-report.html" in files and "mlflow.db" in files
    proc, said, loaded = _cli_loading("run", str(tiny_spec), "--workdir", str(wd), cwd=tmp_path, env=report_on)
    assert proc.returncode == 0, proc.stderr
    assert loaded == "[]"
    assert said == first.stdout.strip().splitlines()
    assert {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in wd.iterdir() if p.is_file()} == files
    # More trials asked for: the full path trains them and the report is drawn again.
    more = run_cli("run", tiny_spec, "--trials", "5", "--workdir", wd, cwd=tmp_path, check=True, env=report_on)
    assert "5 trials" in more.stdout
    assert (wd / "tiny-report.html").read_bytes() != files["tiny-report.html"][1]


@pytest.mark.parametrize(
    ("direct", "extra"),
    [
        (True, ()),
        (True, ("--set", "training.objective=[final_val_cost, train_seconds]", "--set", "sampler.name=nsga2")),
        (False, ()),
    ],
    ids=["direct", "direct-pareto", "through-mlflow"],
)
def test_a_new_sweep_on_the_embedded_store_trains_without_loading_mlflow(
    tmp_path, tiny_spec, template_db, direct, extra
):
    """MLflow's import (1-3 s) is kept off the path to the first trial: every write of a new sweep on the
    embedded store goes straight into SQLite, and at the end the writer draws the summary and the report
    child reads the report's records, both straight from the store: the training process loads neither
    MLflow nor pandas (~0.2 s at the end, for tables it never reads). The stores hold all of it as before.
    With the direct writes turned off, the training process loads MLflow as it must."""
    from sweeps.spec import load_spec
    from sweeps.study.trial_lifecycle import setup_from_spec
    from tracking.sqlite_store import _template

    assert _template() is not None  # the cached empty store a new one is copied from (made once per run)
    setup_from_spec(load_spec(tiny_spec)).load()  # the data cached (shared with the CLI): no scikit-learn there
    wd = tmp_path / "wd"
    env = {"SWEEPS_NO_REPORT": "", **({} if direct else {"TRACKING_DIRECT_SQLITE": "0"})}
    proc, said, loaded = _cli_loading("run", str(tiny_spec), *extra, "--workdir", str(wd), cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stderr
    # two objectives: the Pareto front is plotted with the summary, away from the training process too
    assert loaded == "[]" if direct else "'mlflow'" in loaded, proc.stderr
    assert any(line.startswith("report: ") for line in said)
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{wd / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("tiny")
    assert experiment.artifact_location == (wd / "mlartifacts").resolve().as_uri()
    runs = client.search_runs([experiment.experiment_id])
    parent = next(r for r in runs if r.data.tags.get("role") == "sweep")
    trials = [r for r in runs if r.data.tags.get("role") == "trial"]
    assert parent.info.status == "FINISHED" and len(trials) == 4
    assert all(r.info.status == "FINISHED" and r.data.tags["mlflow.parentRunId"] == parent.info.run_id for r in trials)
    for run in (parent, *trials):
        contexts = sorted(i.tags[0].value for i in run.inputs.dataset_inputs)
        assert contexts == ["training", "validation"]
    assert {"report", "plots", "trials.csv"} <= {f.path for f in client.list_artifacts(parent.info.run_id)}
    assert any(k.startswith("importance.") for k in parent.data.metrics)
    assert "stop_reason" not in parent.data.tags


@pytest.mark.parametrize("taken", [True, False], ids=["taken-over", "left-to-the-writer"])
def test_the_summary_is_drawn_once_by_whoever_takes_it_over(tmp_path, tiny_spec, template_db, taken):
    """``run(..., summary_elsewhere=True)``: the writer loads nothing for the summary while the trials train,
    and ``on_trials_done`` gets the request to draw it (the CLI hands it to the report child). Drawn there,
    the writer never draws it; not drawn there (a child gone), the writer draws it after all."""
    script = (
        "import sys\n"
        "from sweeps.study.runner import run\n"
        "from tracking.runs import draw_summary\n"
        "from tracking.writer.client import shared_writer\n"
        "from tracking.writer.messages import Status\n"
        "def trials_done(result, summary):\n"
        f"    if {taken}:\n"
        "        draw_summary(summary)\n"
        f"    return lambda: {taken}\n"
        f"run({str(tiny_spec)!r}, workdir={str(tmp_path / 'wd')!r}, on_trials_done=trials_done,"
        " summary_elsewhere=True)\n"
        "print(shared_writer(start=False).call(Status())['matplotlib'])\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, env=cli_env(), timeout=300
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split()[-1] == str(not taken)  # the writer loaded matplotlib only to draw it itself
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'wd' / 'mlflow.db'}")
    parent = client.search_runs(
        [client.get_experiment_by_name("tiny").experiment_id], filter_string="tags.role = 'sweep'"
    )[0]
    assert parent.info.status == "FINISHED" and parent.data.metrics["n_trials"] == 4
    assert [m.step for m in client.get_metric_history(parent.info.run_id, "n_trials")] == [4]  # drawn once
    assert {f.path for f in client.list_artifacts(parent.info.run_id, "plots")} >= {"plots/val_cost_curves.png"}


def test_a_new_sweeps_writer_draws_its_summary_without_mlflow_too(tmp_path, tiny_spec, template_db):
    """Through the Python API: after a new sweep on the embedded store, neither the training process nor its
    writer has loaded MLflow — the summary's and the report's reads and files went straight to the store —
    and the parent run holds the summary as MLflow reads it."""
    script = (
        "import sys\n"
        "from sweeps.study.runner import run\n"
        "from tracking.writer.client import shared_writer\n"
        "from tracking.writer.messages import Status\n"
        f"result = run({str(tiny_spec)!r}, workdir={str(tmp_path / 'wd')!r})\n"
        "from sweeps.results.html_report import write_report\n"
        "from sweeps.spec import load_spec\n"
        f"write_report(load_spec({str(tiny_spec)!r}), result)\n"
        "print(shared_writer(start=False).call(Status())['mlflow'], 'mlflow' in sys.modules)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, env=cli_env(), timeout=300
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split()[-2:] == ["False", "False"]
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'wd' / 'mlflow.db'}")
    parent = client.search_runs(
        [client.get_experiment_by_name("tiny").experiment_id], filter_string="tags.role = 'sweep'"
    )[0]
    paths = {f.path for f in client.list_artifacts(parent.info.run_id)}
    assert {"report", "plots", "trials.csv"} <= paths
    assert {f.path for f in client.list_artifacts(parent.info.run_id, "plots")} >= {"plots/val_cost_curves.png"}
    assert parent.data.metrics["n_trials"] == 4 and "best.run_id" in parent.data.tags
