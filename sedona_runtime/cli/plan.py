"""`python -m sedona_runtime.plan`: cut a network for accuracy and pipeline speed, from a searched decoupling."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rich.console import Console
from rich.table import Table

from sedona_runtime.utils.errors import SedonaError

# Dataset presets: (stem, number of classes, input (C, H, W)) the FLOP counts are taken at.
DATASETS = {
    "imagenet": ("imagenet", 1000, (3, 224, 224)),
    "tiny_imagenet": ("tiny_imagenet", 200, (3, 64, 64)),
    "cifar10": ("cifar", 10, (3, 32, 32)),
    "cifar100": ("cifar", 100, (3, 32, 32)),
    "digits": ("cifar", 10, (3, 32, 32)),
}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m sedona_runtime.plan",
        description="Exact Pareto front of alpha score against predicted pipeline speedup over all K-block cuts, "
        "and the best-scoring cut that reaches a target speedup.",
    )
    p.add_argument("--decoupling", required=True,
                   help="decoupling file or shipped name (e.g. resnet101_k4); with --arch also dgl:K, sedona:K")
    p.add_argument("--arch", help="architecture for decoupling specs such as dgl:4 (files name their own)")
    p.add_argument("--blocks", type=int, help="number of blocks K (default: the decoupling's)")
    p.add_argument("--min-speedup", type=float, help="target predicted speedup; without it the top-score cut is chosen")
    p.add_argument("--head", help="put this head at every boundary instead of argmax beta")
    p.add_argument("--profile", help="measured per-layer profile JSON (default: multiply-add counts)")
    p.add_argument("--measure", metavar="DEVICE", help="measure a per-layer profile now on DEVICE (cpu, cuda, cuda:1)")
    p.add_argument("--save-profile", help="with --measure: also write the measured profile JSON here")
    p.add_argument("--measure-iters", type=int, default=5, help="timed steps per piece with --measure (default 5)")
    p.add_argument("--measure-warmup", type=int, default=2, help="untimed steps first with --measure (default 2)")
    p.add_argument("--dataset", choices=sorted(DATASETS), default="imagenet",
                   help="input size, stem and classes the multiply-adds are counted at (default imagenet)")
    p.add_argument("--image-size", type=int, help="override the dataset's image size")
    p.add_argument("--width", type=float, default=1.0, help="channel width multiplier (default 1.0)")
    p.add_argument("--batch-size", type=int, default=1, help="batch size of the cost model (default 1)")
    p.add_argument("--bandwidth", type=float,
                   help="link bytes/s: add boundary transfers (FLOP mode needs --device-rate)")
    p.add_argument("--device-rate", type=float, help="device multiply-adds/s: FLOP costs become seconds")
    p.add_argument("--out", help="write the chosen decoupling here (and its plan record to <out>.plan.json)")
    p.add_argument("--png", help="save the front as a PNG")
    p.add_argument("--rows", type=int, default=40, help="at most this many front rows on screen (default 40)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    out, err = Console(), Console(stderr=True)
    try:
        return _run(args, out)
    except SedonaError as exc:
        err.print(f"[red]error:[/red] {exc}", highlight=False, markup=True)
        return exc.exit_code
    except KeyboardInterrupt:
        err.print("interrupted")
        return 130


def _run(args: argparse.Namespace, console: Console) -> int:
    # Imported here so that --help stays instant (the cost model pulls in torch).
    from sedona_runtime.planning.figure import save_front_png
    from sedona_runtime.planning.planner import make_plan, planned_decoupling
    from sedona_runtime.planning.session import load_cost_model, load_for_planning, plan_record_path
    from sedona_runtime.utils.io import atomic_write_json

    if args.blocks is not None and args.blocks < 1:
        raise SedonaError(f"--blocks must be a positive integer, got {args.blocks}")
    if args.batch_size < 1:
        raise SedonaError(f"--batch-size must be a positive integer, got {args.batch_size}")
    stem, classes, shape = DATASETS[args.dataset]
    if args.image_size is not None:
        shape = (shape[0], args.image_size, args.image_size)
    dec = load_for_planning(args.decoupling, args.arch, stem, classes, args.width)
    cm = load_cost_model(dec, profile=args.profile, stem=stem, num_classes=classes, input_shape=shape,
                         width=args.width, batch_size=args.batch_size, head=args.head,
                         bandwidth=args.bandwidth, device_rate=args.device_rate,
                         measure_on=args.measure, save_profile=args.save_profile,
                         warmup=args.measure_warmup, iters=args.measure_iters)
    plan = make_plan(dec, cm, args.blocks, args.min_speedup, args.head)
    _print_plan(console, dec, plan, args.rows)
    name = dec.origin or dec.arch
    if args.png:
        refs = [(f"input {Path(name).name}", plan.input_prediction.speedup, plan.input_score)]
        if plan.uniform is not None:
            refs.append(("uniform split", plan.uniform.speedup, plan.uniform.score if plan.has_alpha else None))
        save_front_png(args.png, plan.front, refs, title=f"{dec.arch}, K={plan.K} ({cm.unit} cost model)",
                       chosen=plan.chosen, min_speedup=args.min_speedup)
        console.print(f"front saved to {args.png}")
    if plan.chosen is None:
        best = plan.fastest
        raise SedonaError(
            f"no {plan.K}-block cut reaches a predicted speedup of {args.min_speedup:g}x; the maximum achievable is "
            f"{best.speedup:.3f}x (boundaries {list(best.boundaries)}, alpha score {best.score:.4f})")
    if args.out:
        record_path = plan_record_path(args.out)
        planned = planned_decoupling(dec, plan, plan.chosen, note=f"plan record: {record_path.name}")
        from sedona_runtime.decoupling import save_decoupling

        save_decoupling(planned, args.out)
        atomic_write_json(record_path, {"decoupling": str(args.out), "from": name, **plan.to_dict()})
        console.print(f"wrote {args.out} and {record_path}")
    return 0


def _print_plan(console: Console, dec, plan, rows: int) -> None:
    cm = plan.cost_model
    pred = plan.input_prediction
    console.print(f"cost model ({cm.unit}): {cm.source}" + (f" on {cm.device}" if cm.device else ""), highlight=False)
    table = Table(title=f"Pareto front: {dec.arch}, K={plan.K}")
    numeric = ("#", "alpha score", "pred. speedup", "slowest block")
    for col in (*numeric, "boundaries", "heads", ""):
        table.add_column(col, justify="right" if col in numeric else "left")
    for i, cut in enumerate(plan.front[:rows], start=1):
        mark = "chosen" if cut == plan.chosen else ""
        slow = cut.block_costs.index(cut.max_cost) + 1
        table.add_row(str(i), f"{cut.score:.4f}", f"{cut.speedup:.3f}x", f"{slow} ({cut.max_cost / pred.baseline:.0%})",
                      " ".join(map(str, cut.boundaries)) or "-", " ".join(plan.heads_of(cut)) or "-", mark)
    console.print(table)
    if len(plan.front) > rows:
        console.print(f"({len(plan.front) - rows} more front points; --rows to show them)")
    score = "n/a" if plan.input_score is None else f"{plan.input_score:.4f}"
    shares = " ".join(f"{b.cost / pred.baseline:.0%}" for b in pred.blocks)
    console.print(f"input {dec.origin or dec.arch} (K={len(pred.blocks)}, boundaries {dec.boundaries}): "
                  f"predicted speedup {pred.speedup:.3f}x, alpha score {score}, block shares of baseline {shares}")
    if plan.uniform is not None:
        console.print(f"uniform split {list(plan.uniform.boundaries)}: predicted speedup {plan.uniform.speedup:.3f}x, "
                      f"alpha score {plan.uniform.score:.4f}")
    console.print(f"max achievable: {plan.fastest.speedup:.3f}x (boundaries {list(plan.fastest.boundaries)})")
    if plan.chosen is not None:
        c = plan.chosen
        console.print(f"chosen: boundaries {list(c.boundaries)}, heads {plan.heads_of(c)}, "
                      f"predicted speedup {c.speedup:.3f}x, alpha score {c.score:.4f}")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
