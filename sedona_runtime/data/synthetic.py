"""A synthetic, learnable data set of any shape and class count (tests and speed benchmarks)."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from sedona_runtime.data.base import TensorImageDataset
from sedona_runtime.utils.seed import make_generator

SYNTHETIC_STATS = ((0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
NOISE = 0.15  # per-pixel noise std on the [0,1] scale: classes stay separable but not trivially so


def synthetic_images(n: int, num_classes: int, image_size: int, channels: int, *seed_parts: int | str) -> tuple[torch.Tensor, torch.Tensor]:
    """n uint8 images: each class a smooth random prototype (4x4 grid upsampled), plus pixel noise.

    Prototypes depend only on (num_classes, image_size, channels); labels and noise also on seed_parts.
    Labels cycle through the classes in a shuffled order, so every class has n // num_classes or one more.
    """
    proto_gen = make_generator("synthetic-prototypes", num_classes, image_size, channels)
    protos = torch.rand(num_classes, channels, 4, 4, generator=proto_gen)
    protos = F.interpolate(protos, size=(image_size, image_size), mode="bilinear", align_corners=False)
    gen = make_generator("synthetic-samples", n, *seed_parts)
    labels = (torch.arange(n) % num_classes)[torch.randperm(n, generator=gen)]
    x = protos[labels] + NOISE * torch.randn(n, channels, image_size, image_size, generator=gen)
    return x.clamp_(0.0, 1.0).mul_(255.0).round_().to(torch.uint8), labels


def synthetic_splits(size: int, num_classes: int, image_size: int, channels: int = 3) -> tuple[TensorImageDataset, TensorImageDataset]:
    """(train, test): `size` training and max(size // 4, num_classes) test samples, drawn independently."""
    mean, std = SYNTHETIC_STATS
    mean, std = (mean * channels)[:channels], (std * channels)[:channels]
    train = TensorImageDataset(*synthetic_images(size, num_classes, image_size, channels, "train"), mean, std, num_classes)
    test_n = max(size // 4, num_classes)
    test = TensorImageDataset(*synthetic_images(test_n, num_classes, image_size, channels, "test"), mean, std, num_classes)
    return train, test
