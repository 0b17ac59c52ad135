"""benchmarks/speedup.py: it runs end to end, its JSON is complete, and its model is the planner's."""
from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"
sys.path.insert(0, str(BENCH))

import speedup  # noqa: E402
from speedup_lib.measure import BenchConfig  # noqa: E402

from sedona_runtime.planning.cost_model import CostModel  # noqa: E402
from sedona_runtime.planning.predict import predict  # noqa: E402

TINY = ["--arch", "small", "--image-size", "8", "--batch-size", "16", "--warmup", "1", "--steps", "3",
        "--repeats", "1", "--device", "cpu"]


def _positive(x: float) -> bool:
    return isinstance(x, float) and math.isfinite(x) and x > 0


@pytest.mark.multiprocess
@pytest.mark.timeout(300)
def test_benchmark_runs_and_writes_every_figure(tmp_path: Path) -> None:
    out = tmp_path / "bench"
    # Two of the peers (each spawns its own two ranks) ride along: their rows are checked at the end.
    assert speedup.main([*TINY, "--transport", "rpc,p2p", "--peers", "ddp,1f1b,replicas", "--microbatches", "4",
                         "--out", str(out)]) == 0
    result = json.loads((out / "results.json").read_text())
    assert result["config"]["blocks"] == 2 and result["environment"]["torch"]
    base = result["baseline"]
    assert _positive(base["step_s"]) and _positive(base["samples_per_s"])
    assert set(base["phases_s"]) == {"forward", "head", "backward", "optimizer"}
    names = [d["name"] for d in result["decouplings"]]
    # small has no shipped SEDONA search: the planned cut uses DGL's heads, and says so; both transports ran.
    assert names[:2] == ["planned (fastest cut, mlp_sr heads, as dgl:2) [rpc]",
                         "planned (fastest cut, mlp_sr heads, as dgl:2) [p2p]"]
    assert {"dgl:2 [rpc]", "dgl:2 [p2p]"} <= set(names)
    assert {d["transport"] for d in result["decouplings"]} == {"rpc", "p2p"}
    for d in result["decouplings"]:
        for key in ("step_s", "samples_per_s", "speedup", "ideal_speedup", "efficiency", "predicted_speedup"):
            assert _positive(d[key]), (d["name"], key, d[key])
        assert len(d["blocks"]) == 2 and len(d["decoupling"]) == 2
        for b in d["blocks"]:
            for key in ("step_s", "predicted_step_s", "slowdown_vs_profile"):
                assert _positive(b[key]), (d["name"], b["block"], key)
            for key in ("wait_in_s_per_step", "wait_out_s_per_step", "transfer_s_per_step", "queue_depth_mean"):
                assert b[key] >= 0.0
            assert set(b["phases_s"]) == {"forward", "head", "backward", "optimizer"}
            assert b["peak_memory_bytes"] > 0
        # The timeline covers every step of every block, in order, spans well formed.
        assert sorted(d["timeline"]) == ["1", "2"]
        for spans in d["timeline"].values():
            assert [s for s, _, _ in spans] == list(range(1, 5))
            assert all(a <= b for _, a, b in spans)
    assert json.loads((out / "profile.json").read_text())["layers"]
    rows = result["rows"]  # every row side by side, with its load and algorithm
    # ... and the runtime's own data-parallel row (--blocks 1 --replicas 2), timed like the greedy rows.
    assert [r["name"] for r in rows][-3:] == ["DDP x 2 (torch DDP)", "1F1B 2 stages, 4 micro-batches",
                                              "--blocks 1 --replicas 2 (runtime DDP)"]
    assert rows[0]["name"] == "backprop (1 process)" and len(rows) == 4 + len(result["decouplings"])
    for r in rows:
        assert _positive(r["step_s"]) and _positive(r["samples_per_s"]) and _positive(r["speedup"]) and r["algorithm"]
        assert len(r["loads"]) == 1 and r["loads"][0]["other_cores"] >= 0 and r["peak_memory_bytes"] > 0
    assert all(r["predicted_step_s"] > 0 for r in rows)  # every row predicted: 1F1B by the bubble model
    assert result["pipelined"]["1F1B 2 stages, 4 micro-batches"]["in_flight"] == [2, 1]
    for png in ("timeline.png", "speedup.png"):
        assert (out / png).read_bytes()[:4] == b"\x89PNG"


