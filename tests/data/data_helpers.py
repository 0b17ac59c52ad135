"""Small on-disk data sets in the real formats, written into a test's tmp_path."""
from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np


def write_cifar(root: Path, name: str = "cifar10", per_batch: int = 6, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A CIFAR python-pickle folder under `root`; returns (train images NHWC uint8, train labels)."""
    rng = np.random.default_rng(seed)
    classes = 10 if name == "cifar10" else 100
    folder = root / ("cifar-10-batches-py" if name == "cifar10" else "cifar-100-python")
    folder.mkdir(parents=True)
    label_key = "labels" if name == "cifar10" else "fine_labels"
    files = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"] if name == "cifar10" else ["train", "test"]
    train_x, train_y = [], []
    for fname in files:
        n = per_batch if name == "cifar10" else per_batch * 3
        x = rng.integers(0, 256, size=(n, 3, 32, 32), dtype=np.uint8)
        y = [int(v) for v in rng.integers(0, classes, size=n)]
        # The real layout: each row is 1024 red, then 1024 green, then 1024 blue values, row-major.
        entry = {"data": x.reshape(n, 3072), label_key: y, "filenames": [f"img{i}.png" for i in range(n)]}
        with open(folder / fname, "wb") as fh:
            pickle.dump(entry, fh, protocol=2)
        if "test" not in fname:
            train_x.append(x.transpose(0, 2, 3, 1))
            train_y += y
    meta_name, meta_key = ("batches.meta", "label_names") if name == "cifar10" else ("meta", "fine_label_names")
    with open(folder / meta_name, "wb") as fh:
        pickle.dump({meta_key: [f"class{i}" for i in range(classes)]}, fh, protocol=2)
    return np.concatenate(train_x), np.array(train_y)


def write_png(path: Path, color: tuple[int, int, int], size: tuple[int, int] = (12, 10)) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, color).save(path)


def write_imagefolder(root: Path, classes=("ant", "bee"), per_class: int = 3, tiny_val: bool = False) -> None:
    """train/<class>/<n>.png and val/ as class folders, or Tiny-ImageNet's images/ + val_annotations.txt."""
    for c, name in enumerate(classes):
        for i in range(per_class):
            write_png(root / "train" / name / f"{i}.png", (200 * c, 10 * i, 50))
    if tiny_val:
        lines = []
        for c, name in enumerate(classes):
            write_png(root / "val" / "images" / f"val_{c}.png", (200 * c, 0, 50))
            lines.append(f"val_{c}.png\t{name}\t0\t0\t9\t9")
        (root / "val" / "val_annotations.txt").write_text("\n".join(lines) + "\n")
    else:
        for c, name in enumerate(classes):
            write_png(root / "val" / name / "v.png", (200 * c, 0, 50))
