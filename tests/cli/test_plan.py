"""`python -m sedona_runtime.plan`: the front on screen, the planned file and its record, clear errors."""
from __future__ import annotations

import json
import random
import subprocess
import sys

import pytest

from sedona_runtime.cli.plan import main
from sedona_runtime.decoupling import BlockSpec, Decoupling, read_decoupling, save_decoupling
from sedona_runtime.planning.cost_model import CostModel
from sedona_runtime.planning.predict import predicted_speedup

POOL = ["aux1", "aux4"]  # two heads keep the measured-profile test short
L = 6  # the "small" network's layer count


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path, monkeypatch):
    # Without --out/--png the CLI writes into the current directory: keep that out of the checkout.
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def files(tmp_path):
    rng = random.Random(0)
    dec = Decoupling(
        arch="small", num_layers=L,
        blocks=[BlockSpec(1, 1, "aux1"), BlockSpec(2, 2, "aux4"), BlockSpec(3, L, None)],
        alpha=[[rng.uniform(-3, 3), rng.uniform(-3, 3)] for _ in range(L - 1)],
        beta=[[rng.uniform(-1, 1) for _ in POOL] for _ in range(L - 1)], head_pool=POOL, source="test search",
    )
    save_decoupling(dec, tmp_path / "dec.json")
    profile = {
        "device": "test-cpu", "arch": "small",
        "layers": [{"index": i, "fwd_s": 0.01 * (L + 1 - i), "bwd_s": 0.02 * (L + 1 - i)} for i in range(1, L + 1)],
        "classifier": {"fwd_s": 0.001, "bwd_s": 0.002},
        "heads": {h: [{"after": a, "fwd_s": 0.002, "bwd_s": 0.003} for a in range(1, L)] for h in POOL},
    }
    (tmp_path / "profile.json").write_text(json.dumps(profile))
    return tmp_path


def test_plan_writes_the_chosen_decoupling_its_record_and_the_png(files, capsys) -> None:
    out, png = files / "out" / "planned.json", files / "front.png"
    rc = main(["--decoupling", str(files / "dec.json"), "--profile", str(files / "profile.json"), "--blocks", "3",
               "--min-speedup", "2.0", "--out", str(out), "--png", str(png)])
    text = capsys.readouterr().out
    assert rc == 0, text
    assert "Pareto front: small, K=3" in text and "chosen" in text
    planned = read_decoupling(out)
    record = json.loads((files / "out" / "planned.plan.json").read_text())
    chosen = record["chosen"]
    assert planned.K == 3 and planned.boundaries == chosen["boundaries"] and planned.heads == chosen["heads"]
    assert chosen["predicted_speedup"] >= 2.0
    # The recorded cost model predicts, for the written file, exactly the recorded speedup.
    cm = CostModel.from_dict(record["cost_model"])
    assert predicted_speedup(cm, planned) == chosen["predicted_speedup"]
    assert "plan record: planned.plan.json" in planned.source
    assert record["front"][0]["alpha_score"] >= chosen["alpha_score"]
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_infeasible_target_names_the_maximum(files, capsys) -> None:
    out = files / "planned.json"
    rc = main(["--decoupling", str(files / "dec.json"), "--profile", str(files / "profile.json"),
               "--min-speedup", "50", "--out", str(out)])
    err = capsys.readouterr().err
    assert rc == 2
    assert "no 3-block cut reaches a predicted speedup of 50x; the maximum achievable is" in " ".join(err.split())
    assert not out.exists()


def test_flop_costs_for_the_small_network(files, capsys) -> None:
    out = files / "planned.json"
    rc = main(["--decoupling", str(files / "dec.json"), "--dataset", "cifar10", "--blocks", "2", "--out", str(out)])
    assert rc == 0, capsys.readouterr()
    record = json.loads((files / "planned.plan.json").read_text())
    assert record["cost_model"]["unit"] == "macs" and record["cost_model"]["input_shape"] == [3, 32, 32]
    # Without a target the top-scoring cut is chosen: the single best boundary by softmax(alpha)[0].
    scores = record["boundary_scores"]
    assert record["chosen"]["boundaries"] == [scores.index(max(scores)) + 1]


@pytest.mark.parametrize("extra,match", [
    (["--decoupling", "nope.json"], "no such decoupling file"),
    (["--profile", "missing.json"], "no such file"),
    (["--blocks", "0"], "--blocks must be a positive integer"),
    (["--blocks", "9", "--profile", "PROFILE"], "K=9"),
    (["--head", "mlp_sr", "--profile", "PROFILE"], "no costs for head 'mlp_sr'"),
    (["--device-rate", "1e9", "--profile", "PROFILE"], "--device-rate applies to multiply-add costs"),
])
def test_bad_input_is_one_clear_line(files, capsys, extra: list[str], match: str) -> None:
    profile = str(files / "profile.json")
    argv = ["--decoupling", str(files / "dec.json")] + [a.replace("PROFILE", profile) for a in extra]
    rc = main(argv)
    err = capsys.readouterr().err
    assert rc == 2 and "error:" in err and match in " ".join(err.split()) and "Traceback" not in err


