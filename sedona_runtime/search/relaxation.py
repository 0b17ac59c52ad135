"""Continuous relaxation of the decoupling (paper Sec. 3.2): alpha-mixed error signals, beta-mixed heads."""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

if TYPE_CHECKING:  # pragma: no cover - annotations only
    from sedona_runtime.models.layered import LayeredNet

# Derivation (one scalar loss whose .backward() is exactly Eq. 4-6, differentiable in alpha, beta).
#
# Let a_l = f_l(x_l; theta_l) be layer l's output, L^l the local loss of its beta-mixed head
# (Eq. 3) and L^L the final classifier's loss. The forward graph is the plain network:
#     x_{l+1} = a_l                     (an identity view carrying a gradient hook scaling by A_l[1])
#     O^l     = sum_m B_l[m] * f_m(a_l; phi_m^l)   (Eq. 3; the heads read a view scaled by A_l[0])
#     L_total = sum_{l<L} CE(O^l, y) + L^L(f_L(x_L)),   A_l = softmax(alpha_l), B_l = softmax(beta_l).
# The hooks multiply the error arriving at each view by its factor, so
#     dL_total/da_l = A_l[0] * dL^l/da_l + A_l[1] * dL_total/dx_{l+1},
# and by induction from the top (delta^L = dL^L/da_L: no hook after the last layer)
# dL_total/dx_{l+1} = delta^{l+1} * da_{l+1}/da_l: the error at a_l is delta^l of Eq. 4, and the
# gradient of theta_l is delta^l * da_l/dtheta_l, Eq. 5's direction. The heads' weights phi^l
# appear only in L^l, downstream of the hook, so their gradient is dL^l/dphi^l, unscaled (Eq. 6).
# A_l = (1, 0) gives greedy training with one layer per block; A_l = (0, 1) gives the layers
# end-to-end backprop's gradients of L^L (the heads still train on their own losses).
#
# Why hooks and not `h.detach() + c * (h - h.detach())`: both give the same first-order gradient,
# but the hypergradient (Eq. 7) differentiates the inner gradient G(theta_t, alpha) once more, and
# G depends on theta_t also through the activations saved in the forward graph. With the detach
# trick that graph claims dx_{l+1}/da_l = A_l[1] instead of 1, so every second-order term through
# an activation is wrongly scaled (the finite-difference test catches it from T = 2 on). Here the
# forward graph is the true network, and the scaling lives only in the hooks, which record
# `c * grad` (differentiable in c under create_graph=True) during the first-order pass. Once the
# inner gradient is formed, `GradMix.freeze()` turns the hooks into identities, so that the outer
# pass differentiates activations with their true sensitivities. The loss values themselves do
# not depend on alpha at all: alpha acts only through how the weights are updated.


class GradMix:
    """The gradient hooks of one relaxed forward pass; active until `freeze()`."""

    def __init__(self) -> None:
        self.active = True

    def freeze(self) -> None:
        """Stop scaling: later passes (the hypergradient's) see the plain forward graph."""
        self.active = False

    def scale(self, h: Tensor, c: Tensor) -> Tensor:
        """An identity view of `h` whose incoming error is multiplied by `c` while active."""
        out = h.view_as(h)
        if out.requires_grad:
            out.register_hook(lambda g: c * g if self.active else g)
        return out


def grad_scale(h: Tensor, c: Tensor) -> Tensor:
    """Identity in the forward pass; multiplies the backward error by `c` (differentiably in `c`)."""
    return GradMix().scale(h, c)


@dataclass
class RelaxedLoss:
    """One forward of the relaxed network: the scalar to back-propagate and its parts."""

    total: Tensor  # sum of all local losses and the final loss (its gradient is Eq. 4-6)
    final: Tensor  # the final classifier's loss
    local: list[Tensor]  # L^l for every layer but the last
    logits: Tensor  # the final classifier's logits
    mix: GradMix  # the pass's gradient hooks: freeze() them before differentiating the gradient


