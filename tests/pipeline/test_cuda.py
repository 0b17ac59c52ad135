"""CUDA paths of the pipeline: the stream-ordered hand-off, host staging, a block step that never waits for
the device, and pipelined runs on one GPU with both transports. Skipped without a CUDA device."""
from __future__ import annotations

import json

import pytest
import torch

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]

SLEEP_CYCLES = 50_000_000  # ~25-35 ms of GPU spinning: a producer that is late on purpose


def test_handoff_orders_the_consumer_after_a_late_producer():
    from sedona_runtime.pipeline import cuda_handoff
    from sedona_runtime.pipeline.messages import Batch

    producer = torch.cuda.Stream()
    with torch.cuda.stream(producer):  # as a transport's receive stream
        x = torch.empty(1 << 24, device="cuda", dtype=torch.float16)
        torch.cuda._sleep(SLEEP_CYCLES)
        x.fill_(3.0)
        item = cuda_handoff.record_arrival(Batch(0, x, torch.arange(4)))
    del x
    got = cuda_handoff.on_take(item)  # on the default stream, as the block's thread
    assert bool((got.x == 3.0).all())  # the read is ordered after the late fill, no synchronize needed


def test_host_staging_waits_for_the_ready_event_only():
    from sedona_runtime.pipeline import cuda_handoff

    x = torch.empty(1 << 22, device="cuda")
    torch.cuda._sleep(SLEEP_CYCLES)
    x.fill_(7.0)
    ready = torch.cuda.Event()
    ready.record()
    host, copied = cuda_handoff.HostStager().stage({"x": x}, ready)
    copied.synchronize()
    assert host["x"].is_pinned() and bool((host["x"] == 7.0).all())


def _runner(lr: float = 0.05):
    from sedona_runtime.models import ModelConfig
    from sedona_runtime.training.block import BlockRunner
    from sedona_runtime.training.config import TrainConfig, resolve_defaults
    from sedona_runtime.training.greedy import build_parts

    cfg = TrainConfig(model=ModelConfig(arch="small", width=0.5), decoupling="dgl:2", steps=20, batch_size=32,
                      lr=lr, device="cpu", out_dir="/tmp/unused")
    cfg.data.dataset, cfg.data.image_size = "synthetic", 16
    parts = build_parts(resolve_defaults(cfg))
    x, y = torch.randn(32, 3, 16, 16).pin_memory(), torch.randint(0, 10, (32,)).pin_memory()
    return BlockRunner(parts.blocks[0], parts.cfg, torch.device("cuda")), x, y


def test_a_block_step_never_waits_for_the_device():
    runner, x, y = _runner()
    for _ in range(3):  # warm-up: allocator, cuDNN autotuning, pinned staging
        runner.train_step(x, y)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")  # any synchronising CUDA call raises
    try:
        for _ in range(5):
            res = runner.train_step(x, y)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    torch.cuda.synchronize()
    assert res.loss > 0
    later = runner.train_step(x, y)  # the phases of the steps above are read from their events by now
    assert later.timed_steps >= 1 and set(later.timings) == {"forward", "head", "backward", "optimizer"}
    assert runner.memory()["reserved"] >= runner.memory()["peak"] > 0


def test_a_non_finite_loss_is_caught_before_any_checkpoint():
    from sedona_runtime.training.block import NonFiniteLossError

    runner, x, y = _runner(lr=1e12)
    with pytest.raises(NonFiniteLossError, match="non-finite loss in block 1/2 at step"):
        for _ in range(20):
            runner.train_step(x, y)
            runner.check_finite()


@pytest.mark.multiprocess
@pytest.mark.timeout(240)
@pytest.mark.parametrize("transport", ["rpc", "p2p"])
def test_two_blocks_on_one_gpu_train_to_the_end(tmp_path, transport):
    from pipeline_helpers import RUN_ARGS, kill_session, start

    args = list(RUN_ARGS)
    for option, value in (("--blocks", "2"), ("--decoupling", "dgl:2"), ("--devices", "cuda:0,cuda:0")):
        args[args.index(option) + 1] = value
    proc = start([*args, "--transport", transport, "--out", str(tmp_path / "run")])
    try:
        out, err = proc.communicate(timeout=200)
    finally:
        kill_session(proc)
    assert proc.returncode == 0, err[-3000:]
    assert "share cuda:0" in out  # said once
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["peak_memory_kind"] == "cuda_max_allocated"
    assert all(r >= a > 0 for r, a in zip(summary["peak_reserved_bytes"], summary["peak_memory_bytes"]))


