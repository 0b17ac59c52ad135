"""What travels beside an exported network: its input normalization, class names and provenance (a JSON file)."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from sedona_runtime.trained.load import TrainedRun
from sedona_runtime.utils.errors import SedonaError

# CIFAR-10's label names in label order (batches.meta of the python version; fixed by the data set).
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


def input_info(run: TrainedRun, data_cfg: Any = None) -> dict:
    """How raw images become the network's input, read from the run's training data (or `data_cfg`):
    {"mean", "std"} (per channel, on the [0, 1] scale), "scale" (255.0 for uint8 images, None for float ones,
    which are used as they are), "input_dtype" ("uint8" or the float images' dtype), "classes" (names in
    label order, or None where the data set has none).

    Raises SedonaError, one line, when the data cannot be loaded: a network exported without its
    normalization would silently compute something else (issue 20, fault 2).
    """
    from sedona_runtime.data import build_data

    cfg = data_cfg if data_cfg is not None else run.cfg.data
    try:
        bundle = build_data(cfg)
    except SedonaError as exc:
        raise SedonaError(f"cannot export {run.path}: its input normalization is read from the training data, "
                          f"which cannot be loaded ({exc}); pass --data-dir DIR (the run's data set) to read it "
                          "there") from None
    x, _ = bundle.test[0]
    return {"mean": [float(m) for m in bundle.train.mean], "std": [float(s) for s in bundle.train.std],
            "scale": None if x.is_floating_point() else 255.0, "input_dtype": str(x.dtype).replace("torch.", ""),
            "classes": class_names(bundle, cfg)}


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


def sidecar(run: TrainedRun, info: dict, fmt: str, heads: list[int]) -> dict:
    """The JSON written beside an exported file: format, network, input (shape, dtype, scale, mean, std),
    classes, and where the weights come from (run, best/last, step, whether the run finished)."""
    return {"format": fmt, "arch": run.cfg.model.arch, "num_classes": run.cfg.model.num_classes,
            "classes": info["classes"], "input_shape": list(run.input_shape), "input_dtype": info["input_dtype"],
            "scale": info["scale"], "mean": info["mean"], "std": info["std"],
            "preprocess": ("x = images.float()" + (f" / {info['scale']}" if info["scale"] else "")
                           + "; x = (x - mean[None, :, None, None]) / std[None, :, None, None]"),
            "heads_after_layers": heads, "run": str(Path(run.path).resolve()), "weights": run.weights,
            "step": run.step, "val_error": run.val_error, "finished": run.summary is not None,
            "steps": run.cfg.steps, "dtype": run.cfg.dtype, "decoupling": run.decoupling.to_json()}


def sidecar_path(out: str | os.PathLike) -> Path:
    """The JSON beside `out`: model.pt2 -> model.json (SedonaError when `out` is itself a .json file)."""
    path = Path(out)
    if path.suffix == ".json":
        raise SedonaError(f"--out {path}: the exported file may not end in .json (its .json goes beside it)")
    return path.with_suffix(".json")
