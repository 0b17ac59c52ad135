"""The pipelined run computes exactly what the single-process trainer computes (K = 3, CPU, same seed)."""
from __future__ import annotations

import json

import pytest

from pipeline_helpers import STEPS, assert_same_weights, pipeline_weights

pytestmark = [pytest.mark.multiprocess, pytest.mark.timeout(150)]


def _same_config(run_dir, reference_train: dict) -> None:
    got = json.loads((run_dir / "config.json").read_text())["train"]
    free = ("out_dir", "device")
    assert {k: v for k, v in got.items() if k not in free} == {k: v for k, v in reference_train.items() if k not in free}


def test_pipeline_equals_single_process(reference, reference_dir, transport, finished_runs):
    want_cfg, want = reference
    run_dir, out = finished_runs(transport[1])
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
    # Their learning rate (the coordinator's, from the run's schedule) is the one the trainer's optimizer
    # stepped with at the same steps, exactly.
    assert _lrs(run_dir) == _lrs(reference_dir) and sorted(_lrs(run_dir)) == [10, 20, 30]


def _lrs(run_dir) -> dict[int, float]:
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return {r["step"]: r["lr"] for r in records if "lr" in r}


def _val_records(run_dir) -> list[dict]:
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [r for r in records if "val_top1_error" in r]


def test_resuming_a_finished_run_changes_nothing(finished_runs):
    """A finished run asked to resume says so and leaves every file as it is (runs no process)."""
    from sedona_runtime.cli.greedy import main

    run_dir, _ = finished_runs("rpc")
    before = {p: p.stat().st_mtime_ns for p in run_dir.rglob("*") if p.is_file()}
    assert main(["--resume", "--out", str(run_dir)]) == 0
    assert {p: p.stat().st_mtime_ns for p in run_dir.rglob("*") if p.is_file()} == before


def test_a_block_that_cannot_load_its_checkpoint_is_named_at_once(finished_runs, tmp_path):
    """A block failing while it builds (here: a corrupt checkpoint on --resume) is reported before the p2p
    transport's barrier, which would only time out."""
    import shutil
    import time

    from pipeline_helpers import kill_session, start

    run_dir = tmp_path / "run"
    shutil.copytree(finished_runs("p2p")[0], run_dir)
    (run_dir / "summary.json").unlink()  # as if it had stopped after its last commit
    (run_dir / "run.lock").unlink(missing_ok=True)
    (run_dir / "checkpoints" / "blocks" / f"step_{STEPS:08d}" / "block2.pt").write_bytes(b"not a checkpoint")
    t0 = time.monotonic()
    proc = start(["--out", str(run_dir), "--resume", "--plain"])
    try:
        _, err = proc.communicate(timeout=90)
    finally:
        kill_session(proc)
    assert proc.returncode == 1 and time.monotonic() - t0 < 60, err[-3000:]
    line = next(line for line in err.splitlines() if line.startswith("error: "))
    assert line.startswith("error: block2 failed:") and "block2.pt" in line and "Traceback" not in err, err[-3000:]