def test_predict_only_writes_predictions(tmp_path: Path) -> None:
    out = tmp_path / "pred"
    assert speedup.main([*TINY, "--predict-only", "--devices", "4", "--out", str(out)]) == 0
    pred = json.loads((out / "predicted.json").read_text())
    assert {"config", "profile_device", "predicted", "environment", "layouts"} <= set(pred)
    assert {(l["K"], l["R"]) for l in pred["layouts"]} >= {(1, 4), (2, 2), (4, 1)}
    assert all(_positive(p["speedup"]) for p in pred["predicted"].values())
    # GPipe / 1F1B on G = 4 stages (the balanced cut: the planned one has K = 2) at each micro-batch count
    assert set(pred["pipelined"]) == {f"{s} 4 stages, {m} micro-batches" for s in ("GPipe", "1F1B") for m in (4, 8)}
    assert all(_positive(p["step_s"]) and len(p["stages"]) == 4 for p in pred["pipelined"].values())
    kinds = {l["kind"] for l in pred["layouts"]}
    assert {"DDP", "greedy", "GPipe", "1F1B"} <= kinds


def test_bad_settings_are_one_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert speedup.main([*TINY, "--blocks", "1", "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and "Traceback" not in err


def test_benchmark_ideal_is_the_planners_prediction() -> None:
    """Fed the cost model's own block costs as 'measured' times, the benchmark's ideal speedup is
    exactly the planner's predicted speedup: both are one formula over the same costs."""
    cm = CostModel(arch="toy", num_layers=5, unit="s", layer_cost=[3.0, 1.0, 4.0, 1.0, 5.0],
                   head_cost={"aux1": [0.5, 0.25, 0.75, 0.5]}, classifier_cost=0.2,
                   transfer_cost=[0.1, 0.2, 0.1, 0.3])
    blocks = [(1, 2, "aux1"), (3, 3, "aux1"), (4, 5, None)]
    pred = predict(cm, blocks)
    preds = {"d": {"speedup": pred.speedup, "blocks": [list(b) for b in blocks], "breakdown": pred.to_dict()}}
    measured = {"step_s": 1.0, "blocks": [{"step_s": b.cost} for b in pred.blocks], "timeline": {}}
    result = speedup.summarize(BenchConfig(blocks=3), [{"step_s": pred.baseline, "phases_s": {},
                                                        "peak_memory_bytes": 1}], {("d", "rpc"): [measured]}, preds, {"device": "toy"})
    d = result["decouplings"][0]
    assert d["ideal_speedup"] == pytest.approx(pred.speedup, rel=1e-12)
    assert d["predicted_speedup"] == pred.speedup
    assert [b["slowdown_vs_profile"] for b in d["blocks"]] == pytest.approx([1.0, 1.0, 1.0])


def test_window_measures_the_bottleneck_not_the_drain_of_a_warm_up_backlog() -> None:
    """Block 1 (1 s a step) is the bottleneck; block 2 (0.5 s) lost 3 s at start-up, so items queued
    up before the window opened. The last block then drains them at its own pace: counting its
    completions alone gave 0.81 s a step (efficiency 1.23, impossible). The steady window gives 1 s."""
    from speedup_lib.measure import steady_window

    bc = BenchConfig(warmup=2, steps=8)
    block1 = [(s, s - 1.0, float(s)) for s in range(1, 11)]
    done2, block2 = 0.0, []
    for s in range(1, 11):
        start = max(float(s), done2)
        done2 = start + (3.5 if s == 1 else 0.5)
        block2.append((s, start, done2))
    old = (block2[9][2] - block2[1][2]) / bc.steps
    assert old < 0.85  # the figure that reported the impossible efficiency
    step_s, counted, steady = steady_window(bc, {1: block1, 2: block2})
    assert steady and counted >= 2
    assert step_s == pytest.approx(1.0)
