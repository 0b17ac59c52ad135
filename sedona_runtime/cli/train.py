"""`python -m sedona_runtime.train`: greedy block-wise training of one network in one process."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rich.console import Console

from sedona_runtime.cli._common import (DATASET_HELP, MODEL_HELP, OneLineParser, apply_options, dataset_option,
                                        run_main, run_name, take_model_option, threads_warning)
from sedona_runtime.cli.display import PlainReporter, RichReporter, print_summary
from sedona_runtime.training.config import TrainConfig
from sedona_runtime.training.display import Reporter
from sedona_runtime.utils.errors import SedonaError
from sedona_runtime.utils.imports import is_import_path


def _parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog="python -m sedona_runtime.train",
                     description="Train a network block by block (each block with its own local loss) in one "
                                 "process; K = 1 is end-to-end backprop. Unset options take the data set's "
                                 "defaults (paper Appendix E.2).")
    p.add_argument("--arch", help="architecture: small (default), small_resnet, vgg19, resnet50, resnet101, resnet152")
    p.add_argument("--model", help=MODEL_HELP)
    p.add_argument("--decoupling", help="backprop (default), dgl:K, predsim:K, sedona:K, a shipped name or a "
                                        "decoupling file")
    p.add_argument("--retarget", action="store_true", default=None,
                   help="map a decoupling made for another architecture onto --arch (proportional cuts)")
    add_training_options(p)
    p.add_argument("--device", help="auto (default), cpu, cuda or cuda:N")
    p.add_argument("--threads", type=int, default=0,
                   help="torch threads (0: torch's default, one per core); with --threads 1 here and in "
                        "launch/greedy.py the two compute the same, bit for bit on CPU")
    p.add_argument("--seed", type=int, help="model init, data split and batch order (default 0)")
    p.add_argument("--out", help="run directory (default runs/<dataset>_<arch>_<decoupling>)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    p.add_argument("--overwrite", action="store_true", help="replace a finished or stopped run in --out")
    p.add_argument("--plain", action="store_true", help="plain progress lines even on a terminal")
    return p


def add_training_options(p: argparse.ArgumentParser, *,
                         image_size: str = "input resolution (default: the embedded digits as stored, 8, or the "
                                           "smallest the network accepts (32 for VGG-19); imagefolder 64; else 32)",
                         width: str = "channel width multiplier (default 0.25 on the embedded digits, else 1.0)") -> None:
    """The data and optimisation options of a training run (this CLI and the pipelined one share them)."""
    p.add_argument("--dataset", type=dataset_option, help=DATASET_HELP)
    p.add_argument("--data-dir", help="data directory (cifar10, cifar100, imagefolder; passed to a data set "
                                      "function as data_dir=)")
    p.add_argument("--image-size", type=int, help=image_size)
    p.add_argument("--width", type=float, help=width)
    p.add_argument("--steps", type=int, help="training iterations (default: the data set's: digits 400, synthetic "
                                              "50, CIFAR 64,000, Tiny-ImageNet 30,000, ImageNet 600,000)")
    p.add_argument("--epochs", type=int, help="instead of --steps: passes over the training set (full batches)")
    p.add_argument("--batch-size", type=int, help="training batch size (default: digits 64, synthetic 32, CIFAR "
                                                   "128, Tiny-ImageNet/ImageNet 256)")
    p.add_argument("--val-fraction", type=float, help="share of the training set held out for validation when "
                                                       "the data has no validation split (default 0.1; 0: none)")
    p.add_argument("--lr", type=float, help="initial learning rate, cosine-decayed to --final-lr (default: digits "
                                            "0.05, CIFAR/Tiny-ImageNet/ImageNet 0.1; paper App. E.2)")
    p.add_argument("--final-lr", type=float, help="learning rate at the last step (default: the data set's, "
                                                  "0.0005 on digits, 0.001 on CIFAR; at most --lr)")
    p.add_argument("--weight-decay", type=float, help="default: the data set's (digits 5e-4, CIFAR 1e-4; paper "
                                                      "App. E.2)")
    p.add_argument("--optimizer", choices=("sgd", "adam"), help="default sgd (momentum 0.9); adam for PredSim "
                                                                "at Tiny-ImageNet")
    p.add_argument("--label-smoothing", type=float, help="default 0.1, 0 for PredSim (paper App. E.2)")
    p.add_argument("--eval-interval", type=int, help="validate every N steps (0: only at the end; default "
                                                     "steps / 10)")
    p.add_argument("--checkpoint-interval", type=int, help="checkpoint every N steps (0: only at the end; "
                                                           "default steps / 4)")
    p.add_argument("--eval-batch-size", type=int, help="batch size of validation and test (default 256)")
    p.add_argument("--no-augment", dest="augment", action="store_false", default=None,
                   help="no training augmentation (default: the data set's crop and flip)")
    p.add_argument("--workers", type=int, help="DataLoader worker processes that decode batches ahead (default: "
                                                "0 for in-memory data sets, half the cores for ImageFolder and "
                                                "data set functions); batches stay a function of (seed, step)")
    p.add_argument("--no-amp", dest="amp", action="store_false", default=None, help="disable mixed precision (CUDA)")
    p.add_argument("--channels-last", action="store_true", default=None,
                   help="compute in channels_last memory format (faster convolutions on recent GPUs)")
    p.add_argument("--compile", action="store_true", default=None,
                   help="torch.compile each block's forward and head (slower start, often faster steps)")
    p.add_argument("--no-cudnn-benchmark", dest="cudnn_benchmark", action="store_false", default=None,
                   help="do not let cuDNN autotune its kernels for the fixed training shapes (CUDA)")
    p.add_argument("--tensorboard", action="store_true", default=None,
                   help="also write TensorBoard event files to <out>/tensorboard (needs the tensorboard package)")


# CLI option -> (section, field) of TrainConfig; section None is the top level.
_FIELDS = {
    "arch": ("model", "arch"), "width": ("model", "width"), "dataset": ("data", "dataset"),
    "data_dir": ("data", "data_dir"), "image_size": ("data", "image_size"), "augment": ("data", "augment"),
    "workers": ("data", "workers"), "val_fraction": ("data", "val_fraction"),
    "decoupling": (None, "decoupling"), "retarget": (None, "retarget"), "steps": (None, "steps"),
    "epochs": (None, "epochs"), "tensorboard": (None, "tensorboard"),
    "batch_size": (None, "batch_size"), "lr": (None, "lr"), "final_lr": (None, "final_lr"),
    "weight_decay": (None, "weight_decay"), "optimizer": (None, "optimizer"),
    "label_smoothing": (None, "label_smoothing"), "eval_interval": (None, "eval_interval"),
    "checkpoint_interval": (None, "checkpoint_interval"), "eval_batch_size": (None, "eval_batch_size"),
    "amp": (None, "amp"), "device": (None, "device"), "channels_last": (None, "channels_last"),
    "compile": (None, "compile"), "cudnn_benchmark": (None, "cudnn_benchmark"),
    "out": (None, "out_dir"),
}


def _default_out(args: argparse.Namespace) -> str:
    dec = Path(args.decoupling or "backprop").name.replace(":", "").removesuffix(".json")
    return str(Path("runs") / f"{run_name(args.dataset or 'digits')}_{run_name(args.arch or 'small')}_{dec}")


def build_config(args: argparse.Namespace) -> TrainConfig:
    """The run's options: a resumed run starts from its saved config.json, then the given options apply."""
    from sedona_runtime.training.run_dir import RunDir
    from sedona_runtime.training.spec import read_spec

    take_model_option(args)
    if args.steps is not None and args.epochs is not None:
        raise SedonaError("give --steps or --epochs, not both")
    if args.image_size is not None and is_import_path(args.dataset):
        raise SedonaError(f"--image-size does not apply to the data set function {args.dataset}: its images are "
                          "used as they are (resize them in its Datasets)")
    if args.out is None and not args.resume:
        args.out = _default_out(args)
    if args.resume:
        if args.out is None:
            raise SedonaError("--resume needs --out (the run directory to continue)")
        cfg = read_spec(RunDir(args.out)).train  # the run's resolved options (an older config.json upgraded)
    else:
        cfg = TrainConfig()
    apply_options(cfg, args, _FIELDS)
    if args.steps is not None:  # the one given wins over what a resumed config holds
        cfg.epochs = None
    elif args.epochs is not None:
        cfg.steps = None
    return cfg  # every None is filled by the one resolver (training.resolver), paths made absolute there


def run(argv: list[str] | None) -> int:
    """Parse, train, print the result; SedonaError propagates to `main`."""
    from sedona_runtime.training.greedy import train

    args = _parser().parse_args(argv)
    if args.threads < 0:
        raise SedonaError(f"--threads must be >= 0, got {args.threads}")
    cfg = build_config(args)
    warning = threads_warning(args.threads)
    if warning:
        print(warning, file=sys.stderr)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    console = Console(soft_wrap=True)  # long paths stay on one line in logs
    reporter: Reporter
    if console.is_terminal and not args.plain:
        reporter = RichReporter(console)
    else:
        reporter = PlainReporter(lambda line: console.print(line, markup=False, highlight=False),
                                 every=max(1, (cfg.steps or 400) // 20))
    summary = train(cfg, reporter=reporter, resume=args.resume, overwrite=args.overwrite)
    print_summary(console, summary, cfg.out_dir)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point: 0 on success; `error: <message>` on stderr and exit code 2 for bad input."""
    # Inside training the trainer says what it saved (Interrupted); this covers Ctrl-C before it starts.
    return run_main(run, argv, "interrupted before training started; nothing was saved")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
