"""The recomputed hypergradient (search/recompute.py) equals the stored one in float64 (issue 19)."""
from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from search_tiny import tiny_batch, tiny_relaxed
from sedona_runtime.models.registry import ModelConfig, build_model
from sedona_runtime.search import second_order as so
from sedona_runtime.search.bilevel import Bilevel, InnerSettings, hypergradient
from sedona_runtime.search.memory import WeightSet
from sedona_runtime.search.recompute import sgd_update, update_vjp
from sedona_runtime.search.relaxation import relax_model
from sedona_runtime.search.sharding import Sharding

# Both paths do the same float64 arithmetic; only the order in which the T steps' (and the shards')
# contributions to d L / d(alpha, beta) and to the adjoints are summed differs, so they agree to a few ulps of
# the largest terms (observed ~1e-15 relative; 3e-13 with shards of 2 rows, whose batch norm divides by a
# two-row variance and so amplifies rounding). 1e-10 relative (the bound) is 10^5 above that and far below any
# missed term: leaving out one step's share, or the momentum adjoint, changes the result by > 1e-2 here.
RTOL = 1e-10


def _close(got: torch.Tensor, want: torch.Tensor) -> None:
    assert float((got - want).norm()) <= RTOL * float(want.norm()), (got, want)


def _momentum(net, seed: int = 3) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {k: 0.3 * torch.randn(p.shape, generator=g, dtype=p.dtype) for k, p in net.named_parameters()}


def _tiny(steps: int, unused: bool = False):
    net = tiny_relaxed(num_layers=3, pool=2, bn=True, seed=5)
    if unused:  # a parameter the loss never reaches: no gradient, weights and buffer kept
        net.spare = nn.Linear(2, 2).double()
    n = net.num_layers - 1
    gen = torch.Generator().manual_seed(7)
    alpha = torch.randn(n, 2, generator=gen, dtype=torch.float64).requires_grad_(True)
    beta = torch.randn(n, 2, generator=gen, dtype=torch.float64).requires_grad_(True)
    return net, alpha, beta, [tiny_batch(8, seed=10 + t) for t in range(steps)], tiny_batch(16, seed=99)


@pytest.mark.parametrize("steps,carried,momentum,unused", [
    (3, True, 0.9, False),   # the search's case: the entry's momentum carried through T steps
    (3, False, 0.9, True),   # the first step starts the buffers; an unused parameter
    (2, False, 0.0, False),  # plain SGD: no buffers at all
])
def test_recomputed_equals_stored_on_a_tiny_net(steps: int, carried: bool, momentum: float, unused: bool) -> None:
    net, alpha, beta, batches, val = _tiny(steps, unused)
    inner = InnerSettings(momentum=momentum, weight_decay=1e-3)
    mom = _momentum(net) if carried else None
    stored = hypergradient(net, alpha, beta, batches, val, 0.5, inner, mom)
    again = hypergradient(net, alpha, beta, batches, val, 0.5, inner, mom, recompute=True)
    assert stored[2].abs().max() > 1e-6 and stored[3].abs().max() > 1e-6
    assert again[0] == pytest.approx(stored[0], rel=1e-12) and again[1] == stored[1]
    _close(again[2], stored[2])
    _close(again[3], stored[3])
    # Without the backward sweep's momentum adjoint, or with one step's share missing, it would not agree.
    short = hypergradient(net, alpha, beta, batches[:-1], val, 0.5, inner, mom, recompute=True)
    assert float((short[2] - stored[2]).norm()) > 1e-2 * float(stored[2].norm())


def _small_net():
    torch.manual_seed(0)
    model = build_model(ModelConfig(arch="small", width=0.5, num_classes=5))
    net = relax_model(model, ["aux1", "aux2", "aux3", "aux4"], (3, 16, 16), 5, 8, 0.1).double()
    so.convert(net.heads)
    n = net.num_layers - 1
    g = torch.Generator().manual_seed(1)
    alpha = torch.randn(n, 2, generator=g, dtype=torch.float64).requires_grad_(True)
    beta = torch.randn(n, 4, generator=g, dtype=torch.float64).requires_grad_(True)
    batch = lambda: (torch.randn(4, 3, 16, 16, generator=g, dtype=torch.float64), torch.randint(0, 5, (4,), generator=g))
    return net, alpha, beta, [batch() for _ in range(2)], batch()


def test_recomputed_equals_stored_with_the_fast_heads() -> None:
    # The small net's conv layers and the four aux heads in their second_order formulation (custom autograd
    # functions, batch norm folded into a 1x1 convolution whose weights are read directly), momentum carried.
    net, alpha, beta, batches, val = _small_net()
    inner = InnerSettings(momentum=0.9, weight_decay=1e-3)
    mom = _momentum(net)
    with so.fast_path(net):
        stored = hypergradient(net, alpha, beta, batches, val, 0.2, inner, mom)
        again = hypergradient(net, alpha, beta, batches, val, 0.2, inner, mom, recompute=True)
    assert again[0] == pytest.approx(stored[0], rel=1e-12)
    _close(again[2], stored[2])
    _close(again[3], stored[3])


