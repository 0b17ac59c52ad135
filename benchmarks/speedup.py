"""Wall-clock speedup of the K-process greedy pipeline over single-process backprop, measured side by side.

    python benchmarks/speedup.py                       # defaults: resnet101 x0.25, K=2, 32x32, batch 32
    python benchmarks/speedup.py --arch vgg19 --batch-size 64 --decoupling my.json
    python benchmarks/speedup.py --predict-only        # profile one device, predict K devices
    python benchmarks/speedup.py --transport rpc,p2p   # both activation transports, side by side
    python benchmarks/speedup.py --peers none          # only backprop and the greedy pipeline
    python benchmarks/speedup.py --predict-only --devices 8   # every K x R layout on 8 devices, ranked

The baseline runs on one core set (or one GPU); the pipeline on K disjoint core sets of the same size
(or K GPUs). The peers (--peers: torch DDP, torch.distributed.pipelining GPipe and 1F1B, and the runtime's
own `--blocks 1 --replicas G` and greedy K x G/K) run on G = --devices core sets (default K). Every run repeats --repeats times, interleaved; each repetition records
the machine's other load, and medians are over the undisturbed repetitions when there are enough.
"""
from __future__ import annotations

import argparse
import dataclasses
import logging
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from rich.console import Console  # noqa: E402
from rich.markup import escape  # noqa: E402
from rich.table import Table  # noqa: E402

from speedup_lib.measure import BenchConfig, core_sets, time_baseline, time_pipeline  # noqa: E402
from speedup_lib.load import probed  # noqa: E402
from speedup_lib.peers import KINDS, parse_peers, time_peer  # noqa: E402
from speedup_lib.planned import (peer_boundaries, pipelined_record, planned_spec, predicted,  # noqa: E402
                                 predicted_layouts, predicted_pipelined, profile_all, resolve)
from speedup_lib.replicas import replica_rows, time_replicas  # noqa: E402
from speedup_lib.report import HEADER, environment, save_pngs, table_rows  # noqa: E402
from speedup_lib.rows import ALL_HEADER, all_rows, side_by_side  # noqa: E402

from sedona_runtime.cli.display import print_unwrapped  # noqa: E402
from sedona_runtime.planning.devices import layout_record  # noqa: E402
from sedona_runtime.planning.predict import ideal_speedup  # noqa: E402
from sedona_runtime.utils.config import to_dict  # noqa: E402
from sedona_runtime.utils.errors import SedonaError  # noqa: E402
from sedona_runtime.utils.io import atomic_write_json  # noqa: E402


