"""The gloo all-reduce rate between two single-core processes: the layout planner's default inside one host.

    python benchmarks/allreduce.py                # 1 MiB and 10 MiB, median of 5 after 2 warm-up
The printed bus bandwidth, 2 (R-1)/R x bytes / seconds, is what planning.layouts.LOCAL_GBPS stands for.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from speedup_lib.peers import free_port  # noqa: E402


def worker(rank: int, port: int, sizes: list[int], iters: int) -> None:
    import torch
    import torch.distributed as dist

    os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[rank % len(os.sched_getaffinity(0))]})
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    try:
        for size in sizes:
            t = torch.ones(size // 4)
            for _ in range(2):
                dist.all_reduce(t)
            times = []
            for _ in range(iters):
                dist.barrier()
                start = time.perf_counter()
                dist.all_reduce(t)
                times.append(time.perf_counter() - start)
            if rank == 0:
                s = statistics.median(times)
                print(f"{size / 2**20:g} MiB: {s * 1e3:.1f} ms, bus bandwidth {size / s * 8 / 1e9:.2f} Gbit/s "
                      f"(2 ranks: 2 (R-1)/R = 1)", flush=True)
    finally:
        dist.destroy_process_group()


def main(argv: list[str] | None = None) -> int:
    import torch.multiprocessing as mp

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--mib", default="1,10", help="buffer sizes in MiB, comma separated")
    p.add_argument("--iters", type=int, default=5)
    args = p.parse_args(argv)
    sizes = [int(float(m) * 2**20) for m in args.mib.split(",")]
    mp.spawn(worker, args=(free_port(), sizes, args.iters), nprocs=2, join=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
