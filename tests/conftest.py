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


@pytest.fixture(scope="session")
def user_pkg(tmp_path_factory):
    """A folder outside the package holding a user's network and data set functions (tests/user_code.py);
    it is on sys.path for the tests, as the current directory is for a user's command."""
    import sys

    from user_code import make_user_package

    root = str(make_user_package(tmp_path_factory.mktemp("user_code")))
    sys.path.insert(0, root)
    yield root
    if root in sys.path:
        sys.path.remove(root)
