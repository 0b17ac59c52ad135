"""The hypergradient (Eq. 7) by per-step recomputation: keep each inner step's weights, not its graph.

`bilevel.hypergradient` records the T unrolled inner steps as one graph (activations of T forward passes and
T first-order backward passes, each differentiable) and differentiates the validation loss through all of it:
its peak grows with T x batch. Here the inner steps first run without a graph, keeping only each step's
starting weights theta_t and momentum m_t (a few copies of the parameters). The validation loss gives the
adjoint lambda_T = dL/dtheta_T; then, from t = T-1 down to 0, step t is run again from (theta_t, m_t) with
its graph and one vector-Jacobian product through it gives the adjoints of (theta_t, m_t) and step t's share
of dL/d(alpha, beta). Only one step's graph is alive at a time: the peak is about one inner step's instead of
T (benchmarks/README.md, "Search cost"), for one more forward and first-order backward per step.

Shard by shard. The update (theta, m) -> (theta', m') of `sgd_update` is linear in the step's gradient
g = sum_r w_r g_r (the shards' gradients, search/sharding.py; summed over processes by `reduce_grads`), so its
VJP splits in two: (1) the update alone gives the direct adjoints of theta_t and m_t and the adjoint v of g
(`update_vjp`, in closed form: v = adj m' - lr adj theta' with momentum, -lr adj theta' without); (2) each shard r's forward is run again, its
gradient g_r formed with create_graph, and one VJP of w_r g_r with v adds shard r's share to the adjoint of
theta_t and to dL/d(softmax alpha, softmax beta) before the next shard's graph is built. So a process that
holds R shards (`--shards R`) keeps one shard's second-order graph alive, not R: the peak of an unsharded
step at batch B / R. The forward sweep and the validation loss's backward go shard by shard too (first-order).
Under R processes v is summed over the ranks (`Sharding.sum_`) before step (2), which is what the backward of
the differentiable all-reduce (search/distributed.py) does in the stored graph.

The arithmetic is the stored path's: the forward is `higher`'s patched module of the same network, the
update is `higher.optim.DifferentiableSGD`'s (weight decay, then momentum buffer m <- mu m + g, then
theta <- theta - lr m; a parameter without gradient keeps its weights and buffer), each shard's gradient hooks
(relaxation.GradMix) scale the first-order pass and are frozen before its VJP, as in the stored graph. The two
hypergradients differ only in the order in which floating-point contributions are summed
(tests/search/test_search_recompute.py: float64, 1e-10).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import higher
import torch
from torch import Tensor

from sedona_runtime.search.memory import State
from sedona_runtime.search.relaxation import RelaxedNet, mixing_weights

if TYPE_CHECKING:  # pragma: no cover - annotations only (bilevel imports this module)
    from sedona_runtime.search.bilevel import InnerSettings
    from sedona_runtime.search.sharding import Sharding

Batch = tuple[Tensor, Tensor]
Weights = list[Tensor]
Buffers = list[Tensor | None]
Grads = list[Tensor | None]


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


def update_vjp(has_grad: Sequence[bool], buffers: Buffers, adj_params: Weights, adj_buffers: Buffers, lr: float,
               momentum: float, weight_decay: float) -> tuple[Weights, Buffers, Grads]:
    """The VJP of `sgd_update`: given the adjoints (adj_params, adj_buffers) of its outputs, the adjoints of
    (its params, its buffers, its gradients). The update is linear, so they do not depend on the values, only
    on which parameter has a gradient (`has_grad`; without one the update keeps weights and buffer) and which
    buffer starts as None (`buffers`). With a gradient, by sgd_update's arithmetic (g' = g + wd p;
    m' = mu m + g' or m' = g' on the first step; p' = p - lr m'; without momentum p' = p - lr g'):

        adj g = adj m' - lr adj p'  (momentum)   or   -lr adj p'  (none),
        adj p = adj p' + wd adj g,   adj m = mu adj g  (None where m is None).

    (tests/search/test_search_recompute.py checks it against autograd through `sgd_update`.) Elementwise, a few
    copies of the parameters."""
    adj_p: Weights = []
    adj_b: Buffers = []
    adj_g: Grads = []
    for has, buf, ap, ab in zip(has_grad, buffers, adj_params, adj_buffers):
        if not has:
            adj_p.append(ap)
            adj_b.append(ab)
            adj_g.append(None)
            continue
        v = ap * (-lr)
        if momentum != 0 and ab is not None:  # no adjoint: m' reaches nothing
            v = v + ab
        adj_p.append(ap + weight_decay * v if weight_decay != 0 else ap)
        adj_b.append(None if buf is None else v * momentum)
        adj_g.append(v)
    return adj_p, adj_b, adj_g


def _start_buffers(net: RelaxedNet, momentum: State | None, use_momentum: bool) -> Buffers:
    """The entry's momentum buffers in parameter order, as `bilevel.inner_optimizer` loads them."""
    out: Buffers = []
    for name, p in net.named_parameters():
        buf = (momentum or {}).get(name) if use_momentum else None
        out.append(None if buf is None else buf.detach().to(p.device, p.dtype, copy=True))
    return out


def _or_zeros(g: Tensor | None, like: Tensor) -> Tensor:
    return torch.zeros_like(like) if g is None else g.detach()


def _add(acc: list | None, more: Sequence[Tensor | None]) -> list:
    if acc is None:
        return [None if g is None else g.detach() for g in more]
    return [a if g is None else (g.detach() if a is None else a + g.detach()) for a, g in zip(acc, more)]


def _sum(acc: Tensor | None, g: Tensor | None) -> Tensor | None:
    if g is None:
        return acc
    return g.detach() if acc is None else acc + g.detach()


