"""Eq. 4-6 of the relaxation: greedy at local-only, backprop at backprop-only, the affine mix between."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from search_tiny import tiny_batch, tiny_relaxed
from sedona_runtime.search.relaxation import RelaxedNet, grad_scale, mixing_weights


def _grads(net: RelaxedNet) -> dict[str, torch.Tensor]:
    return {n: (p.grad.clone() if p.grad is not None else torch.zeros_like(p)) for n, p in net.named_parameters()}


def _relaxed_grads(net: RelaxedNet, a_mix, b_mix, x, y) -> dict[str, torch.Tensor]:
    net.zero_grad(set_to_none=True)
    net(x, y, a_mix, b_mix).total.backward()
    return _grads(net)


def _mixed_logits(net: RelaxedNet, l: int, h: torch.Tensor, b_mix: torch.Tensor) -> torch.Tensor:
    return sum(b_mix[l, m] * head(h) for m, head in enumerate(net.heads[l]))


def _assert_same(got: dict, want: dict, keys=None, **tol) -> None:
    for k in keys or want:
        torch.testing.assert_close(got[k], want[k], **tol, msg=lambda m, k=k: f"{k}: {m}")


def test_grad_scale_is_identity_forward_and_scales_backward() -> None:
    h = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    c = torch.tensor(0.3, dtype=torch.float64, requires_grad=True)
    out = grad_scale(h, c)
    assert torch.equal(out, h)  # bit-exact forward
    g = torch.randn(3, 4, dtype=torch.float64)
    (gh,) = torch.autograd.grad(out, h, g, create_graph=True)
    torch.testing.assert_close(gh, 0.3 * g, rtol=0, atol=0)
    # The scaled gradient is differentiable in c: d/dc <gh, v> = <g, v>.
    v = torch.randn(3, 4, dtype=torch.float64)
    (gc,) = torch.autograd.grad((gh * v).sum(), c)
    torch.testing.assert_close(gc, (g * v).sum())


def test_local_only_equals_greedy_training() -> None:
    net, (x, y) = tiny_relaxed(), tiny_batch()
    n = net.num_layers - 1
    a_mix = torch.tensor([[1.0, 0.0]] * n, dtype=torch.float64)
    _, b_mix = mixing_weights(torch.zeros(n, 2), torch.randn(n, net.pool_size, dtype=torch.float64))
    got = _relaxed_grads(net, a_mix, b_mix, x, y)

    # Greedy reference: every layer its own gradient-isolated block with the beta-mixed head.
    net.zero_grad(set_to_none=True)
    h = x
    for l, layer in enumerate(net.layers):
        a = layer(h.detach())
        if l < n:
            loss = F.cross_entropy(_mixed_logits(net, l, a, b_mix), y, label_smoothing=0.1)
        else:
            loss = F.cross_entropy(net.classifier(a), y, label_smoothing=0.1)
        loss.backward()
        h = a
    # Same float64 operations up to multiplications by exactly 1.0 and additions of exact
    # zeros, but einsum vs. a Python sum of the mixture may round differently: 1e-12 relative.
    _assert_same(got, _grads(net), rtol=1e-12, atol=1e-14)


def test_backprop_only_equals_end_to_end_backprop() -> None:
    net, (x, y) = tiny_relaxed(), tiny_batch()
    n = net.num_layers - 1
    a_mix = torch.tensor([[0.0, 1.0]] * n, dtype=torch.float64)
    b_mix = torch.softmax(torch.randn(n, net.pool_size, dtype=torch.float64), -1)
    got = _relaxed_grads(net, a_mix, b_mix, x, y)

    net.zero_grad(set_to_none=True)
    h = x
    feats = []
    for layer in net.layers:
        h = layer(h)
        feats.append(h)
    F.cross_entropy(net.classifier(h), y, label_smoothing=0.1).backward()  # plain backprop
    for l in range(n):  # heads train on their own local loss, without reaching the layers
        F.cross_entropy(_mixed_logits(net, l, feats[l].detach(), b_mix), y, label_smoothing=0.1).backward()
    want = _grads(net)
    _assert_same(got, want, rtol=1e-12, atol=1e-14)  # same ops, see the greedy test
    assert any(want[k].abs().sum() > 0 for k in want if k.startswith("heads."))


def test_intermediate_alpha_is_the_affine_mix_of_eq4() -> None:
    net, (x, y) = tiny_relaxed(num_layers=4, pool=3), tiny_batch()
    n = net.num_layers - 1
    gen = torch.Generator().manual_seed(3)
    a_mix, b_mix = mixing_weights(
        torch.randn(n, 2, generator=gen, dtype=torch.float64), torch.randn(n, 3, generator=gen, dtype=torch.float64)
    )
    got = _relaxed_grads(net, a_mix, b_mix, x, y)

    # Reference: the recursion of Eq. 4 by hand, from separately computed local and backprop
    # error signals, then delta^l * da_l/dtheta_l (Eq. 5) and plain local gradients (Eq. 6).
    ins, outs = [], []
    h = x
    for layer in net.layers:
        xi = h.detach().requires_grad_(True)
        ins.append(xi)
        outs.append(layer(xi))
        h = outs[-1]
    want = {k: torch.zeros_like(p) for k, p in net.named_parameters()}
    final = F.cross_entropy(net.classifier(outs[-1]), y, label_smoothing=0.1)
    cls = list(net.classifier.parameters())
    *delta, = torch.autograd.grad(final, [outs[-1], *cls])
    for (k, _), g in zip([(k, p) for k, p in net.named_parameters() if k.startswith("classifier.")], delta[1:]):
        want[k] = g
    delta = delta[0]
    for l in range(n, -1, -1):
        params = list(net.layers[l].parameters())
        if l < n:
            a = outs[l]
            head_params = list(net.heads[l].parameters())
            local_loss = F.cross_entropy(_mixed_logits(net, l, a, b_mix), y, label_smoothing=0.1)
            local, *g_heads = torch.autograd.grad(local_loss, [a, *head_params])
            for (k, _), g in zip([(k, p) for k, p in net.named_parameters() if k.startswith(f"heads.{l}.")], g_heads):
                want[k] = g
            (bp,) = torch.autograd.grad(outs[l + 1], ins[l + 1], delta)  # delta^{l+1} * da_{l+1}/da_l
            delta = a_mix[l, 0] * local + a_mix[l, 1] * bp
        gs = torch.autograd.grad(outs[l], [ins[l], *params], delta, retain_graph=True)
        for (k, _), g in zip([(k, p) for k, p in net.named_parameters() if k.startswith(f"layers.{l}.")], gs[1:]):
            want[k] = g
    # Same mathematics, different association of float64 sums: agreement to ~1e-15 relative.
    _assert_same(got, want, rtol=1e-12, atol=1e-14)


def test_losses_do_not_depend_on_alpha() -> None:
    net, (x, y) = tiny_relaxed(), tiny_batch()
    n = net.num_layers - 1
    b_mix = torch.softmax(torch.zeros(n, net.pool_size, dtype=torch.float64), -1)
    a1 = torch.softmax(torch.randn(n, 2, dtype=torch.float64), -1)
    a2 = torch.softmax(torch.randn(n, 2, dtype=torch.float64), -1)
    # alpha changes only the backward pass: the forward losses are bit-identical.
    assert torch.equal(net(x, y, a1, b_mix).total, net(x, y, a2, b_mix).total)
