"""The same head functions, written so that their first and second derivatives are cheap (the search's cost).

The hypergradient (Eq. 7) differentiates every inner step's gradient once more. PyTorch's double backward
of batch norm and of grouped (depthwise) convolution dominates that cost on the head pool: batch norm's is
a long chain of full-size elementwise ops, and a depthwise convolution's is split into one convolution per
group; the widest tensors are the heads' last 1x1 convolution to the head width (512) and its batch norm.
The modules here compute exactly the same functions as the layers they replace, with the same parameters,
buffers and state-dict keys, and switch to a formulation built from ops whose derivatives are cheap while
`fast` is set (`fast_path`; the search sets it for every training step, first-order ones included, where
it also saves time); otherwise, and in eval mode, they run the original layer:

- `FoldedPointwise`: 1x1 convolution + batch norm (+ ReLU) where the convolution widens (c -> o, c < o).
  u = W z is linear in z, so the batch statistics of u follow from z's c x c covariance
  (mean_u = W mean_z, var_u = diag(W cov_z W^T)); batch norm folds into the convolution
  (W' = a W, b' = beta - a mean_u with a = gamma / sqrt(var_u + eps)) and no o-channel normalisation
  is ever differentiated.
- `FoldedPointwisePool`: the same, followed by ReLU and global average pooling, for the last stage of an
  auxiliary head (1x1 conv to the head width, BN, ReLU, pool). The o x H x W map exists only inside
  `_AffineReluSum`, whose backward touches it only through the saved ReLU mask.
- `CompositeBatchNorm2d`: training-mode batch norm as mean / variance / affine ops.
- `PointwiseMatmul`: a 1x1 convolution as a batched matrix product (cheaper than mkldnn's path for the
  heads' few channels, in all three derivative orders).

- `DepthwiseSmallMap`: a 3x3 depthwise convolution on a small map (at most 8x8) as a per-channel dense
  matrix product. PyTorch's double backward splits a depthwise convolution into one convolution per
  channel; on larger maps it stays (nine shifted multiply-adds, and a function whose backward uses forward
  convolutions, were both measured slower there).

Running statistics advance exactly as nn.BatchNorm2d's do (momentum, unbiased variance). Results agree
with the original layers up to floating-point rounding; tests/search pin that in float64.
"""
from __future__ import annotations

from contextlib import contextmanager
from functools import lru_cache
from typing import Iterator

import torch
from torch import Tensor, nn


def _update_running_stats(bn: nn.BatchNorm2d, mean: Tensor, var: Tensor, n: int) -> None:
    # What nn.BatchNorm2d does in training mode: count the batch, then an exponential (or, momentum None,
    # cumulative) average of the batch mean and the unbiased batch variance.
    if not bn.track_running_stats or bn.running_mean is None or bn.running_var is None:
        return
    with torch.no_grad():
        bn.num_batches_tracked.add_(1)
        m = bn.momentum if bn.momentum is not None else 1.0 / float(bn.num_batches_tracked)
        bn.running_mean.mul_(1 - m).add_(mean.detach(), alpha=m)
        bn.running_var.mul_(1 - m).add_(var.detach() * (n / max(n - 1, 1)), alpha=m)


def _batch_uses_stats(bn: nn.BatchNorm2d) -> bool:
    return bn.training or bn.running_mean is None or bn.running_var is None


class CompositeBatchNorm2d(nn.BatchNorm2d):
    """nn.BatchNorm2d; with `fast` in training mode, y = x * scale + shift from the batch mean and variance."""

    fast = False

    def forward(self, x: Tensor) -> Tensor:
        if not (self.fast and _batch_uses_stats(self) and self.affine):
            return super().forward(x)
        n = x.numel() // x.size(1)
        mean = x.mean((0, 2, 3))
        var = (x - mean.view(1, -1, 1, 1)).square().mean((0, 2, 3))
        _update_running_stats(self, mean, var, n)
        scale = self.weight * torch.rsqrt(var + self.eps)
        shift = self.bias - mean * scale
        return torch.addcmul(shift.view(1, -1, 1, 1), x, scale.view(1, -1, 1, 1))


SMALL_MAP = 64  # pixels up to which DepthwiseSmallMap multiplies by the (mostly zero) dense per-channel matrix


@lru_cache(maxsize=64)
def _tap_index(h: int, w: int, stride: int) -> Tensor:
    """[Ho*Wo, H*W] index of the 3x3 tap (0..8) linking each output pixel to each input pixel; 9 where none."""
    ho, wo = (h - 1) // stride + 1, (w - 1) // stride + 1
    index = torch.full((ho * wo, h * w), 9, dtype=torch.long)
    for i in range(ho):
        for j in range(wo):
            for r in range(max(0, i * stride - 1), min(h, i * stride + 2)):
                for q in range(max(0, j * stride - 1), min(w, j * stride + 2)):
                    index[i * wo + j, r * w + q] = (r - i * stride + 1) * 3 + (q - j * stride + 1)
    return index


