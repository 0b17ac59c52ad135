"""benchmarks/feed.py runs end to end and reports both feed rates."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import feed  # noqa: E402


@pytest.mark.timeout(120)
def test_feed_benchmark_reports_both_rates(tmp_path: Path) -> None:
    out = tmp_path / "feed.json"
    assert feed.main(["--images", "24", "--batch-size", "4", "--batches", "2", "--repeats", "1", "--workers", "0",
                      "--json", str(out)]) == 0
    res = json.loads(out.read_text())
    assert res["imagefolder"]["0"]["batches_per_s"] > 0 and res["cifar"]["batches_per_s"] > 0
