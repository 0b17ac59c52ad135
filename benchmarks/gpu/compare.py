"""GPU check 3's digest: the pipeline vs the single-process trainer on one GPU, like with like.

Both figures come from benchmarks/speedup.py's results.json: the trainer's and the pipeline's samples/s
over their steady-state training windows (speedup_lib.measure: no start-up, validation, checkpoint or
final evaluation in either; the old digest divided the pipeline's samples by the coordinator's whole wall
time and the trainer's by its training steps only, so the ratio read low whatever the transports did).

    python benchmarks/gpu/compare.py RUNS_DIR [DIGEST.json]   # RUNS_DIR holds speedup/ (, speedup_mps/, mps.txt)
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

ONE_GPU = ("K block processes on ONE GPU take turns on it (time-slicing; MPS lets their kernels run side by "
           "side): pipeline/single measures the pipeline's overheads (transports, host staging, context "
           "switches), not the overlap K GPUs would give")


def digest_run(path: Path) -> dict | None:
    """The figures of one speedup.py results.json, or None when the run left none."""
    if not path.is_file():
        return None
    res = json.loads(path.read_text())
    base = res["baseline"]["samples_per_s"]
    rows = []
    for d in res["decouplings"]:
        blocks = [{"busy_ms": round(1e3 * b["step_s"], 2),
                   "wait_in_ms": round(1e3 * b.get("wait_in_s_per_step", 0.0), 2),
                   "wait_out_ms": round(1e3 * b.get("wait_out_s_per_step", 0.0), 2),
                   "send_ms": round(1e3 * b.get("transfer_s_per_step", 0.0), 2),
                   "mean_queue": round(b.get("queue_depth_mean", 0.0), 2)} for b in d["blocks"]]
        rows.append({"name": d["name"], "transport": d["transport"], "samples_per_s": round(d["samples_per_s"], 1),
                     "vs_single": round(d["speedup"], 3), "window_steps": d.get("window_steps"),
                     "flags": d.get("flags", []), "blocks": blocks})
    return {"device": res.get("profile_device"), "config": res.get("config"),
            "single_samples_per_s": round(base, 1), "pipelines": rows}


def main(root: Path) -> dict:
    digest: dict = {"note": ONE_GPU}
    for key, folder in (("time_sliced", "speedup"), ("mps", "speedup_mps")):
        run = digest_run(root / folder / "results.json")
        if run is None:
            print(f"{key}: no results ({folder}/results.json missing)")
            continue
        digest[key] = run
        print(f"{key}: single process {run['single_samples_per_s']} samples/s ({run['device']})")
        for row in run["pipelines"]:
            print(f"  {row['name']} [{row['transport']}]: {row['samples_per_s']} samples/s, pipeline/single "
                  f"{row['vs_single']} (overheads, not overlap)" + "".join(f"; WARNING {f}" for f in row["flags"]))
            for i, b in enumerate(row["blocks"], start=1):
                print(f"    block {i}: " + ", ".join(f"{k} {v}" for k, v in b.items()))
    mps = root / "mps.txt"
    digest["mps_status"] = mps.read_text().strip() if mps.is_file() else "MPS: not tried"
    print(digest["mps_status"])
    return digest


if __name__ == "__main__":
    out = main(Path(sys.argv[1]))
    if len(sys.argv) > 2:
        Path(sys.argv[2]).write_text(json.dumps(out, indent=1) + "\n")
