"""The fast hypergradient path computes what PyTorch's own layers compute (float64), layer by layer and end to end."""
from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from sedona_runtime.heads import HeadSpec, build_head
from sedona_runtime.models.registry import ModelConfig, build_model
from sedona_runtime.search import second_order as so
from sedona_runtime.search.bilevel import Bilevel, InnerSettings, hypergradient
from sedona_runtime.search.memory import WeightSet
from sedona_runtime.search.relaxation import relax_model

INNER = InnerSettings(momentum=0.9, weight_decay=1e-3)


def _relaxed(seed: int = 0):
    """The small net on 16x16 inputs with the four aux heads: head inputs 16..2 pixels, inner maps down to 1x1."""
    torch.manual_seed(seed)
    model = build_model(ModelConfig(arch="small", width=0.5, num_classes=5))
    net = relax_model(model, ["aux1", "aux2", "aux3", "aux4"], (3, 16, 16), 5, 8, 0.1).double()
    converted = so.convert(net.heads)
    return net, converted


def _problem(net, steps: int):
    n = net.num_layers - 1
    g = torch.Generator().manual_seed(1)
    alpha = torch.randn(n, 2, generator=g, dtype=torch.float64).requires_grad_(True)
    beta = torch.randn(n, 4, generator=g, dtype=torch.float64).requires_grad_(True)
    batch = lambda: (torch.randn(6, 3, 16, 16, generator=g, dtype=torch.float64), torch.randint(0, 5, (6,), generator=g))
    return alpha, beta, [batch() for _ in range(steps)], batch()


def test_convert_swaps_every_eligible_layer_and_changes_nothing_until_switched_on():
    net, converted = _relaxed()
    kinds = {type(m) for m in net.heads.modules()}
    assert {so.FoldedPointwisePool, so.FoldedPointwise, so.CompositeBatchNorm2d, so.DepthwiseSmallMap,
            so.PointwiseMatmul} <= kinds
    folded = {id(m[1]) for m in net.heads.modules() if isinstance(m, so.FoldedPointwise)}
    assert all(id(m) in folded for m in net.heads.modules() if type(m) is nn.BatchNorm2d)  # folded or composite
    assert converted == sum(isinstance(m, so._FAST) for m in net.heads.modules())
    plain, _ = _relaxed()
    plain_keys = list(build_model(ModelConfig(arch="small", width=0.5, num_classes=5)).state_dict())
    assert set(plain_keys) <= set(net.state_dict())  # same state-dict keys as before conversion
    assert not any(m.fast for m in net.modules() if isinstance(m, so._FAST))
    with so.fast_path(net):
        assert all(m.fast for m in net.modules() if isinstance(m, so._FAST))
    assert not any(m.fast for m in net.modules() if isinstance(m, so._FAST))


@pytest.mark.parametrize("carried", [False, True])
def test_fast_hypergradient_equals_the_straightforward_one_in_float64(carried: bool):
    # Issue 14: the fast path against PyTorch's layers, through T = 3 unrolled steps with momentum carried.
    net, _ = _relaxed()
    alpha, beta, batches, val = _problem(net, 3)
    start = copy.deepcopy(net.state_dict())
    momentum = None
    if carried:
        g = torch.Generator().manual_seed(2)
        momentum = {k: 0.1 * torch.randn(p.shape, generator=g, dtype=p.dtype) for k, p in net.named_parameters()}
    results = {}
    for fast in (False, True):
        net.load_state_dict(start)
        with so.fast_path(net, fast):
            results[fast] = hypergradient(net, alpha, beta, batches, val, 0.3, INNER, momentum)
    (l0, e0, ga0, gb0), (l1, e1, ga1, gb1) = results[False], results[True]
    assert ga0.abs().max() > 1e-3 and gb0.abs().max() > 1e-3
    # Same functions in another association of float64 sums: ~1e-16 per op, amplified through three steps at
    # lr 0.3 and batch norm's 1/sigma to ~1e-12 observed; a missing or wrong second-order term is O(1e-2).
    torch.testing.assert_close(ga1, ga0, rtol=1e-9, atol=1e-11)
    torch.testing.assert_close(gb1, gb0, rtol=1e-9, atol=1e-11)
    assert l1 == pytest.approx(l0, rel=1e-12) and e1 == e0


def test_outer_step_fast_and_straightforward_agree_weights_and_buffers():
    net, _ = _relaxed(seed=3)
    alpha, beta, batches, val = _problem(net, 2)
    start = copy.deepcopy(net.state_dict())
    out = {}
    for fast in (False, True):
        a, b = alpha.detach().clone().requires_grad_(True), beta.detach().clone().requires_grad_(True)
        bil = Bilevel(net, a, b, inner=INNER, fast=fast)
        res = bil.outer_step(WeightSet(start, {}, 0), batches, val, 0.2)
        out[fast] = (a.detach(), b.detach(), res.weights)
    (a0, b0, w0), (a1, b1, w1) = out[False], out[True]
    torch.testing.assert_close(a1, a0, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(b1, b0, rtol=1e-12, atol=1e-12)
    for k in w0.state:  # the weight step runs PyTorch's layers either way, at (alpha, beta) equal to ~1e-12
        torch.testing.assert_close(w1.state[k], w0.state[k], rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("size", [1, 2, 3, 4, 8, 16])
def test_each_layer_matches_in_values_gradients_and_running_statistics(size: int):
    # One aux4 head (all four kinds of converted layer) at several map sizes: forward, input and weight
    # gradients, and the batch-norm buffers after the step; then eval mode, which runs the original layers.
    torch.manual_seed(size)
    ref = build_head("aux4", HeadSpec(12, size, 5, width=16)).double()
    fast = copy.deepcopy(ref)
    so.convert(fast)
    x = torch.randn(4, 12, size, size, dtype=torch.float64)
    y = torch.tensor([0, 1, 2, 3])
    outs = {}
    for name, head in (("ref", ref), ("fast", fast)):
        xx = x.clone().requires_grad_(True)
        with so.fast_path(head):
            loss = torch.nn.functional.cross_entropy(head(xx), y)
        grads = torch.autograd.grad(loss, [xx, *head.parameters()])
        outs[name] = (loss.detach(), grads)
    torch.testing.assert_close(outs["fast"][0], outs["ref"][0], rtol=1e-12, atol=1e-13)
    for g_fast, g_ref in zip(outs["fast"][1], outs["ref"][1]):
        torch.testing.assert_close(g_fast, g_ref, rtol=1e-9, atol=1e-12)
    for k, v in ref.state_dict().items():  # running means, unbiased running variances, batch counts
        torch.testing.assert_close(fast.state_dict()[k], v, rtol=1e-10, atol=1e-12)
    fast.eval()  # eval mode (running statistics) runs the original layers: bitwise what they give
    with so.fast_path(fast):
        on = fast(x)
    assert torch.equal(on, fast(x))


def test_batch_norm_with_cumulative_average_matches():
    ref = nn.BatchNorm2d(3, momentum=None).double()
    fast = copy.deepcopy(ref)
    fast.__class__ = so.CompositeBatchNorm2d
    fast.fast = True
    for seed in range(3):
        x = torch.randn(5, 3, 2, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))
        torch.testing.assert_close(fast(x), ref(x), rtol=1e-12, atol=1e-12)
    for k, v in ref.state_dict().items():
        torch.testing.assert_close(fast.state_dict()[k], v, rtol=1e-12, atol=1e-12)
