"""A function in its own thread: waited for to its last step, its error raised in the caller."""

import _thread
import threading
import time

import pytest

from conclab.measuring.background import Background


def test_wait_returns_after_the_threads_last_step_and_ticks_meanwhile():
    steps, ticks = [], []

    def target():
        time.sleep(0.35)
        steps.append("last")

    Background(target, name="test-bg").start().wait(tick=lambda: ticks.append(1), every=0.05)
    assert steps == ["last"]
    assert len(ticks) >= 3


def test_the_threads_exception_is_raised_in_the_caller():
    def target():
        raise ValueError("from the thread")

    thread = Background(target, name="test-bg").start()
    thread.wait()
    with pytest.raises(ValueError, match="from the thread"):
        thread.result()


def test_ctrl_c_reaches_the_caller_at_once_and_the_thread_can_still_be_waited_for():
    release, steps = threading.Event(), []

    def target():
        release.wait(5)
        steps.append("last")

    thread = Background(target, name="test-bg").start()
    threading.Timer(0.2, _thread.interrupt_main).start()  # Ctrl-C, as the terminal sends it
    with pytest.raises(KeyboardInterrupt):
        thread.wait()
    assert steps == []  # still running: the caller was not held up
    release.set()
    assert thread.wait_at_most(5)
    assert steps == ["last"]
