"""The single-process trainer: determinism, exact resume, best-val keeping, run files, divergence handling."""
from __future__ import annotations

import hashlib
import json
import signal

import pytest
import torch

from _training_helpers import synthetic_cfg
from sedona_runtime.data import BatchStream
from sedona_runtime.training.block import NonFiniteLossError
from sedona_runtime.training.config import TrainConfig
from sedona_runtime.training.display import Reporter
from sedona_runtime.training.greedy import GreedyTrainer, train
from sedona_runtime.utils.config import from_dict
from sedona_runtime.utils.errors import SedonaError
from sedona_runtime.utils.interrupt import Interrupted


class _InterruptAt(Reporter):
    """After global step `at` (after its metrics line): sends `signal` to this process (as Ctrl-C or a
    scheduler's SIGTERM would), or with `abrupt` raises KeyboardInterrupt there (as a second Ctrl-C does)."""

    def __init__(self, at: int, sig: int = signal.SIGINT, abrupt: bool = False) -> None:
        self.at, self.sig, self.abrupt, self.said = at, sig, abrupt, []

    def step(self, progress) -> None:
        if progress.step == self.at:
            if self.abrupt:
                raise KeyboardInterrupt
            signal.raise_signal(self.sig)

    def stopping(self, step: int, signal_name: str) -> None:
        self.said.append((step, signal_name))


def _weights(out_dir) -> list[dict]:
    return [b["block"] for b in torch.load(out_dir / "checkpoints" / "last.pt", weights_only=True)["blocks"]]


def _assert_same_weights(a: list[dict], b: list[dict]) -> None:
    assert len(a) == len(b)
    for sa, sb in zip(a, b):
        assert sa.keys() == sb.keys()
        for name in sa:
            assert torch.equal(sa[name], sb[name]), name


@pytest.mark.parametrize("sig, abrupt, kept", [(signal.SIGINT, False, 3), (signal.SIGTERM, False, 3),
                                               (signal.SIGINT, True, 2)])
def test_resume_after_interrupt_equals_uninterrupted_run(tmp_path, sig, abrupt, kept):
    full = train(synthetic_cfg(tmp_path / "full"))
    reporter = _InterruptAt(3, sig, abrupt)
    with pytest.raises(Interrupted) as info:
        train(synthetic_cfg(tmp_path / "cut"), reporter=reporter)
    # A signal stops after step 3 and checkpoints it; an abrupt stop keeps step 2's checkpoint.
    assert torch.load(tmp_path / "cut/checkpoints/last.pt", weights_only=True)["step"] == kept
    assert info.value.exit_code == 128 + sig
    if abrupt:
        assert "stopped at once during step 4, without saving it" in str(info.value)
        assert f"(step 2) kept; continue with --resume" in str(info.value) and reporter.said == []
    else:
        assert str(info.value) == (f"interrupted ({signal.Signals(sig).name}) after step 3 of 6: checkpoint of step 3 "
                                   f"saved in {tmp_path / 'cut/checkpoints/last.pt'}; continue with --resume --out "
                                   f"{tmp_path / 'cut'}")
        # Said at once, naming the step the checkpoint holds: the signal came after step 3 was counted, and
        # the run stops after step 3 (this said 4 until issue 20: the flake of test_train_safety).
        assert reporter.said == [(3, signal.Signals(sig).name)]
    assert not (tmp_path / "cut/run.lock").exists()  # the lock is released
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # handlers restored
    resumed = train(synthetic_cfg(tmp_path / "cut"), resume=True)

    _assert_same_weights(_weights(tmp_path / "full"), _weights(tmp_path / "cut"))  # exact, float64 and float32
    assert resumed["test"] == full["test"]
    assert resumed["best_val_error"] == full["best_val_error"]
    # The resumed metrics log has each step once (step 3 from the interrupted run was dropped and recomputed).
    records = [json.loads(s) for s in (tmp_path / "cut/metrics.jsonl").read_text().splitlines()]
    ref = [json.loads(s) for s in (tmp_path / "full/metrics.jsonl").read_text().splitlines()]
    lines = [r for r in records if "loss" in r]
    assert [r["step"] for r in lines] == list(range(1, 7))
    assert [r["loss"] for r in lines] == [r["loss"] for r in ref if "loss" in r]
    # Validation records (every 2 steps and at the end) too: once each, with the same per-block errors.
    assert [r for r in records if "val_top1_error" in r] == [r for r in ref if "val_top1_error" in r]


