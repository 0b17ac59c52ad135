"""The embedded default data set: scikit-learn's bundled 8x8 digits, resized to the model's input."""
from __future__ import annotations

import functools

import torch
import torch.nn.functional as F

from sedona_runtime.data.base import TensorImageDataset, channel_stats, stratified_split
from sedona_runtime.utils.errors import SedonaError

TEST_FRACTION = 0.2
# The test split is fixed (independent of the run's seed) so that every run is scored on the same images.
TEST_SPLIT_SEED = "digits-test"


@functools.lru_cache(maxsize=4)  # callers index into the result (copies), never mutate it
def load_digits_images(image_size: int, channels: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    """All 1,797 digits as uint8 (N,channels,S,S) (bilinear resize of the 0..16 gray levels) and labels."""
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise SedonaError("the embedded digits data set needs scikit-learn (pip install scikit-learn)") from None
    bunch = load_digits()
    x = torch.as_tensor(bunch.images, dtype=torch.float32).div_(16.0).unsqueeze(1)  # (N,1,8,8) in [0,1]
    if image_size != x.shape[-1]:
        x = F.interpolate(x, size=(image_size, image_size), mode="bilinear", align_corners=False)
    # Bilinear interpolation is a convex combination, so values stay in [0,1]; clamp guards rounding.
    x = x.clamp_(0.0, 1.0).mul_(255.0).round_().to(torch.uint8)
    return x.expand(-1, channels, -1, -1).contiguous(), torch.as_tensor(bunch.target, dtype=torch.int64)


def digits_splits(image_size: int) -> tuple[TensorImageDataset, TensorImageDataset]:
    """(train, test): a fixed stratified 20% test split; normalization from the training images."""
    images, labels = load_digits_images(image_size)
    train_idx, test_idx = stratified_split(labels, TEST_FRACTION, TEST_SPLIT_SEED)
    mean, std = channel_stats(images[train_idx])
    train = TensorImageDataset(images[train_idx], labels[train_idx], mean, std, 10)
    test = TensorImageDataset(images[test_idx], labels[test_idx], mean, std, 10)
    return train, test