def test_outer_step_with_recompute_equals_the_stored_one() -> None:
    net, alpha, beta, batches, val = _tiny(2)
    inner = InnerSettings(momentum=0.9, weight_decay=1e-3)
    entry = WeightSet(copy.deepcopy(net.state_dict()), _momentum(net), steps=3)
    results = []
    for recompute in (False, True):
        a, b = alpha.detach().clone().requires_grad_(True), beta.detach().clone().requires_grad_(True)
        res = Bilevel(net, a, b, inner=inner, recompute=recompute).outer_step(entry, batches, val, 0.2)
        results.append((a.detach(), b.detach(), res))
    (a0, b0, r0), (a1, b1, r1) = results
    torch.testing.assert_close(a1, a0, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(b1, b0, rtol=1e-12, atol=1e-12)
    assert r1.val_loss == pytest.approx(r0.val_loss, rel=1e-12)
    # The weight step starts from the entry again (no trace of the sweeps), at (alpha, beta) equal to an ulp.
    for k, v in r0.weights.state.items():
        torch.testing.assert_close(r1.weights.state[k], v, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("momentum,weight_decay", [(0.9, 1e-3), (0.0, 1e-3), (0.9, 0.0)])
def test_the_closed_form_update_vjp_is_autograd_through_sgd_update(momentum: float, weight_decay: float) -> None:
    # Parameter 0: a buffer carried; 1: the first step (buffer None); 2: no gradient (the update keeps it).
    g = torch.Generator().manual_seed(0)
    rnd = lambda: torch.randn(3, 2, generator=g, dtype=torch.float64)  # noqa: E731
    p = [rnd().requires_grad_(True) for _ in range(3)]
    b = [rnd().requires_grad_(True) if momentum else None, None, rnd().requires_grad_(True) if momentum else None]
    grads = [rnd().requires_grad_(True), rnd().requires_grad_(True), None]
    new_p, new_b = sgd_update(p, b, grads, 0.3, momentum, weight_decay)
    adj_p, adj_b = [rnd() for _ in range(3)], [rnd() if nb is not None else None for nb in new_b]
    outs = [*new_p, *[nb for nb in new_b if nb is not None]]
    outs_adj = [*adj_p, *[a for a in adj_b if a is not None]]
    live_b = [v for v in b if v is not None]
    want = torch.autograd.grad(outs, [*p, *live_b, *grads[:2]], outs_adj, allow_unused=True)
    got_p, got_b, got_g = update_vjp([True, True, False], b, adj_p, adj_b, 0.3, momentum, weight_decay)
    for got, w in zip([*got_p, *[a for a in got_b if a is not None], *got_g[:2]], want):
        torch.testing.assert_close(got, w, rtol=1e-15, atol=0)
    assert got_b[1] is None and got_g[2] is None
    if momentum:  # the brief's formula: adj g = adj m' - lr adj p'
        torch.testing.assert_close(got_g[0], adj_b[0] - 0.3 * adj_p[0], rtol=1e-15, atol=0)


@pytest.mark.parametrize("shards,small", [(2, False), (3, False), (2, True)])
def test_shard_by_shard_recompute_equals_the_stored_sharded_graph(shards: int, small: bool) -> None:
    # --shards R --recompute (one shard's graph at a time) against the stored graph of --shards R (every
    # shard's graph at once), float64; batch 8 in 3 shards is uneven (3, 3, 2 rows: w_r = 3/8, 3/8, 2/8).
    net, alpha, beta, batches, val = _small_net() if small else _tiny(3)
    inner = InnerSettings(momentum=0.9, weight_decay=1e-3)
    mom, sharding, lr = _momentum(net), Sharding(shards), 0.2 if small else 0.5
    with so.fast_path(net, small):
        stored = hypergradient(net, alpha, beta, batches, val, lr, inner, mom, sharding)
        again = hypergradient(net, alpha, beta, batches, val, lr, inner, mom, sharding, recompute=True)
    assert again[0] == pytest.approx(stored[0], rel=1e-12) and again[1] == pytest.approx(stored[1], rel=1e-12)
    _close(again[2], stored[2])
    _close(again[3], stored[3])
    if small:
        return
    # Batch norm per shard makes it another search than the unsharded one: the check is not vacuous.
    unsharded = hypergradient(net, alpha, beta, batches, val, lr, inner, mom)
    assert float((unsharded[2] - stored[2]).norm()) > 1e-6 * float(stored[2].norm())
