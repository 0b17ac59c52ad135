"""Timed runs for the speedup benchmark: single-process backprop and the K-process greedy pipeline."""
from __future__ import annotations

import dataclasses
import os
import tempfile
import time
from dataclasses import dataclass
from typing import Any

import torch

from sedona_runtime.data.config import DataConfig
from sedona_runtime.models import ModelConfig
from sedona_runtime.training.config import TrainConfig, resolve_defaults


@dataclass
class BenchConfig:
    """What every measured run shares: model, batch, data, step counts and repetitions."""

    arch: str = "resnet101"   # the paper's headline network (Table 3); 33 layers allow a balanced cut
    width: float = 0.25
    image_size: int = 32
    num_classes: int = 10
    batch_size: int = 32
    warmup: int = 3          # steps run before the timed window (allocator, caches, pipeline fill)
    steps: int = 20          # timed steps
    repeats: int = 3         # repetitions of every run; medians are reported
    blocks: int = 2          # K
    queue_depth: int = 2
    transport: str = "rpc"   # the pipeline's activation transport: rpc | p2p
    seed: int = 0
    device: str = "cpu"      # "cpu": one core set per process; "cuda": one GPU per block
    compile: bool = False    # torch.compile every block's forward and head (TrainConfig.compile), both sides
    replicas: int = 1        # R of a pipeline run (launch/greedy.py --replicas): the runtime's DDP / K x R rows

    def validate(self) -> None:
        """Both timed windows open at the end of step `warmup`, so there must be one."""
        from sedona_runtime.utils.errors import SedonaError

        if self.steps < 2 or self.warmup < 1 or self.repeats < 1 or self.blocks < 2:
            raise SedonaError("need --steps >= 2, --warmup >= 1, --repeats >= 1 and --blocks >= 2")


def train_config(bc: BenchConfig, decoupling: str, out_dir: str) -> TrainConfig:
    """The training run a measurement executes: synthetic data, no augmentation, no evaluation."""
    cfg = TrainConfig(
        model=ModelConfig(arch=bc.arch, width=bc.width, num_classes=bc.num_classes),
        # Synthetic in-memory data without augmentation: the benchmark times training, not decoding.
        data=DataConfig(dataset="synthetic", image_size=bc.image_size, augment=False, seed=bc.seed,
                        synthetic_size=max(256, 2 * bc.batch_size), val_fraction=0.0,
                        synthetic_classes=bc.num_classes),
        decoupling=decoupling, retarget=True, steps=bc.warmup + bc.steps, batch_size=bc.batch_size,
        eval_interval=0, checkpoint_interval=0, log_interval=max(1, bc.warmup + bc.steps),
        device=bc.device, seed=bc.seed, out_dir=out_dir, eval_batch_size=256, compile=bc.compile,
    )
    return resolve_defaults(cfg)


