"""Export a trained run as one ordinary nn.Module (ExportedNet) that `torch.load` gives back in one call."""
from __future__ import annotations

import os
from pathlib import Path


from sedona_runtime.models.exported import ExportedNet
from sedona_runtime.trained.load import TrainedRun
from sedona_runtime.utils.errors import SedonaError
from sedona_runtime.utils.io import atomic_torch_save


def input_info(run: TrainedRun) -> tuple[dict, str]:
    """The normalization the network was trained with ({"mean", "std", "scale"}) and a note: read from
    the run's data set (mean/std None, with the reason in the note, when it cannot be loaded)."""
    from sedona_runtime.data import build_data

    try:
        bundle = build_data(run.cfg.data)
    except SedonaError as exc:
        return {"mean": None, "std": None, "scale": None}, f"input normalization unknown: {exc}"
    x, _ = bundle.test[0]
    scale = None if x.is_floating_point() else 255.0
    return {"mean": list(bundle.test.mean), "std": list(bundle.test.std), "scale": scale}, ""


def exported_network(run: TrainedRun, *, heads: bool = False, info: dict | None = None) -> ExportedNet:
    """`run`'s network (layers + classifier) in eval mode; with `heads`, also every block's auxiliary head."""
    aux = [b.head for b in run.blocks[:-1]] if heads else []
    after = [b.last for b in run.blocks[:-1]] if heads else []
    meta = {"arch": run.cfg.model.arch, "num_classes": run.cfg.model.num_classes, "input_shape": list(run.input_shape),
            "run": str(run.path.resolve()), "weights": run.weights, "step": run.step,
            "decoupling": run.decoupling.to_json(), **(info or {})}
    return ExportedNet(run.model, aux, after, meta).eval()


def save_exported(net: ExportedNet, out: str | os.PathLike) -> Path:
    """Write `net` (the whole module, pickled) atomically; load it with torch.load(out, weights_only=False).

    Loading needs sedona_runtime and, for a user network, its module importable (as for any pickled module).
    """
    return atomic_torch_save(out, net)
