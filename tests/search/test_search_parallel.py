"""The self-launched data-parallel search (`--devices cpu,cpu`): a killed rank is named and ends the search
with its last checkpoint kept; SIGTERM stops every rank at one step boundary; a search resumes across one
process (--shards 2) and two ranks, both ways, and stays the same search; torchrun runs it too."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import torch

from sedona_runtime.cli.search import _parser, build_config, main
from sedona_runtime.search.runner import SearchRunner

pytestmark = [pytest.mark.multiprocess, pytest.mark.timeout(280)]

# 8x8 digits, the quarter-width small net, 2 pretraining + 4 outer steps of T = 2: seconds per step.
TINY = ["--arch", "small", "--width", "0.25", "--dataset", "digits", "--image-size", "8", "--batch-size", "8",
        "--pretrain-steps", "2", "--eval-every", "1", "--eval-batches", "1", "--memory-size", "3",
        "--search-steps", "4", "--inner-steps", "2", "--head-width", "8", "--head-pool", "aux1,aux2",
        "--blocks", "2,4", "--checkpoint-every", "1", "--threads", "1", "--plain"]
TOTAL = 6
# Both sides run in float32 and differ only in the order of the gradient sums; test_search_distributed.py
# proves the two modes equal in float64 (1e-10). In float32 Adam's normalised step (m / sqrt(v)) can turn
# the rounding of a hypergradient component near zero into a visible fraction of one step of outer_lr (0.01):
# alpha and beta are held to a tenth of one step (a lost or repeated outer step moves them by about a whole
# one), the weights to 1e-3 relative, the logged losses to 1e-4 relative. Measured: 3e-5 (alpha), 1e-6 (losses).
ALPHA_ABS, WEIGHT_REL, LOSS_REL = 1e-3, 1e-3, 1e-4


def _cli(*extra: str) -> list[str]:
    return [sys.executable, "-m", "sedona_runtime.search", *TINY, *extra]


def _final(out: Path) -> dict:
    ck = torch.load(out / "checkpoints" / "last.pt", weights_only=True)
    assert ck["step"] == TOTAL
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return {"alpha": ck["bilevel"]["alpha"], "beta": ck["bilevel"]["beta"], "net": ck["net"], "metrics": metrics}


def _same_search(a: dict, b: dict) -> None:
    """The same search up to float32 rounding (ALPHA_ABS, WEIGHT_REL, LOSS_REL above)."""
    for k in ("alpha", "beta"):
        assert float((a[k] - b[k]).abs().max()) < ALPHA_ABS, (k, a[k], b[k])
    for k, ref in b["net"].items():
        if ref.is_floating_point():  # a bias before batch norm (zero gradient) holds ~1e-9 of noise: scale >= 1e-3
            d = float((a["net"][k].double() - ref.double()).abs().max() / ref.double().abs().max().clamp_min(1e-3))
            assert d < WEIGHT_REL, (k, d)
    assert [r["step"] for r in a["metrics"]] == [r["step"] for r in b["metrics"]]  # no step lost or repeated
    for ra, rb in zip(a["metrics"], b["metrics"]):
        for key in ("train_loss", "val_loss"):
            if key in rb:
                assert abs(ra[key] - rb[key]) <= LOSS_REL * abs(rb[key]), (rb["step"], key, ra[key], rb[key])


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> dict:
    """The whole search in one process with --shards 2."""
    out = tmp_path_factory.mktemp("ref") / "run"
    assert main([*TINY, "--shards", "2", "--device", "cpu", "--out", str(out)]) == 0
    return _final(out)


def test_a_killed_rank_is_named_and_the_checkpoint_resumes_in_one_process(tmp_path: Path, reference, capsys) -> None:
    out = tmp_path / "dp"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    p = subprocess.Popen(_cli("--devices", "cpu,cpu", "--out", str(out)), stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, env=env)
    try:
        for line in p.stdout:  # the checkpoint of step 3 is on disk once step 4 reports
            if "search   step 4/" in line:
                break
        rank1 = psutil.Process(p.pid).children()[0]
        rank1.send_signal(signal.SIGKILL)
        killed = time.monotonic()
        _, err = p.communicate(timeout=60)
        ended = time.monotonic() - killed
    finally:
        if p.poll() is None:
            p.kill()
            p.wait(5)
    assert p.returncode == 1, err
    assert f"rank 1 (pid {rank1.pid}) was killed by SIGKILL" in err and "checkpoint of step" in err, err
    assert "Traceback" not in err and ended < 30, (ended, err)
    assert not psutil.pid_exists(rank1.pid) or psutil.Process(rank1.pid).status() == psutil.STATUS_ZOMBIE
    # The kept checkpoint continues in one process (the config says shards = 2): the same search.
    assert main([*TINY, "--resume", "--out", str(out)]) == 0
    _same_search(_final(out), reference)


def test_a_one_process_search_resumes_on_two_ranks_and_sigterm_stops_them_at_a_step(tmp_path: Path, reference) -> None:
    out = tmp_path / "one"
    cfg = build_config(_parser().parse_args([*TINY, "--shards", "2", "--device", "cpu", "--out", str(out)]))
    assert SearchRunner(cfg, out).run(stop_after=4) is None
    # Resumed on two ranks; a scheduler's SIGTERM to rank 0 alone stops both at the same step boundary.
    p = subprocess.Popen(_cli("--resume", "--devices", "cpu,cpu", "--out", str(out)), stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        for line in p.stdout:
            if "search   step 5/" in line:
                break
        rank1 = psutil.Process(p.pid).children()[0]
        p.send_signal(signal.SIGTERM)
        rest, err = p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait(5)
    assert p.returncode == 143, err
    step = torch.load(out / "checkpoints" / "last.pt", weights_only=True)["step"]
    assert step in (5, 6) and f"stopped after step {step} of {TOTAL}" in rest and "--resume" in err, (rest, err)
    assert not psutil.pid_exists(rank1.pid) or psutil.Process(rank1.pid).status() == psutil.STATUS_ZOMBIE
    # ... and the rest in one process again: the same search as the uninterrupted one.
    assert main([*TINY, "--resume", "--out", str(out)]) == 0
    _same_search(_final(out), reference)


def test_bad_parallel_settings_are_one_line_before_anything_starts(tmp_path: Path, capsys) -> None:
    for extra, words in ((["--devices", "cpu,cpu", "--shards", "3"], "--shards 3 does not match"),
                         (["--devices", "cpu,cpu", "--batch-size", "3"], "3 rows cannot be cut into 2 shards"),
                         (["--devices", "cpu,gpu7"], "--devices")):
        assert main([*TINY, *extra, "--out", str(tmp_path / "bad")]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and words in err and "Traceback" not in err, err
    assert not (tmp_path / "bad").exists()


def test_torchrun_runs_the_same_search(tmp_path: Path, reference) -> None:
    from sedona_runtime.pipeline import rendezvous

    sock = rendezvous.listen_loopback(0)
    port = sock.getsockname()[1]
    sock.close()  # torchrun's c10d rendezvous binds it again
    torchrun = Path(sys.executable).parent / "torchrun"
    done = subprocess.run([str(torchrun), "--nnodes", "1", "--nproc-per-node", "2", "--rdzv-backend", "c10d",
                           "--rdzv-endpoint", f"127.0.0.1:{port}", "--max-restarts", "0", "-m", "sedona_runtime.search",
                           *TINY, "--device", "cpu", "--out", str(tmp_path / "tr")],
                          capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.count("final val loss") == 1  # rank 0 alone reports
    _same_search(_final(tmp_path / "tr"), reference)
