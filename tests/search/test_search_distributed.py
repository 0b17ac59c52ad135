"""The data-parallel search: R = 2 processes compute what one process computes with --shards 2."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from dp_rank import run_steps
from search_tiny import tiny_batch, tiny_relaxed
from sedona_runtime.pipeline import rendezvous
from sedona_runtime.search.relaxation import mixing_weights
from sedona_runtime.search.sharding import Sharding, split

HERE = Path(__file__).resolve().parent


def _rel(a: dict, b: dict) -> float:
    """Largest difference over all tensors, relative to each tensor's largest magnitude."""
    return max(float((a[k].double() - b[k].double()).abs().max() / b[k].double().abs().max().clamp_min(1e-30))
               for k in b)


def test_split_weights_rows_and_covers_the_batch() -> None:
    x, y = torch.arange(10.0).view(5, 2), torch.arange(5)
    parts = split((x, y), 2)
    assert [w for w, _ in parts] == [3 / 5, 2 / 5]
    assert torch.equal(torch.cat([b[1] for _, b in parts]), y)
    with pytest.raises(ValueError):
        split((x, y), 6)


def test_the_sharded_weight_step_backpropagates_shard_by_shard() -> None:
    # relaxed_backward: one shard's forward and backward at a time (3 uneven shards of 8 rows), against each
    # shard's gradient and batch-norm update computed by hand from the same start, weighted by rows.
    import copy

    net = tiny_relaxed(bn=True, seed=2)
    a_mix, b_mix = mixing_weights(torch.randn(3, 2, dtype=torch.float64), torch.randn(3, 2, dtype=torch.float64))
    batch = tiny_batch(8, seed=4)
    loss = Sharding(3).relaxed_backward(net, batch, a_mix, b_mix)
    want_loss, grads, buffers = 0.0, None, None
    for w, (x, y) in split(batch, 3):
        ref = copy.deepcopy(tiny_relaxed(bn=True, seed=2))
        total = ref(x, y, a_mix, b_mix).total
        g = torch.autograd.grad(total, list(ref.parameters()))
        want_loss += w * float(total.detach())
        grads = [w * t for t in g] if grads is None else [a + w * t for a, t in zip(grads, g)]
        bufs = {k: v for k, v in ref.state_dict().items() if "running" in k}
        buffers = {k: w * v for k, v in bufs.items()} if buffers is None else {k: buffers[k] + w * v for k, v in bufs.items()}
    assert float(loss) == pytest.approx(want_loss, rel=1e-14)
    for p, g in zip(net.parameters(), grads):
        torch.testing.assert_close(p.grad, g, rtol=1e-13, atol=1e-15)
    state = net.state_dict()
    for k, v in buffers.items():
        torch.testing.assert_close(state[k], v, rtol=1e-13, atol=1e-15)
    assert all(int(v) == 1 for k, v in state.items() if k.endswith("num_batches_tracked"))


@pytest.mark.multiprocess
@pytest.mark.timeout(240)
def test_two_ranks_equal_two_shards_in_one_process(tmp_path: Path) -> None:
    # Two ranks over gloo (inner gradients summed by the differentiable all-reduce) against one process
    # computing both shards in turn: 3 outer steps of T = 2 on the tiny batch-norm net.
    listener = rendezvous.listen_loopback(0)
    port = listener.getsockname()[1]
    store = rendezvous.serve_store(listener, 2, 60.0)  # noqa: F841 - serves the ranks until the test ends
    procs = [subprocess.Popen([sys.executable, str(HERE / "dp_rank.py"), str(r), "2", str(port), str(tmp_path / f"r{r}.pt")])
             for r in range(2)]
    try:
        codes = [p.wait(200) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait(5)
    assert codes == [0, 0]
    got = [torch.load(tmp_path / f"r{r}.pt", weights_only=True) for r in range(2)]
    for d in ("torch.float64", "torch.float32"):  # every rank holds the same values, bit for bit
        assert all(torch.equal(got[0][d][k], got[1][d][k]) for k in got[0][d])
    # The checksum: equal tensors pass, a difference on one rank stops every rank with one clear line.
    for r in range(2):
        assert got[r]["diverged"].startswith("the ranks of the search no longer agree at step 7: rank 1's beta")
    ref64 = run_steps(Sharding(2), torch.float64)
    assert set(got[0]["torch.float64"]) == set(ref64)
    d64 = _rel(got[0]["torch.float64"], ref64)
    assert d64 < 1e-10, d64
    # float32: the two ways differ only in the order of the sums (w0 g0 + w1 g1 in one autograd pass
    # against two partial gradients and an all-reduce), so their difference scales with the unit roundoff:
    # the float64 difference (5.6e-14 measured) times 2^29 (float32's unit roundoff over float64's) gives
    # 3e-5; the bound 1e-4 leaves a factor of three over that estimate. Measured: 1.5e-5 (CPU, deterministic).
    d32 = _rel(got[0]["torch.float32"], run_steps(Sharding(2), torch.float32))
    assert d32 < 1e-4, d32
    # --recompute on two ranks: the adjoints flow back through the all-reduce's backward one recomputed step
    # at a time, as through the stored graph; the same search as the stored one in one process (float64).
    d_re = _rel(got[0]["recompute64"], ref64)
    assert d_re < 1e-10, d_re
    # Sharding changes the computation (batch norm per shard): the check above is not vacuous.
    assert _rel(run_steps(Sharding(1), torch.float64), ref64) > 1e-6
