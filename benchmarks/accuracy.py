"""Test accuracy of a planned decoupling beside SEDONA's and DGL's, trained in one process over several seeds.

    python benchmarks/accuracy.py                          # vgg19 x0.25, K=2, embedded digits at 32x32, seeds 0 1 2
    python benchmarks/accuracy.py --blocks 4 --min-speedup 2.5
    python benchmarks/accuracy.py --dataset cifar10 --data-dir ~/data/cifar10 --steps 20000

Three decouplings of --arch into --blocks blocks: sedona:K (the shipped SEDONA search, retargeted when the
arch has none), dgl:K, and the cut planned from sedona:K's alpha under a multiply-add cost model: the
fastest cut, or with --min-speedup the best alpha score reaching it. Each trains with the single-process
trainer once per seed; the test top-1 accuracy of the final weights (and of the ensemble of the last two
blocks' heads) is reported. Results: <out> (JSON); run directories under runs/ beside it.
"""
from __future__ import annotations

import argparse
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from speedup_lib.accuracy_plan import decouplings  # noqa: E402

from sedona_runtime.cli._common import OneLineParser, run_main  # noqa: E402
from sedona_runtime.cli.display import print_unwrapped  # noqa: E402
from sedona_runtime.data.config import DATASETS, DataConfig  # noqa: E402
from sedona_runtime.models import ModelConfig  # noqa: E402
from sedona_runtime.training.config import TrainConfig, resolve_defaults  # noqa: E402
from sedona_runtime.utils.config import to_dict  # noqa: E402
from sedona_runtime.utils.errors import SedonaError  # noqa: E402
from sedona_runtime.utils.io import atomic_write_json  # noqa: E402


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = OneLineParser(prog="python benchmarks/accuracy.py", description=__doc__.splitlines()[0])
    p.add_argument("--arch", default="vgg19")
    p.add_argument("--width", type=float, default=0.25)
    p.add_argument("--image-size", type=int, default=32)
    p.add_argument("--dataset", choices=DATASETS, default="digits")
    p.add_argument("--data-dir", help="data directory (cifar10, cifar100, imagefolder)")
    p.add_argument("--blocks", type=int, default=2, help="K, the number of blocks of every decoupling")
    p.add_argument("--steps", type=int, default=400,
                   help="training iterations per run (default 400, the trainer's digits default: 34-40 s per run, ~5.5 min for the defaults on 2 cores)")
    p.add_argument("--batch-size", type=int, help="default: the data set's")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--min-speedup", type=float, help="plan the best-scoring cut reaching this predicted speedup "
                                                     "(default: the fastest cut)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--out", default="bench_out/accuracy/results.json", help="results JSON")
    args = p.parse_args(argv)
    if args.blocks < 2 or args.steps < 1 or args.width <= 0 or args.image_size < 1:
        raise SedonaError("need --blocks >= 2, --steps >= 1, --width > 0 and --image-size >= 1")
    if len(set(args.seeds)) != len(args.seeds) or min(args.seeds) < 0:
        raise SedonaError(f"--seeds must be distinct non-negative integers, got {args.seeds}")
    if args.min_speedup is not None and not (math.isfinite(args.min_speedup) and args.min_speedup > 0):
        raise SedonaError(f"--min-speedup must be a positive number, got {args.min_speedup}")
    return args


def train_config(args: argparse.Namespace, spec: str, seed: int, out_dir: Path) -> TrainConfig:
    """What `python -m sedona_runtime.train --retarget` builds from these options (cli.train.build_config)."""
    return TrainConfig(model=ModelConfig(arch=args.arch, width=args.width),
                       data=DataConfig(dataset=args.dataset, data_dir=args.data_dir, image_size=args.image_size,
                                       seed=seed),
                       decoupling=spec, retarget=True, steps=args.steps, batch_size=args.batch_size,
                       eval_interval=0, checkpoint_interval=0,  # only the final weights are scored
                       device=args.device, seed=seed, out_dir=str(out_dir))


