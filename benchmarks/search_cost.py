"""Seconds and peak memory per pretraining step and per outer step of the SEDONA search, optionally against
another git revision of this project, measured interleaved in one run.

    python benchmarks/search_cost.py                         # the small net of --preset quick (a minute here)
    python benchmarks/search_cost.py --setting vgg19 --steps 2 --compare main
                                                             # VGG-19 0.25x, 32x32, batch 128, T = 5 vs main
    python benchmarks/search_cost.py --setting vgg19 --device cuda --steps 3 --rounds 1 --phases outer
    python benchmarks/search_cost.py --devices 2             # the data-parallel search: 2 ranks, a shard each
    python benchmarks/search_cost.py --setting vgg19 --arch resnet101 --shards 4 --only-recompute --phases outer \
        --steps 1 --rounds 1 --warmup 0                      # 4 shards in one process, recomputed one at a time

Every measurement runs in a fresh worker process (this file with --worker), so each revision imports its own
`sedona_runtime` (PYTHONPATH: this tree, or `git archive REV` unpacked in a temporary directory) and its peak
RSS is its own. Workers run round-robin over the revisions, `--rounds` times; medians are quoted, and the
ratio of each revision's median to this tree's. Data are random tensors of the setting's shape (what a step
costs does not depend on the pixel values). Prints a table, then one JSON line (the last line of stdout).
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# The two settings the issue asks for. "small" is `python -m sedona_runtime.search --preset quick`'s network;
# "vgg19" is the paper's CIFAR-scale search network (App. D: 0.25x, heads at width 512, T = 5, batch 128).
# Both validate on 128 images per outer step, the batch today's main uses, so that revisions do equal work
# (the search's own default is 1,024: pass --val-batch-size 1024 to time that).
SETTINGS = {
    "small": {"arch": "small", "width": 0.5, "image_size": 16, "batch_size": 64, "head_width": 64,
              "inner_steps": 5, "val_batch_size": 128, "classes": 10, "steps": 3, "pretrain_steps": 20},
    "vgg19": {"arch": "vgg19", "width": 0.25, "image_size": 32, "batch_size": 128, "head_width": 512,
              "inner_steps": 5, "val_batch_size": 128, "classes": 10, "steps": 2, "pretrain_steps": 5},
}
HEAD_POOL = ["aux1", "aux2", "aux3", "aux4"]


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--setting", choices=sorted(SETTINGS), default="small")
    for name, kind in (("arch", str), ("width", float), ("image-size", int), ("batch-size", int),
                       ("head-width", int), ("inner-steps", int), ("val-batch-size", int), ("classes", int)):
        p.add_argument(f"--{name}", type=kind, help="override the setting's value")
    p.add_argument("--steps", type=int, help="timed outer steps per worker (setting default: small 3, vgg19 2)")
    p.add_argument("--pretrain-steps", type=int, help="timed pretraining steps per worker")
    p.add_argument("--warmup", type=int, default=1, help="untimed steps first, per phase (default 1)")
    p.add_argument("--rounds", type=int, default=2, help="interleaved repetitions of every worker (default 2)")
    p.add_argument("--phases", default="pretrain,outer", help="comma-separated: pretrain, outer")
    p.add_argument("--compare", action="append", default=[], metavar="REV",
                   help="also time this git revision of the project (e.g. main, HEAD~3); repeatable")
    p.add_argument("--straightforward", action="store_true",
                   help="also time this tree with the fast head layers switched off (--no-fast-heads)")
    p.add_argument("--recompute", action="store_true",
                   help="also time this tree with the hypergradient by per-step recomputation (--recompute)")
    p.add_argument("--only-recompute", action="store_true",
                   help="time this tree with --recompute only (for settings whose stored graph does not fit)")
    p.add_argument("--no-predict", dest="predict", action="store_false",
                   help="skip the peak prediction that this tree's outer-step workers make before their steps")
    p.add_argument("--probe-batches", type=lambda t: tuple(int(v) for v in t.split(",")),
                   help="the two batch sizes the prediction traces (default memory_model.PROBE_BATCHES: 4,8; 2,4 "
                        "holds half the memory, for the deep ResNets on a small machine)")
    p.add_argument("--predict-only", action="store_true",
                   help="print the predicted peak of the outer step (stored and recomputed) and exit, running none")
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--threads", type=int, default=1, help="torch threads per worker (default 1: one core)")
    p.add_argument("--devices", type=int, default=1,
                   help="R ranks of the data-parallel search per measurement (gloo on CPU, NCCL on cuda:0..R-1; "
                        "each rank a shard of every batch); seconds are rank 0's, peak memory the largest rank's")
    p.add_argument("--shards", type=int, default=1,
                   help="cut every batch into N shards in each worker process (the search's --shards: batch norm per "
                        "shard; with recomputation one shard's graph at a time)")
    p.add_argument("--json", help="also write the result object to this file")
    p.add_argument("--worker", help=argparse.SUPPRESS)  # internal: one measurement, JSON spec
    args = p.parse_args(argv)
    setting = dict(SETTINGS[args.setting])
    for key in ("arch", "width", "image_size", "batch_size", "head_width", "inner_steps", "val_batch_size",
                "classes", "steps", "pretrain_steps"):
        if getattr(args, key, None) is not None:
            setting[key] = getattr(args, key)
    args.config = setting
    return args


# -- the worker: one phase of one revision ---------------------------------------------------------------
def worker(spec: dict) -> dict:
    """Build the relaxed network with the importable `sedona_runtime`, time `spec["phase"]` steps."""
    import torch

    torch.set_num_threads(spec["threads"])
    torch.manual_seed(0)
    from sedona_runtime.models.registry import ModelConfig, build_model
    from sedona_runtime.search import bilevel as B
    from sedona_runtime.search.relaxation import relax_model

    c = spec["config"]
    device = torch.device(spec["device"])
    ranks = spec.get("ranks", 1)
    extra: dict = {}
    if spec.get("shards", 1) > 1:  # this tree only: every shard in this process (search/sharding.py)
        from sedona_runtime.search.sharding import Sharding

        extra = {"sharding": Sharding(spec["shards"])}
    if ranks > 1:  # this tree only: one shard of every batch per rank (search/distributed.py)
        from sedona_runtime.pipeline import rendezvous
        from sedona_runtime.search import distributed

        if device.type == "cuda":
            device = torch.device("cuda", spec["rank"])
        store = rendezvous.connect_store(rendezvous.LOOPBACK, spec["port"], ranks, 600.0)
        distributed.connect(store, spec["rank"], ranks, device, 600.0)
        extra = {"sharding": distributed.RankGroup(ranks, spec["rank"], device)}
    model = build_model(ModelConfig(arch=c["arch"], width=c["width"], num_classes=c["classes"], stem="cifar"))
    net = relax_model(model, HEAD_POOL, (3, c["image_size"], c["image_size"]), c["classes"], c["head_width"], 0.1)
    net = net.to(device)
    new_api = hasattr(B, "momentum_buffers")  # this tree; today's main has neither momentum nor fast path
    if new_api:
        from sedona_runtime.search import second_order

        second_order.convert(net.heads)
    n = net.num_layers - 1
    alpha = torch.zeros(n, 2, device=device, requires_grad=True)
    beta = torch.zeros(n, len(HEAD_POOL), device=device, requires_grad=True)
    inner = B.InnerSettings()
    gen = torch.Generator().manual_seed(1)

    def batch(size: int) -> tuple:
        x = torch.randn(size, 3, c["image_size"], c["image_size"], generator=gen)
        return x.to(device), torch.randint(0, c["classes"], (size,), generator=gen).to(device)

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    lr = 0.01
    opt = B.inner_optimizer(net, lr, inner)
    B.weight_step(net, alpha, beta, batch(c["batch_size"]), lr, inner, opt=opt, **extra)  # momentum from here on
    if spec["phase"] == "pretrain":
        batches = [batch(c["batch_size"]) for _ in range(4)]

        def step(i: int) -> None:
            if new_api:
                with second_order.fast_path(net, spec["fast"]):
                    B.weight_step(net, alpha, beta, batches[i % 4], lr, inner, opt=opt, **extra)
            else:
                B.weight_step(net, alpha, beta, batches[i % 4], lr, inner, opt=opt)

        count = spec["pretrain_steps"]
    else:
        kwargs = {"fast": spec["fast"], **extra} if new_api else {}
        if spec.get("recompute"):
            kwargs["recompute"] = True
        bil = B.Bilevel(net, alpha, beta, inner=inner, **kwargs)
        state = {k: v.detach().clone() for k, v in net.state_dict().items()}
        if new_api:
            from sedona_runtime.search.memory import WeightSet

            start = WeightSet(state, B.momentum_buffers(opt, net), 1)
        else:
            start = state
        batches = [batch(c["batch_size"]) for _ in range(c["inner_steps"])]
        val = batch(c["val_batch_size"])

        def step(i: int) -> None:
            bil.outer_step(start, batches, val, lr)

        count = spec["steps"]
    predicted_step = None
    if spec["phase"] == "outer" and spec.get("predict"):
        try:
            from sedona_runtime.search import memory_model
            from sedona_runtime.search.memory_model import CPU_OVERHEAD, step_bytes
        except ImportError:  # a revision without the prediction
            pass
        else:
            if spec.get("probe_batches"):
                memory_model.PROBE_BATCHES = tuple(spec["probe_batches"])
            shape = (3, c["image_size"], c["image_size"])
            scale = CPU_OVERHEAD if device.type == "cpu" else 1.0
            rows, val_rows = held_rows(c, spec.get("shards", 1) * ranks, bool(spec.get("recompute")), ranks > 1)
            predicted_step = scale * step_bytes(net, shape, rows, val_rows, c["inner_steps"],
                                                recompute=bool(spec.get("recompute")), fast=spec["fast"]) / 2**20
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    rss_now = _rss_now_mib()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    wall, cpu = [], []
    for i in range(spec["warmup"] + count):
        sync()
        t0, c0 = time.perf_counter(), time.process_time()
        step(i)
        sync()
        if i >= spec["warmup"]:
            wall.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
    cuda_before = torch.cuda.memory_allocated(device) / 2**20 if device.type == "cuda" else None
    predicted = None
    if predicted_step is not None:  # what this process holds before the step, plus the traced step
        predicted = predicted_step + (cuda_before if device.type == "cuda" else rss_now)
    return {
        "predicted_peak_mib": predicted, "predicted_step_mib": predicted_step,
        "wall_s": wall, "cpu_s": cpu, "fast_api": new_api,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "rss_before_mib": rss_before, "rss_at_start_mib": rss_now,
        "cuda_peak_mib": torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None,
    }


def held_rows(c: dict, shards: int, recompute: bool, processes: bool) -> tuple[int, int]:
    """(batch rows, validation rows) whose graphs a process holds at once: one shard's when recomputing (or
    under R processes), the whole batch's with the stored graph in one process (memory_model.plan_search_memory)."""
    one = recompute or processes
    rows = lambda n: -(-n // shards) if one else n  # noqa: E731
    return rows(c["batch_size"]), rows(c["val_batch_size"])


def _rss_now_mib() -> float:
    import psutil

    return psutil.Process().memory_info().rss / 2**20


def predict_worker(spec: dict) -> dict:
    """The predicted peak of one outer step, stored and recomputed, for this tree's search (nothing timed)."""
    import torch

    torch.set_num_threads(spec["threads"])
    from sedona_runtime.models.registry import ModelConfig, build_model
    from sedona_runtime.search import memory_model, second_order
    from sedona_runtime.search.memory_model import CPU_OVERHEAD, step_bytes
    from sedona_runtime.search.relaxation import relax_model

    if spec.get("probe_batches"):
        memory_model.PROBE_BATCHES = tuple(spec["probe_batches"])
    c = spec["config"]
    device = torch.device(spec["device"])
    model = build_model(ModelConfig(arch=c["arch"], width=c["width"], num_classes=c["classes"], stem="cifar"))
    shape = (3, c["image_size"], c["image_size"])
    net = relax_model(model, HEAD_POOL, shape, c["classes"], c["head_width"], 0.1).to(device)
    second_order.convert(net.heads)
    out = {}
    for recompute in (False, True):
        t0 = time.perf_counter()
        rows, val_rows = held_rows(c, spec.get("shards", 1), recompute, False)
        step = step_bytes(net, shape, rows, val_rows, c["inner_steps"], recompute=recompute)
        base = torch.cuda.memory_allocated(device) if device.type == "cuda" else psutil_rss()
        scale = CPU_OVERHEAD if device.type == "cpu" else 1.0
        out["recomputed" if recompute else "stored"] = {
            "step_mib": scale * step / 2**20, "resident_mib": base / 2**20,
            "peak_mib": (scale * step + base) / 2**20, "predict_s": round(time.perf_counter() - t0, 1)}
    return out


def psutil_rss() -> int:
    import psutil

    return psutil.Process().memory_info().rss


# -- the parent: revisions, interleaving, report --------------------------------------------------------
def export_revision(rev: str, into: Path) -> Path:
    """`git archive` of REV's sedona_runtime/ unpacked under `into` (no change to the repository)."""
    dest = into / rev.replace("/", "_")
    dest.mkdir(parents=True)
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", "--format=tar", rev, "sedona_runtime"],
                             capture_output=True, check=False)
    if archive.returncode != 0:
        sys.exit(f"error: --compare {rev}: {archive.stderr.decode().strip() or 'git archive failed'}")
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive.stdout, check=True)
    return dest


