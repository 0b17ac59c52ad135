"""Bring your own network and data: a user's nn.Sequential and data set function outside the package train,
export to one loadable module with the reported accuracy, evaluate per block, go through inspect, plan, search."""
from __future__ import annotations

import json

import pytest
import torch

from sedona_runtime.cli.evaluate import main as evaluate_main
from sedona_runtime.cli.export import main as export_main
from sedona_runtime.cli.inspect import main as inspect_main
from sedona_runtime.cli.plan import main as plan_main
from sedona_runtime.cli.search import main as search_main
from sedona_runtime.cli.train import main as train_main

MODEL, DATA = "byo_user_pkg.nets:build", "byo_user_pkg.data:build"
TRAIN = ["--model", MODEL, "--dataset", DATA, "--epochs", "2", "--batch-size", "32", "--decoupling", "dgl:2",
         "--eval-interval", "5", "--device", "cpu", "--plain"]


@pytest.fixture(scope="module")
def user_run(user_pkg, tmp_path_factory):
    """One training run of the user's network on the user's data set (2 epochs of 160 images: 10 steps)."""
    out = tmp_path_factory.mktemp("byo") / "run"
    assert train_main(TRAIN + ["--out", str(out)]) == 0
    return out


def test_user_network_and_data_train(user_run, user_pkg):
    config = json.loads((user_run / "config.json").read_text())["train"]
    assert config["model"]["arch"] == MODEL and config["model"]["import_root"] == user_pkg
    assert config["data"]["dataset"] == DATA and config["data"]["import_root"] == user_pkg
    assert config["epochs"] == 2 and config["steps"] == 10 and config["data"]["image_size"] == 12
    summary = json.loads((user_run / "summary.json").read_text())
    assert summary["steps"] == 10 and summary["K"] == 2
    assert len(summary["test"]["block_top1_error"]) == 2 and len(summary["val"]["block_top5_error"]) == 2


def test_export_loads_in_one_call_with_the_reported_accuracy(user_run, tmp_path, capsys):
    from sedona_runtime.data import build_data, eval_batches
    from sedona_runtime.training.config import TrainConfig
    from sedona_runtime.utils.config import from_dict

    summary = json.loads((user_run / "summary.json").read_text())
    cfg = from_dict(TrainConfig, json.loads((user_run / "config.json").read_text())["train"])
    bundle = build_data(cfg.data)

    def accuracy(net, dataset) -> float:
        misses = n = 0
        with torch.no_grad():
            for x, y in eval_batches(dataset, cfg.eval_batch_size):  # the run's batches: the same kernels
                misses += int((net(x).argmax(1) != y).sum())
                n += len(y)
        return 1.0 - misses / n  # as the run computes it (1 - top-1 error)

    assert export_main([str(user_run), "--out", str(tmp_path / "last.pt"), "--weights", "last", "--format", "module",
                        "--with-heads"]) == 0
    assert "wrote" in capsys.readouterr().out
    net = torch.load(tmp_path / "last.pt", weights_only=False)  # one call; no blocks, no config
    assert isinstance(net, torch.nn.Module) and not net.training
    assert accuracy(net, bundle.test) == summary["test_accuracy"]
    raw, _ = bundle.test.get_batch(torch.arange(4))
    x, _ = next(eval_batches(bundle.test, 4))
    assert torch.equal(net.preprocess(raw), x)  # the training normalization travels with the network
    logits = net.head_logits(x)
    assert [z.shape for z in logits] == [(4, 4), (4, 4)] and torch.equal(logits[-1], net(x))
    # The best weights reproduce the best validation error the run reported.
    assert export_main([str(user_run), "--out", str(tmp_path / "best.pt"), "--format", "module"]) == 0
    best = torch.load(tmp_path / "best.pt", weights_only=False)
    assert best.info["weights"] == "best" and best.info["step"] == summary["best_val_step"]
    assert 1.0 - accuracy(best, bundle.val) == summary["best_val_error"]
    assert not hasattr(best, "aux_heads") or len(best.aux_heads) == 0


