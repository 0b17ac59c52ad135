"""The demo model `small` learns 8x8 digits upsampled to 32x32 well above chance in a few hundred steps."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits

from sedona_runtime.models import ModelConfig, build_model


def _digits() -> tuple[torch.Tensor, torch.Tensor]:
    data = load_digits()
    x = torch.tensor(data.images, dtype=torch.float32).unsqueeze(1) / 16.0  # [N, 1, 8, 8] in [0, 1]
    x = F.interpolate(x, size=32, mode="bilinear", align_corners=False).repeat(1, 3, 1, 1)
    return (x - 0.5) / 0.5, torch.tensor(data.target)


def test_small_learns_digits():
    torch.manual_seed(0)
    x, y = _digits()
    perm = torch.randperm(len(y))
    train, test = perm[:1500], perm[1500:]
    model = build_model(ModelConfig(arch="small", num_classes=10, width=0.5))  # half width: test budget
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    for _ in range(100):
        idx = train[torch.randint(len(train), (32,))]
        loss = F.cross_entropy(model(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        accuracy = (model(x[test]).argmax(1) == y[test]).float().mean().item()
    assert accuracy > 0.8, accuracy  # chance is 0.1
