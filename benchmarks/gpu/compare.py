"""GPU check 3's digest: pipelined runs (one per transport) vs the single-process trainer, from summary.json.

    python benchmarks/gpu/compare.py RUNS_DIR      # RUNS_DIR holds single/, pipe_rpc/, pipe_p2p/
"""
from __future__ import annotations

import json
import sys
from pathlib import Path


def main(root: Path) -> dict:
    digest = {}
    for name in ("single", "pipe_rpc", "pipe_p2p"):
        path = root / name / "summary.json"
        if not path.is_file():
            print(f"{name}: no summary.json")
            continue
        s = json.loads(path.read_text())
        row = {"wall_s": round(s.get("wall_time_s", 0), 2), "samples_per_s": round(s.get("samples_per_s", 0), 1),
               "test_accuracy": s.get("test_accuracy"),
               "peak_allocated_MiB": [round(b / 2**20) for b in s.get("peak_memory_bytes", [])],
               "peak_reserved_MiB": [round(b / 2**20) for b in s.get("peak_reserved_bytes", [])]}
        print(f"{name}: " + ", ".join(f"{k} {v}" for k, v in row.items()))
        blocks = []
        for i, b in enumerate(s.get("pipeline", {}).get("blocks", []), start=1):
            steps = max(1, b.get("step", 1))
            timed = max(1, b.get("phase_steps", 1))
            per = {"busy_ms": round(1e3 * b.get("total_busy_s", 0) / steps, 2),
                   "phases_ms": {k: round(1e3 * v / timed, 2) for k, v in b.get("phase_s", {}).items()},
                   "wait_in_ms": round(1e3 * b.get("total_wait_in_s", 0) / steps, 2),
                   "wait_out_ms": round(1e3 * b.get("total_wait_out_s", 0) / steps, 2),
                   "send_ms": round(1e3 * b.get("total_transfer_s", 0) / steps, 2),
                   "mean_queue": round(b.get("queue_depth_mean", 0), 2)}
            print(f"  block {i}: " + ", ".join(f"{k} {v}" for k, v in per.items()))
            blocks.append(per)
        row["blocks"] = blocks
        digest[name] = row
    if "single" in digest:
        for name in ("pipe_rpc", "pipe_p2p"):
            if name in digest and digest["single"]["samples_per_s"]:
                ratio = digest[name]["samples_per_s"] / digest["single"]["samples_per_s"]
                digest[name]["vs_single"] = round(ratio, 3)
                print(f"{name} / single samples/s: {ratio:.3f}")
    return digest


if __name__ == "__main__":
    out = main(Path(sys.argv[1]))
    if len(sys.argv) > 2:
        Path(sys.argv[2]).write_text(json.dumps(out, indent=1) + "\n")
