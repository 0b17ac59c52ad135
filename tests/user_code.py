"""A researcher's own code, written into a folder outside the package: a network and data set functions."""
from __future__ import annotations

from pathlib import Path

PACKAGE = "byo_user_pkg"  # unique: the module cache is per process

NETS = '''
"""A user's network: an nn.Sequential of small conv blocks, with a module class of its own."""
import torch
from torch import nn


class Scale(nn.Module):
    """A learnable per-channel scale (a class the exported file must import to load)."""

    def __init__(self, channels):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(1, channels, 1, 1))

    def forward(self, x):
        return x * self.weight


def block(cin, cout, pool):
    mods = [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(), Scale(cout)]
    if pool:
        mods.append(nn.MaxPool2d(2))
    return nn.Sequential(*mods)


def build(num_classes):
    return nn.Sequential(block(3, 6, False), block(6, 10, True), block(10, 10, False), block(10, 14, True),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(14, num_classes))


def wrong_classes(num_classes):
    return build(7)
'''

DATA = '''
"""A user's data set function: 3-channel 12x12 images of 4 classes, with a random flip in __getitem__."""
import torch
from torch.utils.data import Dataset

CLASSES = 4


class Shapes(Dataset):
    def __init__(self, n, seed, dtype=torch.uint8, flip=False):
        g = torch.Generator().manual_seed(seed)
        self.targets = (torch.arange(n) % CLASSES).tolist()
        protos = torch.rand(CLASSES, 3, 3, 3, generator=torch.Generator().manual_seed(0))
        protos = torch.nn.functional.interpolate(protos, size=(12, 12), mode="nearest")
        x = protos[torch.tensor(self.targets)] + 0.2 * torch.randn(n, 3, 12, 12, generator=g)
        x = x.clamp(0, 1)
        self.images = (x * 255).round().to(torch.uint8) if dtype == torch.uint8 else (x - 0.5) / 0.25
        self.flip = flip

    def __len__(self):
        return len(self.targets)

    def __getitem__(self, i):
        x = self.images[i]
        if self.flip and torch.rand(()) < 0.5:  # draws from the global generator
            x = x.flip(-1)
        return x, self.targets[i]


def build(data_dir=None):
    return Shapes(160, 1, flip=True), Shapes(32, 2), Shapes(40, 3)


def build_float():
    return {"train": Shapes(96, 1, torch.float32, flip=True), "test": Shapes(24, 3, torch.float32)}
'''


def make_user_package(root: Path) -> Path:
    """Write PACKAGE (nets.py, data.py) under `root`; returns `root` (the folder to import it from)."""
    pkg = root / PACKAGE
    pkg.mkdir(parents=True, exist_ok=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "nets.py").write_text(NETS)
    (pkg / "data.py").write_text(DATA)
    return root
