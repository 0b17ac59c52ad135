"""GPU check 2: a block's training step without device synchronisations, against the old per-phase ones.

Builds the shipped ResNet-152 K = 4 blocks (synthetic data), and for every block times STEPS steps
(a) as the runner is (phases timed with CUDA events read later, loss checked on the device) and
(b) with a torch.cuda.synchronize() at every phase boundary, as the runner did before. (c) runs three
steps under torch.cuda.set_sync_debug_mode("error"), which raises on any synchronising call; for block 1
the step starts from a raw uint8 batch with its augmentation draws (pinned, as the receiving thread or the
trainer leaves them), through Preprocess on the device, as the pipeline's block 1 and the trainer do (issue
21, item 1), and the report's lazy loss / finiteness reads (item 7) run in the same window.

    python benchmarks/gpu/step_check.py [--dry-cpu]      # one JSON line per block on stdout
"""
from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from sedona_runtime.training.block import BlockRunner  # noqa: E402
from sedona_runtime.training.config import TrainConfig, resolve_defaults  # noqa: E402
from sedona_runtime.data.preprocess import RawBatch  # noqa: E402
from sedona_runtime.training.greedy import build_parts, make_stream  # noqa: E402
from sedona_runtime.training.phase_clock import PhaseClock  # noqa: E402

DRY = "--dry-cpu" in sys.argv
dev = torch.device("cpu" if DRY else "cuda:0")
cfg = TrainConfig()
cfg.data.dataset = "synthetic"
cfg.data.image_size = int(os.environ.get("IMG", "16" if DRY else "64"))
cfg.model.arch = "small" if DRY else "resnet152"
cfg.decoupling = "dgl:2" if DRY else "resnet152_k4.json"
cfg.batch_size = int(os.environ.get("BS", "8" if DRY else "64"))
cfg.steps, cfg.device, cfg.out_dir = 1000, "cpu", "/tmp/unused"
parts = build_parts(resolve_defaults(cfg))
STEPS = int(os.environ.get("STEPS", "3" if DRY else "30"))
x = torch.randn(cfg.batch_size, 3, cfg.data.image_size, cfg.data.image_size)
y = torch.randint(0, parts.cfg.model.num_classes, (cfg.batch_size,))
if not DRY:
    x, y = x.pin_memory(), y.pin_memory()
stream = make_stream(parts)
preprocess = stream.preprocess  # one object for the run, as the trainer and block 1 hold it
raw = stream.raw(0)
if not DRY:
    raw = RawBatch(raw.x.pin_memory(), raw.y.pin_memory(),
                   {k: v.pin_memory() for k, v in raw.draws.items()} if raw.draws else None)


def _sync_now(self):  # the old runner: a device-wide synchronize before every clock reading
    if not DRY:
        torch.cuda.synchronize()
    return _real_now(self)


_real_now = PhaseClock._now


def _window(runner: BlockRunner, x: torch.Tensor) -> tuple[float, torch.Tensor]:
    for _ in range(3):
        out = runner.train_step(x, y).out
    if not DRY:
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(STEPS):
        out = runner.train_step(x, y).out
    if not DRY:
        torch.cuda.synchronize()
    return round(1e3 * (time.perf_counter() - t0) / STEPS, 3), out


for i, block in enumerate(parts.blocks, start=1):
    runner = BlockRunner(block, parts.cfg, dev)
    row: dict = {"block": i, "input": list(x.shape), "amp": runner.amp}
    try:
        row["ms_per_step_no_sync"], out = _window(runner, x)
        PhaseClock._now = _sync_now
        row["ms_per_step_sync_every_phase"], _ = _window(runner, x)
        PhaseClock._now = _real_now
        row["ms_per_step_no_sync_again"], _ = _window(runner, x)
        best = min(row["ms_per_step_no_sync"], row["ms_per_step_no_sync_again"])
        row["sync_overhead_pct"] = round(100 * (row["ms_per_step_sync_every_phase"] / best - 1), 1)
        if not DRY:
            torch.cuda.set_sync_debug_mode("error")
        if i == 1:
            runner.train_step(preprocess(raw, dev), raw.y)  # warm: the constants go to the device once
        try:
            for _ in range(3):
                if i == 1:
                    runner.train_step(preprocess(raw, dev), raw.y)
                else:
                    runner.train_step(x, y)
                runner.check_finite(wait=False)
                runner.last_loss()
            row["synchronising_calls_in_a_step"] = "none" + (" (with preprocessing)" if i == 1 else "")
        except RuntimeError as exc:
            row["synchronising_calls_in_a_step"] = str(exc).splitlines()[0][:200]
        finally:
            if not DRY:
                torch.cuda.set_sync_debug_mode("default")
        row["peak_allocated_MiB"] = round(runner.memory()["peak"] / 2**20, 1)
        row["peak_reserved_MiB"] = round(runner.memory()["reserved"] / 2**20, 1)
        row["sent_dtype"] = str(out.dtype)
    except Exception as exc:  # noqa: BLE001 - report and go on
        row["error"] = f"{type(exc).__name__}: {exc}"[:300]
        PhaseClock._now = _real_now
    print(json.dumps(row), flush=True)
    x = out.detach().float().cpu()
    if not DRY:
        x = x.pin_memory()
