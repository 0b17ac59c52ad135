"""PredSim's local loss (Nokland & Eidnes 2019): a prediction head plus similarity matching."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sedona_runtime.heads.base import Head, HeadSpec
from sedona_runtime.heads.registry import register_head

BETA = 0.99  # weight of the similarity loss (paper Appendix E.2, as in Nokland & Eidnes)
# Bound on the prediction layer's input features (HeadSpec.pred_features). Source: the SEDONA release's
# `--dim-in-decoder` default of 512 (config.py, times `--feat-mult`, 1 by default); Nokland & Eidnes' own code
# defaults to 4096 (train.py). 512 reproduces the paper's Table 1: at ResNet-101's 1024-channel 14x14 layer the
# map pools to 1x1, so the head has 1024 * 1000 + 1000 prediction and 1024 * 1024 * 9 similarity parameters,
# 23.48% of the network. Paper App. D.2's "2048 on ImageNet" would keep 2048 inputs (25.78%); set
# `pred_features=2048` to follow that sentence instead.
PRED_FEATURES = 512
# Not implemented: PredSim's class sub-sampling for large label sets (App. E.2: 40 classes per batch for the
# first 15K Tiny-ImageNet iterations); every batch here uses all classes.


def decoder_pool_kernel(channels: int, size: int, max_features: int) -> tuple[int, int]:
    """Average-pooling kernel (kh, kw) so that the pooled map fits `max_features`: the reference code's
    search, which doubles the kernel alternately in height and width until channels * ceil(size/kh) *
    ceil(size/kw) fits or the kernel reaches the map size."""
    ks_h = ks_w = 1
    h = w = size
    features = channels * h * w
    while features > max_features and ks_h < size:
        ks_h *= 2
        h = math.ceil(size / ks_h)
        features = channels * h * w
        if features > max_features:
            ks_w *= 2
            w = math.ceil(size / ks_w)
            features = channels * h * w
    return ks_h, ks_w


def decoder_pool_size(channels: int, size: int, max_features: int) -> tuple[int, int]:
    """Pooled (h, w) of `decoder_pool_kernel`: (ceil(size / kh), ceil(size / kw))."""
    kh, kw = decoder_pool_kernel(channels, size, max_features)
    return math.ceil(size / kh), math.ceil(size / kw)


def decoder_pool(channels: int, size: int, max_features: int) -> nn.Module:
    """The reference code's pooling before the prediction layer: AvgPool2d with the searched kernel, stride
    equal to the kernel and padding ((k * (ceil(size/k) - size//k)) // 2) per side, so that a map whose size
    is not a multiple of the kernel still pools to ceil(size/k). Padded cells count as zeros in the average
    (count_include_pad, the default), as in the reference; Identity when no pooling is needed."""
    kh, kw = decoder_pool_kernel(channels, size, max_features)
    if (kh, kw) == (1, 1):
        return nn.Identity()
    pad_h = (kh * (math.ceil(size / kh) - size // kh)) // 2
    pad_w = (kw * (math.ceil(size / kw) - size // kw)) // 2
    return nn.AvgPool2d((kh, kw), padding=(pad_h, pad_w))


def similarity_matrix(x: Tensor) -> Tensor:
    """Adjusted cosine similarity between the samples of a batch ([B, B]).

    A feature map with more than 3 channels and spatial size > 1 is first summarised by the standard
    deviation of each channel over space, as in the reference code. Unlike the reference, a constant
    channel or a constant row gets a zero gradient instead of NaN (sqrt'(0)): the std is taken of the
    variance clamped at 1e-12, and the row norm through vector_norm, whose gradient at 0 is 0.
    """
    if x.dim() == 4:
        if x.size(1) > 3 and x.size(2) > 1:
            x = x.flatten(2).var(dim=2).clamp_min(1e-12).sqrt()
        else:
            x = x.flatten(1)
    xc = x - x.mean(dim=1, keepdim=True)
    xn = xc / (1e-8 + torch.linalg.vector_norm(xc, dim=1, keepdim=True))
    return (xn @ xn.t()).clamp(-1, 1)


class PredSimHead(Head):
    """Prediction: average pool to at most `spec.pred_features` features (default PRED_FEATURES), then a
    zero-initialised FC. Similarity: a 3x3 conv (C -> C) whose sample-similarity matrix is matched (MSE)
    to that of the one-hot labels. loss = (1 - beta) * CE(pred) + beta * MSE(sim).

    The pooling is the reference code's padded AvgPool2d (`decoder_pool`), so at sizes that are not a
    multiple of the kernel (e.g. 14 with a 16x16 kernel) the border cells average in zero padding exactly
    as in Nokland & Eidnes' and the SEDONA release's code. The head width of HeadSpec is not used.
    """

    def __init__(self, spec: HeadSpec, beta: float = BETA) -> None:
        super().__init__()
        self.beta = beta
        self.num_classes = spec.num_classes
        bound = spec.pred_features if spec.pred_features is not None else PRED_FEATURES
        h, w = decoder_pool_size(spec.in_channels, spec.in_size, bound)
        self.pool: nn.Module = decoder_pool(spec.in_channels, spec.in_size, bound)
        self.decoder = nn.Linear(spec.in_channels * h * w, spec.num_classes)
        nn.init.zeros_(self.decoder.weight)  # as the reference code does
        self.conv_loss = nn.Conv2d(spec.in_channels, spec.in_channels, 3, padding=1, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        return self.decoder(torch.flatten(self.pool(x), 1))

    def local_loss(self, x: Tensor, y: Tensor, label_smoothing: float) -> tuple[Tensor, Tensor]:
        """(loss, logits). `label_smoothing` is ignored: PredSim is trained without it (paper E.2)."""
        logits = self(x)
        pred = F.cross_entropy(logits, y)
        rh = similarity_matrix(self.conv_loss(x))
        ry = similarity_matrix(F.one_hot(y, self.num_classes).to(rh.dtype)).detach()
        sim = F.mse_loss(rh, ry)
        return (1 - self.beta) * pred + self.beta * sim, logits


@register_head("predsim")
def build_predsim(spec: HeadSpec) -> Head:
    return PredSimHead(spec)
