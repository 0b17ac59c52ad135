"""Where greedy wins: DDP vs the greedy pipeline between two "hosts" joined by a slow link (root only).

    sudo python benchmarks/link.py                          # 10gbit, 1gbit, 200mbit; ResNet-101 x0.25, 32x32, batch 32
    sudo python benchmarks/link.py --rates 200mbit --steps 10

Two network namespaces joined by a veth pair whose rate tc limits (both directions), one torchrun node in
each, pinned to one core each. At every rate: DDP over the two hosts (every step all-reduces the whole
network's gradients across the link), the greedy pipeline K = 2 with block 1 on host a and block 2 on host b
(only the activation edge crosses), and K = 2 x R = 2 when the runtime has --replicas and four cores are
free. Greedy step times are a difference of two runs (warm-up only, warm-up + timed steps), which cancels
start-up. The namespaces are removed on exit, on Ctrl-C, on SIGTERM and on errors. A benchmark, not a test.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from link_lib.commands import Job, ddp_command, greedy_command, node_env  # noqa: E402
from link_lib.netns import Pair, create, rate_bits, remove, sh  # noqa: E402
from speedup_lib.load import probed  # noqa: E402
from speedup_lib.measure import BenchConfig  # noqa: E402
from speedup_lib.peers import free_port  # noqa: E402

from sedona_runtime.utils.errors import SedonaError  # noqa: E402
from sedona_runtime.utils.io import atomic_write_json  # noqa: E402


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    d = BenchConfig()
    p.add_argument("--rates", default="10gbit,1gbit,200mbit", help="link rates, tc's spelling, comma separated")
    p.add_argument("--arch", default=d.arch)
    p.add_argument("--width", type=float, default=d.width)
    p.add_argument("--image-size", type=int, default=d.image_size)
    p.add_argument("--batch-size", type=int, default=d.batch_size)
    p.add_argument("--warmup", type=int, default=d.warmup)
    p.add_argument("--steps", type=int, default=d.steps)
    p.add_argument("--profile", help="a profile.json from benchmarks/speedup.py (default: measure one now)")
    p.add_argument("--timeout", type=float, default=600.0, help="seconds any one run may take")
    p.add_argument("--out", default="bench_out/link")
    return p.parse_args(argv)


class Nodes:
    """The two torchrun nodes of one run, each in its own session: waited for, bounded, killed on the way out."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen] = []

    def run(self, pair: Pair, commands: list[list[str]], timeout: float, logs: str) -> float:
        """Start one command per host, wait for both (bounded; the first failure ends the other at once);
        seconds from start until both ended. Their output goes to files in `logs` (named in an error)."""
        start = time.perf_counter()
        procs, files = [], []
        self.procs = procs
        try:
            for host, cmd in enumerate(commands):
                log = Path(logs, f"host{host}-{len(os.listdir(logs))}.log")
                files.append(log)
                with open(log, "w") as fh:
                    procs.append(subprocess.Popen([*pair.exec_prefix(host, str(host)), *cmd],
                                                  env=node_env(pair, host, dict(os.environ)), stdout=fh,
                                                  stderr=subprocess.STDOUT, text=True, start_new_session=True))
            while any(p.poll() is None for p in procs):
                failed = [i for i, p in enumerate(procs) if p.poll() not in (None, 0)]
                if failed:
                    break
                if time.perf_counter() - start > timeout:
                    names = ", ".join(map(str, files))
                    raise SedonaError(f"a run did not finish within {timeout:.0f}s (logs: {names})")
                time.sleep(0.05)
            wall = time.perf_counter() - start
        finally:
            self.kill()
        for host, p in enumerate(procs):
            if p.returncode != 0:
                tail = "\n".join(files[host].read_text().strip().splitlines()[-4:])
                raise SedonaError(f"host {'ab'[host]} failed (exit {p.returncode}):\n{tail}")
        return wall

    def kill(self) -> None:
        """Kill every node's session that is still running (the finally of every run, and of the benchmark)."""
        for p in self.procs:
            if p.poll() is None:
                try:
                    os.killpg(p.pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
                p.wait(10)
        self.procs = []


def logs(tmp: str) -> str:
    path = Path(tmp, "logs")
    path.mkdir(exist_ok=True)
    return str(path)


def measure_ddp(pair: Pair, nodes: Nodes, bc: BenchConfig, tmp: str, timeout: float) -> dict:
    config, out = Path(tmp, "ddp.json"), Path(tmp, "ddp_out.json")
    config.write_text(json.dumps(bc.__dict__))
    job, port = Job(1, 2), free_port()
    nodes.run(pair, [ddp_command(pair, h, job, port, str(config), str(out)) for h in (0, 1)], timeout, logs(tmp))
    return json.loads(out.read_text())


def measure_greedy(pair: Pair, nodes: Nodes, bc: BenchConfig, job: Job, decoupling: str, tmp: str,
                   timeout: float) -> dict:
    """Seconds per step from two runs (warm-up steps, warm-up + timed steps): the difference of the runtime's
    own `train_time_s` (summary.json: the busiest block's busy + input-wait time, no start-up, no final
    evaluation) over the timed steps; the walls are kept too."""
    walls, trains, peaks = [], [], []
    for steps in (bc.warmup, bc.warmup + bc.steps):
        port, run_dir = free_port(), Path(tempfile.mkdtemp(dir=tmp), "run")
        cmds = [greedy_command(pair, h, job, port, bc.__dict__, decoupling, steps, str(run_dir)) for h in (0, 1)]
        walls.append(nodes.run(pair, cmds, timeout, logs(tmp)))
        summary = json.loads((run_dir / "summary.json").read_text())
        trains.append(summary_train_s(summary))
        peaks += [p for p in summary.get("peak_memory_bytes", []) if p]
    return {"step_s": max(1e-9, trains[1] - trains[0]) / bc.steps, "train_s": trains, "walls_s": walls,
            "wall_step_s": (walls[1] - walls[0]) / bc.steps, "peak_memory_bytes": max(peaks, default=None)}


def summary_train_s(summary: dict) -> float:
    """The runtime's training seconds of one run (summary.json's train_time_s)."""
    value = summary.get("train_time_s")
    if not isinstance(value, (int, float)) or value <= 0:
        raise SedonaError("the pipeline's summary.json has no train_time_s: cannot time the run")
    return float(value)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    pair, nodes = Pair(tag=str(os.getpid() % 100000)), Nodes()

    def stop(signum, frame):  # SIGTERM / SIGHUP end the run like Ctrl-C: the finally removes the namespaces
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGHUP, stop)
    try:
        rates = [r.strip() for r in args.rates.split(",") if r.strip()]
        for r in rates:
            rate_bits(r)
        return run(args, rates, pair, nodes)
    except SedonaError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted: namespaces removed", file=sys.stderr)
        return 130
    finally:
        nodes.kill()
        remove(pair)


