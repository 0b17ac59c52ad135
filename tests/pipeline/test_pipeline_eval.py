"""Evaluation flows through the blocks: a long validation never stalls a wait; the coordinator holds no weights."""
from __future__ import annotations

import json
import sys
import textwrap

import pytest

from pipeline_helpers import ROOT, env, kill_session

pytestmark = [pytest.mark.multiprocess, pytest.mark.timeout(150)]

USER_CODE = textwrap.dedent('''
    """A network whose first layer takes 0.4 s per batch when evaluating, and a small data set."""
    import time

    import torch
    from torch import nn
    from torch.utils.data import Dataset


    class SlowWhenEvaluating(nn.Module):
        def forward(self, x):
            if not self.training:
                time.sleep(0.4)
            return x


    def build(num_classes):
        return nn.Sequential(
            nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), SlowWhenEvaluating()),
            nn.Sequential(nn.Conv2d(8, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU()),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, num_classes))


    class Tiny(Dataset):
        def __init__(self, n, seed):
            g = torch.Generator().manual_seed(seed)
            self.x = (torch.rand(n, 3, 8, 8, generator=g) * 255).to(torch.uint8)
            self.y = [i % 2 for i in range(n)]

        def __len__(self):
            return len(self.y)

        def __getitem__(self, i):
            return self.x[i], self.y[i]


    def data():
        return Tiny(64, 0), Tiny(24, 1), Tiny(8, 2)
''')

ARGS = ["--blocks", "2", "--decoupling", "dgl:2", "--model", "slow_eval.py:build", "--dataset", "slow_eval.py:data",
        "--steps", "6", "--batch-size", "8", "--eval-interval", "0", "--eval-batch-size", "2", "--devices", "cpu",
        "--threads", "1", "--plain"]


def test_a_long_validation_completes_and_the_coordinator_holds_no_weights(tmp_path):
    """12 validation batches of 0.4 s each (4.8 s) under --timeout 3: no single wait comes near it, because
    the validation travels through the blocks batch by batch with the training items. The coordinator
    (launch/greedy.py in this process) fails at once if it loads a state dict, reads a weights file or
    initialises CUDA: the run still completes, its figures counted from the blocks' logits."""
    import subprocess

    (tmp_path / "slow_eval.py").write_text(USER_CODE)
    guard = textwrap.dedent(f'''
        import runpy, sys, torch

        def refuse(what):
            def _refused(*args, **kwargs):
                raise AssertionError(f"the coordinator called {{what}}")
            return _refused

        torch.nn.Module.load_state_dict = refuse("Module.load_state_dict")
        torch.load = refuse("torch.load")
        torch.cuda._lazy_init = refuse("CUDA initialisation")
        sys.argv = ["launch/greedy.py", *sys.argv[1:]]
        runpy.run_path({str(ROOT / "launch" / "greedy.py")!r}, run_name="__main__")
    ''')
    proc = subprocess.Popen([sys.executable, "-c", guard, *ARGS, "--timeout", "3", "--out", str(tmp_path / "run")],
                            cwd=tmp_path, env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=120)
    finally:
        kill_session(proc)
    assert proc.returncode == 0, err[-3000:]
    assert "test accuracy" in out and "the coordinator called" not in err
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["val"]["samples"] == 24 and summary["test"]["samples"] == 8
    assert len(summary["test"]["block_top1_error"]) == 2  # every block's own head, counted by the coordinator
