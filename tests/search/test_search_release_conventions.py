"""The documented size of the release's label smoothing (tools/measure_release_conventions.py), pinned."""
from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import pytest
import torch

TOOL = Path(__file__).resolve().parents[2] / "tools" / "measure_release_conventions.py"


def _tool():
    spec = importlib.util.spec_from_file_location("measure_release_conventions", TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_release_smoothing_targets_and_the_documented_figures():
    tool = _tool()
    logits = torch.zeros(1, 10, dtype=torch.float64, requires_grad=True)
    # Uniform logits: the loss is log C whatever the targets, and the gradient is softmax - target.
    loss = tool.release_smoothing_loss(logits, torch.tensor([3]), 0.1)
    assert loss.item() == pytest.approx(math.log(10.0), rel=1e-12)
    grad, = torch.autograd.grad(loss, logits)
    target = torch.full((10,), 0.1 / 9, dtype=torch.float64)
    target[3] = 0.9
    assert torch.allclose(grad[0], 0.1 - target, rtol=0, atol=1e-15)
    # The figures SearchConfig, TrainConfig and the README quote (eps 0.1; seeded random logits).
    r = tool.label_smoothing()
    assert r["C=10"]["torch_targets"] == pytest.approx([0.91, 0.01]) and r["C=10"]["release_targets"][1] == 0.1 / 9
    assert round(r["C=10"]["grad_rel_diff"], 3) == 0.012 and round(r["C=10"]["loss_rel_diff"], 6) == 8.3e-5
    assert round(r["C=100"]["grad_rel_diff"], 4) == 0.0011 and r["C=10"]["grad_cosine"] > 0.99999
