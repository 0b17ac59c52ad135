"""PredSim's local loss (Nokland & Eidnes 2019): a prediction head plus similarity matching."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sedona_runtime.heads.base import Head, HeadSpec
from sedona_runtime.heads.registry import register_head

BETA = 0.99  # weight of the similarity loss (paper Appendix E.2, as in Nokland & Eidnes)
# Not implemented: PredSim's class sub-sampling for large label sets (App. E.2: 40 classes per batch for the
# first 15K Tiny-ImageNet iterations); every batch here uses all classes.


def decoder_pool_size(channels: int, size: int, max_features: int) -> tuple[int, int]:
    """Pooled (h, w) so that channels*h*w fits `max_features`: the reference code's search, which
    doubles the pooling kernel alternately in height and width until it fits or reaches the map size."""
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
    return h, w


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
    """Prediction: average pool to at most `width` features, then a zero-initialised FC.
    Similarity: a 3x3 conv (C -> C) whose sample-similarity matrix is matched (MSE) to that of the
    one-hot labels. loss = (1 - beta) * CE(pred) + beta * MSE(sim).

    The reference code pools with a padded AvgPool2d of the searched kernel; this head uses an
    adaptive average pool to the same output size (same shapes and costs; at sizes that do not
    divide evenly the border averages differ).
    """

    def __init__(self, spec: HeadSpec, beta: float = BETA) -> None:
        super().__init__()
        self.beta = beta
        self.num_classes = spec.num_classes
        h, w = decoder_pool_size(spec.in_channels, spec.in_size, spec.width)
        self.pool: nn.Module = nn.AdaptiveAvgPool2d((h, w)) if (h, w) != (spec.in_size, spec.in_size) else nn.Identity()
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
