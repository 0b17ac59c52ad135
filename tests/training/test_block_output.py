"""A block step's output and reads: contiguous before its ready event, channels_last computing the same,
losses and finiteness read without waiting (LazyRead). CUDA halves: tests/pipeline/test_cuda.py."""
from __future__ import annotations

import copy
import math

import torch
from torch import nn

from _training_helpers import LinearHead, tiny_cfg
from sedona_runtime.training.block import Block, BlockRunner
from sedona_runtime.training.lazy_read import LazyRead


class Transposed(nn.Module):
    """A user layer ending in a transpose: its output is a strided view."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.transpose(2, 3)


def _block(last: nn.Module | None = None) -> Block:
    torch.manual_seed(0)
    layers = [nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU()] + ([last] if last else [])
    return Block(nn.Sequential(*layers), LinearHead(4, 10), 0, 2)


def _data(seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(8, 3, 6, 5, generator=g, dtype=torch.float64), torch.randint(0, 10, (8,), generator=g)


def test_a_strided_output_is_made_contiguous_before_the_ready_mark(monkeypatch):
    runner = BlockRunner(_block(Transposed()), tiny_cfg(), torch.device("cpu"))
    log: list[str] = []
    mark = runner.clock.mark
    monkeypatch.setattr(runner.clock, "mark", lambda phase: log.append(f"mark {phase}") or mark(phase))
    orig = torch.Tensor.contiguous

    def contiguous(self, *a, **k):
        if not self.is_contiguous(*a, **k):
            log.append("copy")
        return orig(self, *a, **k)

    monkeypatch.setattr(torch.Tensor, "contiguous", contiguous)
    x, y = _data()
    res = runner.train_step(x, y)
    # The copy is queued before the event a sender waits for (on CUDA, `ready` is that mark's event).
    assert log[:2] == ["copy", "mark forward"]
    assert res.out.is_contiguous() and res.out.shape == (8, 4, 5, 6)


def test_channels_last_computes_the_same_step():
    # float64 on CPU: channels_last picks other convolution kernels, which sum the same <= 27 products per
    # output in another order (rounding ~27 * 1.1e-16 relative); over 3 SGD steps at lr 0.05 the weights stay
    # within ~1e-14 of each other here. 1e-10 leaves four orders of margin and still catches a wrong layout.
    x, y = _data()
    eager = BlockRunner(_block(), tiny_cfg(), torch.device("cpu"))
    nhwc = BlockRunner(_block(), tiny_cfg(channels_last=True), torch.device("cpu"))
    assert nhwc.block.layers[0].weight.is_contiguous(memory_format=torch.channels_last)
    for _ in range(3):
        a, b = eager.train_step(x, y), nhwc.train_step(x, y)
        assert b.out.is_contiguous()  # what travels to the next block: plain NCHW either way
        torch.testing.assert_close(b.out, a.out, rtol=1e-10, atol=1e-10)
        assert math.isclose(a.loss, b.loss, rel_tol=1e-10)
    for p, q in zip(eager.block.parameters(), nhwc.block.parameters()):
        torch.testing.assert_close(q, p, rtol=1e-10, atol=1e-10)


def test_reports_read_the_loss_without_a_device_read_on_cpu_exactly():
    runner = BlockRunner(_block(), tiny_cfg(), torch.device("cpu"))
    assert math.isnan(runner.last_loss())
    x, y = _data()
    for _ in range(2):
        res = runner.train_step(x, y)
        assert runner.last_loss() == res.loss  # CPU: the step's own loss, bit for bit
    runner.check_finite(wait=False)
    runner.check_finite()


def test_lazy_read_on_cpu_is_the_latest_post():
    reads = LazyRead("cpu")
    assert reads.latest() is None
    reads.post(1, torch.tensor(2.5), torch.tensor(-1))
    reads.post(2, torch.tensor(0.5, requires_grad=True), torch.tensor(3))
    assert reads.latest() == (2, [0.5, 3.0])


def test_state_and_results_do_not_depend_on_the_compiled_wrappers():
    # The runner's forward/loss callables share the block's modules: its state dict is the block's.
    runner = BlockRunner(_block(), tiny_cfg(), torch.device("cpu"))
    keys = set(runner.state_dict()["block"])
    assert keys == set(copy.deepcopy(_block()).state_dict())