class DepthwiseSmallMap(nn.Conv2d):
    """A 3x3 depthwise nn.Conv2d (padding 1, no bias); with `fast` on maps of at most SMALL_MAP pixels, each
    channel's convolution is a dense [Ho*Wo, H*W] matrix gathered from its nine weights, applied as one
    batched product (PyTorch's double backward would run one convolution per channel instead)."""

    fast = False

    def forward(self, x: Tensor) -> Tensor:
        b, c, h, w = x.shape
        if not (self.fast and self.training) or h * w > SMALL_MAP:
            return super().forward(x)
        s = self.stride[0]
        index = _tap_index(h, w, s).to(x.device)
        taps = torch.cat([self.weight.view(c, 9), self.weight.new_zeros(c, 1)], 1)
        dense = taps[:, index]  # [C, Ho*Wo, H*W]
        out = torch.einsum("cqp,bcp->bcq", dense, x.reshape(b, c, h * w))
        return out.view(b, c, (h - 1) // s + 1, (w - 1) // s + 1)


class PointwiseMatmul(nn.Conv2d):
    """A 1x1 nn.Conv2d without bias; with `fast`, a batched matrix product over the pixels."""

    fast = False

    def forward(self, x: Tensor) -> Tensor:
        if not (self.fast and self.training):
            return super().forward(x)
        b, c, h, w = x.shape
        o = self.out_channels
        return torch.bmm(self.weight.view(o, c).expand(b, o, c), x.reshape(b, c, h * w)).view(b, o, h, w)


def _folded_affine(z: Tensor, conv: nn.Conv2d, bn: nn.BatchNorm2d) -> tuple[Tensor, Tensor, Tensor]:
    """(z as [B, c, H*W], W' [o, c], b' [o]) with BN(conv(z)) = W' z + b' per pixel, batch statistics of u = W z
    taken from z's covariance; advances `bn`'s running statistics."""
    b, c, h, w = z.shape
    o = conv.out_channels
    n = b * h * w
    zf = z.reshape(b, c, h * w)
    mean_z = zf.mean((0, 2))
    zc = zf - mean_z.view(1, c, 1)
    cov = torch.einsum("bcp,bdp->cd", zc, zc) / n
    weight = conv.weight.view(o, c)
    mean_u = weight @ mean_z
    var_u = ((weight @ cov) * weight).sum(1)
    _update_running_stats(bn, mean_u, var_u, n)
    a = bn.weight * torch.rsqrt(var_u + bn.eps)
    return zf, a.view(o, 1) * weight, bn.bias - a * mean_u


class FoldedPointwise(nn.Sequential):
    """nn.Sequential(1x1 Conv2d without bias, BatchNorm2d[, ReLU]); with `fast` in training mode, batch norm
    is folded into the convolution from the input's covariance (module docstring)."""

    fast = False

    @staticmethod
    def applies_to(seq: nn.Module) -> bool:
        """Whether `seq` is such a Sequential whose convolution widens (where folding saves work)."""
        if type(seq) is not nn.Sequential or len(seq) not in (2, 3):
            return False
        conv, bn = seq[0], seq[1]
        return (type(conv) is nn.Conv2d and conv.kernel_size == (1, 1) and conv.stride == (1, 1)
                and conv.groups == 1 and conv.bias is None and conv.in_channels < conv.out_channels
                and isinstance(bn, nn.BatchNorm2d) and bn.affine
                and (len(seq) == 2 or isinstance(seq[2], nn.ReLU)))

    def _folds(self) -> bool:
        return self.fast and _batch_uses_stats(self[1])

    def forward(self, x: Tensor) -> Tensor:  # type: ignore[override]
        if not self._folds():
            return super().forward(x)
        b, _, h, w = x.shape
        zf, weight, bias = _folded_affine(x, self[0], self[1])
        o = weight.shape[0]
        v = torch.baddbmm(bias.view(1, o, 1), weight.expand(b, o, weight.shape[1]), zf)
        if len(self) == 3:
            v = torch.relu_(v)
        return v.view(b, o, h, w)


class FoldedPointwisePool(FoldedPointwise):
    """FoldedPointwise with ReLU, for a stage that a global average pool follows: with `fast` in training mode
    it returns the pooled [B, o, 1, 1] (the following pool is then an identity); otherwise the full map."""

    def forward(self, x: Tensor) -> Tensor:  # type: ignore[override]
        if not self._folds():
            return nn.Sequential.forward(self, x)
        b = x.shape[0]
        zf, weight, bias = _folded_affine(x, self[0], self[1])
        pooled = _AffineReluSum.apply(zf, weight, bias) / zf.shape[2]
        return pooled.view(b, -1, 1, 1)


class _AffineReluSum(torch.autograd.Function):
    """s[b, o] = sum_p relu(sum_c W[o, c] z[b, c, p] + bias[o]).

    The backward is written with differentiable ops on (z, W, g) and the constant ReLU mask, so autograd
    differentiates it again (the hypergradient) without ever forming another [B, o, P] tensor from the map:
    dW = sum_b g[b] (mask_b z_b^T), dz = (W * g)^T mask, dbias = sum_b g * (pixels with v > 0). On maps with
    fewer pixels than input channels (deep layers) the same sums go through the smaller mask * g instead.
    ReLU's derivative at 0 is 0, as autograd's.
    """

    @staticmethod
    def forward(ctx, z: Tensor, weight: Tensor, bias: Tensor) -> Tensor:  # type: ignore[override]
        b, c, p = z.shape
        o = weight.shape[0]
        # The bias rides in the product as a column of ones: one pass writes the map.
        ones = z.new_ones(b, 1, p)
        v = torch.bmm(torch.cat([weight, bias.view(o, 1)], 1).expand(b, o, c + 1), torch.cat([z, ones], 1))
        total = v.clamp_min_(0).sum(2)
        mask = v.gt_(0)  # in place: the [B, o, P] buffer becomes the (float) ReLU mask
        ctx.save_for_backward(z, weight, mask, mask.sum(2))
        return total

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor | None, Tensor | None, Tensor | None]:  # type: ignore[override]
        z, weight, mask, active = ctx.saved_tensors
        b, c, p = z.shape
        gz = gw = gb = None
        if p < c:  # deep layers: [B, o, P] is smaller than [B, o, c]
            masked = mask * grad.unsqueeze(2)  # [B, o, P]
            if ctx.needs_input_grad[1]:
                gw = torch.einsum("bop,bcp->oc", masked, z)
            if ctx.needs_input_grad[0]:
                gz = torch.einsum("bop,oc->bcp", masked, weight)
        else:
            if ctx.needs_input_grad[1]:
                gw = (grad.unsqueeze(2) * torch.bmm(mask, z.transpose(1, 2))).sum(0)
            if ctx.needs_input_grad[0]:
                gz = torch.bmm(mask.transpose(1, 2), grad.unsqueeze(2) * weight).transpose(1, 2)
        if ctx.needs_input_grad[2]:
            gb = (grad * active).sum(0)
        return gz, gw, gb