def test_module_entry_point_runs() -> None:
    proc = subprocess.run([sys.executable, "-m", "sedona_runtime.plan", "--help"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and "--min-speedup" in proc.stdout


def test_measure_a_profile_and_plan_from_it(files, capsys) -> None:
    prof = files / "measured.json"
    rc = main(["--decoupling", str(files / "dec.json"), "--dataset", "digits", "--image-size", "16",
               "--batch-size", "2", "--measure", "cpu", "--measure-iters", "1", "--measure-warmup", "0",
               "--save-profile", str(prof), "--out", str(files / "p.json")])
    assert rc == 0, capsys.readouterr()
    record = json.loads((files / "p.plan.json").read_text())
    assert record["cost_model"]["unit"] == "s" and json.loads(prof.read_text())["arch"] == "small"


def test_default_files_are_named_after_the_input_and_k(files, capsys) -> None:
    rc = main(["--decoupling", str(files / "dec.json"), "--profile", str(files / "profile.json"), "--blocks", "2"])
    text = capsys.readouterr().out
    assert rc == 0, text
    for name in ("planned_dec_k2.json", "planned_dec_k2.plan.json", "planned_dec_k2.png"):
        assert (files / name).is_file(), text
    assert "wrote planned_dec_k2.json and planned_dec_k2.plan.json" in text
    # --out alone puts the PNG beside it; --dry-run writes nothing at all.
    assert main(["--decoupling", str(files / "dec.json"), "--profile", str(files / "profile.json"),
                 "--out", str(files / "sub" / "x.json")]) == 0
    assert (files / "sub" / "x.png").is_file() and (files / "sub" / "x.plan.json").is_file()
    before = sorted(p.name for p in files.rglob("*"))
    assert main(["--decoupling", str(files / "dec.json"), "--profile", str(files / "profile.json"), "--blocks", "4",
                 "--dry-run"]) == 0
    assert sorted(p.name for p in files.rglob("*")) == before


def test_table_rows_never_wrap_and_scores_have_six_decimals(files, capsys, monkeypatch) -> None:
    monkeypatch.setenv("COLUMNS", "40")  # far narrower than the table
    rc = main(["--decoupling", str(files / "dec.json"), "--profile", str(files / "profile.json"), "--blocks", "4",
               "--dry-run"])
    text = capsys.readouterr().out
    assert rc == 0, text
    rows = [line for line in text.splitlines() if line.startswith("│")]
    assert rows
    for row in rows:
        cells = [c.strip() for c in row.strip("│").split("│")]
        assert len(cells) == 7, row
        assert len(cells[1].split(".")[1]) == 6, row  # alpha score
        assert len(cells[4].split()) == 3 and len(cells[5].split()) == 3, row  # K-1 boundaries and heads
    assert any(line.startswith("chosen: ") and line.count("alpha score") == 1 for line in text.splitlines())


def test_dgl_spec_plans_on_compute_only_with_its_own_head(files, capsys) -> None:
    rc = main(["--decoupling", "dgl:3", "--arch", "small", "--dataset", "cifar10", "--out", str(files / "d.json")])
    text = capsys.readouterr().out
    assert rc == 0, text
    assert "note: dgl:3 carries no alpha: planning on compute only" in text
    planned = read_decoupling(files / "d.json")
    record = json.loads((files / "d.plan.json").read_text())
    assert planned.K == 3 and set(planned.heads) == {"mlp_sr"} and not record["has_alpha"]
    assert record["chosen"]["predicted_speedup"] == record["max_predicted_speedup"]
    # Without --arch a spec is one clear line, not a library message.
    assert main(["--decoupling", "dgl:3"]) == 2
    err = capsys.readouterr().err
    assert err.strip() == ("error: --decoupling dgl:3 is built for a network: give --arch too "
                           "(files and shipped names carry their own)")


def test_argparse_errors_are_one_line(capsys) -> None:
    assert main(["--decoupling", "x", "--blocks", "two"]) == 2
    err = capsys.readouterr().err
    assert err.strip() == "error: argument --blocks: invalid int value: 'two'"


@pytest.mark.parametrize("extra,match", [
    (["--device-rate", "0"], "--device-rate must be a finite number > 0, got 0"),
    (["--device-rate", "1e9", "--bandwidth", "-5"], "--bandwidth must be a finite number > 0, got -5"),
    (["--out", "OUTDIR"], "is a directory"),
])
def test_rates_and_out_are_refused_before_anything_is_written(files, capsys, extra, match) -> None:
    # issue 20: --device-rate 0 passed, --bandwidth -5 blamed the device rate, --out DIR wrote DIR.png first.
    (files / "outdir").mkdir()
    before = sorted(files.rglob("*"))
    argv = ["--decoupling", str(files / "dec.json"), *[str(files / "outdir") if a == "OUTDIR" else a for a in extra]]
    rc = main(argv)
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("error:") and match in err and "Traceback" not in err, err
    assert sorted(files.rglob("*")) == before and not (files / "outdir.png").exists()
