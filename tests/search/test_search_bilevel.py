"""The hypergradient through T unrolled inner steps agrees with central finite differences."""
from __future__ import annotations

import pytest
import torch

from search_tiny import tiny_batch, tiny_relaxed
from sedona_runtime.search.bilevel import (Bilevel, InnerSettings, cosine_lr, hypergradient, inner_optimizer,
                                           unrolled_val_loss, weight_step)
from sedona_runtime.search.memory import WeightSet

INNER = InnerSettings(momentum=0.9, weight_decay=1e-3)


def _setup(bn: bool, steps: int):
    net = tiny_relaxed(num_layers=3, pool=2, bn=bn, seed=5)
    n = net.num_layers - 1
    gen = torch.Generator().manual_seed(7)
    alpha = torch.randn(n, 2, generator=gen, dtype=torch.float64).requires_grad_(True)
    beta = torch.randn(n, 2, generator=gen, dtype=torch.float64).requires_grad_(True)
    batches = [tiny_batch(8, seed=10 + t) for t in range(steps)]
    return net, alpha, beta, batches, tiny_batch(16, seed=99)


def _momentum(net, seed: int = 3) -> dict[str, torch.Tensor]:
    """Momentum buffers as a memory entry carries them (random, so that they matter)."""
    g = torch.Generator().manual_seed(seed)
    return {k: 0.3 * torch.randn(p.shape, generator=g, dtype=p.dtype) for k, p in net.named_parameters()}


@pytest.mark.parametrize("bn,steps,carried", [(True, 3, False), (True, 2, True)])
def test_hypergradient_matches_central_differences(bn: bool, steps: int, carried: bool) -> None:
    net, alpha, beta, batches, val = _setup(bn, steps)
    momentum = _momentum(net) if carried else None
    lr = 0.5  # large, so that (alpha, beta) move the val loss measurably in few steps
    _, _, g_alpha, g_beta = hypergradient(net, alpha, beta, batches, val, lr, INNER, momentum)
    assert g_alpha.abs().max() > 1e-6 and g_beta.abs().max() > 1e-6  # a real, non-trivial signal

    def f(a: torch.Tensor, b: torch.Tensor) -> float:
        return float(unrolled_val_loss(net, a, b, batches, val, lr, INNER, momentum)[0].detach())

    eps = 1e-5
    for var, grad in ((alpha, g_alpha), (beta, g_beta)):
        fd = torch.zeros_like(var)
        for i in range(var.numel()):
            plus, minus = var.detach().clone(), var.detach().clone()
            plus.view(-1)[i] += eps
            minus.view(-1)[i] -= eps
            args_p = (plus, beta.detach()) if var is alpha else (alpha.detach(), plus)
            args_m = (minus, beta.detach()) if var is alpha else (alpha.detach(), minus)
            fd.view(-1)[i] = (f(*args_p) - f(*args_m)) / (2 * eps)
        # Central differences in float64: truncation error ~eps^2 * |f'''| and rounding
        # ~1e-16 * |f| / eps ~ 1e-11; observed agreement is ~1e-11 on entries of ~1e-4.
        # The bound (1e-9 + 1e-6 relative) is 100x that, yet 10^4x below the error of a
        # hypergradient that misses a second-order path: the `h.detach() + c * (h - h.detach())`
        # relaxation is off by ~3e-3 here (see relaxation.py).
        torch.testing.assert_close(grad, fd, rtol=1e-6, atol=1e-9)


def test_unrolled_steps_continue_the_entrys_momentum() -> None:
    # Issue 14, item 1: the T differentiable steps are SGD steps whose momentum continues from the memory
    # entry's buffers: the validation loss after them equals that of T ordinary SGD steps (momentum loaded).
    net, alpha, beta, batches, val = _setup(True, 3)
    momentum, start = _momentum(net), {k: v.clone() for k, v in net.state_dict().items()}
    lr = 0.3
    got, _ = unrolled_val_loss(net, alpha, beta, batches, val, lr, INNER, momentum)
    without, _ = unrolled_val_loss(net, alpha, beta, batches, val, lr, INNER)
    ref = tiny_relaxed(num_layers=3, pool=2, bn=True, seed=5)
    ref.load_state_dict(start)
    opt = inner_optimizer(ref, lr, INNER, momentum)
    for batch in batches:
        weight_step(ref, alpha, beta, batch, lr, INNER, opt=opt)
    want = torch.nn.functional.cross_entropy(ref.logits(val[0]), val[1])
    # Same arithmetic in another order (higher's functional step vs torch.optim.SGD): float64 rounding only.
    torch.testing.assert_close(got.detach(), want.detach(), rtol=1e-12, atol=1e-12)
    assert abs(float(got.detach()) - float(without.detach())) > 1e-4  # the carried momentum changes the trajectory


