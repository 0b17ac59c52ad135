"""--compile: torch.compile (inductor, on this CPU with gcc) of a block's forward and head loss trains the same
weights as the eager step, within a stated tolerance."""
from __future__ import annotations

import torch
from torch import nn

from _training_helpers import LinearHead, tiny_cfg
from sedona_runtime.training.block import Block, BlockRunner


def _block() -> Block:
    torch.manual_seed(0)
    layers = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1, bias=False), nn.BatchNorm2d(4), nn.ReLU())
    return Block(layers, LinearHead(4, 10), 0, 2)


def test_compiled_and_eager_blocks_agree():
    # float64: inductor fuses batch norm, ReLU, pooling and the loss into its own C++ loops, which sum in
    # another order than ATen (each reduction here has <= 8*6*6 = 288 terms: rounding <= 288 * 1.1e-16
    # relative, ~3e-14); three SGD steps at lr 0.05 keep the gap of that order (measured: 2e-15 on the
    # outputs, 1e-15 on the weights). rtol = atol = 1e-10 has four orders of margin and would still catch a
    # compiled step that dropped the weight decay, the momentum or the label smoothing (>= 1e-5 here).
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(8, 3, 6, 6, generator=g, dtype=torch.float64), torch.randint(0, 10, (8,), generator=g)
    eager = BlockRunner(_block(), tiny_cfg(), torch.device("cpu"))
    compiled = BlockRunner(_block(), tiny_cfg(compile=True), torch.device("cpu"))
    assert compiled._forward is not compiled.block  # really compiled
    for _ in range(3):
        a, b = eager.train_step(x, y), compiled.train_step(x, y)
        torch.testing.assert_close(b.out, a.out, rtol=1e-10, atol=1e-10)
        torch.testing.assert_close(b.loss_tensor, a.loss_tensor, rtol=1e-10, atol=1e-10)
    for p, q in zip(eager.block.parameters(), compiled.block.parameters()):
        torch.testing.assert_close(q, p, rtol=1e-10, atol=1e-10)
    assert compiled.state_dict()["block"].keys() == eager.state_dict()["block"].keys()  # same checkpoints