def test_evaluate_prints_the_per_block_table(user_run, capsys):
    summary = json.loads((user_run / "summary.json").read_text())
    assert evaluate_main([str(user_run), "--weights", "last"]) == 0
    out = capsys.readouterr().out
    rows = [line.split() for line in out.splitlines() if line.split()[:1] in (["1/2"], ["2/2"])]
    assert [r[:3] for r in rows] == [["1/2", "1-2", "mlp_sr"], ["2/2", "3-4", "classifier"]]
    assert "ensemble 1+2" in out and f"{summary['test_accuracy']:.2%}" in out
    assert evaluate_main([str(user_run), "--weights", "last", "--json"]) == 0
    record = json.loads(capsys.readouterr().out)
    for key in ("top1_error", "top5_error", "ensemble_top1_error", "block_top1_error", "block_top5_error"):
        assert record[key] == summary["test"][key], key  # the trainer's own evaluation, reproduced exactly
    assert evaluate_main([str(user_run), "--split", "val", "--json"]) == 0  # best weights on the val split
    assert json.loads(capsys.readouterr().out)["top1_error"] == summary["best_val_error"]


@pytest.mark.parametrize("argv,words", [
    (["--model", "byo_user_pkg.nets:nothing"], ["has no attribute 'nothing'"]),
    (["--model", "byo_user_pkg.nets:wrong_classes"], ["expected logits of shape (1, 4)"]),
    (["--model", "resnet50"], ["--arch"]),
    (["--dataset", "nodata"], ["unknown data set 'nodata'"]),
    (["--steps", "5"], ["--steps or --epochs"]),
    (["--image-size", "16"], ["--image-size does not apply", DATA]),
])
def test_bad_user_code_is_one_clear_line(user_pkg, tmp_path, capsys, argv, words):
    args = [*TRAIN, "--out", str(tmp_path / "run")]
    if argv[0] in args:
        i = args.index(argv[0])
        args[i:i + 2] = argv
    else:
        args += argv
    assert train_main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert all(w in err for w in words), err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("model,layers", [("torchvision.models:resnet18", 8), ("torchvision.models:vgg11_bn", 8)])
def test_torchvision_networks_go_through_inspect_and_plan(model, layers, tmp_path, capsys):
    assert inspect_main(["--model", model, "--dataset", "cifar10", "--json"]) == 0
    costs = json.loads(capsys.readouterr().out)
    assert costs["arch"] == model and len(costs["layers"]) == layers
    assert costs["params"] == (11_181_642 if "resnet" in model else 128_812_810)  # torchvision's, for 10 classes
    assert all(set(layer["heads"]) >= {"aux1", "mlp_sr"} for layer in costs["layers"])
    out = tmp_path / "planned.json"
    assert plan_main(["--model", model, "--decoupling", "dgl:2", "--dataset", "cifar10", "--out", str(out),
                      "--png", str(tmp_path / "front.png")]) == 0
    printed = capsys.readouterr().out
    assert "chosen: boundaries" in printed
    planned = json.loads(out.read_text())
    assert planned["arch"] == model and len(planned["blocks"]) == 2


def test_search_on_the_user_network_writes_a_decoupling_train_runs(user_pkg, tmp_path, capsys):
    out = tmp_path / "search"
    # --preset quick as the README shows it, its schedule cut to a few steps for the test.
    assert search_main(["--preset", "quick", "--model", MODEL, "--dataset", DATA, "--batch-size", "16",
                        "--head-width", "8", "--head-pool", "aux1,aux2", "--pretrain-steps", "1", "--eval-every", "1",
                        "--eval-batches", "1", "--memory-size", "2", "--search-steps", "1", "--inner-steps", "1",
                        "--blocks", "2", "--device", "cpu", "--plain", "--out", str(out)]) == 0
    saved = json.loads((out / "config.json").read_text())
    assert saved["model"]["arch"] == MODEL and saved["data"]["dataset"] == DATA  # the user's, not the preset's
    dec = out / "byo_user_pkg.nets.build_k2.json"
    assert dec.is_file(), capsys.readouterr().out
    assert json.loads(dec.read_text())["arch"] == MODEL
    assert train_main(["--model", MODEL, "--dataset", DATA, "--steps", "2", "--batch-size", "16", "--decoupling",
                       str(dec), "--eval-interval", "0", "--device", "cpu", "--plain",
                       "--out", str(tmp_path / "t")]) == 0
