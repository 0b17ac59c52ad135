"""benchmarks/accuracy.py: it trains every decoupling for every seed and its JSON holds finite accuracies."""
from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"
sys.path.insert(0, str(BENCH))

import accuracy  # noqa: E402

TINY = ["--arch", "small", "--image-size", "8", "--steps", "3", "--batch-size", "16", "--device", "cpu"]


def _fraction(x: object) -> bool:
    return isinstance(x, float) and math.isfinite(x) and 0.0 <= x <= 1.0


@pytest.mark.timeout(60)
def test_every_decoupling_and_seed_has_finite_accuracies(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "acc" / "results.json"
    assert accuracy.main([*TINY, "--seeds", "3", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["seeds"] == [3] and result["environment"]["torch"] and result["config"]["arch"] == "small"
    names = [d["name"] for d in result["decouplings"]]
    assert names == ["sedona:2", "dgl:2", "planned (fastest cut)"]
    for d in result["decouplings"]:
        assert len(d["boundaries"]) == 1 and len(d["heads"]) == 1 and d["predicted_speedup"] > 1.0
        assert [r["seed"] for r in d["runs"]] == [3]
        run = d["runs"][0]
        assert _fraction(run["accuracy"]) and _fraction(run["ensemble_accuracy"])
        assert run["config"]["seed"] == 3 and run["config"]["steps"] == 3
        assert _fraction(d["accuracy"]["mean"]) and d["accuracy"]["std"] == 0.0
    # the planned decoupling is the fastest K-block cut under the multiply-add cost model
    planned = result["decouplings"][2]
    assert planned["predicted_speedup"] == pytest.approx(result["plan"]["max_predicted_speedup"])
    assert Path(planned["spec"]).is_file()
    assert "planned (fastest cut)" in capsys.readouterr().out


@pytest.mark.parametrize("argv, message", [
    (["--blocks", "1"], "--blocks >= 2"),
    (["--seeds", "1", "1"], "distinct"),
    (["--min-speedup", "0"], "--min-speedup"),
    (["--dataset", "nope"], "invalid choice"),
])
def test_bad_input_is_one_error_line(argv: list[str], message: str, capsys: pytest.CaptureFixture) -> None:
    assert accuracy.main([*TINY, *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1


def test_unreachable_speedup_is_an_error(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "results.json"
    assert accuracy.main([*TINY, "--min-speedup", "100", "--out", str(out)]) == 2
    assert "no 2-block cut" in capsys.readouterr().err and not out.exists()
