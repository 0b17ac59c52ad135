"""Every export format, loaded the way the README shows, gives `evaluate`'s logits on the same batch; pt2 and
torchvision load in a Python where sedona_runtime cannot be imported.

Tolerance: none (torch.equal). Each loader runs the very kernels of `evaluate` in the same order on one CPU
thread: the same float32 preprocessing ops (/ 255, - mean, / std), the same modules with the same weights;
torch.export records aten ops that dispatch to the same CPU kernels. Any difference would be a real one.
"""
from __future__ import annotations

import json

import pytest
import torch

from conftest import logits_of, reference, run_without_package
from sedona_runtime.cli.evaluate import main as evaluate_main
from sedona_runtime.cli.export import main as export_main
from sedona_runtime.trained.export import DEFAULT_FORMAT, FORMATS

# What the subprocess runs: the README's loading code, then the logits of the saved raw batch.
PT2 = """
net = torch.export.load('{f}').module()
raw = torch.load('raw.pt')
with torch.no_grad():
    out = {{'all': net(raw), 'one': net(raw[:1]), 'three': net(raw[:3])}}
torch.save(out, '{f}.logits')
"""
TORCHVISION = """
import json, torchvision
meta = json.load(open('tv.json'))
net = torchvision.models.resnet18(num_classes=meta['num_classes'])
net.load_state_dict(torch.load('tv.pt', weights_only=True))
net.eval()
mean = torch.tensor(meta['mean']).view(1, -1, 1, 1)
std = torch.tensor(meta['std']).view(1, -1, 1, 1)
raw = torch.load('raw.pt')
x = (raw.float() / meta['scale'] - mean) / std
with torch.no_grad():
    torch.save(net(x), 'tv.logits')
"""


def _export(run_dir, out, *argv: str) -> dict:
    assert export_main([str(run_dir), "--out", str(out), *argv]) == 0
    return json.loads(out.with_suffix(".json").read_text())


def test_every_format_is_tested_and_pt2_is_the_default():
    assert set(FORMATS) == {"pt2", "torchvision", "state_dict", "module"} and DEFAULT_FORMAT == "pt2"


def test_pt2_loads_without_sedona_runtime_and_gives_evaluates_logits(user_run, tmp_path, capsys):
    raw, x, trained = reference(user_run)
    logits = logits_of(trained, x)
    meta = _export(user_run, tmp_path / "net.pt2")  # the default format
    assert meta["format"] == "pt2" and meta["input_dtype"] == "uint8" and meta["scale"] == 255.0
    train = _bundle(trained).train
    assert (meta["mean"], meta["std"]) == (list(train.mean), list(train.std))  # the training statistics
    assert (meta["weights"], meta["step"], meta["finished"]) == ("best", trained.step, True)
    _export(user_run, tmp_path / "heads.pt2", "--with-heads")
    torch.save(raw, tmp_path / "raw.pt")
    run_without_package(PT2.format(f="net.pt2") + PT2.format(f="heads.pt2"), tmp_path)
    out = torch.load(tmp_path / "net.pt2.logits")
    assert torch.equal(out["all"], logits[-1]) and out["all"].shape == (len(raw), 4)
    assert torch.equal(out["one"], logits_of(trained, x[:1])[-1])  # any batch size
    assert torch.equal(out["three"], logits_of(trained, x[:3])[-1])
    heads = torch.load(tmp_path / "heads.pt2.logits")["all"]
    assert len(heads) == 2 and all(torch.equal(a, b) for a, b in zip(heads, logits))  # aux head, classifier
    capsys.readouterr()
    # The whole test split is that one batch: evaluate's top-1 error is the exported logits' error.
    assert evaluate_main([str(user_run), "--json"]) == 0
    record = json.loads(capsys.readouterr().out)
    labels = _bundle(trained).test.labels
    misses = int((out["all"].argmax(1) != labels).sum())
    assert record["samples"] == len(raw) and round(record["top1_error"] * len(raw)) == misses


def _bundle(trained):
    from sedona_runtime.data import build_data

    return build_data(trained.cfg.data)


