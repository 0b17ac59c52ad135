"""CIFAR-10/100 from the standard python-pickle files (never downloaded), each file checked on its own.

Each batch file is a pickled dict: `data`, uint8 rows of 3072 values (1024 red, 1024 green, 1024 blue,
row-major 32x32), and `labels` (CIFAR-10) or `fine_labels` (CIFAR-100), one integer per row
(https://www.cs.toronto.edu/~kriz/cifar.html). A file that is not that (truncated, other keys, other
shapes, as many labels as images or not, labels out of range) is one SedonaError naming the file.
Unpickling is restricted to numpy arrays and plain values, so a data file cannot run code.
"""
from __future__ import annotations

import io
import pickle
from pathlib import Path

import numpy as np
import torch

from sedona_runtime.data.base import TensorImageDataset
from sedona_runtime.utils.errors import SedonaError

# Per-channel statistics of the training images on the [0,1] scale.
CIFAR_STATS = {
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
}
# name -> (folder, train files, test files, label key, classes)
LAYOUT = {
    "cifar10": ("cifar-10-batches-py", [f"data_batch_{i}" for i in range(1, 6)], ["test_batch"], "labels", 10),
    "cifar100": ("cifar-100-python", ["train"], ["test"], "fine_labels", 100),
}
# What a CIFAR pickle may refer to: numpy's array reconstruction (old and new module names) and bytes.
_GLOBALS = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
            ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode")}


class _ArraysOnly(pickle.Unpickler):
    def find_class(self, module: str, name: str):  # type: ignore[override]
        if (module, name) in _GLOBALS:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"it refers to {module}.{name}, which is not loaded (that could run code)")


def _root_for(name: str, data_dir: str) -> Path:
    """The parent of the pickle folder: `data_dir` may point at the folder itself or at its parent."""
    folder = LAYOUT[name][0]
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


def read_batch(path: Path, label_key: str, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 (N,3,32,32), labels int64 (N,)) of one batch file; SedonaError naming it otherwise."""
    try:
        entry = _ArraysOnly(io.BytesIO(path.read_bytes()), encoding="latin1").load()
    except OSError as exc:
        raise SedonaError(f"{path}: cannot read it: {exc.strerror or exc}") from None
    except Exception as exc:  # noqa: BLE001 - unpickling fails in many types; all mean a broken file
        text = str(exc).splitlines()[0] if str(exc).strip() else ""
        raise SedonaError(f"{path}: not a readable python pickle, truncated or corrupt "
                          f"({type(exc).__name__}{': ' + text if text else ''})") from None
    if not isinstance(entry, dict):
        raise SedonaError(f"{path}: expected a pickled dict with 'data' and {label_key!r}, got {type(entry).__name__}")
    missing = [k for k in ("data", label_key) if k not in entry]
    if missing:
        raise SedonaError(f"{path}: missing key(s) {', '.join(map(repr, missing))} (has: "
                          f"{', '.join(map(repr, sorted(map(str, entry))))})")
    data, labels = entry["data"], entry[label_key]
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        shape = f"{data.dtype} {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
        raise SedonaError(f"{path}: 'data' must be uint8 rows of 3072 values (3x32x32 images), got {shape}")
    try:
        labels = np.asarray(labels)
        ok = labels.ndim == 1 and (labels.size == 0 or np.issubdtype(labels.dtype, np.integer))
    except (ValueError, TypeError):
        ok = False
    if not ok:
        raise SedonaError(f"{path}: {label_key!r} must be a list of integer class labels")
    if len(labels) != len(data):
        raise SedonaError(f"{path}: {len(data)} images but {len(labels)} labels")
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise SedonaError(f"{path}: labels must be in 0..{num_classes - 1}, found {labels.min()}..{labels.max()}")
    return data.reshape(-1, 3, 32, 32), labels.astype(np.int64)


def load_cifar(name: str, data_dir: str) -> tuple[TensorImageDataset, TensorImageDataset]:
    """(train, test) of `name` ("cifar10" or "cifar100") under `data_dir`, as in-memory uint8 tensors."""
    folder_name, train_files, test_files, label_key, num_classes = LAYOUT[name]
    folder = _root_for(name, data_dir) / folder_name
    missing = [n for n in train_files + test_files if not (folder / n).is_file()]
    if missing:
        raise SedonaError(f"{folder}: missing {', '.join(missing)} (expected the standard {name} python-pickle files)")
    mean, std = CIFAR_STATS[name]
    out = []
    for files in (train_files, test_files):
        batches = [read_batch(folder / f, label_key, num_classes) for f in files]
        if not sum(len(y) for _, y in batches):  # nothing to train on or to test with: say so, not later
            raise SedonaError(f"{folder}: {', '.join(files)} hold{'s' if len(files) == 1 else ''} no images "
                              f"(every file is empty); expected the standard {name} python-pickle files")
        images = torch.from_numpy(np.concatenate([x for x, _ in batches]))
        targets = torch.from_numpy(np.concatenate([y for _, y in batches]))
        out.append(TensorImageDataset(images, targets, mean, std, num_classes))
    return out[0], out[1]
