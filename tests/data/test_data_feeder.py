"""Batches read ahead by DataLoader workers are the batches the step order defines: the same with any count."""
from __future__ import annotations

import pytest
import torch

from sedona_runtime.data.feeder import default_workers


CHECK = """
import json, torch
from sedona_runtime.data import BatchStream, DataConfig, build_data
from sedona_runtime.data.feeder import Task, eval_tasks, read_ahead
from sedona_runtime.data.stream import eval_raw_batch

def same(a, b):
    return torch.equal(a.x, b.x) and torch.equal(a.y, b.y) and (a.draws is None) == (b.draws is None) and (
        a.draws is None or all(torch.equal(a.draws[k], b.draws[k]) for k in a.draws))

bundle = build_data(DataConfig(dataset="synthetic", synthetic_size=96, image_size=8))
stream = BatchStream(bundle.train, 16, 3, bundle.augment)
plan = [Task("train", s) for s in range(2, 6)] + eval_tasks("test", 6, bundle.test, 10) + [Task("train", 6)]
kw = dict(stream=stream, splits={"test": bundle.test}, eval_batch_size=10)
alone, ahead = list(read_ahead(plan, workers=0, **kw)), list(read_ahead(plan, workers=2, **kw))
direct = [stream.raw(t.step) if t.split == "train" else eval_raw_batch(bundle.test, 10, t.index) for t in plan]
print(json.dumps({"n": len(ahead), "same": all(same(a, b) and same(a, c) for a, b, c in zip(ahead, alone, direct)),
                  "test_samples": sum(len(b.y) for t, b in zip(plan, ahead) if t.split == "test"),
                  "test_size": len(bundle.test), "plan": len(plan)}))
"""


@pytest.mark.timeout(120)
def test_workers_change_nothing_but_who_reads():
    """The same plan read by 2 worker processes, by this process, and batch by batch: the same batches.
    Run in a fresh interpreter: spawned workers leave multiprocessing's resource tracker behind."""
    import json
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", CHECK], capture_output=True, text=True, timeout=100)
    assert done.returncode == 0, done.stderr[-2000:]
    res = json.loads(done.stdout.strip().splitlines()[-1])
    assert res["same"] and res["n"] == res["plan"] and res["test_samples"] == res["test_size"]


def test_workers_only_where_reading_decodes():
    from sedona_runtime.data.base import TensorImageDataset

    images, labels = torch.zeros(8, 3, 8, 8, dtype=torch.uint8), torch.zeros(8, dtype=torch.int64)
    assert default_workers(TensorImageDataset(images, labels, (0.5,) * 3, (0.5,) * 3, 10), cores=16) == 0

    class Decoding(TensorImageDataset):
        decodes = True

    assert default_workers(Decoding(images, labels, (0.5,) * 3, (0.5,) * 3, 10), cores=16) == 8
    assert default_workers(Decoding(images, labels, (0.5,) * 3, (0.5,) * 3, 10), cores=2) == 1