def _shards(sharding: "Sharding", batch: Batch) -> list[tuple[float | None, Batch]]:
    """(w_r, shard r) for this process's shards; unsharded: (None, batch), the loss taken as it is."""
    return [(None, batch)] if sharding.unsharded else sharding.local(batch)


def _weighted(value: Tensor, w: float | None) -> Tensor:
    return value if w is None else value * w


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
    the backward sweep, shard by shard, instead of storing the unrolled graph (module docstring). Loss and
    error are detached 0-dim tensors (no host synchronisation).

    Shapes: alpha [L-1, 2], beta [L-1, M]; the gradients have their shapes (zeros where a variable is not in
    the graph). `net` keeps its weights; its batch-norm running buffers advance (every shard's forward moves
    them, twice per step here, once in the stored path), which `Bilevel.outer_step` undoes. `sharding`
    (search/sharding.py, default unsharded): each step's loss over this process's shards and the validation
    loss of its part, as in `bilevel.unrolled_val_loss`, its `reduce_grads` summing each step's gradient over
    processes. Under R processes the returned loss and gradients are this rank's parts (the caller sums them),
    the gradients' adjoints summed over the ranks as the all-reduce's backward sums them in the stored graph."""
    from sedona_runtime.search.sharding import ONE

    sharding = ONE if sharding is None else sharding
    mu, wd = inner.momentum, inner.weight_decay
    fnet = higher.monkeypatch(net, copy_initial_weights=True, track_higher_grads=True)
    theta: Weights = [p.detach().clone() for p in net.parameters()]
    bufs = _start_buffers(net, momentum, mu != 0)
    # The mixing weights as leaves: the shards' and steps' shares of dL/d(softmax) are summed, then one VJP
    # through the softmax gives dL/d(alpha, beta).
    a_graph, b_graph = mixing_weights(alpha, beta)
    a_mix, b_mix = a_graph.detach().requires_grad_(True), b_graph.detach().requires_grad_(True)
    a_fixed, b_fixed = a_mix.detach(), b_mix.detach()
    # Forward sweep without a graph: remember where every step starts, and which parameters have a gradient.
    starts: list[tuple[Weights, Buffers]] = []
    has_grad: list[list[bool]] = []
    for batch in batches:
        starts.append((theta, bufs))
        p = [t.detach().requires_grad_(True) for t in theta]
        # Not forward(params=): layers that read a child's weights directly (second_order's folded ones)
        # see them only through update_params.
        fnet.update_params(p)
        grads = None
        for w, (x, y) in _shards(sharding, batch):
            out = fnet(x, y, a_fixed, b_fixed)
            grads = _add(grads, torch.autograd.grad(_weighted(out.total, w), p, allow_unused=True))
            del out
        grads = list(sharding.reduce_grads(grads))
        has_grad.append([g is not None for g in grads])
        with torch.no_grad():
            theta, bufs = sgd_update(p, bufs, grads, lr, mu, wd)
        theta = [t.detach() for t in theta]
    # The validation loss at theta_T and its adjoint, shard by shard.
    p_final = [t.detach().requires_grad_(True) for t in theta]
    fnet.update_params(p_final)
    loss = err = adj = None
    for w, (x, y) in _shards(sharding, val_batch):
        l_r, e_r = fnet.val_loss(x, y)
        l_r, e_r = _weighted(l_r, w), _weighted(e_r, w).detach()
        adj = _add(adj, torch.autograd.grad(l_r, p_final, allow_unused=True))
        loss = l_r.detach() if loss is None else loss + l_r.detach()
        err = e_r if err is None else err + e_r
    adj_theta = [_or_zeros(g, t) for g, t in zip(adj, p_final)]
    adj_buf: Buffers = [None if b is None else torch.zeros_like(b) for b in bufs]
    adj_a = adj_b = None
    # Backward sweep: step t's update, then each shard's recomputed gradient, one VJP each.
    for t in reversed(range(len(batches))):
        theta_t, bufs_t = starts[t]
        adj_theta, adj_buf, v = update_vjp(has_grad[t], bufs_t, adj_theta, adj_buf, lr, mu, wd)
        sharding.sum_([g for g in v if g is not None])  # the all-reduce's backward (identity in one process)
        p = [q.detach().requires_grad_(True) for q in theta_t]
        fnet.update_params(p)
        for w, (x, y) in _shards(sharding, batches[t]):
            out = fnet(x, y, a_mix, b_mix)
            g_r = torch.autograd.grad(_weighted(out.total, w), p, create_graph=True, allow_unused=True)
            out.mix.freeze()  # from here on, activations are differentiated with true sensitivities (relaxation.py)
            pairs = [(g, v_i) for g, v_i in zip(g_r, v) if g is not None and v_i is not None and g.requires_grad]
            if pairs:
                got = torch.autograd.grad([g for g, _ in pairs], [*p, a_mix, b_mix], [v_i for _, v_i in pairs],
                                          allow_unused=True)
                adj_theta = [a if g is None else a + g.detach() for a, g in zip(adj_theta, got[:len(p)])]
                adj_a, adj_b = _sum(adj_a, got[-2]), _sum(adj_b, got[-1])
            del out, g_r, pairs  # this shard's graph goes before the next is built
    # Through the softmax, once: dL/d(alpha, beta) (zero where nothing reached them, e.g. T = 0).
    g_alpha, g_beta = torch.zeros_like(alpha), torch.zeros_like(beta)
    live = [(o, a) for o, a in ((a_graph, adj_a), (b_graph, adj_b)) if a is not None]
    if live:
        ga, gb = torch.autograd.grad([o for o, _ in live], [alpha, beta], [a for _, a in live], allow_unused=True)
        g_alpha = g_alpha if ga is None else ga.detach()
        g_beta = g_beta if gb is None else gb.detach()
    return loss, err, g_alpha, g_beta
