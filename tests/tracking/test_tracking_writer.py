"""The writer process: durable finish, fallback when it dies, a Ctrl-C that leaves it up, and no process left."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

import tracking
from optcore.history import EpochRecord
from tracking import writer
from tracking.transport import DirectTransport
from tracking.writer import launch
from tracking.writer.messages import LINGER_SECONDS

PARAMS = {"batch_size": 64, "optimizer": "adam", "lr": 0.001}


def _ready_writer() -> writer.Writer:
    shared = writer.shared_writer()
    assert shared is not None, "TRACKING_WRITER=off in the environment?"
    deadline = time.monotonic() + 60
    while not shared.ready():
        assert time.monotonic() < deadline, "the writer did not start"
        time.sleep(0.05)
    return shared


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _log(run: tracking.TrialRun, make_history, val_costs) -> object:
    history = make_history(val_costs)
    for i, e in enumerate(history.epoch):
        run.log_epoch(EpochRecord(e, history.train_cost[i], history.val_cost[i], 0.5, 0.01, 0.5))
    return history


@pytest.mark.parametrize("kill", [False, True], ids=["writer", "writer-killed"])
def test_finish_returns_with_every_value_in_the_store(store_uri, make_history, kill):
    sweep = tracking.start_sweep("durable", tracking_uri=store_uri)
    _ready_writer()
    run = sweep.trial(0, PARAMS, seed=1)
    history = _log(run, make_history, [0.9, 0.8, 0.7, 0.6])
    if kill:  # values sent but not confirmed are sent again from this process
        shared = writer.shared_writer(start=False)
        os.kill(shared.child_pid, signal.SIGKILL)
        time.sleep(0.2)
    run.finish("complete", history)
    child = sweep.client.get_run(run.run_id)
    assert child.info.status == "FINISHED"
    assert child.data.params["batch_size"] == "64"
    assert child.data.tags["trial_state"] == "complete"
    assert sorted(m.step for m in sweep.client.get_metric_history(run.run_id, "val_cost")) == [1, 2, 3, 4]
    if kill:
        writer.stop_shared_writer()  # the next test starts a fresh one


def test_the_writer_draws_the_summary_and_sends_the_table_only_when_asked(store_uri, make_history):
    """The writer draws the parent's summary; the trials table comes back only when asked for (unpickling it
    imports pandas in the asking process, which `sweeps run` does not need)."""
    sweep = tracking.start_sweep("summary-by-writer", tracking_uri=store_uri)
    shared = _ready_writer()
    run = sweep.trial(0, PARAMS, seed=1)
    run.finish("complete", _log(run, make_history, [0.9, 0.5]))
    table = sweep.update_summary({"name": "s"})
    assert list(table["trial_number"]) == [0] and shared.ready()
    run = sweep.trial(1, PARAMS, seed=2)
    run.finish("complete", _log(run, make_history, [0.8, 0.2]))
    assert sweep.update_summary({"name": "s"}, table=False) is None
    parent = sweep.client.get_run(sweep.run_id)
    assert parent.data.tags["best.trial_number"] == "1" and parent.data.metrics["n_trials"] == 2


WRITER_DRAWS = textwrap.dedent("""
    import json, os, sys, time
    from pathlib import Path
    import tracking
    from tracking import plots, writer
    from tracking.writer.messages import Status
    from tests.tracking.conftest import _run_trial

    uri, out, summary = sys.argv[1], Path(sys.argv[2]), sys.argv[3] == "summary"
    for name in ("plot_val_cost_curves", "plot_optimization_history", "plot_batch_size_vs_cost"):
        def spy(*args, _real=getattr(plots, name), _name=name):
            (out / f"{_name}.pid").write_text(str(os.getpid()))
            return _real(*args)
        setattr(plots, name, spy)  # before the writer is forked: it and its drawer draw with these
    tracking.start_writer(uri, summary=summary)
    shared = writer.shared_writer(start=False)
    sweep = tracking.start_sweep("writer-draws", tracking_uri=uri)
    run = _run_trial(sweep, 0, {"batch_size": 64, "optimizer": "adam", "lr": 0.01}, [0.9, 0.5])
    sweep.update_summary({"name": "s"}, table=False)
    table = sweep.update_summary({"name": "s"})  # the trials table, handed on by the writer
    loaded = shared.call(Status())
    pids = {p.stem: int(p.read_text()) for p in out.glob("*.pid")}
    print(json.dumps({"how": shared.started_by, "writer": shared.child_pid, "pids": pids, "loaded": loaded,
                      "parent": sweep.client.get_run(sweep.run_id).data.tags.get("best.run_id") == run.run_id,
                      "table": list(table["run_id"]) == [run.run_id]}))
    writer.stop_shared_writer()
