"""`python -m sedona_runtime.export RUN_DIR --out model.pt`: a trained run as one ordinary nn.Module file."""
from __future__ import annotations

import argparse
import sys

from rich.console import Console

from sedona_runtime.cli._common import OneLineParser, run_main

_EPILOG = ("Load it with: net = torch.load('model.pt', weights_only=False); net.eval(); logits = net(x). "
           "x is normalized as in training: net.preprocess(images) does it for raw images (uint8 images are "
           "divided by 255, then normalized with net.info['mean'] and net.info['std']). With --heads, "
           "net.head_logits(x) also gives every block's auxiliary head's logits. Loading needs sedona_runtime "
           "installed and, for a network given by import path, its module importable.")


def _parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog="python -m sedona_runtime.export",
                      description="Write a training run's network (single-process or pipelined) as one nn.Module: "
                                  "the layered network with its classifier, no blocks to assemble.",
                      epilog=_EPILOG)
    p.add_argument("run_dir", help="the run directory (--out of train or launch/greedy.py)")
    p.add_argument("--out", required=True, help="the file to write (e.g. model.pt)")
    p.add_argument("--weights", choices=("best", "last"), default="best",
                   help="best validation weights (default; the last ones when the run has none) or the last weights")
    p.add_argument("--heads", action="store_true", help="also keep every block's auxiliary head (net.head_logits)")
    return p


def run(argv: list[str] | None) -> int:
    from sedona_runtime.trained.export import exported_network, input_info, save_exported
    from sedona_runtime.trained.load import load_run

    args = _parser().parse_args(argv)
    console = Console(soft_wrap=True)
    trained = load_run(args.run_dir, weights=args.weights)
    info, note = input_info(trained)
    net = exported_network(trained, heads=args.heads, info=info)
    path = save_exported(net, args.out)
    if note:
        console.print(f"note: {note}", markup=False, highlight=False)
    if args.weights == "best" and trained.weights != "best":
        console.print("note: the run has no best validation weights (no validation split): exported the last ones",
                      markup=False, highlight=False)
    val = f", val error {trained.val_error:.2%}" if trained.val_error is not None else ""
    params = sum(p.numel() for p in net.parameters())
    console.print(f"wrote {path}: {trained.cfg.model.arch}, {trained.weights} weights (step {trained.step}{val}), "
                  f"{net.num_layers} layers, {len(net.aux_heads)} auxiliary heads, {params:,} parameters",
                  markup=False, highlight=False)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point: 0 on success; `error: <message>` on stderr and exit code 2 for bad input."""
    return run_main(run, argv)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
