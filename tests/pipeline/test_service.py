"""The coordinator's Service thread: it logs and commits while the feed's put is blocked by backpressure, commits a
step only after that step's validation is settled, and a failure on it stops the run with its one line (never a
hang). In-process: the collector's tables are filled directly, no block process is started."""
from __future__ import annotations

import json
import threading
import time
from types import SimpleNamespace

import pytest
import torch

from sedona_runtime.data.feeder import Task
from sedona_runtime.pipeline import checkpoints as ckpt
from sedona_runtime.pipeline.channel import Aborted
from sedona_runtime.pipeline.collector import Collector
from sedona_runtime.pipeline.coordinator import Coordinator, PipelineFailed, PipelineReporter
from sedona_runtime.pipeline.messages import Batch, Marker, Report
from sedona_runtime.pipeline.stop import STOP
from sedona_runtime.training.config import TrainConfig
from sedona_runtime.training.run_dir import RunDir

pytestmark = pytest.mark.timeout(60)
K = 2


class _NoInbox:
    def get(self, timeout):  # pragma: no cover - the collector's thread is never started here
        raise AssertionError


class _BlockingOut:
    """A channel end whose put of training step `blocks_at` waits, as backpressure does (bounded, and ended by
    STOP like every pipeline wait), until `release` is set."""

    def __init__(self, blocks_at: int) -> None:
        self.blocks_at, self.release, self.blocked = blocks_at, threading.Event(), threading.Event()

    def put(self, item, timeout, ready=None) -> None:
        if isinstance(item, Batch) and item.step == self.blocks_at:
            self.blocked.set()
            STOP.wait_for(self.release.is_set, 20.0, "the receiver to accept an item")

    def close(self, timeout) -> None:
        pass


def _coordinator(tmp_path, out) -> Coordinator:
    coord = Coordinator.__new__(Coordinator)  # the feed's and the service's state only: no group, no processes
    coord.cfg = TrainConfig(steps=4, batch_size=8, lr=0.1, final_lr=0.001, eval_interval=2, checkpoint_interval=2,
                            log_interval=2)
    coord.start_step, coord.K, coord.R, coord.timeout, coord.fed = 0, K, 1, 20.0, 0
    coord.best_val = coord.best_step = None
    coord.run_dir = RunDir(tmp_path / "run")
    coord.run_dir.checkpoints.mkdir(parents=True)
    coord.reporter, coord.service, coord.child_failure = PipelineReporter(), None, lambda: None
    coord.collector = Collector(_NoInbox(), K)
    coord.out, coord.outs = out, [out]
    return coord


def _report(coord, kind: str, step: int, data=None) -> None:
    for block in range(1, K + 1):
        if kind == "saved":
            path = ckpt.block_path(coord.run_dir.checkpoints, step, block)
            path.parent.mkdir(parents=True, exist_ok=True)
            torch.save({}, path)
        elif kind == "candidate":
            path = ckpt.candidate_dir(coord.run_dir.checkpoints, step) / f"block{block}.pt"
            path.parent.mkdir(parents=True, exist_ok=True)
            torch.save({}, path)
        coord.collector._record(Report(block, kind, step, data(block) if callable(data) else data))


def _metrics(block: int) -> dict:
    return {"step": 2, "loss": 0.5 * block, "samples_per_s": 100.0 * block}


def _logits(block: int) -> dict:
    return {"split": "val", "index": 0, "count": 1, "logits": torch.eye(3)[[0, 1, 2, 0]],
            "y": torch.tensor([0, 1, 2, 1]) if block == K else None}


def test_metrics_and_commits_go_on_while_a_put_is_blocked(tmp_path):
    out = _BlockingOut(blocks_at=3)
    coord = _coordinator(tmp_path, out)
    plan = [Task("train", 0), Task("train", 1), Marker("checkpoint", 2), Task("train", 2), Task("train", 3)]
    seen: dict = {}

    def blocks_report() -> None:  # what the blocks send while the coordinator waits for room
        try:
            assert out.blocked.wait(10.0)
            _report(coord, "metrics", 2, _metrics)
            _report(coord, "saved", 2)
            deadline = time.monotonic() + 10.0
            while time.monotonic() < deadline and not seen:
                if ckpt.committed(coord.run_dir.checkpoints) and coord.run_dir.metrics.is_file():
                    seen.update(record=json.loads(coord.run_dir.metrics.read_text().splitlines()[0]),
                                commit=ckpt.committed(coord.run_dir.checkpoints), still_blocked=not out.release.is_set())
                time.sleep(0.02)
        finally:
            out.release.set()

    helper = threading.Thread(target=blocks_report)
    STOP.clear()
    coord.start_service(plan)
    try:
        helper.start()
        fake = [SimpleNamespace(x=torch.zeros(1), y=torch.zeros(1), draws=None)] * 4
        assert coord.feed(plan, fake) == 4
    finally:
        out.release.set()
        helper.join(15.0)
        assert coord.service.stop(timeout=5.0)
    assert seen, "nothing was logged or committed while the put was blocked"
    assert seen["still_blocked"] and seen["commit"]["step"] == 2
    # The learning rate of step 2's record: the one its last step (index 1) trained with, from the schedule.
    assert seen["record"]["step"] == 2 and seen["record"]["lr"] == coord.schedule.lr(1)
    assert seen["record"]["loss"] == [0.5, 1.0] and seen["record"]["samples_per_s"] == 100.0


def test_a_checkpoint_is_committed_only_after_its_steps_validation_is_settled(tmp_path):
    coord = _coordinator(tmp_path, _BlockingOut(blocks_at=-1))
    from sedona_runtime.pipeline.service import Service

    service = Service(coord.collector, coord.run_dir, K, coord.schedule, coord.reporter, validations=[2, 4])
    _report(coord, "saved", 2)  # every block saved step 2 before the validation of step 2 was counted
    service.run_pass()
    assert service.committed is None
    _report(coord, "logits", 2, _logits)
    service.run_pass()
    assert service.committed is None  # counted, but not every block's candidate weights are written yet
    _report(coord, "candidate", 2)
    service.run_pass()
    record = ckpt.committed(coord.run_dir.checkpoints)
    assert service.committed == 2 and (record["best_step"], record["best_val"]) == (2, 0.25)
    assert json.loads((coord.run_dir.checkpoints / ckpt.BEST).read_text())["step"] == 2  # promoted first


def test_a_failure_on_the_service_thread_stops_a_blocked_put_with_its_one_line(tmp_path):
    out = _BlockingOut(blocks_at=3)
    coord = _coordinator(tmp_path, out)
    coord.run_dir.metrics.mkdir()  # metrics.jsonl cannot be written: the first record fails
    plan = [Task("train", 0), Task("train", 1), Task("train", 2), Task("train", 3)]
    helper = threading.Thread(target=lambda: out.blocked.wait(10.0) and _report(coord, "metrics", 2, _metrics))
    STOP.clear()
    coord.start_service(plan)
    t0 = time.monotonic()
    try:
        helper.start()
        fake = [SimpleNamespace(x=torch.zeros(1), y=torch.zeros(1), draws=None)] * 4
        with pytest.raises(Aborted) as info:
            coord.feed(plan, fake)
        assert time.monotonic() - t0 < 10.0  # stopped by the service's failure, not by the put's own timeout
        line = coord._root_cause(info.value)
        assert "metrics.jsonl" in line and "\n" not in line and line == coord.service.error
        with pytest.raises(PipelineFailed, match="metrics.jsonl"):
            coord._check()
    finally:
        STOP.clear()
        out.release.set()
        helper.join(10.0)
        assert coord.service.stop(timeout=5.0)
