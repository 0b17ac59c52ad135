"""The hypergradient (Eq. 7) by per-step recomputation: keep each inner step's weights, not its graph.

`bilevel.hypergradient` records the T unrolled inner steps as one graph (activations of T forward passes and
T first-order backward passes, each differentiable) and differentiates the validation loss through all of it:
its peak grows with T x batch. Here the inner steps first run without a graph, keeping only each step's
starting weights theta_t and momentum m_t (a few copies of the parameters). The validation loss gives the
adjoint lambda_T = dL/dtheta_T; then, from t = T-1 down to 0, step t is run again from (theta_t, m_t) with
its graph (forward, first-order gradient with create_graph, the SGD update), and one vector-Jacobian product
through it gives the adjoints of (theta_t, m_t) and step t's share of dL/d(alpha, beta). Only one step's
graph is alive at a time: the peak is about one inner step's instead of T (benchmarks/README.md, "Search
cost"), for one more forward and first-order backward per step (T of them in all).

The arithmetic is the stored path's: the forward is `higher`'s patched module of the same network, the
update is `higher.optim.DifferentiableSGD`'s (weight decay, then momentum buffer m <- mu m + g, then
theta <- theta - lr m; a parameter without gradient keeps its weights and buffer), and the per-step gradient
goes through the same `grad_callback` hook as `diffopt.step` (where a caller transforms the inner gradients,
e.g. averaging them over processes, both paths see it). The two hypergradients differ only in the order in
which floating-point contributions are summed (tests/search/test_search_recompute.py: float64, 1e-10).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Sequence

import higher
import torch
from torch import Tensor

from sedona_runtime.search.memory import State
from sedona_runtime.search.relaxation import RelaxedNet, mixing_weights

if TYPE_CHECKING:  # pragma: no cover - annotations only (bilevel imports this module)
    from sedona_runtime.search.bilevel import InnerSettings
    from sedona_runtime.search.sharding import Sharding

Batch = tuple[Tensor, Tensor]
GradCallback = Callable[[Sequence[Tensor | None]], Sequence[Tensor | None]]
Weights = list[Tensor]
Buffers = list[Tensor | None]


def inner_gradients(loss: Tensor, params: Weights, *, create_graph: bool,
                    grad_callback: GradCallback | None = None) -> list[Tensor | None]:
    """d loss / d params as `higher`'s `diffopt.step` forms them (None for an unused parameter), then
    `grad_callback` (the same hook `diffopt.step` applies) if given."""
    grads = torch.autograd.grad(loss, params, create_graph=create_graph, allow_unused=True)
    return list(grad_callback(grads)) if grad_callback is not None else list(grads)


def sgd_update(params: Weights, buffers: Buffers, grads: Sequence[Tensor | None], lr: float, momentum: float,
               weight_decay: float) -> tuple[Weights, Buffers]:
    """One step of `higher.optim.DifferentiableSGD._update` (no dampening, no Nesterov), op for op.

    Returns (new weights, new momentum buffers); a buffer that was None starts as the step's gradient (as
    torch.optim.SGD's first step); with momentum 0 the buffers stay None.
    """
    new_p, new_b = [], []
    for p, buf, g in zip(params, buffers, grads):
        if g is None:
            new_p.append(p)
            new_b.append(buf)
            continue
        if weight_decay != 0:
            g = g + weight_decay * p
        if momentum != 0:
            buf = g if buf is None else buf.mul(momentum) + 1 * g
            g = buf
        new_p.append(p + (-lr) * g)
        new_b.append(buf)
    return new_p, new_b


def _start_buffers(net: RelaxedNet, momentum: State | None, use_momentum: bool) -> Buffers:
    """The entry's momentum buffers in parameter order, as `bilevel.inner_optimizer` loads them."""
    out: Buffers = []
    for name, p in net.named_parameters():
        buf = (momentum or {}).get(name) if use_momentum else None
        out.append(None if buf is None else buf.detach().to(p.device, p.dtype, copy=True))
    return out


def _leaves(tensors: Sequence[Tensor | None]) -> list[Tensor | None]:
    return [None if t is None else t.detach().requires_grad_(True) for t in tensors]


