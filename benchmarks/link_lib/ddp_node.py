"""One rank of the link benchmark's DDP row under torchrun: `ddp_node.py CONFIG_JSON OUT_JSON` (rank 0 writes)."""
from __future__ import annotations

import json
import os
import resource
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from speedup_lib.measure import BenchConfig  # noqa: E402
from speedup_lib.peers import Peer, figures, train_ddp  # noqa: E402


def main(argv: list[str]) -> int:
    import torch
    import torch.distributed as dist

    config, out = argv
    bc = BenchConfig(**json.loads(Path(config).read_text()))
    torch.set_num_threads(1)
    dist.init_process_group("gloo")  # torchrun's env:// rendezvous; GLOO_SOCKET_IFNAME picks the veth end
    try:
        rank, world = dist.get_rank(), dist.get_world_size()
        with tempfile.TemporaryDirectory() as tmp:
            stamps = train_ddp(bc, Peer("ddp", world), [], rank, tmp)
        record = {"rank": rank, "stamps": stamps,
                  "peak_memory_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}
        gathered: list = [None] * world
        dist.all_gather_object(gathered, record)
        if rank == 0:
            Path(out).write_text(json.dumps(figures(bc, gathered)))
    finally:
        dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
