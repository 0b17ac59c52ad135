"""Suite-wide test settings: one torch thread per test process."""
import pytest
import torch


@pytest.fixture(autouse=True)
def _one_torch_thread():
    # On the shared 2-core CI machine, torch's intra-op worker threads make small convolutions
    # 10-50x slower under load (measured: resnet152 at 0.25x, 3.4 s forward with 2 threads vs 0.06 s
    # with 1). Tests measure correctness, not speed, so each test process runs single-threaded.
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
