"""`python -m sedona_runtime.plan --devices G`: rank every K blocks x R replicas layout on G devices and a link."""
from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console
from rich.table import Table

from sedona_runtime.cli.display import print_unwrapped
from sedona_runtime.utils.errors import SedonaError

DEFAULT_BATCH = 32  # the speedup benchmark's global batch (benchmarks/README.md)


def add_options(p: argparse.ArgumentParser) -> None:
    """The --devices mode's options (the cost-model options are the cut planner's own)."""
    g = p.add_argument_group("layouts on G devices (--devices)")
    g.add_argument("--devices", type=int, help="rank every layout of K blocks x R replicas with K*R <= G devices "
                                               "(plain DDP is K = 1) instead of planning one cut")
    g.add_argument("--link-gbps", type=float, help="Gbit/s between hosts (default: one host, no link)")
    g.add_argument("--hosts", type=int, help="hosts the devices are split over, evenly (default: every device its "
                                             "own host with --link-gbps, else 1)")
    g.add_argument("--local-gbps", type=float, help="Gbit/s between devices of one host (default 7.5: a gloo "
                                                    "all-reduce between two CPU cores here)")
    g.add_argument("--memory-gib", type=float, help="memory per device: mark layouts whose predicted peak does "
                                                    "not fit")
    g.add_argument("--adam", action="store_true", help="memory for Adam's two states per parameter (default: "
                                                       "SGD with momentum, one)")
    g.add_argument("--overlap", type=float, help="share of a block's compute that hides its gradient all-reduce, "
                                                 "0..1 (default 0: measured on CPU gloo ranks over a link; NCCL "
                                                 "on GPUs hides up to the backward's 2/3)")


def given_devices_options(args: argparse.Namespace) -> bool:
    """True when --devices mode was asked for; the layout-only options without --devices are an error."""
    if args.devices is not None:
        return True
    alone = [n for n in ("link_gbps", "hosts", "local_gbps", "memory_gib", "overlap") if getattr(args, n) is not None]
    if alone or args.adam:
        names = ", ".join("--" + n.replace("_", "-") for n in alone + (["adam"] if args.adam else []))
        raise SedonaError(f"{names}: only with --devices G")
    return False


def hardware(args: argparse.Namespace):
    """The Hardware of the options, every bad value one clear line."""
    from sedona_runtime.planning.layouts import LOCAL_GBPS, OVERLAP, Hardware

    if args.devices < 1:
        raise SedonaError(f"--devices must be a positive integer, got {args.devices}")
    hosts = args.hosts if args.hosts is not None else (args.devices if args.link_gbps is not None else 1)
    if args.memory_gib is not None and not args.memory_gib > 0:
        raise SedonaError(f"--memory-gib must be a positive number, got {args.memory_gib:g}")
    if args.overlap is not None and not 0.0 <= args.overlap <= 1.0:
        raise SedonaError(f"--overlap must be a share of the compute between 0 and 1, got {args.overlap:g}")
    return Hardware(devices=args.devices, hosts=hosts, link_gbps=args.link_gbps,
                    local_gbps=LOCAL_GBPS if args.local_gbps is None else args.local_gbps,
                    memory_bytes=None if args.memory_gib is None else args.memory_gib * 2**30,
                    optimizer_states=2 if args.adam else 1,
                    overlap=OVERLAP if args.overlap is None else args.overlap)


def _plan_options(args: argparse.Namespace, arch: str, batch: int) -> str:
    """The options a planned cut's own `plan` command needs to write the cut this table ranked: the network
    (--arch, the input) and the same cost model (a measured profile is named by the file it was saved to;
    measured anew otherwise, which may move a cut between near-equal ones)."""
    opts = [f"--arch {arch}", f"--dataset {args.dataset}", f"--width {args.width:g}", f"--batch-size {batch}"]
    if args.image_size is not None:
        opts.append(f"--image-size {args.image_size}")
    if args.head is not None:
        opts.append(f"--head {args.head}")
    if args.profile is not None:
        opts.append(f"--profile {args.profile}")
    elif args.measure is not None:
        opts.append(f"--profile {args.save_profile}" if args.save_profile else f"--measure {args.measure}")
    elif args.device_rate is not None:
        opts.append(f"--device-rate {args.device_rate:g}")
    return " ".join(opts)