class RelaxedNet(nn.Module):
    """A layered network with a pool of M candidate heads after every layer but the last.

    `layers` are the L layers, `classifier` the final head, `heads[l][m]` head m of the pool
    after layer l. The mixing weights are passed to `forward` (not owned), so the module holds
    only network and head weights: exactly what the inner optimiser updates.
    """

    def __init__(
        self,
        layers: Sequence[nn.Module],
        classifier: nn.Module,
        heads: Sequence[Sequence[nn.Module]],
        label_smoothing: float = 0.1,
    ) -> None:
        super().__init__()
        if len(layers) < 2:
            raise ValueError("a relaxed network needs at least two layers (one boundary)")
        if len(heads) != len(layers) - 1:
            raise ValueError(f"need a head pool for each of the {len(layers) - 1} boundaries, got {len(heads)}")
        sizes = {len(pool) for pool in heads}
        if len(sizes) != 1 or 0 in sizes:
            raise ValueError("every boundary needs the same, non-empty head pool")
        self.layers = nn.ModuleList(layers)
        self.classifier = classifier
        self.heads = nn.ModuleList(nn.ModuleList(pool) for pool in heads)
        self.label_smoothing = float(label_smoothing)

    @property
    def num_layers(self) -> int:
        return len(self.layers)

    @property
    def pool_size(self) -> int:
        return len(self.heads[0])

    def final_loss(self, feats: Tensor, y: Tensor, label_smoothing: float) -> tuple[Tensor, Tensor]:
        """(loss, logits) of the final classifier; a Head computes its own local loss."""
        local_loss = getattr(self.classifier, "local_loss", None)
        if local_loss is not None:
            return local_loss(feats, y, label_smoothing)
        logits = self.classifier(feats)
        return F.cross_entropy(logits, y, label_smoothing=label_smoothing), logits

    def forward(self, x: Tensor, y: Tensor, a_mix: Tensor, b_mix: Tensor) -> RelaxedLoss:
        """Relaxed training loss; `a_mix` [L-1, 2] = softmax(alpha), `b_mix` [L-1, M] = softmax(beta)."""
        n = self.num_layers - 1
        if tuple(a_mix.shape) != (n, 2) or tuple(b_mix.shape) != (n, self.pool_size):
            raise ValueError(
                f"mixing weights must be [{n}, 2] and [{n}, {self.pool_size}], "
                f"got {list(a_mix.shape)} and {list(b_mix.shape)}"
            )
        local: list[Tensor] = []
        mix = GradMix()
        for l, layer in enumerate(self.layers):
            a = layer(x)
            if l == n:
                break
            h = mix.scale(a, a_mix[l, 0])
            outs = torch.stack([head(h) for head in self.heads[l]])  # [M, B, classes]
            mixed = torch.einsum("m,mbc->bc", b_mix[l].to(outs.dtype), outs)  # Eq. 3
            local.append(F.cross_entropy(mixed, y, label_smoothing=self.label_smoothing))
            x = mix.scale(a, a_mix[l, 1])
        final, logits = self.final_loss(a, y, self.label_smoothing)
        total = final + torch.stack(local).sum() if local else final
        return RelaxedLoss(total=total, final=final, local=local, logits=logits, mix=mix)

    def logits(self, x: Tensor) -> Tensor:
        """The final classifier's logits (no heads; what the validation loss is computed on)."""
        for layer in self.layers:
            x = layer(x)
        return self.classifier(x)

    def val_loss(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        """(plain cross-entropy, error rate) of the final classifier on a validation batch."""
        logits = self.logits(x)
        err = (logits.argmax(dim=1) != y).float().mean()
        return F.cross_entropy(logits, y), err


def mixing_weights(alpha: Tensor, beta: Tensor) -> tuple[Tensor, Tensor]:
    """(softmax(alpha), softmax(beta)) along the last dimension."""
    return torch.softmax(alpha, dim=-1), torch.softmax(beta, dim=-1)


def relax_model(
    model: "LayeredNet",
    head_pool: Sequence[str],
    input_shape: tuple[int, int, int],
    num_classes: int,
    head_width: int,
    label_smoothing: float,
) -> RelaxedNet:
    """The relaxation of a zoo network: every pool head after every layer but the last (Eq. 3)."""
    from sedona_runtime.heads.base import Head, HeadSpec
    from sedona_runtime.heads.registry import build_head
    from sedona_runtime.models.layered import layer_output_shapes
    from sedona_runtime.utils.errors import SedonaError

    shapes = layer_output_shapes(model, input_shape)
    heads = []
    for l, (c, h, _) in enumerate(shapes[:-1]):
        spec = HeadSpec(in_channels=c, in_size=h, num_classes=num_classes, width=head_width,
                        nc=model.layer_head_channels(l))
        pool = [build_head(name, spec) for name in head_pool]
        for name, head in zip(head_pool, pool):
            # Eq. 3 mixes head outputs under one cross-entropy; a head with its own loss has no place in it.
            if type(head).local_loss is not Head.local_loss:
                raise SedonaError(f"head_pool: {name} computes its own local loss, but the relaxation mixes "
                                  "head logits under cross-entropy (Eq. 3); use cross-entropy heads (aux1..aux4, mlp_sr)")
        heads.append(pool)
    return RelaxedNet(list(model.layers), model.classifier, heads, label_smoothing=label_smoothing)