def environment() -> dict:
    """Hardware and library versions the figures came from (the CPU as `lscpu` names it)."""
    import torch

    try:
        lines = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout.splitlines()
        cpu = next(line.split(":", 1)[1].strip() for line in lines if line.startswith("Model name"))
    except (OSError, StopIteration):
        cpu = platform.processor() or platform.machine()
    return {"python": platform.python_version(), "torch": torch.__version__, "cpu": cpu, "cores": os.cpu_count(),
            "torch_threads": torch.get_num_threads(), "cuda": torch.cuda.is_available(),
            "platform": platform.platform()}


def _slug(spec: str) -> str:
    return Path(spec).name.removesuffix(".json").replace(":", "")


def _stats(values: list[float]) -> dict:
    return {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0,
            "per_seed": values}


def _pct(s: dict) -> str:
    return f"{100 * s['mean']:.2f} ± {100 * s['std']:.2f}"


def table_rows(result: dict) -> list[list[str]]:
    """decoupling, cut, heads, predicted speedup, test top-1 (mean ± std, %), per seed, aux-ensemble top-1."""
    rows = []
    for d in result["decouplings"]:
        ens = d["ensemble_accuracy"]
        rows.append([d["name"], " ".join(map(str, d["boundaries"])), " ".join(d["heads"]),
                     f"{d['predicted_speedup']:.2f}x", _pct(d["accuracy"]),
                     " ".join(f"{100 * a:.2f}" for a in d["accuracy"]["per_seed"]), _pct(ens) if ens else "-"])
    return rows


HEADER = ["decoupling", "cut after", "heads", "pred. speedup", "test top-1 %", "per seed %", "aux-ensemble top-1 %"]


def run(argv: list[str] | None) -> int:
    from sedona_runtime.training.greedy import train

    args = parse(argv)
    out = Path(args.out)
    work = out.parent  # the planned decoupling and the run directories go beside the results
    console = Console(soft_wrap=True)
    say = lambda text: console.print(text, markup=False, highlight=False)  # noqa: E731
    entries, plan = decouplings(train_config(args, f"sedona:{args.blocks}", args.seeds[0], work / "runs" / "plan"),
                                args.blocks, args.min_speedup, work)
    result: dict = {"config": dict(vars(args)), "seeds": list(args.seeds),
                    "environment": environment(), "plan": plan, "decouplings": []}
    for e in entries:
        runs = []
        for seed in args.seeds:
            cfg = train_config(args, e.spec, seed, work / "runs" / f"{_slug(e.spec)}_s{seed}")
            t0 = time.perf_counter()
            summary = train(cfg, overwrite=True)  # the base Reporter shows nothing
            test = summary["test"]
            ens = test["ensemble_top1_error"]
            runs.append({"seed": seed, "accuracy": summary["test_accuracy"],
                         "ensemble_accuracy": None if ens is None else 1.0 - ens,
                         "top5_accuracy": 1.0 - test["top5_error"], "train_time_s": summary["train_time_s"],
                         "wall_s": time.perf_counter() - t0, "run_dir": cfg.out_dir,
                         "config": to_dict(resolve_defaults(cfg))})
            say(f"{e.name} seed {seed}: test top-1 {100 * runs[-1]['accuracy']:.2f}% "
                f"({runs[-1]['wall_s']:.0f} s)")
        ens = [r["ensemble_accuracy"] for r in runs]
        result["decouplings"].append({**e.record(), "accuracy": _stats([r["accuracy"] for r in runs]),
                                      "ensemble_accuracy": None if None in ens else _stats(ens), "runs": runs})
    atomic_write_json(out, result)
    table = Table(title=f"{args.arch} x{args.width:g}, K={args.blocks}, {args.dataset} {args.image_size}px, "
                        f"{args.steps} steps, seeds {' '.join(map(str, args.seeds))}")
    for col in HEADER:
        table.add_column(col, no_wrap=True)
    for row in table_rows(result):
        table.add_row(*row)
    print_unwrapped(console, table)
    say(f"wrote {out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point: 0 on success; `error: <message>` on stderr and exit code 2 for bad input."""
    return run_main(run, argv)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
