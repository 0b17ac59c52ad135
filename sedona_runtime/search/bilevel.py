"""Bilevel optimisation of (alpha, beta) (paper Sec. 3.3, Algorithm 1) with `higher`'s unrolled inner steps."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import higher
import torch
from torch import Tensor

from sedona_runtime.search.memory import State, WeightSet
from sedona_runtime.search.recompute import recomputed_sweep
from sedona_runtime.search.relaxation import RelaxedNet, mixing_weights
from sedona_runtime.search.second_order import fast_path
from sedona_runtime.search.sharding import ONE, Sharding

Batch = tuple[Tensor, Tensor]


def cosine_lr(step: int, total: int, lr_max: float, lr_min: float) -> float:
    """Cosine annealing (E.1) from `lr_max` at step 0 to `lr_min` at step `total`, `lr_min` after it.

    The release's closed form (utils.py, CosineAnnealingLR): lr_min + (lr_max - lr_min) (1 + cos(pi t / T)) / 2
    for t < T. Pretraining step t runs at cosine_lr(t, T); the inner steps of an outer step run at the rate of
    the sampled weights' own step count (WeightSet.steps) on the same schedule.
    """
    if total <= 0 or step >= total:
        return lr_min
    return lr_min + 0.5 * (lr_max - lr_min) * (1.0 + math.cos(math.pi * max(step, 0) / total))


@dataclass
class InnerSettings:
    """The inner optimiser of E.1 (also used for pretraining and the ordinary weight step)."""

    momentum: float = 0.9
    weight_decay: float = 1e-3


def inner_optimizer(net: RelaxedNet, lr: float, inner: InnerSettings, momentum: State | None = None) -> torch.optim.SGD:
    """SGD over the network and head weights; `momentum` (parameter name -> buffer) continues a previous
    optimizer's momentum, as the release does when it loads a memory entry's optimizer state."""
    opt = torch.optim.SGD(net.parameters(), lr=lr, momentum=inner.momentum, weight_decay=inner.weight_decay)
    if momentum and inner.momentum:
        for name, p in net.named_parameters():
            buf = momentum.get(name)
            if buf is not None:
                opt.state[p]["momentum_buffer"] = buf.detach().to(p.device, p.dtype, copy=True)
    return opt


def momentum_buffers(opt: torch.optim.Optimizer, net: RelaxedNet) -> State:
    """The momentum buffer of every parameter of `net` that has one, by parameter name (detached copies)."""
    out: State = {}
    for name, p in net.named_parameters():
        buf = opt.state.get(p, {}).get("momentum_buffer")
        if buf is not None:
            out[name] = buf.detach().clone()
    return out


def unrolled_val_loss(
    net: RelaxedNet,
    alpha: Tensor,
    beta: Tensor,
    batches: Sequence[Batch],
    val_batch: Batch,
    lr: float,
    inner: InnerSettings,
    momentum: State | None = None,
    sharding: Sharding = ONE,
) -> tuple[Tensor, Tensor]:
    """Final classifier's validation (loss, error) after len(batches) differentiable inner steps.

    The weights start from `net`'s current values (copied: `net` itself is not trained) and take
    Eq. 5-6 steps with the relaxed loss under softmax(alpha), softmax(beta), SGD momentum continuing
    from `momentum` (`higher` starts from the optimizer's state); the loss is a graph node of alpha and
    beta through every step. Batch norm runs on batch statistics throughout (the network stays in train
    mode, as in DARTS); callers that care about its running buffers restore them (see `outer_step`).
    `sharding` (search/sharding.py): each step's loss over this process's shards, its gradient summed over
    processes by `sharding.reduce_grads` (identity in one process); the returned loss is this process's
    part of the validation loss (the parts sum to the whole batch's).
    """
    opt = inner_optimizer(net, lr, inner, momentum)
    with higher.innerloop_ctx(net, opt, copy_initial_weights=True, track_higher_grads=True) as (fnet, diffopt):
        a_mix, b_mix = mixing_weights(alpha, beta)
        passes = []
        for batch in batches:
            total, mixes = sharding.relaxed_loss(fnet, batch, a_mix, b_mix)
            # The Eq. 5-6 step, its gradient recorded as a graph of alpha, beta (and summed over ranks).
            diffopt.step(total, grad_callback=sharding.reduce_grads)
            passes.extend(mixes)
        for mix in passes:  # from here on, activations are differentiated with true sensitivities
            mix.freeze()
        return sharding.val_loss(fnet, val_batch)


def hypergradient(
    net: RelaxedNet,
    alpha: Tensor,
    beta: Tensor,
    batches: Sequence[Batch],
    val_batch: Batch,
    lr: float,
    inner: InnerSettings,
    momentum: State | None = None,
    sharding: Sharding = ONE,
    recompute: bool = False,
) -> tuple[float, float, Tensor, Tensor]:
    """(val loss, val error, d loss/d alpha, d loss/d beta) through the unrolled inner steps (Eq. 7);
    under R processes each summed over the ranks (the whole batch's, identical on every rank).

    `recompute`: keep only each inner step's weights and recompute its graph in the backward sweep
    (search/recompute.py; the same result, one step's graph at a time instead of T, and of that step one
    shard's at a time where this process holds several). Both paths take the same `sharding` (shards, inner
    gradients summed over ranks)."""
    if recompute:
        loss, err, g_alpha, g_beta = recomputed_sweep(net, alpha, beta, batches, val_batch, lr, inner, momentum,
                                                      sharding=sharding)
        sharding.sum_([g_alpha, g_beta])  # each rank swept its own part of the validation loss
        loss_v, err_v = sharding.values(float(loss), float(err))
        return loss_v, err_v, g_alpha, g_beta
    loss, err = unrolled_val_loss(net, alpha, beta, batches, val_batch, lr, inner, momentum, sharding)
    g_alpha, g_beta = torch.autograd.grad(loss, [alpha, beta], allow_unused=True)
    # A head pool of one, or T = 0, leaves a variable out of the graph: its gradient is zero.
    g_alpha = torch.zeros_like(alpha) if g_alpha is None else g_alpha
    g_beta = torch.zeros_like(beta) if g_beta is None else g_beta
    sharding.sum_([g_alpha, g_beta])  # each rank differentiated its own part of the validation loss
    loss_v, err_v = sharding.values(float(loss.detach()), float(err.detach()))
    return loss_v, err_v, g_alpha, g_beta


def weight_step(
    net: RelaxedNet, alpha: Tensor, beta: Tensor, batch: Batch, lr: float, inner: InnerSettings,
    opt: torch.optim.Optimizer | None = None, sharding: Sharding = ONE,
) -> float:
    """One ordinary Eq. 5-6 step of `net` at fixed (alpha, beta); returns the relaxed training loss
    (`sharding`: over the shards, gradients and batch-norm buffers summed over processes)."""
    opt = opt if opt is not None else inner_optimizer(net, lr, inner)
    for group in opt.param_groups:
        group["lr"] = lr
    a_mix, b_mix = mixing_weights(alpha.detach(), beta.detach())
    opt.zero_grad(set_to_none=True)
    total = sharding.relaxed_backward(net, batch, a_mix, b_mix)  # shard by shard: one shard's graph alive
    sharding.sum_param_grads(net)
    opt.step()
    return sharding.values(float(total.detach()))[0]


@dataclass
class OuterResult:
    """What one outer step (Algorithm 1's loop body) measured and produced."""

    val_loss: float  # final classifier's validation loss after the T unrolled steps
    val_error: float
    train_loss: float  # relaxed loss of the ordinary weight step
    weights: WeightSet  # the updated weights (theta_1, phi_1) and momentum, to go back into the memory


class Bilevel:
    """Owns (alpha, beta) and their Adam; runs Algorithm 1's loop body on a given weight set.

    Adam: lr 0.01 and weight decay 1e-6 (paper E.1), betas (0.5, 0.999) (the release, search.py).
    `fast`: run the unrolled steps, the hypergradient and the weight step with the layers of `second_order`
    switched on (for a network converted with `second_order.convert`; the same up to rounding).
    `recompute`: the hypergradient by per-step recomputation (search/recompute.py; the same up to rounding).
    """

    def __init__(
        self,
        net: RelaxedNet,
        alpha: Tensor,
        beta: Tensor,
        *,
        inner: InnerSettings,
        outer_lr: float = 0.01,
        outer_weight_decay: float = 1e-6,
        outer_betas: tuple[float, float] = (0.5, 0.999),
        fast: bool = True,
        sharding: Sharding = ONE,
        recompute: bool = False,
    ) -> None:
        if not (alpha.is_leaf and beta.is_leaf and alpha.requires_grad and beta.requires_grad):
            raise ValueError("alpha and beta must be leaf tensors that require grad")
        self.net, self.alpha, self.beta, self.inner, self.fast = net, alpha, beta, inner, fast
        self.sharding = sharding  # search/sharding.py: shards of every batch, collectives over ranks
        self.recompute = recompute
        self.outer = torch.optim.Adam([alpha, beta], lr=outer_lr, betas=tuple(outer_betas),
                                      weight_decay=outer_weight_decay)

    def outer_step(self, weights: WeightSet, batches: Sequence[Batch], val_batch: Batch, lr: float) -> OuterResult:
        """Algorithm 1's loop body from `weights`: T unrolled steps and the hypergradient update of
        (alpha, beta), then one ordinary weight step from `weights` (momentum carried) at the new values."""
        self.net.load_state_dict(weights.state)
        with fast_path(self.net, self.fast):
            loss, err, g_alpha, g_beta = hypergradient(
                self.net, self.alpha, self.beta, batches, val_batch, lr, self.inner, weights.momentum,
                self.sharding, recompute=self.recompute)
            self.alpha.grad, self.beta.grad = g_alpha, g_beta
            self.outer.step()
            self.outer.zero_grad(set_to_none=True)
            # Start again from `weights` (batch-norm buffers included) for the weight step.
            self.net.load_state_dict(weights.state)
            opt = inner_optimizer(self.net, lr, self.inner, weights.momentum)
            train_loss = weight_step(self.net, self.alpha, self.beta, batches[0], lr, self.inner, opt=opt,
                                     sharding=self.sharding)
        new = WeightSet({k: v.detach().clone() for k, v in self.net.state_dict().items()},
                        momentum_buffers(opt, self.net), weights.steps + 1)
        return OuterResult(loss, err, train_loss, new)

    def state_dict(self) -> dict:
        return {"alpha": self.alpha.detach().clone(), "beta": self.beta.detach().clone(), "outer": self.outer.state_dict()}

    def load_state_dict(self, sd: dict) -> None:
        with torch.no_grad():
            self.alpha.copy_(sd["alpha"])
            self.beta.copy_(sd["beta"])
        self.outer.load_state_dict(sd["outer"])