def run_worker(tree: Path, spec: dict, timeout: float) -> dict:
    if spec.get("ranks", 1) > 1:
        return run_ranks(tree, spec, timeout)
    env = {**os.environ, "PYTHONPATH": str(tree)}
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as `python -m sedona_runtime.search` does
    res = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--worker", json.dumps(spec)],
                         capture_output=True, text=True, env=env, timeout=timeout, cwd=str(tree))
    if res.returncode != 0:
        tail = "\n".join(res.stderr.strip().splitlines()[-5:])
        sys.exit(f"error: worker for {tree} ({spec['phase']}) failed:\n{tail}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def run_ranks(tree: Path, spec: dict, timeout: float) -> dict:
    """R workers of one data-parallel measurement, meeting in a loopback store served here: rank 0's times,
    the largest rank's peak memory (and every rank's, `rank_peak_rss_mib`)."""
    sys.path.insert(0, str(ROOT))
    from sedona_runtime.pipeline import rendezvous

    listener = rendezvous.listen_loopback(0)
    port = listener.getsockname()[1]
    store = rendezvous.serve_store(listener, spec["ranks"], 600.0)  # noqa: F841 - lives while the ranks run
    env = {**os.environ, "PYTHONPATH": str(tree)}
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    procs = [subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--worker",
                               json.dumps({**spec, "rank": r, "port": port})],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=str(tree))
             for r in range(spec["ranks"])]
    outs = []
    try:
        for p in procs:
            out, err = p.communicate(timeout=timeout)
            if p.returncode != 0:
                tail = "\n".join(err.strip().splitlines()[-5:])
                sys.exit(f"error: a rank of the worker for {tree} ({spec['phase']}) failed:\n{tail}")
            outs.append(json.loads(out.strip().splitlines()[-1]))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait(5)
    res = dict(outs[0])
    res["rank_peak_rss_mib"] = [o["peak_rss_mib"] for o in outs]
    res["peak_rss_mib"] = max(res["rank_peak_rss_mib"])
    return res


