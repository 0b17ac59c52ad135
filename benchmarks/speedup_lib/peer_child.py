"""One timed peer run (DDP, GPipe, 1F1B) in a fresh process: `python peer_child.py CONFIG_JSON OUT_JSON`.

It spawns the G gloo ranks (one core set each) and waits for them, bounded; the figures go to OUT_JSON.
"""
from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from speedup_lib.measure import BenchConfig, core_sets  # noqa: E402
from speedup_lib.peers import Peer, figures, free_port, worker  # noqa: E402

from sedona_runtime.utils.io import atomic_write_json  # noqa: E402


def main(argv: list[str]) -> int:
    import torch.multiprocessing as mp

    config, out = argv
    spec = json.loads(Path(config).read_text())
    bc, peer = BenchConfig(**spec["bench"]), Peer(**spec["peer"])
    cores = core_sets(peer.devices)
    with tempfile.TemporaryDirectory() as tmp:
        mp.spawn(worker, args=(spec, free_port(), cores, tmp), nprocs=peer.devices, join=True)
        records = [json.loads(p.read_text()) for p in sorted(Path(tmp).glob("rank*.json"))]
    atomic_write_json(Path(out), {**figures(bc, records), "cores": cores})
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
