"""CIFAR-10/100 from the standard python-pickle files, read through torchvision (never downloaded)."""
from __future__ import annotations

import os
import pickle
from pathlib import Path

import torch

from sedona_runtime.data.base import TensorImageDataset
from sedona_runtime.utils.errors import SedonaError

# Per-channel statistics of the training images on the [0,1] scale.
CIFAR_STATS = {
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
}


def _torchvision_class(name: str) -> type:
    from torchvision.datasets import CIFAR10, CIFAR100

    base = CIFAR10 if name == "cifar10" else CIFAR100

    class _NoChecksum(base):  # type: ignore[misc, valid-type]
        """torchvision's reader without the md5 checks, which would reject re-packed or subset files.

        A truncated or malformed file still fails, at unpickling, and is reported by `load_cifar`.
        """

        def _check_integrity(self) -> bool:
            root = Path(self.root) / self.base_folder
            return all((root / name).is_file() for name, _ in self.train_list + self.test_list)

        def _load_meta(self) -> None:
            with open(os.path.join(self.root, self.base_folder, self.meta["filename"]), "rb") as fh:
                self.classes = pickle.load(fh, encoding="latin1")[self.meta["key"]]
            self.class_to_idx = {c: i for i, c in enumerate(self.classes)}

    return _NoChecksum


def _root_for(name: str, data_dir: str) -> Path:
    """The parent of the pickle folder: `data_dir` may point at the folder itself or at its parent."""
    folder = "cifar-10-batches-py" if name == "cifar10" else "cifar-100-python"
    path = Path(data_dir).expanduser()
    if not path.is_dir():
        raise SedonaError(f"{path}: {name} data directory not found (expected {folder}/ with the python-pickle files)")
    if path.name == folder:
        return path.parent
    if (path / folder).is_dir():
        return path
    raise SedonaError(
        f"{path}: no {folder}/ here; pass the directory that contains it (or the folder itself), "
        f"as extracted from the standard python version of {name.upper()}"
    )


def load_cifar(name: str, data_dir: str) -> tuple[TensorImageDataset, TensorImageDataset]:
    """(train, test) of `name` ("cifar10" or "cifar100") under `data_dir`, as in-memory uint8 tensors."""
    root = _root_for(name, data_dir)
    cls = _torchvision_class(name)
    folder = root / cls.base_folder
    missing = [n for n, _ in cls.train_list + cls.test_list + [(cls.meta["filename"], None)] if not (folder / n).is_file()]
    if missing:
        raise SedonaError(f"{folder}: missing {', '.join(missing)} (expected the standard {name} python-pickle files)")
    mean, std = CIFAR_STATS[name]
    num_classes = 10 if name == "cifar10" else 100
    out = []
    for train in (True, False):
        try:
            ds = cls(str(root), train=train, download=False)
            images = torch.from_numpy(ds.data).permute(0, 3, 1, 2).contiguous()  # NHWC -> NCHW
            targets = torch.as_tensor(ds.targets, dtype=torch.int64)
        except Exception as exc:  # unpickling errors come in many types; all mean a malformed file
            raise SedonaError(f"{folder}: malformed {name} file(s): {type(exc).__name__}: {exc}") from None
        if images.dtype != torch.uint8 or images.shape[1:] != (3, 32, 32):
            raise SedonaError(f"{folder}: expected 3x32x32 uint8 images, got {images.dtype} {tuple(images.shape)}")
        if targets.numel() and (targets.min() < 0 or targets.max() >= num_classes):
            raise SedonaError(f"{folder}: labels outside 0..{num_classes - 1}")
        out.append(TensorImageDataset(images, targets, mean, std, num_classes))
    return out[0], out[1]