def test_preprocessing_and_a_block_step_never_wait_for_the_device():
    from sedona_runtime.data.augment import PadCropFlip
    from sedona_runtime.data.preprocess import Preprocess, RawBatch

    runner, _, y = _runner()
    augment = PadCropFlip(2)
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (32, 3, 16, 16), dtype=torch.uint8, generator=g)
    draws = {k: v.pin_memory() for k, v in augment.draw(32, 16, 16, g).items()}
    raw = RawBatch(x.pin_memory(), y, draws)
    pre = Preprocess((0.5, 0.5, 0.5), (0.25, 0.25, 0.25), augment)
    for _ in range(3):  # warm-up; the constants go to the device here, once
        runner.train_step(pre(raw, "cuda"), y)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for _ in range(5):
            runner.train_step(pre(raw, "cuda"), y)
            runner.check_finite(wait=False)  # what a report does: lazy, no device read
            runner.last_loss()
    finally:
        torch.cuda.set_sync_debug_mode("default")
    torch.cuda.synchronize()
    assert runner.last_loss() > 0


def test_host_items_reach_the_gpu_on_the_copy_stream_with_an_arrival_event():
    from sedona_runtime.pipeline import cuda_handoff
    from sedona_runtime.pipeline.messages import Batch

    x, y = torch.randn(1 << 20).pin_memory(), torch.arange(8)  # y pageable, as TensorPipe hands it
    item = cuda_handoff.on_arrival(Batch(0, x, y), torch.device("cuda"))
    assert isinstance(item, cuda_handoff.Arrival) and all(t.is_cuda for t in (item.item.x, item.item.y))
    got = cuda_handoff.on_take(item)  # the default stream waits for the copy stream's event
    assert torch.equal(got.x.cpu(), x) and torch.equal(got.y.cpu(), y)


def test_a_channels_last_output_is_contiguous_before_ready_and_staged_as_written():
    from sedona_runtime.pipeline import cuda_handoff
    from sedona_runtime.training.block import BlockRunner

    _, x, y = _runner()
    from sedona_runtime.models import ModelConfig
    from sedona_runtime.training.config import TrainConfig, resolve_defaults
    from sedona_runtime.training.greedy import build_parts

    c = TrainConfig(model=ModelConfig(arch="small", width=0.5), decoupling="dgl:2", steps=20, batch_size=32,
                    lr=0.05, device="cpu", out_dir="/tmp/unused", channels_last=True, amp=False)
    c.data.dataset, c.data.image_size = "synthetic", 16
    parts = build_parts(resolve_defaults(c))
    nhwc = BlockRunner(parts.blocks[0], parts.cfg, torch.device("cuda"))
    res = nhwc.train_step(x, y)
    assert res.out.is_contiguous()
    host, copied = cuda_handoff.HostStager().stage(res.out, res.ready)  # waits for `ready` only
    copied.synchronize()
    assert torch.equal(host, res.out.cpu())  # the bytes after ready are the output's, in NCHW order


def test_cudnn_autotunes_fixed_shapes_unless_told_not_to():
    from sedona_runtime.training.block import BlockRunner

    _runner()
    assert torch.backends.cudnn.benchmark
    from sedona_runtime.models import ModelConfig
    from sedona_runtime.training.config import TrainConfig, resolve_defaults
    from sedona_runtime.training.greedy import build_parts

    c = TrainConfig(model=ModelConfig(arch="small", width=0.5), decoupling="dgl:2", steps=20, batch_size=32,
                    lr=0.05, device="cpu", out_dir="/tmp/unused", cudnn_benchmark=False)
    c.data.dataset, c.data.image_size = "synthetic", 16
    try:
        parts = build_parts(resolve_defaults(c))
        BlockRunner(parts.blocks[0], parts.cfg, torch.device("cuda"))
        assert not torch.backends.cudnn.benchmark
    finally:
        torch.backends.cudnn.benchmark = True