def test_run_directory_contents(tmp_path):
    out = tmp_path / "run"
    summary = train(synthetic_cfg(out, decoupling="dgl:3"))
    saved = json.loads((out / "config.json").read_text())
    cfg = from_dict(TrainConfig, saved["train"])
    assert cfg.model.num_classes == 4 and cfg.model.in_channels == 3  # resolved from the data
    assert [b["last"] for b in saved["decoupling"]["blocks"]] == [2, 4, 6]
    records = [json.loads(s) for s in (out / "metrics.jsonl").read_text().splitlines()]
    metrics = [r for r in records if "loss" in r]
    assert len(metrics) == 6 and all(len(m["loss"]) == 3 and m["samples_per_s"] > 0 for m in metrics)
    assert metrics[0]["lr"] > metrics[-1]["lr"]  # cosine decay
    # Validation records every eval interval (2) and at the end, with every block's own head's errors.
    vals = [r for r in records if "val_top1_error" in r]
    assert [r["step"] for r in vals] == [2, 4, 6]
    assert all(len(r["val_block_top1_error"]) == 3 and r["val_block_top1_error"][-1] == r["val_top1_error"]
               for r in vals)
    assert summary["val"]["block_top1_error"] == vals[-1]["val_block_top1_error"]
    assert len(summary["test"]["block_top1_error"]) == 3
    assert json.loads((out / "summary.json").read_text()) == json.loads(json.dumps(summary))
    assert 0 <= summary["test"]["top1_error"] <= 1 and summary["test"]["ensemble_top1_error"] is not None
    assert len(summary["peak_memory_bytes"]) == 3 and min(summary["peak_memory_bytes"]) > 0
    best = torch.load(out / "checkpoints/best.pt", weights_only=False)
    assert best["val_error"] == summary["best_val_error"] and best["step"] == summary["best_val_step"]


def test_same_seed_same_run_and_other_seed_differs(tmp_path):
    a = train(synthetic_cfg(tmp_path / "a", steps=2, decoupling="backprop"))
    b = train(synthetic_cfg(tmp_path / "b", steps=2, decoupling="backprop"))
    c = train(synthetic_cfg(tmp_path / "c", steps=2, decoupling="backprop", seed=1))
    _assert_same_weights(_weights(tmp_path / "a"), _weights(tmp_path / "b"))
    assert a["test"] == b["test"] and a["test"]["ensemble_top1_error"] is None  # K = 1: no ensemble
    wa, wc = _weights(tmp_path / "a")[0], _weights(tmp_path / "c")[0]
    assert any(not torch.equal(wa[k], wc[k]) for k in wa)
    assert c is not None


def test_non_finite_loss_names_block_and_step_and_keeps_checkpoint(tmp_path, monkeypatch):
    original = BatchStream.raw

    def poisoned(self, step):  # from global step index 4 (the 5th step) on, the inputs are NaN
        raw = original(self, step)
        if step >= 4:  # float images are taken as they are (no scaling), so the NaN reaches the network
            raw.x = raw.x.float() * float("nan")
        return raw

    monkeypatch.setattr(BatchStream, "raw", poisoned)
    out = tmp_path / "run"
    with pytest.raises(NonFiniteLossError) as info:
        train(synthetic_cfg(out))
    msg = str(info.value)
    assert "block 1/2 at step 5" in msg and "last good checkpoint" in msg and "(step 4) kept" in msg
    ck = torch.load(out / "checkpoints/last.pt", weights_only=False)
    assert ck["step"] == 4
    assert all(torch.isfinite(t).all() for b in ck["blocks"] for t in b["block"].values() if t.is_floating_point())
    assert not (out / "summary.json").exists()


def test_checkpoint_refused_when_weights_are_not_finite(tmp_path):
    out = tmp_path / "run"
    trainer = GreedyTrainer(synthetic_cfg(out))
    assert trainer.run(stop_at=2) == {"stopped_at": 2}
    before = hashlib.sha256((out / "checkpoints/last.pt").read_bytes()).hexdigest()
    with torch.no_grad():  # a weight overflowed although the loss was still finite
        next(trainer.runners[1].block.parameters())[0].fill_(float("inf"))
    with pytest.raises(NonFiniteLossError, match=r"non-finite weight '.*' in block 2/2 at step 2"):
        trainer.save_checkpoint()
    assert hashlib.sha256((out / "checkpoints/last.pt").read_bytes()).hexdigest() == before