_FAST = (CompositeBatchNorm2d, DepthwiseSmallMap, FoldedPointwise, PointwiseMatmul)


def _is_depthwise3x3(m: nn.Module) -> bool:
    return (type(m) is nn.Conv2d and m.groups == m.in_channels == m.out_channels and m.groups > 1
            and m.kernel_size == (3, 3) and m.padding == (1, 1) and m.dilation == (1, 1) and m.bias is None
            and m.stride[0] == m.stride[1] and m.padding_mode == "zeros")


def _pooled_stage(head: nn.Module) -> nn.Module | None:
    """The last stage of an auxiliary head whose output a global average pool follows, if any."""
    features, pool = getattr(head, "features", None), getattr(head, "pool", None)
    if not isinstance(features, nn.Sequential) or not len(features) or not isinstance(pool, nn.AdaptiveAvgPool2d):
        return None
    if pool.output_size not in (1, (1, 1)):
        return None
    last = features[-1]
    return last if FoldedPointwise.applies_to(last) and len(last) == 3 else None


def _retype(module: nn.Module, cls: type) -> None:
    # Same parameters, buffers, hooks and state-dict keys; only the forward changes.
    module.__class__ = cls


def convert(module: nn.Module) -> int:
    """Give every eligible layer inside `module` its second-order-friendly class (in place); returns the count.

    Eligible: the last stage of an auxiliary head before its global pool (FoldedPointwisePool), other widening
    1x1 conv + BN (+ ReLU) stages (FoldedPointwise), the remaining BatchNorm2d layers (CompositeBatchNorm2d),
    3x3 depthwise convolutions (DepthwiseSmallMap) and 1x1 convolutions without bias (PointwiseMatmul). Nothing changes until `fast_path` switches them on.
    """
    count = 0
    for m in list(module.modules()):
        stage = _pooled_stage(m)
        if stage is not None and type(stage) is nn.Sequential:
            _retype(stage, FoldedPointwisePool)
            count += 1
    for m in list(module.modules()):
        if FoldedPointwise.applies_to(m):
            _retype(m, FoldedPointwise)
            count += 1
    folded_bns = {id(m[1]) for m in module.modules() if isinstance(m, FoldedPointwise)}
    for m in list(module.modules()):
        if type(m) is nn.BatchNorm2d and id(m) not in folded_bns:
            _retype(m, CompositeBatchNorm2d)
            count += 1
        elif _is_depthwise3x3(m):
            _retype(m, DepthwiseSmallMap)
            count += 1
        elif (type(m) is nn.Conv2d and m.kernel_size == (1, 1) and m.stride == (1, 1) and m.groups == 1
              and m.bias is None and m.padding == (0, 0)):
            _retype(m, PointwiseMatmul)
            count += 1
    return count


def set_fast(module: nn.Module, on: bool) -> None:
    """Switch the converted layers inside `module` to their fast formulation (`on`) or back."""
    for m in module.modules():
        if isinstance(m, _FAST):
            m.fast = on


@contextmanager
def fast_path(module: nn.Module, on: bool = True) -> Iterator[None]:
    """While inside, the converted layers of `module` use the fast formulation (if `on`); restored after."""
    before = [(m, m.fast) for m in module.modules() if isinstance(m, _FAST)]
    set_fast(module, on)
    try:
        yield
    finally:
        for m, was in before:
            m.fast = was
