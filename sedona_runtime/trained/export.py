"""Export a trained run in one of FORMATS: pt2 (torch.export), torchvision, state_dict, or a pickled module."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from sedona_runtime.models.exported import ExportedNet
from sedona_runtime.trained.export_info import input_info, sidecar, sidecar_path
from sedona_runtime.trained.load import TrainedRun
from sedona_runtime.utils.errors import SedonaError
from sedona_runtime.utils.io import atomic_torch_save, atomic_write_json

DEFAULT_FORMAT = "pt2"  # torch.export traces every shipped architecture and torchvision's ResNets/VGGs


@dataclass
class Exported:
    """What `export_run` wrote: the network file, the JSON beside it, and how many parameters it holds."""

    path: Path
    sidecar: Path
    format: str
    params: int
    heads: int       # auxiliary heads kept (0 unless with_heads)
    note: str = ""   # e.g. the torchvision builder that loads it


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


def _write_pt2(run: TrainedRun, net: ExportedNet, info: dict, out: Path) -> tuple[Path, str]:
    from sedona_runtime.trained.program import NormalizedNet, export_program, save_program

    wrapped = NormalizedNet(net, info["mean"], info["std"], info["scale"], run.dtype, heads=len(net.aux_heads) > 0)
    c, h, w = run.input_shape
    dtype = getattr(torch, info["input_dtype"])
    example = torch.zeros(2, c, h, w, dtype=dtype)  # two: a batch of one would be specialized away
    program = export_program(wrapped, example, run.cfg.model.arch)
    return save_program(program, out), f"input {info['input_dtype']} (N, {c}, {h}, {w}), any N"


def _write_torchvision(run: TrainedRun, net: ExportedNet, record: dict, out: Path) -> tuple[Path, str]:
    from sedona_runtime.trained.torchvision_state import torchvision_state

    if net.aux_heads:
        raise SedonaError("--with-heads: a torchvision network has no auxiliary heads; use --format pt2, "
                          "state_dict or module to keep them")
    state, builder = torchvision_state(run)
    record["torchvision_builder"] = builder
    return atomic_torch_save(out, state), f"load with {builder}(num_classes={run.cfg.model.num_classes})"


def _write_state_dict(run: TrainedRun, net: ExportedNet, record: dict, out: Path) -> tuple[Path, str]:
    from sedona_runtime.trained.torchvision_state import own_key_map

    # The LayeredNet's keys (layers.<i>..., classifier...), plus aux_heads.<j>... with --with-heads; the JSON
    # maps them to the keys of the module the user's callable returns (loadable without sedona_runtime).
    state = {k: v.detach().clone() for k, v in net.state_dict().items()}
    record["own_keys"] = own_key_map(run)
    return atomic_torch_save(out, state), "keys of the layered network (layers.*, classifier.*)"


def _write_module(run: TrainedRun, net: ExportedNet, info: dict, out: Path) -> tuple[Path, str]:
    return save_exported(net, out), "a pickled module: loading it needs sedona_runtime"


# name -> writer(run, network, sidecar info (may add to it), out) -> (path, a short note)
FORMATS: dict[str, Callable[[TrainedRun, ExportedNet, dict, Path], tuple[Path, str]]] = {
    "pt2": _write_pt2, "torchvision": _write_torchvision, "state_dict": _write_state_dict, "module": _write_module}


def export_run(run: TrainedRun, out: str | os.PathLike, *, fmt: str = DEFAULT_FORMAT, heads: bool = False,
               data_cfg: object = None) -> Exported:
    """Write `run`'s network to `out` in format `fmt`, and the JSON beside it (`sidecar_path(out)`: input
    normalization, class names, provenance). The normalization is read from the run's data (or `data_cfg`)
    before anything is written.

    Raises SedonaError, one line, for an unknown format, data that cannot be read, a network the format
    cannot hold (with the formats that can), or a write that fails; every check runs before the network file
    is written (atomically), the JSON after it.
    """
    if fmt not in FORMATS:
        raise SedonaError(f"--format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    out = Path(out)
    side = sidecar_path(out)
    info = input_info(run, data_cfg)
    net = exported_network(run, heads=heads, info={k: info[k] for k in ("mean", "std", "scale", "classes")})
    record = sidecar(run, info, fmt, list(net.aux_after))
    path, note = FORMATS[fmt](run, net, record, out)
    atomic_write_json(side, record)
    return Exported(path, side, fmt, sum(p.numel() for p in net.parameters()), len(net.aux_heads), note)