def test_outer_step_moves_alpha_beta_and_takes_a_momentum_step_from_the_entry() -> None:
    net, alpha, beta, batches, val = _setup(True, 2)
    start = {k: v.clone() for k, v in net.state_dict().items()}
    entry = WeightSet(start, _momentum(net), steps=41)
    bil = Bilevel(net, alpha, beta, inner=INNER, outer_lr=0.01, outer_weight_decay=1e-6)
    assert bil.outer.param_groups[0]["betas"] == (0.5, 0.999)  # issue 14, item 3: the release's Adam
    a0, b0 = alpha.detach().clone(), beta.detach().clone()
    res = bil.outer_step(entry, batches, val, lr=0.1)
    # Adam's first step moves every coordinate with a non-zero gradient by ~lr.
    assert (alpha.detach() - a0).abs().max() == pytest.approx(0.01, rel=1e-3)
    assert (beta.detach() - b0).abs().max() == pytest.approx(0.01, rel=1e-3)
    # The new weights are one SGD step from the entry (its momentum continued) at the updated (alpha, beta),
    # the unrolled steps having left no trace (batch-norm buffers included).
    ref = tiny_relaxed(num_layers=3, pool=2, bn=True, seed=5)
    ref.load_state_dict(start)
    opt = inner_optimizer(ref, 0.1, INNER, entry.momentum)
    weight_step(ref, alpha, beta, batches[0], 0.1, INNER, opt=opt)
    for k, v in ref.state_dict().items():
        torch.testing.assert_close(res.weights.state[k], v, rtol=0, atol=0)
    for name, p in ref.named_parameters():
        torch.testing.assert_close(res.weights.momentum[name], opt.state[p]["momentum_buffer"], rtol=0, atol=0)
    assert res.weights.steps == 42
    assert any(not torch.equal(res.weights.state[k], start[k]) for k in start)
    # With momentum 0.9 the carried buffer matters: a fresh optimizer would give other weights.
    fresh = tiny_relaxed(num_layers=3, pool=2, bn=True, seed=5)
    fresh.load_state_dict(start)
    weight_step(fresh, alpha, beta, batches[0], 0.1, INNER)
    assert any(not torch.allclose(fresh.state_dict()[k], res.weights.state[k]) for k in start)


def test_cosine_lr_is_the_releases_closed_form() -> None:
    assert cosine_lr(0, 10, 0.1, 0.001) == pytest.approx(0.1)
    assert cosine_lr(10, 10, 0.1, 0.001) == pytest.approx(0.001)
    assert cosine_lr(5, 10, 0.1, 0.001) == pytest.approx(0.0505)
    assert cosine_lr(2_000, 10, 0.1, 0.001) == 0.001  # past the schedule: lr_min
    assert cosine_lr(0, 0, 0.1, 0.001) == 0.001
    # Issue 14, item 2: weights from the last 4,000 of 40,000 pretraining steps search at ~0.0034 .. 0.001.
    assert cosine_lr(36_000, 40_000, 0.1, 0.001) == pytest.approx(0.003423, abs=1e-6)
    assert cosine_lr(40_000, 40_000, 0.1, 0.001) == pytest.approx(0.001)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_hypergradient_on_cuda_matches_cpu() -> None:
    net, alpha, beta, batches, val = _setup(True, 2)
    _, _, ga_cpu, gb_cpu = hypergradient(net, alpha, beta, batches, val, 0.5, INNER, _momentum(net))
    dev = torch.device("cuda")
    net = net.to(dev)
    a, b = alpha.detach().to(dev).requires_grad_(True), beta.detach().to(dev).requires_grad_(True)
    moved = [(x.to(dev), y.to(dev)) for x, y in batches]
    _, _, ga, gb = hypergradient(net, a, b, moved, (val[0].to(dev), val[1].to(dev)), 0.5, INNER,
                                 {k: v.to(dev) for k, v in _momentum(net).items()})
    # float64 on both devices; only reduction order differs (cuBLAS vs. CPU BLAS): ~1e-15 relative.
    torch.testing.assert_close(ga.cpu(), ga_cpu, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(gb.cpu(), gb_cpu, rtol=1e-9, atol=1e-12)
