"""Test fixtures: single-threaded torch, so these small CPU workloads don't stall on a shared 2-core box."""
from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_torch_thread():
    # Intra-op threads on an oversubscribed 2-core machine make tiny convs 10-50x slower (spin-waits).
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