def parse(argv: list[str] | None) -> argparse.Namespace:
    # Every option states its default in --help (ArgumentDefaultsHelpFormatter shows it for options with help).
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    d = BenchConfig()
    p.add_argument("--arch", default=d.arch, help="architecture")
    p.add_argument("--width", type=float, default=d.width, help="channel width multiplier")
    p.add_argument("--image-size", type=int, default=d.image_size, help="input resolution (square)")
    p.add_argument("--batch-size", type=int, default=d.batch_size, help="training batch size")
    p.add_argument("--blocks", type=int, default=d.blocks, help="K: processes (one core set or GPU each)")
    p.add_argument("--warmup", type=int, default=d.warmup, help="untimed steps before the timed ones")
    p.add_argument("--steps", type=int, default=d.steps, help="timed steps per run")
    p.add_argument("--repeats", type=int, default=d.repeats, help="runs per configuration (the median is reported)")
    p.add_argument("--queue-depth", type=int, default=d.queue_depth, help="items a block's input queue holds")
    p.add_argument("--transport", default=d.transport,
                   help="the pipeline's activation transport(s), comma separated: rpc, p2p or rpc,p2p")
    p.add_argument("--device", choices=["cpu", "cuda"], default="cuda" if _cuda() else "cpu",
                   help="where the blocks run (cuda when a GPU is visible)")
    p.add_argument("--decoupling", action="append", default=[],
                   help="a decoupling to measure (file, shipped name, dgl:K, ...); repeatable")
    p.add_argument("--no-defaults", action="store_true",
                   help="measure only the --decoupling ones (not planned, DGL and shipped SEDONA)")
    p.add_argument("--predict-only", action="store_true",
                   help="profile on one device and print the predicted K-device speedups and the ranked layouts "
                        "on --devices, no pipeline runs")
    p.add_argument("--devices", type=int, help="G: devices of the peers and the layouts (None: K, one per block)")
    p.add_argument("--peers", default="ddp,gpipe,1f1b,replicas",
                   help="peers measured beside the pipeline: ddp (torch DDP), gpipe, 1f1b, replicas (the runtime's "
                        "own data-parallel row and greedy K x G/K), comma separated, or none")
    p.add_argument("--microbatches", default="4,8", help="micro-batch counts of the GPipe and 1F1B rows")
    p.add_argument("--compile", action="store_true",
                   help="torch.compile every block's forward and head, in the baseline and the pipeline alike")
    p.add_argument("--out", default="bench_out/speedup", help="results folder")
    return p.parse_args(argv)


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    args = parse(argv)
    # Wide enough that table rows and figures stay one line each when the output is a file or pipe.
    console = Console(soft_wrap=True, width=None if sys.stdout.isatty() else 160)
    try:
        return run(args, console)
    except SedonaError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def run(args: argparse.Namespace, console: Console) -> int:
    transports = [t.strip() for t in args.transport.split(",") if t.strip()]
    bad = [t for t in transports if t not in ("rpc", "p2p")]
    if bad or not transports:
        raise SedonaError(f"--transport: {', '.join(bad) or 'nothing given'}: use rpc, p2p or rpc,p2p")
    bc = BenchConfig(arch=args.arch, width=args.width, image_size=args.image_size, batch_size=args.batch_size,
                     warmup=args.warmup, steps=args.steps, repeats=args.repeats, blocks=args.blocks,
                     queue_depth=args.queue_depth, device=args.device, transport=transports[0],
                     compile=args.compile)
    bc.validate()
    G = bc.blocks if args.devices is None else args.devices
    if G < 1:
        raise SedonaError(f"--devices must be a positive integer, got {G}")
    try:
        micro = tuple(int(m) for m in args.microbatches.split(",") if m.strip())
    except ValueError:
        micro = ()
    if not micro or min(micro) < 1 or any(bc.batch_size % m for m in micro):
        raise SedonaError(f"--microbatches {args.microbatches}: positive counts that divide the batch {bc.batch_size}")
    wanted = [] if args.peers.strip() in ("", "none") else [n.strip() for n in args.peers.split(",") if n.strip()]
    bad = [n for n in wanted if n not in (*KINDS, "replicas")]
    if bad:
        raise SedonaError(f"--peers: {', '.join(bad)}: use any of {', '.join(KINDS)}, replicas (comma separated), "
                          "or none")
    peers = parse_peers(",".join(n for n in wanted if n != "replicas"), G, micro)
    if peers and bc.batch_size % G:
        raise SedonaError(f"--batch-size {bc.batch_size} does not split over --devices {G}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    cores = core_sets(bc.blocks)
    console.print(f"[bold]speedup benchmark[/]: {bc.arch} x{bc.width}, batch {bc.batch_size}, K={bc.blocks}, "
                  f"{bc.steps} timed steps after {bc.warmup} warm-up, {bc.repeats} repetitions, device {bc.device}, "
                  f"transport {', '.join(transports)}" + (f", core sets {cores}" if bc.device == "cpu" else "")
                  + (", torch.compile" if bc.compile else ""))

    counts = sorted({p.microbatches for p in peers if p.kind != "ddp"})
    cm, profile, micro_profiles, profile_load = profile_all(bc, cores[0], counts, out, console.print)
    labels: dict[str, str] = {}
    specs = []
    if not args.no_defaults:
        planned, heads = planned_spec(bc, cm, out)
        labels[planned] = f"planned (fastest cut, {heads})"
        specs += [planned, f"dgl:{bc.blocks}"]
        try:
            resolve(bc, f"sedona:{bc.blocks}")
            specs.append(f"sedona:{bc.blocks}")
        except SedonaError as exc:  # no shipped search for this arch: say so, measure the rest
            console.print(f"[yellow]note[/]: {exc}")
    specs += [s for s in args.decoupling if s not in specs]
    if not specs:
        raise SedonaError("nothing to measure: give --decoupling or drop --no-defaults")
    preds = {s: predicted(bc, cm, s) for s in specs}
    boundaries = peer_boundaries(bc, cm, [b[1] for b in preds[specs[0]]["blocks"][:-1]], G)
    piped = {p.name: predicted_pipelined(bc, cm, micro_profiles[p.microbatches], boundaries, p.microbatches, p.kind)
             for p in peers if p.kind != "ddp"}
    if args.predict_only:
        for s, p in preds.items():
            console.print(f"  {s}: predicted speedup on {bc.blocks} devices {p['speedup']:.2f}x (PREDICTED)")
        base_s = cm.baseline_cost()
        for name, p in piped.items():
            console.print(f"  {name}, cut after {', '.join(map(str, boundaries))}: {p.step_s * 1e3:.1f} ms/step, "
                          f"{base_s / p.step_s:.2f}x (PREDICTED; bubble {max(p.bubble_s) * 1e3:.0f} ms on the "
                          f"busiest stage)")
        plan = predicted_layouts(bc, cm, G)
        console.print(f"every layout on {G} devices, ranked (PREDICTED from the profile):")
        for lay in plan.ranked[:12]:
            console.print(f"  {lay.name}: {lay.step_s * 1e3:.1f} ms/step, {lay.speedup:.2f}x  "
                          f"{escape(lay.command)}", highlight=False)
        atomic_write_json(out / "predicted.json", {"config": to_dict(bc), "profile_device": profile["device"],
                                                   "predicted": preds, "environment": environment(),
                                                   "pipelined": {n: pipelined_record(p) for n, p in piped.items()},
                                                   "profile_load": profile_load.to_dict(),
                                                   "layouts": [layout_record(l) for l in plan.ranked]})
        return 0

    runs = [(s, t) for s in specs for t in transports]
    reps = replica_rows(G, bc.blocks, specs[0], transports[-1]) if "replicas" in wanted else []
    base_runs, pipe_runs = [], {run: [] for run in runs}
    loads: dict[str, list[dict]] = {}
    other: dict[str, list[dict]] = {}

    def timed(key: str, what: str, fn):
        console.print(f"repetition {r + 1}/{bc.repeats}: {escape(what)} ...")
        value, load = probed(fn)
        loads.setdefault(key, []).append(load.to_dict())
        console.print(f"    ({load.wall_s:.1f}s with process start-up; other load {load.other_cores:.2f} cores"
                      + (", DISTURBED" if load.disturbed else "") + ")")
        return value

    for r in range(bc.repeats):  # every row once per repetition, interleaved
        base_runs.append(timed("backprop", "backprop baseline", lambda: time_baseline(bc, cores[0])))
        for s, t in runs:
            pipe_runs[(s, t)].append(timed(f"{s} [{t}]", f"pipeline {s} ({t} transport)",
                                           lambda: time_pipeline(dataclasses.replace(bc, transport=t), s)))
        for peer in peers:
            other.setdefault(peer.name, []).append(timed(peer.name, peer.name,
                                                         lambda: time_peer(bc, peer, boundaries)))
        for row in reps:
            other.setdefault(row.name, []).append(timed(row.name, row.name, lambda: time_replicas(bc, row)))

    if len(transports) > 1:
        names = {(s, t): f"{labels.get(s, s)} [{t}]" for s, t in runs}
    else:
        names = {(s, t): labels.get(s, s) for s, t in runs}
    result = summarize(bc, base_runs, pipe_runs, preds, profile, names)
    result["rows"] = side_by_side(bc, cm, G, result, base_runs, pipe_runs, names, peers, reps, other, loads, preds,
                                  {n: p.step_s for n, p in piped.items()})
    result["pipelined"] = {n: pipelined_record(p) for n, p in piped.items()}
    result["profile_load"] = profile_load.to_dict()
    atomic_write_json(out / "results.json", result)
    result_pngs = save_pngs(result, out)
    show(console, result, out, result_pngs)
    return 0


# An efficiency above this is a measurement artefact (a pipeline cannot beat its slowest block); the
# margin absorbs the run-to-run noise of a shared machine.
IMPOSSIBLE_EFFICIENCY = 1.02


def summarize(bc: BenchConfig, base_runs: list[dict], pipe_runs: dict[tuple[str, str], list[dict]], preds: dict,
              profile: dict, names: dict[tuple[str, str], str] | None = None) -> dict:
    """Medians and ratios of one benchmark run, every sample kept; `pipe_runs` keyed by (spec, transport)."""
    base_step = statistics.median(r["step_s"] for r in base_runs)
    decs = []
    for (s, transport), runs in pipe_runs.items():
        step = statistics.median(r["step_s"] for r in runs)
        K = len(runs[0]["blocks"])
        block_steps = [statistics.median(r["blocks"][i]["step_s"] for r in runs) for i in range(K)]
        ideal = ideal_speedup(base_step, block_steps)  # the planner's formula, fed measured times
        predicted_steps = [b["cost"] for b in preds[s]["breakdown"]["blocks"]]
        blocks = []
        for i in range(K):
            blocks.append(dict(runs[0]["blocks"][i], step_s=block_steps[i], predicted_step_s=predicted_steps[i],
                               # > 1: the block ran slower in the pipeline than its pieces did alone
                               slowdown_vs_profile=block_steps[i] / predicted_steps[i]))
        efficiency = (base_step / step) / ideal
        flags = []
        if not all(r.get("steady", True) for r in runs):
            flags.append("window too short to reach steady state: raise --steps")
        if efficiency > IMPOSSIBLE_EFFICIENCY:
            flags.append(f"efficiency {efficiency:.2f} > 1 is impossible: a measurement artefact, not a speedup")
        decs.append({
            "name": (names or {}).get((s, transport), s), "spec": s, "transport": transport,
            "decoupling": preds[s]["blocks"],
            "step_s": step, "samples_per_s": bc.batch_size / step,
            "speedup": base_step / step, "ideal_speedup": ideal, "efficiency": efficiency, "flags": flags,
            "window_steps": [r.get("window_steps", bc.steps) for r in runs],
            "predicted_speedup": preds[s]["speedup"], "predicted": preds[s], "blocks": blocks,
            "samples_step_s": [r["step_s"] for r in runs], "timeline": runs[0]["timeline"],
        })
    return {
        "config": {**{k: getattr(bc, k) for k in bc.__dataclass_fields__}},
        "environment": environment(), "profile_device": profile["device"],
        "baseline": {"step_s": base_step, "samples_per_s": bc.batch_size / base_step,
                     "samples_step_s": [r["step_s"] for r in base_runs], "phases_s": base_runs[0]["phases_s"],
                     "peak_memory_bytes": max(r["peak_memory_bytes"] for r in base_runs)},
        "decouplings": decs,
    }


def show(console: Console, result: dict, out: Path, pngs: list[str]) -> None:
    if result.get("rows"):
        every = Table(title="every row side by side (medians over undisturbed repetitions; '(all)': too few were)")
        for h in ALL_HEADER:
            every.add_column(h, justify="left" if h in ("run", "algorithm", ALL_HEADER[-2]) else "right",
                             no_wrap=True)
        for row in all_rows(result["rows"]):
            every.add_row(*(escape(cell) for cell in row))
        print_unwrapped(console, every)
    table = Table(title="greedy pipeline vs single-process backprop (medians; predicted = from the 1-device profile)")
    for h in HEADER:
        table.add_column(h, justify="left" if h == "run" else "right", no_wrap=True)
    for row in table_rows(result):
        table.add_row(*(escape(cell) for cell in row))  # "[rpc]" in a name is text, not rich markup
    console.print(table)
    console.print("per block, per step (ms): busy in the pipeline (median, timed window) / predicted from the "
                  "profile; phases, waiting for input, for queue space, sending, queue depth (repetition 1, all steps)")
    for d in result["decouplings"]:
        console.print(f"  {escape(d['name'])}: cut {escape(str(d['decoupling']))}")
        for b in d["blocks"]:
            ph = " ".join(f"{k} {v * 1e3:.1f}" for k, v in b["phases_s"].items())
            console.print(f"    block {b['block']}: busy {b['step_s'] * 1e3:.1f} / {b['predicted_step_s'] * 1e3:.1f}"
                          f" ({ph}), wait-in {b['wait_in_s_per_step'] * 1e3:.1f}, wait-out "
                          f"{b['wait_out_s_per_step'] * 1e3:.1f}, send {b['transfer_s_per_step'] * 1e3:.1f}, "
                          f"queue {b['queue_depth_mean']:.1f}")
        console.print(f"    {verdict(d)}")
    console.print(f"results: {out / 'results.json'}" + (f"; pictures: {', '.join(pngs)}" if pngs else ""))


def verdict(d: dict) -> str:
    """Where the time goes: imbalance (ideal < K) or the runtime (efficiency < 1); and what not to trust."""
    K = len(d["blocks"])
    slow = max(d["blocks"], key=lambda b: b["step_s"])
    text = (f"the slowest block ({slow['block']}) allows {d['ideal_speedup']:.2f}x of the {K}x that {K} "
            f"devices could give (imbalance and head cost); the runtime delivers {d['efficiency']:.0%} of that")
    return text + "".join(f"; WARNING: {f}" for f in d.get("flags", []))


if __name__ == "__main__":
    raise SystemExit(main())
