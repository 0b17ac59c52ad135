"""The search runner: resume equals an uninterrupted run; ablation switches; released values -> shipped files."""
from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest
import torch

from sedona_runtime.decoupling import load_decoupling
from sedona_runtime.search.config import SearchConfig
from sedona_runtime.search.export import write_results
from sedona_runtime.search.runner import SearchRunner
from sedona_runtime.utils.errors import SedonaError

RELEASED = Path(__file__).resolve().parents[1] / "decoupling" / "data" / "sedona-released-alpha-beta.json"


def tiny_config(**kw) -> SearchConfig:
    """8x8 digits, a quarter-width small net, narrow heads, a handful of steps: seconds on one core."""
    base = dict(pretrain_steps=4, eval_every=2, eval_batches=1, memory_size=3, search_steps=3, inner_steps=2,
                head_width=8, head_pool=["aux1", "aux2"], blocks=[2, 4], device="cpu", checkpoint_every=0)
    cfg = SearchConfig(**{**base, **kw})
    cfg.model.width = 0.25
    cfg.data.image_size, cfg.data.batch_size = 8, 8
    return cfg


def _records(path: Path) -> list[dict]:
    drop = ("sec",)  # wall time is the one thing a resumed run does not reproduce
    return [{k: v for k, v in json.loads(line).items() if k not in drop} for line in path.read_text().splitlines()]


def test_resume_equals_an_uninterrupted_run(tmp_path: Path) -> None:
    whole = SearchRunner(tiny_config(), tmp_path / "whole").run()
    assert whole is not None
    # Ctrl-C mid-pretraining (between evaluations), then a stop mid-search, resuming in fresh runners.
    class CtrlC:
        def event(self, record: dict) -> None:
            if record.get("step") == 3 and record["kind"] == "progress":
                signal.raise_signal(signal.SIGINT)  # the runner stops at the next step boundary

    with pytest.raises(KeyboardInterrupt):
        SearchRunner(tiny_config(), tmp_path / "parts", reporter=CtrlC()).run()
    assert torch.load(tmp_path / "parts" / "checkpoints" / "last.pt", weights_only=False)["step"] == 3
    assert SearchRunner(tiny_config(), tmp_path / "parts", resume=True).run(stop_after=5) is None
    parts = SearchRunner(tiny_config(), tmp_path / "parts", resume=True).run()
    assert parts is not None
    # Same data order, same sampled memory entries, same arithmetic: bit-identical on one device.
    assert torch.equal(whole.alpha, parts.alpha) and torch.equal(whole.beta, parts.beta)
    assert not torch.equal(whole.alpha, torch.zeros_like(whole.alpha))  # the search did move alpha
    assert _records(tmp_path / "whole" / "metrics.jsonl") == _records(tmp_path / "parts" / "metrics.jsonl")
    a = torch.load(tmp_path / "whole" / "checkpoints" / "last.pt", weights_only=False)["memory"]
    b = torch.load(tmp_path / "parts" / "checkpoints" / "last.pt", weights_only=False)["memory"]
    assert [e["age"] for e in a["entries"]] == [e["age"] for e in b["entries"]]
    for ea, eb in zip(a["entries"], b["entries"]):
        assert all(torch.equal(ea["state"][k], eb["state"][k]) for k in ea["state"])
    for name in ("small_k2.json", "small_k4.json"):
        assert load_decoupling(str(tmp_path / "whole" / name)) == load_decoupling(str(tmp_path / "parts" / name))


def test_resume_refuses_changed_settings(tmp_path: Path) -> None:
    SearchRunner(tiny_config(), tmp_path / "r").run(stop_after=1)
    with pytest.raises(SedonaError, match="inner_steps was 2, now 3"):
        SearchRunner(tiny_config(inner_steps=3), tmp_path / "r", resume=True)


def test_ablations_no_pretrain_no_weight_sampling(tmp_path: Path) -> None:
    cfg = tiny_config(pretrain=False, weight_sampling=False, inner_steps=1, random_alpha=True, random_beta=True)
    runner = SearchRunner(cfg, tmp_path / "abl")
    initial = {k: v.clone() for k, v in runner.net.state_dict().items()}
    assert len(runner.memory) == 1 and all(torch.equal(runner.memory.get(0)[k], initial[k]) for k in initial)
    result = runner.run()
    assert result is not None
    records = _records(tmp_path / "abl" / "metrics.jsonl")
    assert [r["phase"] for r in records] == ["search"] * 3  # no pretraining at all
    assert [r["sample"] for r in records] == [0, 0, 0] and len(runner.memory) == 1  # always the newest
    learned = load_decoupling(str(tmp_path / "abl" / "small_k4.json"))
    ra = load_decoupling(str(tmp_path / "abl" / "small_k4_random_alpha.json"))
    rb = load_decoupling(str(tmp_path / "abl" / "small_k4_random_beta.json"))
    assert ra.beta == learned.beta and ra.alpha != learned.alpha
    assert rb.alpha == learned.alpha and rb.beta != learned.beta


@pytest.mark.skipif(not RELEASED.is_file(), reason="released alpha/beta not available")
def test_released_values_give_the_shipped_decouplings(tmp_path: Path) -> None:
    released = json.loads(RELEASED.read_text())
    for arch, entry in released["architectures"].items():
        out = tmp_path / arch
        write_results(out, torch.tensor(entry["alpha"]), torch.tensor(entry["beta"]), ["aux1", "aux2", "aux3", "aux4"],
                      arch, entry["num_layers"], [2, 4, 8, 16])
        for k in (2, 4, 8, 16):
            ours, shipped = load_decoupling(str(out / f"{arch}_k{k}.json")), load_decoupling(f"{arch}_k{k}")
            assert ours.blocks == shipped.blocks, (arch, k)