def core_sets(k: int) -> list[list[int]]:
    """K disjoint, equal core sets from this process's allowed cores (one each on a 2-core machine)."""
    import psutil

    cores = sorted(psutil.Process().cpu_affinity())
    per = max(1, len(cores) // k)
    return [cores[i * per:(i + 1) * per] or cores[-per:] for i in range(k)]


def time_baseline(bc: BenchConfig, cores: list[int]) -> dict[str, Any]:
    """Single-process end-to-end backprop on one core set (or one GPU): timed step seconds."""
    import psutil

    from sedona_runtime.training.block import BlockRunner
    from sedona_runtime.training.greedy import build_parts, make_stream

    proc = psutil.Process()
    saved_affinity, saved_threads = proc.cpu_affinity(), torch.get_num_threads()
    with tempfile.TemporaryDirectory() as tmp:
        cfg = train_config(bc, "backprop", tmp)
        parts = build_parts(cfg)
        (block,) = parts.blocks
        runner = BlockRunner(block, parts.cfg, parts.device)
        stream = make_stream(parts)
        batches = [stream.batch(s) for s in range(cfg.steps)]  # data made before timing, as in the pipeline feed
        try:
            if parts.device.type == "cpu":
                proc.cpu_affinity(cores)
                torch.set_num_threads(len(cores))
            phases: dict[str, float] = {}
            stamps = []
            for step, (x, y) in enumerate(batches):
                res = runner.train_step(x, y)
                if parts.device.type == "cuda" and step in (bc.warmup - 1, len(batches) - 1):
                    torch.cuda.synchronize()  # the host runs ahead of a CUDA step: the window is device time
                stamps.append(time.perf_counter())
                if step >= bc.warmup:
                    for k, v in res.timings.items():
                        phases[k] = phases.get(k, 0.0) + v
        finally:
            proc.cpu_affinity(saved_affinity)
            torch.set_num_threads(saved_threads)
    window = stamps[-1] - stamps[bc.warmup - 1]  # from the end of the last warm-up step: `steps` steps
    return {"wall_s": window, "step_s": window / bc.steps, "phases_s": {k: v / bc.steps for k, v in phases.items()},
            "peak_memory_bytes": runner.peak_memory}


def time_pipeline(bc: BenchConfig, decoupling: str, timeout: float = 900.0) -> dict[str, Any]:
    """The K-process greedy pipeline, run from a fresh process (see child.py): timed window and profile."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    from sedona_runtime.utils.errors import SedonaError

    with tempfile.TemporaryDirectory() as tmp:
        config, out = Path(tmp) / "bench.json", Path(tmp) / "result.json"
        config.write_text(json.dumps(dataclasses.asdict(bc)))
        child = Path(__file__).with_name("child.py")
        try:
            proc = subprocess.run([sys.executable, str(child), str(config), decoupling, str(out)],
                                  capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise SedonaError(f"pipeline run of {decoupling!r} did not finish within {timeout:.0f}s") from None
        if proc.returncode != 0 or not out.exists():
            tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-5:])
            raise SedonaError(f"pipeline run of {decoupling!r} failed (exit {proc.returncode}):\n{tail}")
        return json.loads(out.read_text())


def measure_pipeline(bc: BenchConfig, decoupling: str) -> dict[str, Any]:
    """Run the pipeline in this process (once per process: RPC cannot be joined twice)."""
    from sedona_runtime.pipeline.config import PipelineConfig
    from sedona_runtime.pipeline.launcher import World, run_pipeline

    with tempfile.TemporaryDirectory() as tmp:
        cfg = train_config(bc, decoupling, os.path.join(tmp, "run"))
        pcfg = PipelineConfig(train=cfg, blocks=bc.blocks, queue_depth=bc.queue_depth, replicas=bc.replicas,
                              devices="cpu" if bc.device == "cpu" else "auto", timeline=True, transport=bc.transport)
        summary = run_pipeline(pcfg, world=World(size=1, rank=0, local_rank=0, local_size=1))
    return pipeline_figures(bc, summary)


def steady_window(bc: BenchConfig, timeline: dict[int, list]) -> tuple[float, int, bool]:
    """(seconds per step, steps the figure rests on, steady) of the pipeline in steady state.

    The window opens when the last block completes step `warmup` (every block is past warm-up) and
    closes when block 1 completes its last step (after that the pipeline only drains). Inside it, the
    pipeline's step time is the largest mean gap between consecutive completions of any one block:
    a block that drains items queued before the window opened completes them faster than the
    pipeline can produce them (counting the last block's completions alone reported efficiencies
    above 1), but the bottleneck block completes at the pipeline's true pace. `steady` is False when
    some block completes fewer than three steps inside the window: the figure then falls back to the
    last block's whole run after warm-up, flagged.
    """
    K = len(timeline)
    done = {i: {int(step): end for step, _, end in timeline[i]} for i in timeline}
    end = bc.warmup + bc.steps
    t_open, t_close = done[K][bc.warmup], done[1][end]
    gaps, counted = [], []
    for i in range(1, K + 1):
        inside = sorted(t for s, t in done[i].items() if s > bc.warmup and t_open < t <= t_close)
        counted.append(len(inside))
        if len(inside) >= 3:
            gaps.append((inside[-1] - inside[0]) / (len(inside) - 1))
    if len(gaps) == K:
        return max(gaps), min(counted) - 1, True
    return (done[K][end] - t_open) / bc.steps, bc.steps, False


def pipeline_figures(bc: BenchConfig, summary: dict) -> dict[str, Any]:
    """Timed window and per-block profile of one pipeline run's summary."""
    pipe = summary["pipeline"]
    timeline = {int(k): v for k, v in pipe["timeline"].items()}
    K = len(timeline)
    end = bc.warmup + bc.steps
    step_s, counted, steady = steady_window(bc, timeline)
    window = step_s * counted
    blocks = []
    for i in range(1, K + 1):
        stats = pipe["blocks"][i - 1]  # BlockStats of the whole run (pipeline/metrics.py)
        spans = [(s, a, b) for s, a, b in timeline[i] if bc.warmup < s <= end]
        busy = sum(b - a for _, a, b in spans)
        steps = max(1, stats["step"])
        blocks.append({
            "block": i,
            "step_s": busy / max(1, len(spans)),  # mean busy time per step after warm-up
            "phases_s": {k: v / max(1, stats["phase_steps"]) for k, v in stats["phase_s"].items()},
            "wait_in_s_per_step": stats["total_wait_in_s"] / steps,
            "wait_out_s_per_step": stats["total_wait_out_s"] / steps,
            "transfer_s_per_step": stats["total_transfer_s"] / steps,
            "queue_depth_mean": stats["queue_depth_mean"],
            "busy_frac": min(1.0, (busy / max(1, len(spans))) / step_s),
            "peak_memory_bytes": stats["peak_memory"],
            "peak_reserved_bytes": stats.get("peak_reserved", 0),
        })
    return {"wall_s": window, "step_s": step_s, "window_steps": counted, "steady": steady, "blocks": blocks,
            "timeline": {str(i): timeline[i] for i in timeline}}
