"""`python -m sedona_runtime.plan`: cut a network for accuracy and pipeline speed, from a searched decoupling."""
from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

from rich.console import Console
from rich.table import Table

from sedona_runtime.cli._common import (MODEL_HELP, PRESETS, OneLineParser, resolve_import_paths, run_main, run_name,
                                        take_model_option)
from sedona_runtime.cli.display import print_unwrapped
from sedona_runtime.cli.plan_devices import add_options as add_devices_options
from sedona_runtime.cli.plan_devices import given_devices_options, run_devices
from sedona_runtime.decoupling.resolve import is_spec
from sedona_runtime.utils.errors import SedonaError

# Decoupling specs built for a network (they need --arch); everything else is a file or a shipped name.

_EPILOG = (
    "Files: unless --out and --png say otherwise, the chosen decoupling goes to planned_<name>_k<K>.json in "
    "the current directory, its plan record beside it (planned_<name>_k<K>.plan.json) and the front to <out> with .png "
    "(skipped with a note when matplotlib is missing); <name> is the decoupling's file name without .json, "
    "or <arch>_<spec> for a spec (small_dgl4). --dry-run writes nothing. "
    "No alpha: a decoupling that was not searched (dgl:K, predsim:K) is planned on compute only: every "
    "boundary scores 0, so the front is the single most balanced cut; its heads are --head, else the one "
    "head its blocks use."
)


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(
        prog="python -m sedona_runtime.plan",
        description="Exact Pareto front of alpha score against predicted pipeline speedup over all K-block cuts, "
        "and the best-scoring cut that reaches a target speedup.",
        epilog=_EPILOG,
    )
    p.add_argument("--decoupling",
                   help="decoupling file or shipped name (e.g. resnet101_k4); with --arch also dgl:K, sedona:K "
                        "(required, except with --devices: then sedona:2's alpha and heads, else dgl:2's)")
    p.add_argument("--arch", help="architecture for decoupling specs such as dgl:4 (files name their own)")
    p.add_argument("--model", help=MODEL_HELP + "; for specs such as dgl:4, or to import the network a file names")
    p.add_argument("--blocks", type=int, help="number of blocks K (default: the decoupling's)")
    p.add_argument("--min-speedup", type=float, help="target predicted speedup; without it the top-score cut is chosen")
    p.add_argument("--head", help="put this head at every boundary instead of argmax beta")
    p.add_argument("--profile", help="measured per-layer profile JSON (default: multiply-add counts; --devices "
                                        "needs seconds: --profile, --measure or --device-rate)")
    p.add_argument("--measure", metavar="DEVICE", help="measure a per-layer profile now on DEVICE (cpu, cuda, cuda:1)")
    p.add_argument("--save-profile", help="with --measure: also write the measured profile JSON here")
    p.add_argument("--measure-iters", type=int, default=5, help="timed steps per piece with --measure (default 5)")
    p.add_argument("--measure-warmup", type=int, default=2, help="untimed steps first with --measure (default 2)")
    p.add_argument("--dataset", choices=sorted(PRESETS), default="imagenet",
                   help="input size, stem and classes the multiply-adds are counted at (default imagenet)")
    p.add_argument("--image-size", type=int, help="override the dataset's image size")
    p.add_argument("--width", type=float, default=1.0, help="channel width multiplier (default 1.0)")
    p.add_argument("--batch-size", type=int, help="batch size of the cost model (default 1; 32 with --devices)")
    p.add_argument("--bandwidth", type=float,
                   help="link bytes/s: add boundary transfers (FLOP mode needs --device-rate)")
    p.add_argument("--device-rate", type=float, help="device multiply-adds/s: FLOP costs become seconds")
    p.add_argument("--out", help="write the chosen decoupling here and its plan record beside it "
                                 "(x.json -> x.plan.json; default planned_<name>_k<K>.json in the current directory)")
    p.add_argument("--png", help="save the front as a PNG here (default: --out with .png)")
    p.add_argument("--dry-run", action="store_true",
                   help="only print the front: write no decoupling, plan record or PNG")
    p.add_argument("--rows", type=int, default=40, help="at most this many front rows on screen (default 40)")
    add_devices_options(p)
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point: 0 on success; `error: <message>` on stderr and exit code 2 for bad input."""
    return run_main(_run, argv)


def default_out(decoupling: str, arch: str, K: int) -> Path:  # noqa: N803 - the paper's name
    """planned_<name>_k<K>.json in the current directory (<name>: file name, or <arch>_<spec> for a spec)."""
    if is_spec(decoupling):
        name = f"{run_name(arch)}_{decoupling.replace(':', '')}"
    else:
        name = Path(decoupling).name.removesuffix(".json")
    return Path(f"planned_{name}_k{K}.json")


def _run(argv: list[str] | None) -> int:
    # Imported here so that --help stays instant (the cost model pulls in torch).
    from sedona_runtime.decoupling import save_decoupling
    from sedona_runtime.planning.figure import save_front_png
    from sedona_runtime.planning.planner import make_plan, planned_decoupling
    from sedona_runtime.planning.session import load_cost_model, load_for_planning, plan_record_path
    from sedona_runtime.utils.io import atomic_write_json

    args = build_parser().parse_args(argv)
    take_model_option(args)
    if args.arch is not None:
        from sedona_runtime.models.registry import ModelConfig

        resolve_import_paths(ModelConfig(arch=args.arch))  # a user network: import it now (one clear line)
    if args.blocks is not None and args.blocks < 1:
        raise SedonaError(f"--blocks must be a positive integer, got {args.blocks}")
    if args.batch_size is not None and args.batch_size < 1:
        raise SedonaError(f"--batch-size must be a positive integer, got {args.batch_size}")
    for option, value in (("--device-rate", args.device_rate), ("--bandwidth", args.bandwidth)):
        if value is not None and not 0 < value < float("inf"):  # each option named for its own value
            raise SedonaError(f"{option} must be a finite number > 0, got {value:g}")
    if args.out is not None and Path(args.out).is_dir():  # refused before anything (the figure) is written
        raise SedonaError(f"--out {args.out} is a directory: name the decoupling file to write (e.g. "
                          f"{Path(args.out) / 'planned.json'})")
    if given_devices_options(args):
        return run_devices(args, Console(soft_wrap=True))
    if args.decoupling is None:
        raise SedonaError("--decoupling is required (a file, a shipped name, or with --arch a spec such as dgl:4)")
    args.batch_size = 1 if args.batch_size is None else args.batch_size
    if args.arch is None and is_spec(args.decoupling) and not Path(args.decoupling).exists():
        raise SedonaError(f"--decoupling {args.decoupling} is built for a network: give --arch too "
                          "(files and shipped names carry their own)")
    preset = PRESETS[args.dataset]
    shape = preset.input_shape
    if args.image_size is not None:
        shape = (shape[0], args.image_size, args.image_size)
    console = Console(soft_wrap=True)  # long lines stay whole in logs and pipes
    dec = load_for_planning(args.decoupling, args.arch, preset.stem, preset.num_classes, args.width)
    cm = load_cost_model(dec, profile=args.profile, stem=preset.stem, num_classes=preset.num_classes,
                         input_shape=shape, width=args.width, batch_size=args.batch_size, head=args.head,
                         bandwidth=args.bandwidth, device_rate=args.device_rate,
                         measure_on=args.measure, save_profile=args.save_profile,
                         warmup=args.measure_warmup, iters=args.measure_iters)
    plan = make_plan(dec, cm, args.blocks, args.min_speedup, args.head)
    name = dec.origin or dec.arch
    _print_plan(console, dec, plan, args.rows)
    out = Path(args.out) if args.out else default_out(args.decoupling, dec.arch, plan.K)
    png = None if args.dry_run else (args.png or str(out.with_suffix(".png")))
    if png and args.png is None and importlib.util.find_spec("matplotlib") is None:
        console.print("note: matplotlib is not installed: no front PNG (pip install matplotlib)", highlight=False)
        png = None
    if png:
        refs = [(f"input {Path(name).name}", plan.input_prediction.speedup, plan.input_score)]
        if plan.uniform is not None:
            refs.append(("uniform split", plan.uniform.speedup, plan.uniform.score if plan.has_alpha else None))
        save_front_png(png, plan.front, refs, title=f"{dec.arch}, K={plan.K} ({cm.unit} cost model)",
                       chosen=plan.chosen, min_speedup=args.min_speedup)
        console.print(f"front saved to {png}", markup=False, highlight=False)
    if plan.chosen is None:
        best = plan.fastest
        raise SedonaError(
            f"no {plan.K}-block cut reaches a predicted speedup of {args.min_speedup:g}x; the maximum achievable is "
            f"{best.speedup:.3f}x (boundaries {list(best.boundaries)}, alpha score {_score(plan, best.score)})")
    if not args.dry_run:
        record_path = plan_record_path(out)
        planned = planned_decoupling(dec, plan, plan.chosen, note=f"plan record: {record_path.name}")
        save_decoupling(planned, out)
        atomic_write_json(record_path, {"decoupling": str(out), "from": name, **plan.to_dict()})
        console.print(f"wrote {out} and {record_path}", markup=False, highlight=False)
    return 0


def _score(plan, value: float | None) -> str:
    return "n/a" if value is None or not plan.has_alpha else f"{value:.6f}"


def _print_plan(console: Console, dec, plan, rows: int) -> None:
    cm = plan.cost_model
    pred = plan.input_prediction

    def say(text: str) -> None:
        console.print(text, markup=False, highlight=False)

    say(f"cost model ({cm.unit}): {cm.source}" + (f" on {cm.device}" if cm.device else ""))
    if not plan.has_alpha:
        say(f"note: {dec.origin or dec.arch} carries no alpha: planning on compute only (every boundary scores 0, "
            f"the front is the most balanced cut); heads: {' '.join(sorted(set(plan.heads)))}")
    table = Table(title=f"Pareto front: {dec.arch}, K={plan.K}")
    numeric = ("#", "alpha score", "pred. speedup", "slowest block")
    for col in (*numeric, "boundaries", "heads", ""):
        table.add_column(col, justify="right" if col in numeric else "left", no_wrap=True)
    for i, cut in enumerate(plan.front[:rows], start=1):
        mark = "chosen" if cut == plan.chosen else ""
        slow = cut.block_costs.index(cut.max_cost) + 1
        table.add_row(str(i), _score(plan, cut.score), f"{cut.speedup:.3f}x",
                      f"{slow} ({cut.max_cost / pred.baseline:.0%})",
                      " ".join(map(str, cut.boundaries)) or "-", " ".join(plan.heads_of(cut)) or "-", mark)
    print_unwrapped(console, table)
    if len(plan.front) > rows:
        say(f"({len(plan.front) - rows} more front points; --rows to show them)")
    shares = " ".join(f"{b.cost / pred.baseline:.0%}" for b in pred.blocks)
    say(f"input {dec.origin or dec.arch} (K={len(pred.blocks)}, boundaries {dec.boundaries}): "
        f"predicted speedup {pred.speedup:.3f}x, alpha score {_score(plan, plan.input_score)}, "
        f"block shares of baseline {shares}")
    if plan.uniform is not None:
        say(f"uniform split {list(plan.uniform.boundaries)}: predicted speedup {plan.uniform.speedup:.3f}x, "
            f"alpha score {_score(plan, plan.uniform.score)}")
    say(f"max achievable: {plan.fastest.speedup:.3f}x (boundaries {list(plan.fastest.boundaries)})")
    if plan.chosen is not None:
        c = plan.chosen
        say(f"chosen: boundaries {list(c.boundaries)}, heads {plan.heads_of(c)}, "
            f"predicted speedup {c.speedup:.3f}x, alpha score {_score(plan, c.score)}")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
