"""`python -m sedona_runtime.inspect`: table, JSON and clear errors."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from sedona_runtime.cli.inspect import main

HEADS = {"aux1", "aux2", "aux3", "aux4", "mlp_sr", "predsim"}


def test_json_for_resnet101_on_imagenet(capsys):
    assert main(["--arch", "resnet101", "--dataset", "imagenet", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out) == {"arch", "params", "flops", "layers"}
    assert out["arch"] == "resnet101" and out["params"] == 44_549_160
    assert len(out["layers"]) == 33
    first, last = out["layers"][0], out["layers"][-1]
    assert (first["index"], first["channels"], first["size"]) == (1, 256, 56)
    assert (last["index"], last["channels"], last["size"]) == (33, 2048, 7)
    for layer in out["layers"]:
        assert set(layer) == {"index", "channels", "size", "params", "flops", "heads"}
        assert set(layer["heads"]) == HEADS
        assert all(set(h) == {"params", "flops"} and h["params"] > 0 for h in layer["heads"].values())
    assert out["flops"] > sum(l["flops"] for l in out["layers"])  # plus the classifier


def test_dataset_picks_stem_size_and_classes(capsys):
    main(["--arch", "small", "--dataset", "tiny_imagenet", "--width", "0.5", "--json"])
    tiny = json.loads(capsys.readouterr().out)
    assert tiny["layers"][0]["size"] == 32 and tiny["layers"][0]["channels"] == 8  # 64px, 7x7 s2 stem
    main(["--arch", "small", "--dataset", "tiny_imagenet", "--width", "0.5", "--num-classes", "10", "--json"])
    ten = json.loads(capsys.readouterr().out)
    assert tiny["params"] - ten["params"] == 190 * (64 + 1)  # 200 vs 10 classes on a 64-wide FC


def test_table_output(capsys):
    assert main(["--arch", "small_resnet", "--dataset", "cifar10"]) == 0
    out = capsys.readouterr().out
    assert "small_resnet" in out and "total" in out and "aux4" in out and "predsim" in out


@pytest.mark.parametrize(
    "argv,message",
    [
        (["--arch", "resnet18", "--dataset", "imagenet"], "--arch: unknown architecture 'resnet18'"),
        (["--arch", "resnet50", "--dataset", "mnist"], "--dataset: unknown dataset 'mnist'"),
        (["--dataset", "imagenet"], "--arch"),
        (["--arch", "small", "--width", "0"], "--width"),
        (["--arch", "small", "--width", "wide"], "--width"),
        (["--arch", "small", "--num-classes", "0"], "--num-classes"),
    ],
)
def test_bad_input_is_one_error_line(argv, message, capsys):
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0]


def test_module_entry_point():
    # One subprocess (importing torch costs seconds on a shared 2-core box); errors are covered above.
    proc = subprocess.run(
        [sys.executable, "-m", "sedona_runtime.inspect", "--arch", "small", "--dataset", "digits", "--json"],
        capture_output=True, text=True, timeout=120, env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["arch"] == "small"


def test_vgg19_layer_two_is_seen_before_the_pool(capsys):
    # Issue 14, item 5: a head after layer 2 of a CIFAR VGG-19 sees the 32x32 map (the pool opens layer 3).
    assert main(["--arch", "vgg19", "--dataset", "cifar10", "--width", "0.25", "--json"]) == 0
    layers = json.loads(capsys.readouterr().out)["layers"]
    assert [(l["index"], l["size"]) for l in layers[:3]] == [(1, 32), (2, 32), (3, 16)]
    # Issue 22: the release's counts: convs without bias before batch norm (1,254,256 parameters in the
    # 16 layers at 0.25x), DGL's head pooled to 1x1 on the 2x2 maps of layers 9-15 (101,514, not 846,090).
    assert sum(l["params"] for l in layers) == 1_254_256
    assert [l["heads"]["mlp_sr"]["params"] for l in layers[8:15]] == [101_514] * 7


@pytest.mark.parametrize("arch", ["small", "vgg19", "resnet50"])
def test_digits_shows_the_network_training_uses(arch, capsys):
    # The embedded digits train at width 0.25 on the smallest input the network accepts (issue 20: inspect
    # showed 32x32 at width 1, another network).
    import torch

    from sedona_runtime.models import ModelConfig, build_model, layer_output_shapes
    from sedona_runtime.training.config import TrainConfig, resolve_defaults

    cfg = resolve_defaults(TrainConfig(model=ModelConfig(arch=arch, width=None)))
    with torch.device("meta"):
        shapes = layer_output_shapes(build_model(cfg.model), (3, cfg.data.size, cfg.data.size))
    assert main(["--arch", arch, "--dataset", "digits", "--json"]) == 0
    layers = json.loads(capsys.readouterr().out)["layers"]
    assert [(l["channels"], l["size"]) for l in layers] == [(c, h) for c, h, _ in shapes]