def run(args: argparse.Namespace, rates: list[str], pair: Pair, nodes: Nodes) -> int:
    from link_lib.predict import plan_and_predict

    bc = BenchConfig(arch=args.arch, width=args.width, image_size=args.image_size, batch_size=args.batch_size,
                     warmup=args.warmup, steps=args.steps, repeats=1, blocks=2, transport="p2p")
    bc.validate()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    print(f"link benchmark: {bc.arch} x{bc.width}, batch {bc.batch_size}, {bc.steps} timed steps, rates {rates}",
          flush=True)
    planned, predict, profile_source = plan_and_predict(bc, args.profile, out)
    jobs = [Job(2)]
    if len(os.sched_getaffinity(0)) >= 4:  # K = 2 x R = 2: four processes, a core each
        jobs += [Job(2, 2, "blocks"), Job(2, 2, "rows")]
    create(pair)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for rate in rates:
            for cmd in pair.rate_commands(rate):
                sh(cmd)
            gbps = rate_bits(rate) / 1e9
            row = {"rate": rate, "gbps": gbps}
            print(f"{rate}: DDP over the two hosts ...", flush=True)
            ddp, load = probed(lambda: measure_ddp(pair, nodes, bc, tmp, args.timeout))
            row["ddp"] = {**ddp, "load": load.to_dict(), "predicted_step_s": predict(1, 2, "rows", gbps)}
            for job in jobs:
                print(f"{rate}: {job.name} across them ...", flush=True)
                res, load = probed(lambda: measure_greedy(pair, nodes, bc, job, planned, tmp, args.timeout))
                row[job.name] = {**res, "load": load.to_dict(),
                                 "predicted_step_s": predict(job.blocks, job.replicas, job.placement, gbps)}
            results.append(row)
            show_row(row, bc.batch_size)
    atomic_write_json(out / "link.json", {"config": bc.__dict__, "planned": planned, "profile": profile_source,
                                          "rates": results})
    print(f"results: {out / 'link.json'}")
    return 0


def show_row(row: dict, batch: int) -> None:
    ddp = row["ddp"]["step_s"]
    for name, r in row.items():
        if not isinstance(r, dict):
            continue
        flag = " DISTURBED" if r["load"]["disturbed"] else ""
        print(f"  {row['rate']:>8} {name:<28} {r['step_s'] * 1e3:8.1f} ms/step  {batch / r['step_s']:6.1f} samples/s  "
              f"{ddp / r['step_s']:.2f}x DDP's throughput  predicted {r['predicted_step_s'] * 1e3:.1f} ms  "
              f"other load {r['load']['other_cores']:.2f} cores{flag}", flush=True)


if __name__ == "__main__":
    raise SystemExit(main())