def recomputed_sweep(
    net: RelaxedNet,
    alpha: Tensor,
    beta: Tensor,
    batches: Sequence[Batch],
    val_batch: Batch,
    lr: float,
    inner: "InnerSettings",
    momentum: State | None = None,
    sharding: "Sharding | None" = None,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """(val loss, val error, d loss/d alpha, d loss/d beta) as `bilevel.hypergradient(..., recompute=True)`
    returns them (its only caller besides memory_model, which traces this), recomputing each inner step in
    the backward sweep instead of storing the unrolled graph (module docstring). Loss and error are detached
    0-dim tensors (no host synchronisation).

    Shapes: alpha [L-1, 2], beta [L-1, M]; the gradients have their shapes (zeros where a variable is not in
    the graph). `net` keeps its weights; its batch-norm running buffers advance (twice per step here, once in
    the stored path), which `Bilevel.outer_step` undoes. `sharding` (search/sharding.py, default unsharded):
    each step's loss over this process's shards and the validation loss of its part, as in
    `bilevel.unrolled_val_loss`, its `reduce_grads` the per-step gradient hook (`diffopt.step`'s
    grad_callback in the stored path). Under R processes the returned loss and gradients are this rank's
    parts (the caller sums them), the adjoints flowing through the all-reduce's backward exactly as through
    the stored graph."""
    from sedona_runtime.search.sharding import ONE

    sharding = ONE if sharding is None else sharding
    mu, wd = inner.momentum, inner.weight_decay
    fnet = higher.monkeypatch(net, copy_initial_weights=True, track_higher_grads=True)
    theta: Weights = [p.detach().clone() for p in net.parameters()]
    bufs = _start_buffers(net, momentum, mu != 0)
    a_fixed, b_fixed = mixing_weights(alpha.detach(), beta.detach())
    # Forward sweep without a graph: remember where every step starts.
    starts: list[tuple[Weights, Buffers]] = []
    for x, y in batches:
        starts.append((theta, bufs))
        p = [t.detach().requires_grad_(True) for t in theta]
        # Not forward(params=): layers that read a child's weights directly (second_order's folded ones)
        # see them only through update_params.
        fnet.update_params(p)
        total, mixes = sharding.relaxed_loss(fnet, (x, y), a_fixed, b_fixed)
        grads = inner_gradients(total, p, create_graph=False, grad_callback=sharding.reduce_grads)
        for mix in mixes:
            mix.freeze()
        with torch.no_grad():
            theta, bufs = sgd_update(p, bufs, grads, lr, mu, wd)
        theta = [t.detach() for t in theta]
    # The validation loss at theta_T and its adjoint.
    p_final = [t.detach().requires_grad_(True) for t in theta]
    fnet.update_params(p_final)
    loss, err = sharding.val_loss(fnet, val_batch)
    adj_theta = [torch.zeros_like(t) if g is None else g
                 for t, g in zip(p_final, torch.autograd.grad(loss, p_final, allow_unused=True))]
    adj_buf: list[Tensor | None] = [None if b is None else torch.zeros_like(b) for b in bufs]
    g_alpha, g_beta = torch.zeros_like(alpha), torch.zeros_like(beta)
    # Backward sweep: step t again, with its graph, and one vector-Jacobian product through it.
    for t in reversed(range(len(batches))):
        x, y = batches[t]
        theta_t, bufs_t = starts[t]
        p, b = [t_.detach().requires_grad_(True) for t_ in theta_t], _leaves(bufs_t)
        a_mix, b_mix = mixing_weights(alpha, beta)
        fnet.update_params(p)
        total, mixes = sharding.relaxed_loss(fnet, (x, y), a_mix, b_mix)
        grads = inner_gradients(total, p, create_graph=True, grad_callback=sharding.reduce_grads)
        for mix in mixes:  # from here on, activations are differentiated with true sensitivities (relaxation.py)
            mix.freeze()
        new_p, new_b = sgd_update(p, b, grads, lr, mu, wd)
        outputs, grad_outputs = list(new_p), list(adj_theta)
        for nb, ab in zip(new_b, adj_buf):
            if nb is not None and ab is not None:
                outputs.append(nb)
                grad_outputs.append(ab)
        live_b = [v for v in b if v is not None]
        wrt = [*p, *live_b, alpha, beta]
        got = torch.autograd.grad(outputs, wrt, grad_outputs, allow_unused=True)
        n = len(p)
        adj_theta = [torch.zeros_like(q) if g is None else g.detach() for q, g in zip(p, got[:n])]
        it = iter(got[n:n + len(live_b)])
        adj_buf = []
        for v in b:
            if v is None:
                adj_buf.append(None)
            else:
                g = next(it)
                adj_buf.append(torch.zeros_like(v) if g is None else g.detach())
        if got[-2] is not None:
            g_alpha = g_alpha + got[-2]
        if got[-1] is not None:
            g_beta = g_beta + got[-1]
        del total, mixes, grads, new_p, new_b, outputs, got  # this step's graph goes before the next is built
    return loss.detach(), err.detach(), g_alpha.detach(), g_beta.detach()
