"""What travels beside an exported network: its input normalization, class names and provenance (a JSON file)."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from sedona_runtime.data.classes import CIFAR10_CLASSES, class_names  # noqa: F401  (CIFAR10_CLASSES re-exported)
from sedona_runtime.trained.load import TrainedRun
from sedona_runtime.utils.errors import SedonaError


def input_info(run: TrainedRun, data_cfg: Any = None) -> dict:
    """How raw images become the network's input: {"mean", "std"} (per channel, on the [0, 1] scale), "scale"
    (255.0 for uint8 images, None for float ones, which are used as they are), "input_dtype" ("uint8" or the
    float images' dtype), "classes" (names in label order, or None where the data set has none).

    Taken from the run's spec (config.json's input section) without reading any data; a run written before the
    spec recorded it, or a `data_cfg` given (the data moved), is read from its training data. Raises
    SedonaError, one line, when that data cannot be loaded: a network exported without its normalization
    would silently compute something else (issue 20, fault 2).
    """
    from sedona_runtime.data import build_data

    spec = run.spec
    if spec.input is not None and data_cfg is None:
        inp = spec.input
        return {"mean": list(inp.mean), "std": list(inp.std), "scale": inp.scale, "input_dtype": inp.dtype,
                "classes": spec.classes}
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
