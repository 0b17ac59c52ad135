"""benchmarks/search_cost.py: workers per revision, interleaved, one JSON line with times, memory and ratios."""
from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TINY = ["--width", "0.25", "--image-size", "8", "--batch-size", "8", "--head-width", "8", "--inner-steps", "2",
        "--val-batch-size", "8", "--steps", "1", "--pretrain-steps", "1", "--warmup", "0", "--rounds", "1"]


def _in_git_checkout() -> bool:
    res = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, check=False)
    return res.returncode == 0


@pytest.mark.multiprocess
@pytest.mark.timeout(180)
@pytest.mark.skipif(not _in_git_checkout(), reason="--compare needs the git history")
def test_compare_times_both_revisions_and_prints_one_json_line(capsys) -> None:
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import search_cost

    assert search_cost.main(TINY + ["--phases", "outer", "--compare", "HEAD", "--recompute",
                                    "--no-predict"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    result = json.loads(out[-1])  # the last line is the whole result
    assert set(result["revisions"]) == {"this tree", "this tree, recompute", "HEAD"}
    assert result["config"]["inner_steps"] == 2
    assert all(by["outer"]["predicted_peak_mib"] is None for by in result["revisions"].values())  # --no-predict
    for by in result["revisions"].values():
        outer = by["outer"]
        assert math.isfinite(outer["sec_per_step"]) and outer["sec_per_step"] > 0
        assert outer["peak_rss_mib"] >= outer["rss_before_mib"] > 0 and outer["cuda_peak_mib"] is None
    ratio = result["ratios"]["HEAD"]["outer_sec_per_step"]
    assert ratio == result["revisions"]["HEAD"]["outer"]["sec_per_step"] / result["revisions"]["this tree"]["outer"]["sec_per_step"]
    assert "x this tree" in "\n".join(out[:-1])  # the readable table comes first


def test_bad_arguments_are_refused() -> None:
    res = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "search_cost.py"), "--phases", "warp"],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode != 0 and "--phases" in res.stderr


@pytest.mark.multiprocess
@pytest.mark.timeout(180)
def test_two_ranks_measure_the_data_parallel_search(capsys) -> None:
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import search_cost

    assert search_cost.main(TINY + ["--phases", "outer", "--devices", "2"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    outer = result["revisions"]["this tree"]["outer"]
    assert result["devices"] == 2 and math.isfinite(outer["sec_per_step"]) and outer["sec_per_step"] > 0
    assert outer["peak_rss_mib"] >= outer["rss_before_mib"] > 0


def test_shards_count_the_rows_a_process_holds_and_exclude_devices() -> None:
    # --shards R (every shard in one worker): the prediction traces one shard's rows for the recomputed sweep,
    # all of them for the stored graph (memory_model.plan_search_memory); the prediction itself is tested in
    # tests/search/test_search_memory_model.py, the sharded sweep in tests/search/test_search_recompute.py.
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import search_cost

    assert search_cost.held_rows({"batch_size": 8, "val_batch_size": 9}, 2, True, False) == (4, 5)
    assert search_cost.held_rows({"batch_size": 8, "val_batch_size": 9}, 2, False, False) == (8, 9)
    assert search_cost.held_rows({"batch_size": 8, "val_batch_size": 9}, 2, False, True) == (4, 5)  # a rank
    with pytest.raises(SystemExit, match="--shards"):
        search_cost.main(TINY + ["--shards", "2", "--devices", "2"])
