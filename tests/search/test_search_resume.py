"""Ctrl-C during a search: noticed at once even inside a long PyTorch call; a second Ctrl-C stops at once."""
from __future__ import annotations

import os
import signal
import threading
import time

import pytest
import torch

from sedona_runtime.search.resume import deferred_interrupt


def _long_call() -> float:
    """One PyTorch call of a few hundred milliseconds (the GIL is released, no Python bytecode runs), then
    the time it returned."""
    a = torch.randn(1400, 1400, generator=torch.Generator().manual_seed(0))
    _ = torch.linalg.matrix_power(a / a.norm(), 40)
    return time.perf_counter()


def test_first_ctrl_c_is_noticed_during_a_long_call_and_only_sets_the_event() -> None:
    # Issue 13, item 11: "prints at once that it stops after the step". Python runs signal handlers only
    # between bytecodes, so without the watcher the notice would wait for the call to return.
    noticed: list[float] = []
    with deferred_interrupt(lambda: noticed.append(time.perf_counter())) as stop:
        timer = threading.Timer(0.02, os.kill, (os.getpid(), signal.SIGINT))
        timer.start()
        start = time.perf_counter()
        returned = _long_call()
        timer.join()
        assert returned - start > 0.1, "the call must outlast the signal for this test to mean anything"
        assert stop.is_set() and len(noticed) == 1
        assert noticed[0] < returned  # noticed while the call was still running
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # restored


def test_second_ctrl_c_interrupts_at_once() -> None:
    with pytest.raises(KeyboardInterrupt):
        with deferred_interrupt() as stop:
            signal.raise_signal(signal.SIGINT)
            assert stop.is_set()
            signal.raise_signal(signal.SIGINT)
            time.sleep(1)  # not reached: the second signal raises
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