def run_devices(args: argparse.Namespace, console: Console) -> int:
    """Rank the layouts; the chosen nothing is written (unless --out: the ranked layouts as JSON)."""
    from sedona_runtime.cli._common import PRESETS
    from sedona_runtime.models.registry import ModelConfig
    from sedona_runtime.planning.devices import layout_record, network_sizes, plan_devices
    from sedona_runtime.planning.layouts import ddp_fastest_sentence
    from sedona_runtime.planning.session import load_cost_model, load_for_planning
    from sedona_runtime.utils.io import atomic_write_json

    hw = hardware(args)
    if args.measure is None and args.profile is None and args.device_rate is None:
        raise SedonaError("--devices needs step times in seconds: give --profile FILE, --measure DEVICE or "
                          "--device-rate MACS_PER_S")
    if args.bandwidth is not None:
        raise SedonaError("--bandwidth is the cut planner's; with --devices give --link-gbps")
    batch = args.batch_size if args.batch_size is not None else DEFAULT_BATCH
    preset = PRESETS[args.dataset]
    shape = preset.input_shape if args.image_size is None else (preset.input_shape[0], args.image_size,
                                                               args.image_size)
    if args.decoupling is None and args.arch is None:
        raise SedonaError("--devices needs --arch (or --decoupling naming a file or shipped decoupling)")
    spec = args.decoupling
    if spec is None:  # plan every K from SEDONA's alpha and heads where it was searched, else DGL's heads
        try:
            spec, base = "sedona:2", load_for_planning("sedona:2", args.arch, preset.stem, preset.num_classes,
                                                       args.width)
        except SedonaError:
            spec, base = "dgl:2", load_for_planning("dgl:2", args.arch, preset.stem, preset.num_classes, args.width)
    else:
        base = load_for_planning(spec, args.arch, preset.stem, preset.num_classes, args.width)
    cm = load_cost_model(base, profile=args.profile, stem=preset.stem, num_classes=preset.num_classes,
                         input_shape=shape, width=args.width, batch_size=batch, head=args.head,
                         device_rate=args.device_rate, measure_on=args.measure, save_profile=args.save_profile,
                         warmup=args.measure_warmup, iters=args.measure_iters)
    if cm.batch_size is not None and cm.batch_size != batch and args.batch_size is not None:
        raise SedonaError(f"the profile was measured at batch {cm.batch_size}, --batch-size says {batch}")
    batch = cm.batch_size or batch
    net = network_sizes(ModelConfig(arch=base.arch, num_classes=preset.num_classes, stem=preset.stem,
                                    width=args.width), shape, sorted(cm.head_cost))
    given = base if args.decoupling is not None else None
    plan = plan_devices(base, cm, net, hw, batch, base_name=spec, given=given, given_name=args.decoupling,
                        max_blocks=args.blocks, plan_options=_plan_options(args, base.arch, batch))
    _show(console, plan, cm, base.arch, args.rows)
    sentence = ddp_fastest_sentence(plan.ranked)
    if sentence:
        console.print(sentence, markup=False, highlight=False)
    if args.out:
        atomic_write_json(Path(args.out), {"devices": hw.devices, "hosts": hw.hosts, "link_gbps": hw.link_gbps,
                                           "local_gbps": hw.local_gbps, "batch_size": batch,
                                           "cost_model": cm.source, "skipped": plan.skipped,
                                           "layouts": [layout_record(l) for l in plan.ranked]})
        console.print(f"wrote {args.out}", markup=False, highlight=False)
    return 0


def _show(console: Console, plan, cm, arch: str, rows: int) -> None:
    hw = plan.hardware
    link = f", {hw.hosts} hosts joined by {hw.link_gbps:g} Gbit/s" if hw.hosts > 1 else ", one host"
    console.print(f"layouts of {arch} on {hw.devices} devices{link} ({hw.local_gbps:g} Gbit/s inside a host), "
                  f"global batch {plan.batch_size}; cost model: {cm.source}"
                  + (f" on {cm.device}" if cm.device else ""),
                  markup=False, highlight=False)
    table = Table(title=f"predicted step time of every layout (K blocks x R replicas <= {hw.devices} devices)")
    cols = ("#", "layout", "devices", "step ms", "speedup", "slowest stage ms", "link ms", "peak/device")
    for c in (*cols, "fits", "cut", "command"):
        table.add_column(c, justify="left" if c in ("layout", "cut", "command", "fits") else "right", no_wrap=True)
    for i, lay in enumerate(plan.ranked[:rows], start=1):
        name = lay.name + (f" ({lay.placement})" if lay.kind == "greedy" and lay.R > 1 and hw.hosts > 1 else "")
        fits = "-" if lay.fits is None else ("yes" if lay.fits else "NO")
        cut = "-" if lay.K == 1 else f"{lay.cut} {' '.join(map(str, lay.boundaries))}"
        table.add_row(str(i), name, str(lay.devices), f"{lay.step_s * 1e3:.1f}", f"{lay.speedup:.2f}x",
                      f"{max(lay.stage_s) * 1e3:.1f}", f"{lay.link_s * 1e3:.1f}",
                      f"{lay.peak_bytes / 2**20:.0f} MiB", fits, cut, lay.command)
    print_unwrapped(console, table)
    if len(plan.ranked) > rows:
        console.print(f"({len(plan.ranked) - rows} more layouts; --rows to show them)", markup=False,
                      highlight=False)
    if any(lay.schedule for lay in plan.ranked[:rows]):
        console.print("GPipe / 1F1B: end-to-end backprop pipelined over K devices (torch.distributed.pipelining, "
                      "the balanced cut, no heads), a peer this runtime does not run; DDP is backprop too, the "
                      "greedy layouts train their blocks on local losses.", markup=False, highlight=False)
    for s in plan.skipped:
        console.print(f"skipped {s}", markup=False, highlight=False)
