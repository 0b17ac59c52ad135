"""Shared helpers for the training tests: tiny configs and a trivial head."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from sedona_runtime.training.config import TrainConfig


class LinearHead(nn.Module):
    """A trivial head: global average pool + linear, with the Head local_loss contract."""

    def __init__(self, channels: int, classes: int) -> None:
        super().__init__()
        self.fc = nn.Linear(channels, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.mean(dim=(2, 3)))

    def local_loss(self, x, y, label_smoothing):
        logits = self(x)
        return F.cross_entropy(logits, y, label_smoothing=label_smoothing), logits


def tiny_cfg(**kw) -> TrainConfig:
    """A resolved-looking config for runner tests (no data set needed)."""
    base = dict(steps=8, batch_size=8, optimizer="sgd", lr=0.05, final_lr=0.001, weight_decay=1e-4,
                label_smoothing=0.1, eval_interval=0, checkpoint_interval=0, dtype="float64", device="cpu")
    base.update(kw)
    return TrainConfig(**base)


def synthetic_cfg(out_dir, **kw) -> TrainConfig:
    """A few float64 steps of the small model on tiny synthetic 8x8 images."""
    from sedona_runtime.data.config import DataConfig
    from sedona_runtime.models import ModelConfig

    base = dict(model=ModelConfig(arch="small", width=0.25),
                data=DataConfig(dataset="synthetic", image_size=8, synthetic_size=120, synthetic_classes=4,
                                val_fraction=0.2, augment=True),
                decoupling="dgl:2", steps=6, batch_size=8, eval_interval=2, checkpoint_interval=2, log_interval=1,
                eval_batch_size=32, dtype="float64", device="cpu", out_dir=str(out_dir))
    base.update(kw)
    return TrainConfig(**base)
