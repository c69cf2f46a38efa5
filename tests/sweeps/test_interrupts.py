"""sweeps.interrupts with real signals sent to this process: recorded, raised at safe points, never lost."""

from __future__ import annotations

import gc
import os
import signal
import sys
import time

import pytest

from sweeps import interrupts
from sweeps.errors import Interrupted


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
