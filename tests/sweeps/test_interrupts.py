"""sweeps.study.interrupts with real signals sent to this process: recorded, raised at safe points, never lost."""

from __future__ import annotations

import gc
import os
import signal
import sys
import time

import pytest

from sweeps.errors import Interrupted
from sweeps.study import interrupts


def send(sig=signal.SIGINT):
    os.kill(os.getpid(), sig)  # the handler runs before os.kill returns to Python code


def test_a_signal_outside_interruptible_code_waits_for_check():
    with interrupts.handling():
        send()
        reached = True  # not cut short
        with pytest.raises(KeyboardInterrupt):
            interrupts.check()
        interrupts.check()  # raised once only
    assert reached


def test_interruptible_sections_raise_at_once_and_on_entry():
    with interrupts.handling(), pytest.raises(KeyboardInterrupt), interrupts.interruptible():
        send()
        pytest.fail("the signal should have interrupted the section")
    with interrupts.handling():
        send()
        with pytest.raises(KeyboardInterrupt), interrupts.interruptible():
            pytest.fail("a pending signal should be raised on entry")


def test_shielded_sections_finish_then_raise():
    done = []
    with interrupts.handling(), pytest.raises(KeyboardInterrupt), interrupts.interruptible():
        with interrupts.shielded():
            send()
            done.append("shielded work")
        pytest.fail("the signal should have been raised when the shielded section ended")
    assert done == ["shielded work"]


@pytest.mark.parametrize(("sig", "name", "code"), [(signal.SIGTERM, "SIGTERM", 143), (signal.SIGHUP, "SIGHUP", 129)])
def test_sigterm_and_sighup_become_interrupted_with_their_exit_codes(sig, name, code):
    with interrupts.handling():
        send(sig)
        with pytest.raises(Interrupted) as info:
            interrupts.check()
    assert info.value.signal_name == name and info.value.exit_code == code


def test_a_signal_the_process_ignores_stays_ignored():
    """`nohup` starts a command with SIGHUP ignored, a shell's background job with SIGINT ignored: a sweep
    keeps them so (it outlives the terminal), and handles the others as usual."""
    before = signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        with interrupts.handling():
            assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
            send(signal.SIGHUP)
            interrupts.check()  # nothing recorded
            send(signal.SIGTERM)
            with pytest.raises(Interrupted):
                interrupts.check()
        assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGHUP, before)


def test_a_second_signal_raises_wherever_the_program_is(monkeypatch):
    monkeypatch.setattr(interrupts, "INSIST_AFTER_SECONDS", 0.05)
    with interrupts.handling():
        send()
        time.sleep(0.1)
        with pytest.raises(KeyboardInterrupt):
            send()


def test_the_same_signal_delivered_twice_at_once_is_one_request():
    """Linux's parent-death signal arrives once per thread of a dying multi-threaded parent."""
    with interrupts.handling():
        send(signal.SIGTERM)
        send(signal.SIGTERM)  # within INSIST_AFTER_SECONDS: not raised here
        reached = True
        with pytest.raises(Interrupted):
            interrupts.check()
    assert reached


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_a_signal_swallowed_by_a_finalizer_is_still_raised_at_the_next_check():
    class SendsOnCollection:
        def __del__(self):
            send()  # raised inside __del__, where Python prints "Exception ignored" and drops it

    with interrupts.handling():
        with interrupts.interruptible():
            SendsOnCollection()
            gc.collect()
        with pytest.raises(KeyboardInterrupt):
            interrupts.check()


def test_previous_handlers_are_restored_and_a_new_sweep_starts_clean():
    before = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT), sys.unraisablehook
    with pytest.raises(KeyboardInterrupt), interrupts.handling(), interrupts.interruptible():
        send()
    assert (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT), sys.unraisablehook) == before
    with interrupts.handling():
        interrupts.check()  # the earlier signal is not raised again in a later sweep


def test_handling_is_a_no_op_off_the_main_thread():
    import threading

    errors = []

    def body():
        try:
            with interrupts.handling():
                interrupts.check()
        except Exception as e:  # signal.signal would raise ValueError here
            errors.append(e)

    t = threading.Thread(target=body)
    t.start()
    t.join()
    assert errors == []


def test_a_signal_pending_when_the_sweep_returns_is_raised_then():
    """A Ctrl-C during the final summary (after the last check) still ends the command as interrupted."""
    with pytest.raises(KeyboardInterrupt), interrupts.handling():
        send()
        finished = True  # the sweep's remaining work runs to its end
    assert finished


# --- the CLI during start-up ---------------------------------------------------------------------------------


def _signal_then_wait(proc, sig, *, started) -> tuple[int, float]:
    """Wait until ``started()`` says start-up reached the step under test, send ``sig``; (exit code, seconds
    it took to exit)."""
    deadline = time.monotonic() + 120
    while not started() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert proc.poll() is None, "start-up ended before the signal could be sent"
    sent = time.monotonic()
    proc.send_signal(sig)
    try:
        code = proc.wait(timeout=60)
    except Exception:
        proc.kill()
        raise
    return code, time.monotonic() - sent


def test_sigterm_while_mlflow_db_is_created_ends_the_run_at_once_and_leaves_no_half_store(tmp_path, tiny_spec):
    """Before, start-up deferred signals to the first trial: 10-30 s while the MLflow store was created (or a
    server probed), longer than Kubernetes' grace period, after which SIGKILL bricked the store."""
    from tests.conftest import start_cli

    work = tmp_path / "work"
    proc = start_cli("run", tiny_spec, "--workdir", work, "--quiet", cwd=tmp_path, log=tmp_path / "log")
    returned, seconds = _signal_then_wait(proc, signal.SIGTERM, started=lambda: any(work.glob("*mlflow.db*")))
    assert returned == 143, (tmp_path / "log").read_text()
    assert seconds < 5, f"took {seconds:.1f} s to honour the signal"  # a bound, not a benchmark: before, 10-30 s
    # The tracking writer, in its own session, may be creating the store: it finishes (a rename makes the
    # file whole at once), sees its trainer gone, and exits; no half-made file stays behind.
    deadline = time.monotonic() + 60
    while [p for p in work.iterdir() if ".creating-" in p.name] and time.monotonic() < deadline:
        time.sleep(0.1)
    left = sorted(p.name for p in work.iterdir())
    assert not [name for name in left if ".creating-" in name], left
    if "mlflow.db" in left:  # finished creating just before the signal: whole, or the next run would fail
        from tracking.sqlite_store import _state

        assert _state(work / "mlflow.db", writable=False) == "complete"


def test_sigterm_while_waiting_for_the_tracking_server_ends_the_run_at_once(tmp_path, tiny_spec):
    """A server that takes connections and never answers (a hung proxy): the probe asks again for a minute."""
    import select
    import socket

    from tests.conftest import start_cli

    log = tmp_path / "log"
    with socket.socket() as hung:
        hung.bind(("127.0.0.1", 0))
        hung.listen(8)
        uri = f"http://127.0.0.1:{hung.getsockname()[1]}"
        env = {"SWEEPS_TRACKING_WAIT_SECONDS": "60"}
        args = ("run", tiny_spec, "--tracking-uri", uri, "--workdir", tmp_path / "w")
        proc = start_cli(*args, cwd=tmp_path, env=env, log=log)
        asked = lambda: bool(select.select([hung], [], [], 0)[0])  # noqa: E731 — the probe has connected
        returned, seconds = _signal_then_wait(proc, signal.SIGTERM, started=asked)
    assert returned == 143, log.read_text()
    assert seconds < 5, f"took {seconds:.1f} s to honour SIGTERM"  # before: until the minute was over
