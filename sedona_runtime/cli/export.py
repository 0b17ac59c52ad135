"""`python -m sedona_runtime.export RUN_DIR --out F [--format pt2|torchvision|state_dict|module]`: a trained run
as one file that plain PyTorch loads, with its normalization and class names in a JSON beside it."""
from __future__ import annotations

import argparse
import dataclasses
import sys

from rich.console import Console

from sedona_runtime.cli._common import OneLineParser, run_main

_EPILOG = (
    "Loading each format (F.json beside F holds mean, std, scale, classes; x = (images / scale - mean) / std): "
    "pt2: net = torch.export.load(F).module(); logits = net(images) (raw images, normalization inside; no "
    "sedona_runtime needed). torchvision: net = torchvision.models.resnet50(num_classes=N); "
    "net.load_state_dict(torch.load(F, weights_only=True)); net.eval(); logits = net(x). state_dict: "
    "net = sedona_runtime.models.to_layered(build(num_classes=N)); net.load_state_dict(torch.load(F, "
    "weights_only=True)). module: net = torch.load(F, weights_only=False) (a full pickle: needs sedona_runtime "
    "and your module; load only files you trust); logits = net(net.preprocess(images)).")


def _parser() -> argparse.ArgumentParser:
    from sedona_runtime.trained.export import DEFAULT_FORMAT, FORMATS

    p = OneLineParser(prog="python -m sedona_runtime.export",
                      description="Write a training run's network (single-process or pipelined) as one file: the "
                                  "layered network with its classifier, no blocks to assemble; its input "
                                  "normalization and class names go in a JSON file beside it (model.json).",
                      epilog=_EPILOG)
    p.add_argument("run_dir", help="the run directory (--out of train or launch/greedy.py)")
    p.add_argument("--out", required=True, help="the file to write (e.g. model.pt2); the JSON goes beside it")
    p.add_argument("--format", choices=tuple(FORMATS), default=DEFAULT_FORMAT,
                   help="pt2 (torch.export with the normalization inside; loads without sedona_runtime), "
                        "torchvision (torchvision's own state-dict keys, for torchvision ResNets/VGGs and resnet50/"
                        "101/152 at the ImageNet stem and width 1), state_dict (the layered network's keys) or "
                        f"module (a pickled nn.Module); default {DEFAULT_FORMAT}")
    p.add_argument("--weights", choices=("best", "last"), default="best",
                   help="best validation weights (default; the last ones when the run has none) or the last weights")
    p.add_argument("--with-heads", dest="heads", action="store_true",
                   help="also keep every block's auxiliary head (pt2: the network returns every head's logits, "
                        "the classifier's last; state_dict: aux_heads.* keys; module: net.head_logits)")
    p.add_argument("--heads", dest="heads", action="store_true", help=argparse.SUPPRESS)  # its former name
    p.add_argument("--data-dir", help="read the normalization from the run's data set in this directory "
                                      "(when it has moved since training)")
    return p


def run(argv: list[str] | None) -> int:
    from sedona_runtime.cli._common import resolve_import_paths
    from sedona_runtime.trained.export import export_run
    from sedona_runtime.trained.load import load_run

    args = _parser().parse_args(argv)
    console = Console(soft_wrap=True)
    say = lambda text: console.print(text, markup=False, highlight=False)  # noqa: E731
    trained = load_run(args.run_dir, weights=args.weights)
    data = None
    if args.data_dir is not None:
        data = dataclasses.replace(trained.cfg.data, data_dir=args.data_dir)
        resolve_import_paths(data_cfg=data)
    done = export_run(trained, args.out, fmt=args.format, heads=args.heads, data_cfg=data)
    if args.weights == "best" and trained.weights != "best":
        say("note: the run has no best validation weights (no validation split): exported the last ones")
    if trained.summary is None:
        total = f" of {trained.cfg.steps}" if trained.cfg.steps else ""
        say(f"note: the run has not finished (no summary.json): exported the {trained.weights} weights of step "
            f"{trained.step}{total}")
    val = f", val error {trained.val_error:.2%}" if trained.val_error is not None else ""
    say(f"wrote {done.path} ({done.format}: {done.note}): {trained.cfg.model.arch}, {trained.weights} weights "
        f"(step {trained.step}{val}), {done.heads} auxiliary heads, {done.params:,} parameters")
    say(f"wrote {done.sidecar}: input normalization, class names, where the weights come from")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point: 0 on success; `error: <message>` on stderr and exit code 2 for bad input."""
    return run_main(run, argv)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
