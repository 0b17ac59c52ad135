"""Every measured row side by side: ms/step (median, min-max), speedup, samples/s, memory, algorithm, load."""
from __future__ import annotations

from typing import Any

from speedup_lib.load import robust_median
from speedup_lib.peers import ALGORITHM
from speedup_lib.planned import predicted_step

ALL_HEADER = ["run", "ms/step median", "min-max", "speedup", "samples/s", "peak MiB/process", "algorithm",
              "disturbed (other cores)", "predicted ms (error)"]


def summarize_row(name: str, algorithm: str, samples: list[dict], loads: list[dict], base_step: float | None,
                  batch: int, predicted_s: float | None = None) -> dict[str, Any]:
    """One row from its repetitions; the median is over the undisturbed ones when there are enough."""
    steps = [s["step_s"] for s in samples]
    disturbed = [bool(l["disturbed"]) for l in loads]
    step, quiet = robust_median(steps, disturbed)
    peaks = [peak_of(s) for s in samples if peak_of(s)]
    return {"name": name, "algorithm": algorithm, "step_s": step, "median_over_undisturbed": quiet,
            "min_s": min(steps), "max_s": max(steps), "samples_step_s": steps,
            "speedup": None if base_step is None else base_step / step, "samples_per_s": batch / step,
            "peak_memory_bytes": max(peaks) if peaks else None, "loads": loads,
            "disturbed": sum(disturbed), "repetitions": len(steps), "predicted_step_s": predicted_s}


def peak_of(sample: dict) -> float | None:
    """Peak memory of the largest process of one run (a pipeline run reports one per block)."""
    if sample.get("peak_memory_bytes"):
        return sample["peak_memory_bytes"]
    blocks = [b.get("peak_memory_bytes") or 0 for b in sample.get("blocks", [])]
    return max(blocks) if any(blocks) else None


def all_rows(rows: list[dict]) -> list[list[str]]:
    """The screen/README table of summarize_row records."""
    out = []
    for r in rows:
        spd = "-" if r["speedup"] is None else f"{r['speedup']:.2f}"
        mem = "-" if not r["peak_memory_bytes"] else f"{r['peak_memory_bytes'] / 2**20:.0f}"
        other = " ".join(f"{l['other_cores']:.2f}" for l in r["loads"])
        mark = "" if r["median_over_undisturbed"] else " (all)"
        p = r.get("predicted_step_s")
        pred = "-" if p is None else f"{p * 1e3:.0f} ({(p / r['step_s'] - 1) * 100:+.1f}%)"  # error vs the median
        out.append([r["name"], f"{r['step_s'] * 1e3:.1f}{mark}", f"{r['min_s'] * 1e3:.0f}-{r['max_s'] * 1e3:.0f}",
                    spd, f"{r['samples_per_s']:.0f}", mem, r["algorithm"],
                    f"{r['disturbed']}/{r['repetitions']} ({other})", pred])
    return out


def side_by_side(bc: Any, cm: Any, G: int, result: dict, base_runs: list, pipe_runs: dict, names: dict | None,
                 peers: list, reps: list, other: dict, loads: dict, preds: dict,
                 pipelined: dict[str, float] | None = None) -> list[dict]:
    """Every row with its load flags and its predicted step: the layout model's for backprop, the greedy,
    DDP and replica rows, `pipelined` (peer name -> seconds, planning.pipelined_backprop) for GPipe / 1F1B."""
    whole = [(1, cm.num_layers, None)]
    base = summarize_row("backprop (1 process)", ALGORITHM["backprop"], base_runs, loads["backprop"], None,
                         bc.batch_size, predicted_step(bc, cm, whole, 1, 1))
    base_step = base["step_s"]
    base["speedup"] = 1.0
    rows = [base]
    for (s, t), runs in pipe_runs.items():
        blocks = [tuple(b) for b in preds[s]["blocks"]]
        rows.append(summarize_row(f"greedy K={len(blocks)}: {(names or {}).get((s, t), s)}", ALGORITHM["greedy"],
                                  runs, loads[f"{s} [{t}]"], base_step, bc.batch_size,
                                  predicted_step(bc, cm, blocks, 1, len(blocks))))
    for peer in peers:
        pred = predicted_step(bc, cm, whole, G, G) if peer.kind == "ddp" else (pipelined or {}).get(peer.name)
        rows.append(summarize_row(peer.name, ALGORITHM[peer.kind], other[peer.name], loads[peer.name], base_step,
                                  bc.batch_size, pred))
    for row in reps:
        blocks = whole if row.blocks == 1 else [tuple(b) for b in preds[row.decoupling]["blocks"]]
        rows.append(summarize_row(row.name, ALGORITHM["replicas" if row.blocks == 1 else "greedy"],
                                  other[row.name], loads[row.name], base_step, bc.batch_size,
                                  predicted_step(bc, cm, blocks, row.replicas, G)))
    return rows
