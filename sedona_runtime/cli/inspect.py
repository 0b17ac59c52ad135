"""`python -m sedona_runtime.inspect`: per-layer and per-head parameters and FLOPs of a network."""
from __future__ import annotations

import argparse
import json
import sys

from rich.console import Console
from rich.table import Table

from sedona_runtime.analysis.costs import model_costs
from sedona_runtime.cli._common import (MODEL_HELP, PRESETS, OneLineParser, resolve_import_paths, run_main,
                                        take_model_option)
from sedona_runtime.models.registry import ModelConfig, list_models
from sedona_runtime.utils.errors import SedonaError


def _parser() -> argparse.ArgumentParser:
    p = OneLineParser(
        prog="python -m sedona_runtime.inspect",
        description="Per-layer output shape, parameters and FLOPs (multiply-adds) of a network, and the "
        "cost of every auxiliary head attached after each layer.",
    )
    p.add_argument("--arch", help=f"architecture: {', '.join(list_models())} (or --model)")
    p.add_argument("--model", help=MODEL_HELP)
    p.add_argument("--dataset", default="cifar10", help=f"picks stem, input size and classes: {', '.join(PRESETS)}")
    p.add_argument("--image-size", type=int, help="override the dataset's input size (square images)")
    p.add_argument("--width", type=float, default=None,
                   help="channel width multiplier (default: 0.25 on the embedded digits, as training uses; else 1.0)")
    p.add_argument("--num-classes", type=int, default=None, help="override the dataset's class count")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    return p


def _human(n: int) -> str:
    for unit, scale in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= scale:
            return f"{n / scale:.2f}{unit}"
    return str(n)


def _table(costs: dict, title: str) -> Table:
    heads = list(costs["layers"][0]["heads"]) if costs["layers"] else []
    table = Table(title=title, caption="FLOPs are per-sample multiply-adds; head cells: params / FLOPs")
    for name in ("layer", "channels", "size", "params", "FLOPs"):
        table.add_column(name, justify="right")
    for name in heads:
        table.add_column(name, justify="right")
    for layer in costs["layers"]:
        cells = [str(layer["index"]), str(layer["channels"]), f"{layer['size']}x{layer['size']}"]
        cells += [_human(layer["params"]), _human(layer["flops"])]
        cells += [f"{_human(h['params'])} / {_human(h['flops'])}" for h in layer["heads"].values()]
        table.add_row(*cells)
    cls = costs["classifier"]
    table.add_row("classifier", "", "", _human(cls["params"]), _human(cls["flops"]), *[""] * len(heads), end_section=True)
    table.add_row("total", "", "", _human(costs["params"]), _human(costs["flops"]), *[""] * len(heads), style="bold")
    return table


def run(argv: list[str] | None) -> int:
    from sedona_runtime.utils.imports import is_import_path

    args = _parser().parse_args(argv)
    take_model_option(args)
    if args.arch is None:
        raise SedonaError("give --arch (a built-in architecture) or --model (a network by import path)")
    if args.arch not in list_models() and not is_import_path(args.arch):
        raise SedonaError(f"--arch: unknown architecture {args.arch!r} (known: {', '.join(list_models())}; "
                          "a network by import path goes to --model)")
    if args.dataset not in PRESETS:
        raise SedonaError(f"--dataset: unknown dataset {args.dataset!r} (known: {', '.join(PRESETS)})")
    if args.width is not None and not 0 < args.width <= 16:
        raise SedonaError(f"--width: must be in (0, 16], got {args.width}")
    if args.image_size is not None and args.image_size < 1:
        raise SedonaError(f"--image-size: must be a positive integer, got {args.image_size}")
    preset = PRESETS[args.dataset]
    stem, size, classes = preset.stem, preset.image_size, preset.num_classes
    if args.image_size is not None:
        size = args.image_size
    if args.dataset == "digits" and not is_import_path(args.arch):
        # What training uses on the embedded digits: width 0.25 and the smallest input the network accepts.
        from sedona_runtime.data.config import DataConfig
        from sedona_runtime.training.config import embedded_defaults

        model, data = embedded_defaults(ModelConfig(arch=args.arch, width=args.width),
                                        DataConfig(dataset="digits", image_size=args.image_size))
        args.width, size = model.width, data.size
    elif args.width is None:
        args.width = 1.0
    if args.num_classes is not None:
        if args.num_classes < 1:
            raise SedonaError(f"--num-classes: must be a positive integer, got {args.num_classes}")
        classes = args.num_classes
    cfg = ModelConfig(arch=args.arch, num_classes=classes, stem=stem, width=args.width)
    resolve_import_paths(cfg)
    costs = model_costs(cfg, (cfg.in_channels, size, size))
    if args.json:
        out = {key: costs[key] for key in ("arch", "params", "flops", "layers")}
        sys.stdout.write(json.dumps(out) + "\n")
        return 0
    console = Console() if sys.stdout.isatty() else Console(width=220)
    if is_import_path(args.arch):  # a user network is taken as it is: no stem, no width multiplier
        title = f"{args.arch} on {args.dataset} ({size}x{size}, {classes} classes)"
    else:
        title = f"{args.arch} x{args.width:g} on {args.dataset} ({stem} stem, {size}x{size}, {classes} classes)"
    console.print(_table(costs, title))
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit code (2 with one `error:` line on bad input)."""
    return run_main(run, argv)