def test_torchvision_and_pt2_of_a_resnet_load_without_sedona_runtime(torchvision_run, tmp_path):
    raw, x, trained = reference(torchvision_run, weights="last")
    logits = logits_of(trained, x)
    meta = _export(torchvision_run, tmp_path / "tv.pt", "--format", "torchvision", "--weights", "last")
    assert meta["torchvision_builder"] == "torchvision.models.resnet18" and meta["classes"] is None
    assert set(torch.load(tmp_path / "tv.pt", weights_only=True)) == set(
        __import__("torchvision").models.resnet18(num_classes=4).state_dict())  # torchvision's own keys
    _export(torchvision_run, tmp_path / "tv.pt2", "--weights", "last")  # pt2 of a ResNet, in the same Python
    torch.save(raw, tmp_path / "raw.pt")
    run_without_package(TORCHVISION + PT2.format(f="tv.pt2"), tmp_path)
    assert torch.equal(torch.load(tmp_path / "tv.logits"), logits[-1])
    assert torch.equal(torch.load(tmp_path / "tv.pt2.logits")["all"], logits[-1])


def test_state_dict_format_loads_into_the_layered_and_the_users_own_network(user_run, tmp_path):
    from byo_user_pkg.nets import build

    from sedona_runtime.models import to_layered

    raw, x, trained = reference(user_run)
    logits = logits_of(trained, x)
    meta = _export(user_run, tmp_path / "w.pt", "--format", "state_dict")
    net = to_layered(build(num_classes=meta["num_classes"]))  # the README's lines
    net.load_state_dict(torch.load(tmp_path / "w.pt", weights_only=True))
    net.eval()
    mean, std = torch.tensor(meta["mean"]).view(1, -1, 1, 1), torch.tensor(meta["std"]).view(1, -1, 1, 1)
    with torch.no_grad():
        assert torch.equal(net((raw.float() / meta["scale"] - mean) / std), logits[-1])
    # Without sedona_runtime: the JSON maps the keys to those of the user's own nn.Sequential.
    own = build(num_classes=meta["num_classes"])
    own.load_state_dict({meta["own_keys"][k]: v for k, v in torch.load(tmp_path / "w.pt", weights_only=True).items()})
    own.eval()
    with torch.no_grad():
        assert torch.equal(own((raw.float() / meta["scale"] - mean) / std), logits[-1])
    heads = _export(user_run, tmp_path / "h.pt", "--format", "state_dict", "--with-heads")
    keys = set(torch.load(tmp_path / "h.pt", weights_only=True))
    assert heads["heads_after_layers"] == [2] and keys - set(net.state_dict()) and all(
        k.startswith("aux_heads.0.") for k in keys - set(net.state_dict()))


def test_module_format_is_the_pickled_network_with_its_preprocessing(user_run, tmp_path):
    raw, x, trained = reference(user_run)
    logits = logits_of(trained, x)
    _export(user_run, tmp_path / "m.pt", "--format", "module")
    net = torch.load(tmp_path / "m.pt", weights_only=False)  # a full pickle: needs sedona_runtime
    with torch.no_grad():
        assert torch.equal(net(net.preprocess(raw)), logits[-1])


@pytest.mark.parametrize("run,argv,words", [
    ("user_run", ["--format", "torchvision"], ["not a torchvision ResNet", "--format pt2", "--format state_dict"]),
    ("torchvision_run", ["--format", "torchvision", "--with-heads"], ["no auxiliary heads"]),
    ("user_run", ["--format", "onnx"], ["--format", "invalid choice"]),
])
def test_a_format_that_cannot_hold_the_network_is_one_line(run, argv, words, request, tmp_path, capsys):
    out = tmp_path / "x.pt"
    assert export_main([str(request.getfixturevalue(run)), "--out", str(out), *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and len(err.strip().splitlines()) == 1, err
    assert all(w in err for w in words), err
    assert not out.exists() and not out.with_suffix(".json").exists()


def test_pt2_takes_float_images_as_they_are_and_any_batch_size():
    from torch import nn

    from sedona_runtime.data.preprocess import Preprocess, RawBatch
    from sedona_runtime.models import to_layered
    from sedona_runtime.models.exported import ExportedNet
    from sedona_runtime.trained.program import NormalizedNet, export_program

    torch.manual_seed(0)
    layered = to_layered(nn.Sequential(nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU()),
                                       nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 5)))
    net = ExportedNet(layered).eval()
    mean, std = [0.0] * 3, [1.0] * 3  # a float data set's statistics (data.user): used as they are
    program = export_program(NormalizedNet(net, mean, std, None, torch.float32), torch.zeros(2, 3, 8, 8), "net")
    images = torch.randn(5, 3, 8, 8)
    with torch.no_grad():
        for batch in (images, images[:1]):
            assert torch.equal(program.module()(batch), net(Preprocess(mean, std)(RawBatch(batch, torch.zeros(1)))))