def test_output_directory_problems_fail_before_training(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(SedonaError, match="not writable|not a directory"):
        train(synthetic_cfg(blocker / "run"))
    with pytest.raises(SedonaError, match="not a directory"):
        train(synthetic_cfg(blocker))
    out = tmp_path / "run"
    train(synthetic_cfg(out, steps=1))
    digest = hashlib.sha256((out / "checkpoints/last.pt").read_bytes()).hexdigest()
    with pytest.raises(SedonaError, match="already holds a run"):
        train(synthetic_cfg(out, steps=1))
    assert hashlib.sha256((out / "checkpoints/last.pt").read_bytes()).hexdigest() == digest
    with pytest.raises(SedonaError, match="cannot resume"):
        train(synthetic_cfg(tmp_path / "fresh"), resume=True)
    stopped = tmp_path / "stopped"
    assert GreedyTrainer(synthetic_cfg(stopped, steps=2)).run(stop_at=1) == {"stopped_at": 1}
    with pytest.raises(SedonaError, match="config differs.*lr"):
        train(synthetic_cfg(stopped, steps=2, lr=0.5), resume=True)


def test_bad_config_leaves_no_run_directory(tmp_path):
    from sedona_runtime.data.config import DataConfig

    bad_dec = tmp_path / "bad_dec"
    with pytest.raises(SedonaError, match="nope.json"):
        train(synthetic_cfg(bad_dec, decoupling=str(tmp_path / "nope.json")))
    bad_data = tmp_path / "bad_data"
    with pytest.raises(SedonaError, match="missing train/"):
        train(synthetic_cfg(bad_data, data=DataConfig(dataset="imagefolder", data_dir=str(tmp_path / "none"))))
    big_batch = tmp_path / "big_batch"
    with pytest.raises(SedonaError, match="batch size 500 is larger than the training set"):
        train(synthetic_cfg(big_batch, batch_size=500))
    assert not bad_dec.exists() and not bad_data.exists() and not big_batch.exists()


def test_resume_of_a_missing_directory_names_it(tmp_path):
    missing = tmp_path / "never"
    with pytest.raises(SedonaError, match=f"cannot resume: output directory {missing} does not exist"):
        train(synthetic_cfg(missing), resume=True)
    assert not missing.exists()


@pytest.mark.parametrize("device, words", [("gpu0", "unknown device"), ("mps", "not supported"),
                                           ("cuda", "CUDA is not available")])
def test_bad_device_is_a_clear_error(tmp_path, device, words):
    if device == "cuda" and torch.cuda.is_available():
        device, words = f"cuda:{torch.cuda.device_count()}", "CUDA device"
    with pytest.raises(SedonaError, match=words):
        train(synthetic_cfg(tmp_path / "run", device=device))
    assert not (tmp_path / "run").exists()


def test_trainer_k1_equals_a_plain_loop_over_the_same_batches(tmp_path):
    """Seeding (model built right after manual_seed), batch order and the step are exactly plain backprop."""
    import dataclasses
    import math

    import torch.nn.functional as F

    from sedona_runtime.data import build_data
    from sedona_runtime.models import build_model
    from sedona_runtime.training.config import resolve_defaults

    cfg = resolve_defaults(synthetic_cfg(tmp_path / "run", decoupling="backprop", steps=4))
    train(cfg)
    bundle = build_data(cfg.data)
    torch.manual_seed(cfg.seed)
    model = build_model(dataclasses.replace(cfg.model, num_classes=bundle.num_classes, stem=bundle.stem)).double()
    opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    stream = BatchStream(bundle.train, cfg.batch_size, cfg.seed, bundle.augment)
    ratio = cfg.final_lr / cfg.lr
    for t in range(cfg.steps):
        for g in opt.param_groups:  # the runner's closed-form cosine, same algebra
            g["lr"] = cfg.lr * (ratio + (1 - ratio) * 0.5 * (1 + math.cos(math.pi * t / cfg.steps)))
        x, y = stream.batch(t)
        loss = F.cross_entropy(model(x.double()), y, label_smoothing=cfg.label_smoothing)
        opt.zero_grad()
        loss.backward()
        opt.step()
    (got,) = _weights(tmp_path / "run")
    _assert_same_weights([_as_block_keys(model.state_dict())], [got])  # exact: identical float64 arithmetic


def _as_block_keys(model_state: dict) -> dict:
    """LayeredNet keys (layers.i..., classifier...) as the single block's keys (layers.i..., head...)."""
    return {("head." + k[len("classifier."):]) if k.startswith("classifier.") else k: v
            for k, v in model_state.items()}


@pytest.mark.parametrize("decoupling", ["backprop", "dgl:2", "predsim:2", "sedona:2", "vgg19_k2"])
def test_the_coordinators_meta_build_resolves_every_kind_of_decoupling(tmp_path, decoupling):
    """The pipeline's coordinator builds the network on the meta device (no weights); resolving the
    decoupling still reads real numbers (sedona:K re-discretizes the shipped alpha/beta): the same cut and
    heads as a real build, and no module of it holds memory."""
    from sedona_runtime.data.config import DataConfig
    from sedona_runtime.models import ModelConfig
    from sedona_runtime.training.config import resolve_defaults
    from sedona_runtime.training.greedy import build_parts

    data = DataConfig(dataset="synthetic", image_size=32, synthetic_size=40, synthetic_classes=4, val_fraction=0.2)
    cfg = resolve_defaults(synthetic_cfg(tmp_path, model=ModelConfig(arch="vgg19", width=0.125), data=data,
                                         decoupling=decoupling))
    real, meta = build_parts(cfg), build_parts(cfg, meta=True)
    assert meta.decoupling.to_json() == real.decoupling.to_json()
    assert len(meta.blocks) == len(real.blocks) == meta.decoupling.K
    assert all(p.is_meta for b in meta.blocks for p in b.parameters())
