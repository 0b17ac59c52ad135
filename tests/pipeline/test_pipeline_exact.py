"""The pipelined run computes exactly what the single-process trainer computes (K = 3, CPU, same seed)."""
from __future__ import annotations

import json

import pytest

from pipeline_helpers import RUN_ARGS, STEPS, assert_same_weights, pipeline_weights, run_to_end

pytestmark = [pytest.mark.multiprocess, pytest.mark.timeout(150)]


def _same_config(run_dir, reference_train: dict) -> None:
    got = json.loads((run_dir / "config.json").read_text())["train"]
    free = ("out_dir", "device")
    assert {k: v for k, v in got.items() if k not in free} == {k: v for k, v in reference_train.items() if k not in free}


def test_pipeline_equals_single_process(tmp_path, reference, reference_dir, transport):
    want_cfg, want = reference
    run_dir = tmp_path / "pipe"
    out = run_to_end([*RUN_ARGS, *transport, "--out", str(run_dir)])
    assert "test accuracy" in out
    _same_config(run_dir, want_cfg)
    assert_same_weights(pipeline_weights(run_dir, STEPS), want)
    summary = json.loads((run_dir / "summary.json").read_text())
    # Evaluation flows through the blocks in order with the training batches: every validation (steps 10,
    # 20, 30) and the test split give exactly the single-process figures: final classifier, every block's
    # own head, the auxiliary ensemble; so do the best validation error, its step and the best weights.
    ref = json.loads((reference_dir / "summary.json").read_text())
    assert summary["test"] == ref["test"] and summary["val"] == ref["val"]
    assert (summary["best_val_error"], summary["best_val_step"]) == (ref["best_val_error"], ref["best_val_step"])
    assert _val_records(run_dir) == _val_records(reference_dir) and len(_val_records(run_dir)) == 3
    from sedona_runtime.trained.load import block_states

    best, step, err, _ = block_states(run_dir, "best")
    ref_best, ref_step, ref_err, _ = block_states(reference_dir, "best")
    assert (step, err) == (ref_step, ref_err)
    assert_same_weights(best, ref_best)
    assert summary["steps"] == STEPS and summary["K"] == 3
    assert len(summary["pipeline"]["blocks"]) == 3 and all(b["step"] == STEPS for b in summary["pipeline"]["blocks"])
    assert summary["peak_memory_kind"] == "process_rss"  # CPU blocks report their process RSS
    # Per-block metrics reached the run directory at every log interval.
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert any(len(r.get("blocks", [])) == 3 for r in records)


def _val_records(run_dir) -> list[dict]:
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [r for r in records if "val_top1_error" in r]


def test_resuming_a_finished_run_changes_nothing(tmp_path):
    """A finished run asked to resume says so and leaves every file as it is (runs no process)."""
    from sedona_runtime.cli.greedy import main

    run_dir = tmp_path / "pipe"
    run_to_end([*RUN_ARGS, "--out", str(run_dir)])
    before = {p: p.stat().st_mtime_ns for p in run_dir.rglob("*") if p.is_file()}
    assert main(["--resume", "--out", str(run_dir)]) == 0
    assert {p: p.stat().st_mtime_ns for p in run_dir.rglob("*") if p.is_file()} == before