""")


@pytest.mark.parametrize("summary", [True, False], ids=["drawer", "asked-anyway"])
def test_the_writer_draws_the_summary_in_a_drawer_with_its_figures_side_by_side(sqlite_uri, tmp_path, summary):
    """A writer told a summary will be asked for forks a drawer as it starts, which loads the summary's
    libraries and draws it, its figures but the curves in forked copies of itself: the writer never loads
    matplotlib (a thread loading it held the trainer's waits up). A writer told otherwise and asked all the
    same draws the summary itself, still side by side (its reader thread, blocked on the pipe, holds
    nothing a copy takes)."""
    done = subprocess.run(
        [sys.executable, "-c", WRITER_DRAWS, sqlite_uri, str(tmp_path), "summary" if summary else "none"],
        capture_output=True,
        text=True,
        timeout=300,
        env={k: v for k, v in os.environ.items() if k != launch.MODE_VAR},
        check=False,
    )
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout)
    assert found["how"] == "fork" and found["parent"] and found["table"]
    pids = found["pids"]
    drew = pids["plot_val_cost_curves"]
    copies = {pids["plot_optimization_history"], pids["plot_batch_size_vs_cost"]}
    assert drew not in copies and len(copies) == 2
    assert (drew != found["writer"]) is summary  # the drawer, else the writer
    # The writer loads neither when its drawer draws (the table passed on still pickled), both when it draws.
    assert found["loaded"]["matplotlib"] is not summary and found["loaded"]["pandas"] is not summary


def _children(pid: int) -> set[int]:
    found: set[int] = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        found |= {int(c) for c in (task / "children").read_text().split()}
    return found


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="reads a process's children from Linux's /proc")
def test_the_writers_drawer_is_stopped_and_reaped_with_the_writer(sqlite_uri):
    """A writer that will draw a summary has one child, its drawer; stopping the writer stops the drawer with
    it, at once, even while it is still loading its libraries (it held the trainer's stderr open a second
    longer, and was left to PID 1 to reap)."""
    writer.stop_shared_writer()
    tracking.start_writer(sqlite_uri)
    shared = _ready_writer()
    tracking.start_sweep("drawer-stopped", tracking_uri=sqlite_uri).trial(0, PARAMS, seed=1)  # sent, so waited for
    deadline = time.monotonic() + 30
    while not (drawers := _children(shared.child_pid)):
        assert time.monotonic() < deadline, "the writer has no drawer"
        time.sleep(0.01)
    assert len(drawers) == 1
    (drawer,) = drawers
    # In the writer's session, where its lower priority counts (autogroup scheduling shares CPU between
    # sessions first), and niced below the writer.
    assert os.getsid(drawer) == os.getsid(shared.child_pid)
    deadline = time.monotonic() + 30
    while os.getpriority(os.PRIO_PROCESS, drawer) != os.getpriority(os.PRIO_PROCESS, shared.child_pid) + 10:
        assert time.monotonic() < deadline, "the drawer was not niced"
        time.sleep(0.01)
    writer.stop_shared_writer()
    with pytest.raises(ProcessLookupError):  # gone, and reaped: not even a zombie
        os.kill(drawer, 0)


def test_values_refused_before_the_end_leave_the_run_running(sqlite_uri, make_history):
    """A param whose change the store refused while it lingered in the writer is reported at the run's end,
    and the run is not ended with the values that came with that end: it stays RUNNING, as MLflow leaves it."""
    sweep = tracking.start_sweep("refused-then-finish", tracking_uri=sqlite_uri)
    _ready_writer()
    run = sweep.trial(0, PARAMS, seed=1)
    assert run.flush()  # its params in the store: lr 0.001
    run.log_now(params=[("lr", "0.5")])
    time.sleep(LINGER_SECONDS + 0.5)  # written (and refused) before the end comes
    with pytest.raises(tracking.TrackingError, match="Changing param values"):
        run.finish("complete", make_history([0.9, 0.5]))
    held = sweep.client.get_run(run.run_id)
    assert held.info.status == "RUNNING" and held.data.params["lr"] == "0.001"


def test_a_fork_is_safe_beside_only_the_threads_the_caller_vouches_for():
    """``fork_is_safe(besides=...)``: every other thread must be one of those."""
    stop = threading.Event()
    waiting = threading.Thread(target=stop.wait, daemon=True)
    waiting.start()
    try:
        others = [t for t in threading.enumerate() if t is not threading.current_thread()]
        platform = hasattr(os, "fork") and sys.platform != "darwin"
        assert not launch.fork_is_safe()
        assert launch.fork_is_safe(besides=others) is platform
        assert not launch.fork_is_safe(besides=[t for t in others if t is not waiting])
    finally:
        stop.set()
        waiting.join()


def test_writer_ignores_ctrl_c_and_stops_with_its_owner(tmp_path, sqlite_uri):
    """A trainer interrupted by SIGINT still closes its trial FAILED through the writer, which then exits."""
    script = textwrap.dedent(
        f"""
        import os, signal, time
        import tracking
        from tracking import writer
        from optcore.history import EpochRecord, History

        sweep = tracking.start_sweep("interrupted", tracking_uri={sqlite_uri!r})
        shared = writer.shared_writer()
        while not shared.ready():
            time.sleep(0.05)
        print(shared.child_pid, flush=True)
        run = sweep.trial(0, {{"lr": 0.1}})
        print(run.run_id, flush=True)
        history = History("val_accuracy")
        try:
            for e in range(1, 1000):
                record = EpochRecord(e, 1.0, 1.0, 0.5, 0.1, 0.01)
                history.append(record)
                run.log_epoch(record)
                if e == 3:
                    os.killpg(os.getpgid(0), signal.SIGINT)  # Ctrl-C: the whole foreground group
                time.sleep(0.01)
        except KeyboardInterrupt:
            run.finish("failed", history, reason="interrupted (SIGINT)")
            raise
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=120,
        start_new_session=True,  # its own group, so the SIGINT reaches nothing else
    )
    assert proc.returncode != 0 and "KeyboardInterrupt" in proc.stderr, proc.stderr
    child_pid, run_id = (int(x) if i == 0 else x for i, x in enumerate(proc.stdout.split()))
    deadline = time.monotonic() + 10
    while _alive(child_pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(child_pid)
    client = tracking.make_client(sqlite_uri)
    run = client.get_run(run_id)
    assert run.info.status == "FAILED"
    assert run.data.tags["fail_reason"] == "interrupted (SIGINT)"
    assert sorted(m.step for m in client.get_metric_history(run_id, "val_cost")) == [1, 2, 3]


def test_trials_log_directly_when_the_writer_is_off(sqlite_uri, make_history, monkeypatch):
    monkeypatch.setenv("TRACKING_WRITER", "off")
    sweep = tracking.start_sweep("direct", tracking_uri=sqlite_uri)
    run = sweep.trial(0, PARAMS)
    assert isinstance(run.transport, DirectTransport)
    run.log_epoch(EpochRecord(1, 1.0, 0.9, 0.5, 0.01, 0.1))
    assert len(sweep.client.get_metric_history(run.run_id, "val_cost")) == 1  # written before log_epoch returned
    run.finish("complete", _log(run, make_history, [0.9, 0.8]))
    assert sweep.client.get_run(run.run_id).info.status == "FINISHED"


def test_epochs_reach_the_store_while_the_trial_trains(sqlite_uri, make_history):
    """Live progress: each run is written within about LINGER_SECONDS, without waiting for finish, and
    epochs that arrive within that window go in one write."""
    sweep = tracking.start_sweep("live", tracking_uri=sqlite_uri)
    _ready_writer()
    run = sweep.trial(0, PARAMS, seed=1)
    history = _log(run, make_history, [0.9, 0.8, 0.7])

    def steps():
        return sorted(m.step for m in sweep.client.get_metric_history(run.run_id, "val_cost"))

    deadline = time.monotonic() + writer.LINGER_SECONDS + 10
    while steps() != [1, 2, 3]:
        assert time.monotonic() < deadline, f"epochs not in the store yet: {steps()}"
        time.sleep(0.1)
    assert sweep.client.get_run(run.run_id).info.status == "RUNNING"
    run.finish("complete", history)


@pytest.mark.parametrize(
    ("mode", "open_first", "expected"),
    [("process", False, "fork"), ("process", True, "spawn"), ("spawn", False, "spawn")],
    ids=["forked", "store-opened-first", "spawn-asked"],
)
def test_writer_child_is_forked_only_when_that_is_safe(tmp_path, sqlite_uri, mode, open_first, expected):
    """A program with one thread and no MLflow store open yet (the CLI, at the start of a sweep) forks its
    writer, which then writes the same values as a spawned one; a program that opened a store first, or
    asks for it, spawns it. The child holds none of the parent's files open and exits with it."""
    marker = tmp_path / "held-open.txt"
    script = textwrap.dedent(
        f"""
        import os, time
        import tracking
        from tracking import writer
        from optcore.history import EpochRecord, History

        held = open({str(marker)!r}, "w")  # a descriptor of the parent's that the child must not keep
        if {open_first!r}:
            tracking.make_client({sqlite_uri!r}).search_experiments()
        writer.start_writer({sqlite_uri!r})
        shared = writer.shared_writer()
        while not shared.ready():
            time.sleep(0.05)
        proc_fd = f"/proc/{{shared.child_pid}}/fd"

        def target(fd):
            try:
                return os.readlink(f"{{proc_fd}}/{{fd}}")
            except FileNotFoundError:  # closed by the child between the listing and the look
                return None

        holds = any(target(fd) == held.name for fd in os.listdir(proc_fd))
        print(shared.started_by, shared.child_pid, holds, flush=True)
        sweep = tracking.start_sweep("forked", tracking_uri={sqlite_uri!r})
        run = sweep.trial(0, {{"lr": 0.1}})
        history = History("val_accuracy")
        for e in (1, 2, 3):
            record = EpochRecord(e, 1.0, 1.0 / e, 0.5, 0.1, 0.01)
            history.append(record)
            run.log_epoch(record)
        run.finish("complete", history)
        print(run.run_id, flush=True)
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, launch.MODE_VAR: mode},
    )
    assert proc.returncode == 0, proc.stderr
    first, run_id = proc.stdout.splitlines()
    how, child_pid, holds = first.split()
    assert how == expected
    assert holds == "False"
    deadline = time.monotonic() + 10
    while _alive(int(child_pid)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(int(child_pid))
    client = tracking.make_client(sqlite_uri)
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert [m.value for m in sorted(client.get_metric_history(run_id, "val_cost"), key=lambda m: m.step)] == [
        1.0,
        0.5,
        pytest.approx(1 / 3),
    ]


@pytest.mark.parametrize("summary", [True, False])
def test_the_writer_loads_the_summarys_plotting_ahead_only_when_asked(sqlite_uri, summary):
    """``start_writer(summary=False)`` (a worker that will not draw the sweep's summary) reaches the child:
    it is not told to load matplotlib ahead of time. Read from a spawned child's environment."""
    script = textwrap.dedent(
        f"""
        import time
        import tracking
        from tracking import writer

        tracking.start_writer({sqlite_uri!r}, summary={summary!r})
        shared = writer.shared_writer(start=False)
        deadline = time.monotonic() + 60
        while not shared.ready():  # right after a vfork, the new program's environment may not be readable yet
            assert time.monotonic() < deadline, "the writer did not come up"
            time.sleep(0.01)
        pid = shared.child_pid
        with open(f"/proc/{{pid}}/environ", "rb") as f:
            env = dict(item.split(b"=", 1) for item in f.read().split(b"\\0") if b"=" in item)
        print(env.get(b"{launch.WARM_VAR}", b"unset").decode() or "empty", flush=True)
        writer.stop_shared_writer()
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, launch.MODE_VAR: "spawn"},
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == (["1"] if summary else ["empty"])


def test_the_warm_up_hands_the_gil_over_often_and_then_restores_the_interval(monkeypatch):
    """While the summary's modules load in a thread, the writer's SQLite calls get the GIL back within
    WARM_SWITCH_SECONDS, not 5 ms; afterwards the interpreter's interval is what it was."""
    from tracking.writer.server import WARM_SWITCH_SECONDS, _Server

    before, seen, real = sys.getswitchinterval(), [], sys.setswitchinterval

    def record(seconds: float) -> None:
        seen.append(seconds)
        real(seconds)

    monkeypatch.setattr(sys, "setswitchinterval", record)
    _Server.warm_up()
    assert seen == [WARM_SWITCH_SECONDS, before] and sys.getswitchinterval() == before
