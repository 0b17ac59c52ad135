"""The class names of a data set's labels, in label order, where it has them (recorded in a run's spec)."""
from __future__ import annotations

from typing import Any

# CIFAR-10's label names in label order (batches.meta of the python version; fixed by the data set).
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


def class_names(bundle: Any, cfg: Any) -> list[str] | None:
    """The class names in label order: an ImageFolder's folders, a user Dataset's `classes` (strings), the
    digits 0-9, CIFAR-10's label names, CIFAR-100's from its `meta` file; None where none are known."""
    n = int(bundle.num_classes)
    ds = bundle.train
    for _ in range(8):  # down the wrappers: SubsetImageDataset.parent, UserImageDataset.dataset, torch Subset
        names = getattr(ds, "classes", None)
        if isinstance(names, (list, tuple)) and len(names) == n and all(isinstance(c, str) for c in names):
            return list(names)
        ds = getattr(ds, "parent", None) or getattr(ds, "dataset", None)
        if ds is None:
            break
    return known_class_names(cfg, n)


def known_class_names(cfg: Any, n: int) -> list[str] | None:
    """The names a built-in data set's labels have (no data read but CIFAR-100's meta file): the digits 0-9,
    CIFAR-10's label names, CIFAR-100's; None for the others."""
    if cfg.dataset == "digits" and n == 10:
        return [str(i) for i in range(10)]
    if cfg.dataset == "cifar10" and n == 10:
        return list(CIFAR10_CLASSES)
    if cfg.dataset == "cifar100":
        return _cifar100_names(cfg.data_dir, n)
    return None


def _cifar100_names(data_dir: str | None, n: int) -> list[str] | None:
    from sedona_runtime.data import cifar

    try:
        root = cifar._root_for("cifar100", data_dir or "")
        with open(root / cifar.LAYOUT["cifar100"][0] / "meta", "rb") as f:
            meta = cifar._ArraysOnly(f, encoding="latin1").load()  # plain values only: never code
        names = [str(c) for c in meta["fine_label_names"]]
    except Exception:  # noqa: BLE001  names are a courtesy: a missing or odd meta file never fails the export
        return None
    return names if len(names) == n else None