def summarize(samples: list[dict]) -> dict:
    wall = [t for s in samples for t in s["wall_s"]]
    cpu = [t for s in samples for t in s["cpu_s"]]
    cuda = [s["cuda_peak_mib"] for s in samples if s["cuda_peak_mib"] is not None]
    predicted = [s["predicted_peak_mib"] for s in samples if s.get("predicted_peak_mib") is not None]
    return {"sec_per_step": statistics.median(wall), "cpu_sec_per_step": statistics.median(cpu),
            "samples_s": [round(t, 3) for t in wall], "peak_rss_mib": max(s["peak_rss_mib"] for s in samples),
            "rss_before_mib": max(s["rss_before_mib"] for s in samples),
            "rss_at_start_mib": max(s.get("rss_at_start_mib") or 0 for s in samples),
            "cuda_peak_mib": max(cuda) if cuda else None,
            "predicted_peak_mib": max(predicted) if predicted else None}


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    if args.worker:
        spec = json.loads(args.worker)
        print(json.dumps(predict_worker(spec) if spec["phase"] == "predict" else worker(spec)))
        return 0
    phases = [p for p in args.phases.split(",") if p]
    if not phases or set(phases) - {"pretrain", "outer"}:
        sys.exit("error: --phases takes pretrain and/or outer")
    if args.shards > 1 and (args.devices > 1 or args.compare):
        sys.exit("error: --shards runs every shard in one process of this tree: not with --devices or --compare")
    if args.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            sys.exit("error: --device cuda: no CUDA device is available")
    if args.predict_only:
        c = args.config
        spec = {"config": c, "device": args.device, "threads": args.threads, "phase": "predict",
                "probe_batches": args.probe_batches, "shards": args.shards}
        res = run_worker(ROOT, spec, timeout=7200)
        print(f"{c['arch']} x{c['width']} at {c['image_size']}x{c['image_size']}, batch {c['batch_size']}, "
              f"T = {c['inner_steps']}, val batch {c['val_batch_size']}, heads at {c['head_width']}; {args.device}, "
              f"{args.shards} shard(s): predicted peak of the outer step", file=sys.stderr)
        for way, r in res.items():
            print(f"  {way:10s} {r['peak_mib']:9.0f} MiB  (step {r['step_mib']:.0f} + process {r['resident_mib']:.0f}; "
                  f"predicted in {r['predict_s']} s)", file=sys.stderr)
        result = {"setting": args.setting, "config": c, "device": args.device, "predicted": res,
                  "probe_batches": args.probe_batches, "shards": args.shards}
        if args.json:
            Path(args.json).parent.mkdir(parents=True, exist_ok=True)
            Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
        print(json.dumps(result))
        return 0
    tmp = Path(tempfile.mkdtemp(prefix="search_cost_"))
    try:
        trees = {"this tree": (ROOT, True, False)}
        if args.only_recompute:
            trees = {"this tree, recompute": (ROOT, True, True)}
        elif args.recompute:
            trees["this tree, recompute"] = (ROOT, True, True)
        if args.straightforward:
            trees["this tree, straightforward"] = (ROOT, False, False)
        for rev in args.compare:
            trees[rev] = (export_revision(rev, tmp), True, False)
        c = args.config
        common = {"config": c, "device": args.device, "threads": args.threads, "warmup": args.warmup,
                  "ranks": args.devices, "shards": args.shards, "probe_batches": args.probe_batches,
                  "steps": c["steps"], "pretrain_steps": c["pretrain_steps"]}
        samples: dict[str, dict[str, list]] = {label: {p: [] for p in phases} for label in trees}
        started = time.perf_counter()
        for r in range(args.rounds):
            for phase in phases:
                for label, (tree, fast, recompute) in trees.items():
                    # The prediction (its traces) only in this tree's workers, before the timed steps.
                    spec = {**common, "phase": phase, "fast": fast, "recompute": recompute,
                            "predict": args.predict and tree == ROOT}
                    samples[label][phase].append(run_worker(tree, spec, timeout=7200))
                    last = samples[label][phase][-1]["wall_s"]
                    print(f"round {r + 1}/{args.rounds} {phase:8s} {label}: "
                          + ", ".join(f"{t:.2f}" for t in last) + " s/step", file=sys.stderr, flush=True)
        result = {"setting": args.setting, "config": c, "device": args.device, "threads": args.threads,
                  "devices": args.devices, "shards": args.shards,
                  "rounds": args.rounds, "warmup": args.warmup, "wall_s": round(time.perf_counter() - started, 1),
                  "revisions": {label: {p: summarize(s) for p, s in by.items()} for label, by in samples.items()}}
        base = result["revisions"][next(iter(trees))]
        result["ratios"] = {label: {f"{p}_{k}": by[p][k] / base[p][k]
                                    for p in phases for k in ("sec_per_step", "cpu_sec_per_step")}
                            for label, by in result["revisions"].items() if label != next(iter(trees))}
        report(result, phases)
        if args.json:
            Path(args.json).parent.mkdir(parents=True, exist_ok=True)
            Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
        print(json.dumps(result))
        return 0
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def report(result: dict, phases: list[str]) -> None:
    from rich.console import Console
    from rich.table import Table

    c = result["config"]
    table = Table(title=f"{c['arch']} x{c['width']} at {c['image_size']}x{c['image_size']}, batch {c['batch_size']}, "
                        f"T = {c['inner_steps']}, val batch {c['val_batch_size']}, heads at {c['head_width']}; "
                        f"{result['device']}, {result['threads']} thread(s), medians of {result['rounds']} rounds")
    for col in ("revision", "phase", "s/step", "CPU s/step", "peak RSS MiB", "CUDA peak MiB", "predicted MiB",
                "x this tree"):
        table.add_column(col, justify="left" if col in ("revision", "phase") else "right")
    for label, by in result["revisions"].items():
        for p in phases:
            s = by[p]
            ratio = result["ratios"].get(label, {}).get(f"{p}_sec_per_step", 1.0)
            cuda = f"{s['cuda_peak_mib']:.0f}" if s["cuda_peak_mib"] is not None else "-"
            pred = f"{s['predicted_peak_mib']:.0f}" if s.get("predicted_peak_mib") is not None else "-"
            table.add_row(label, p, f"{s['sec_per_step']:.3f}", f"{s['cpu_sec_per_step']:.3f}",
                          f"{s['peak_rss_mib']:.0f}", cuda, pred, f"{ratio:.2f}")
    from sedona_runtime.cli.display import print_unwrapped  # this tree's: rows stay one line each

    print_unwrapped(Console(soft_wrap=True), table)


if __name__ == "__main__":
    sys.exit(main())
