"""benchmarks/gpu_check.sh fits its device budget (parsed, not run: DRY=1 runs it, see benchmarks/README.md),
and its digest compares the pipeline and the trainer over the same kind of window."""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"
SCRIPT = (BENCH / "gpu_check.sh").read_text()
sys.path.insert(0, str(BENCH / "gpu"))

import compare  # noqa: E402

# A call of the script's step function: `step NAME LIMIT cmd...`, perhaps after `then`/`;` or VAR=value prefixes.
STEP = re.compile(r"(?:^|;|&&|\bthen|\belse|\bdo)\s*(?:[A-Z_]+=\S+\s+)*step\s+(\S+)\s+(\d+)\s", re.M)


# The optional last part (EXTRA=1: ResNet-101's recomputed search step) runs only when asked, after the rest.
EXTRA = 'if [ "${EXTRA:-0}" = 1 ]'


def _steps(text: str = SCRIPT) -> list[tuple[str, int]]:
    return [(name, int(limit)) for name, limit in STEP.findall(text)]


def test_the_step_limits_add_up_to_under_seven_minutes():
    default, _, extra = SCRIPT.partition(EXTRA)
    steps = _steps(default)
    assert len(steps) >= 7, steps  # the parse found the calls (env, transport, step, pipeline x3, pytest, search)
    assert sum(limit for _, limit in steps) < 420, steps
    assert [name for name, _ in _steps(extra)] == ["5b_recompute.txt"]  # the only step past the budget, last


def test_every_limit_kills_after_a_grace_period():
    # SIGTERM is a graceful stop for the coordinator: KILL must follow, or a step can outlive its limit.
    assert len(re.findall(r"\btimeout -k \d+", SCRIPT)) >= 4
    assert not re.findall(r"\btimeout\b(?! -k \d+)[^\n]*", SCRIPT)  # every timeout(1) call has its -k
    assert re.search(r'timeout -k 10 "\$limit"', SCRIPT)
    assert re.search(r"^SLACK=1; \[ \"\$DRY\" = 1 \] && SLACK=", SCRIPT, re.M)  # only DRY runs get slack


def test_at_most_eight_files_and_no_cpu_only_step():
    files = {name for name, _ in _steps()} | set(re.findall(r"\$OUT/(\w+\.\w+)", SCRIPT))
    assert len(files) <= 8, files
    assert "6_speedup_cpu.txt" not in files  # the CPU-only K = 4 step left the GPU run


def test_digest_ratio_is_like_for_like_and_labelled(tmp_path):
    block = {"step_s": 0.05, "wait_in_s_per_step": 0.01, "wait_out_s_per_step": 0.0, "transfer_s_per_step": 0.002,
             "queue_depth_mean": 1.0}
    res = {"profile_device": "NVIDIA H200", "config": {}, "baseline": {"samples_per_s": 1000.0},
           "decouplings": [{"name": "resnet152_k4.json", "transport": "p2p", "samples_per_s": 800.0,
                            "speedup": 0.8, "window_steps": [20], "flags": [], "blocks": [block] * 4}]}
    (tmp_path / "speedup").mkdir()
    (tmp_path / "speedup" / "results.json").write_text(json.dumps(res))
    (tmp_path / "mps.txt").write_text("MPS: not tried (nvidia-cuda-mps-control is not installed)\n")
    digest = compare.main(tmp_path)
    row = digest["time_sliced"]["pipelines"][0]
    # speedup.py's ratio: both steady-state windows (the same figure as samples/s over samples/s).
    assert row["vs_single"] == 0.8 == row["samples_per_s"] / digest["time_sliced"]["single_samples_per_s"]
    assert "overheads" in digest["note"] and "not the overlap" in digest["note"]
    assert digest["mps_status"].startswith("MPS: not tried") and "mps" not in digest
