"""`python -m sedona_runtime.evaluate RUN_DIR`: top-1/top-5 errors of every block's head, classifier, ensemble."""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys

from rich.console import Console

from sedona_runtime.cli._common import OneLineParser, dataset_option, resolve_import_paths, run_main
from sedona_runtime.cli.display import block_table, print_unwrapped


def _parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog="python -m sedona_runtime.evaluate",
                      description="Evaluate a training run's network (single-process or pipelined): the top-1/top-5 "
                                  "error of every block's own head (the last is the final classifier) and of the "
                                  "auxiliary ensemble, on the run's test split or another one.")
    p.add_argument("run_dir", help="the run directory (--out of train or launch/greedy.py)")
    p.add_argument("--weights", choices=("best", "last"), default="best",
                   help="best validation weights (default; the last ones when the run has none) or the last weights")
    p.add_argument("--split", choices=("test", "val", "train"), default="test", help="which split (default test)")
    p.add_argument("--data-dir", help="evaluate on the data set in this directory instead of the run's")
    p.add_argument("--dataset", type=dataset_option,
                   help="evaluate on this data set instead of the run's (same classes and image size)")
    p.add_argument("--batch-size", type=int, help="evaluation batch size (default: the run's)")
    p.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:N or auto")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    return p


def run(argv: list[str] | None) -> int:
    from sedona_runtime.trained.evaluate import evaluate_run, result_dict
    from sedona_runtime.trained.load import load_run
    from sedona_runtime.utils.errors import SedonaError

    args = _parser().parse_args(argv)
    if args.batch_size is not None and args.batch_size < 1:
        raise SedonaError(f"--batch-size must be a positive integer, got {args.batch_size}")
    trained = load_run(args.run_dir, weights=args.weights)
    data = dataclasses.replace(trained.cfg.data)
    if args.dataset is not None:
        data.dataset, data.import_root = args.dataset, None
    if args.data_dir is not None:
        data.data_dir = args.data_dir
    resolve_import_paths(data_cfg=data)
    result, note = evaluate_run(trained, split=args.split, data_cfg=data, batch_size=args.batch_size,
                                device=args.device)
    record = result_dict(trained, result, args.split)
    if args.json:
        sys.stdout.write(json.dumps(record) + "\n")
        return 0
    console = Console(soft_wrap=True)
    say = lambda text: console.print(text, markup=False, highlight=False)  # noqa: E731
    val = f", val error {trained.val_error:.2%}" if trained.val_error is not None else ""
    say(f"{trained.path}: {trained.cfg.model.arch}, {trained.weights} weights (step {trained.step}{val})")
    say(f"data: {note}")
    say(f"{args.split} accuracy {1 - result.top1_error:.2%}  (top-1 error {result.top1_error:.2%}, top-5 error "
        f"{result.top5_error:.2%}, {result.samples} images)")
    print_unwrapped(console, block_table(record["decoupling"], {args.split: dataclasses.asdict(result)}))
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point: 0 on success; `error: <message>` on stderr and exit code 2 for bad input."""
    return run_main(run, argv)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
