"""Screen output of the training CLIs: plain lines, rich live views, the result with its memory label."""
from __future__ import annotations

import io

from rich.console import Console

from sedona_runtime.cli.display import PlainReporter, RichReporter, format_progress, print_summary
from sedona_runtime.training.display import Progress, RunInfo


def _progress(step: int) -> Progress:
    return Progress(step=step, total=100, losses=[1.25, 0.5], lr=0.05, samples_per_s=640.0, elapsed_s=10.0,
                    eta_s=75.0)


def test_plain_reporter_writes_every_n_steps_and_the_last():
    lines: list[str] = []
    rep = PlainReporter(lines.append, every=50)
    rep.start(RunInfo(["block 1/2", "block 2/2"], 100, 0, "cpu"))
    for step in range(10, 101, 10):
        rep.step(_progress(step))
    rep.validated(100, 0.125, 0.1)
    steps = [line for line in lines if line.startswith("step ") and "loss" in line]
    assert [s.split()[1] for s in steps] == ["10/100", "60/100", "100/100"]
    assert "loss [1.2500 0.5000]" in steps[0] and "640 samples/s" in steps[0] and "eta 01:15" in steps[0]
    assert lines[-1] == "step 100: val error 12.50% (best 10.00%)"


def test_rich_reporter_renders_to_the_given_console():
    buf = io.StringIO()
    rep = RichReporter(Console(file=buf, force_terminal=True, width=160))
    rep.start(RunInfo(["block 1/2 (layers 1-3, aux1)"], 100, 0, "cpu"))
    rep.step(_progress(40))
    rep.validated(40, 0.2, 0.2)
    rep.step(_progress(50))
    rep.close()
    out = buf.getvalue()
    assert "block 1/2 (layers 1-3, aux1)" in out and "b1=1.250" in out and "val 20.0%" in out


def test_format_progress_hours():
    p = _progress(1)
    p.eta_s = 3 * 3600 + 62
    assert format_progress(p).endswith("eta 3:01:02")


def _summary(kind: str) -> dict:
    test = {"top1_error": 0.25, "top5_error": 0.05, "samples": 100, "ensemble_top1_error": None}
    return {"test": test, "peak_memory_bytes": [100 * 2**20, 300 * 2**20], "peak_memory_kind": kind,
            "best_val_error": None, "wall_time_s": 1.0, "samples_per_s": 10.0}


def test_summary_names_what_the_peak_memory_is():
    for kind, label in (("process_rss", "peak RSS per block: 100 MiB / 300 MiB"),
                        ("cuda_max_allocated", "peak CUDA alloc per block: 100 MiB / 300 MiB")):
        buf = io.StringIO()
        print_summary(Console(file=buf, width=200), _summary(kind), "runs/x")
        assert label in buf.getvalue() and "test accuracy 75.00%" in buf.getvalue()


def test_pipeline_table_labels_its_memory_column():
    from sedona_runtime.cli.greedy import RichPipelineReporter

    stats = {i: {"step": 5, "loss": 1.0, "samples_per_s": 50.0, "busy_frac": 0.5, "total_wait_in_s": 0.1,
                 "total_wait_out_s": 0.2, "queue_depth": 1, "peak_memory": 64 * 2**20} for i in (1, 2)}
    for kinds, words in ((["process_rss"] * 2, ["peak RSS", "64 MiB"]),
                         (["cuda_max_allocated"] * 2, ["peak CUDA alloc"]),
                         (["cuda_max_allocated", "process_rss"], ["peak memory", "64 MiB CUDA", "64 MiB RSS"])):
        buf = io.StringIO()
        rep = RichPipelineReporter(Console(file=buf, force_terminal=True, width=200))
        rep.start(RunInfo(["block 1/2", "block 2/2"], 10, 0, "2 processes"))
        rep.blocks(10, 10, {i: dict(s, memory_kind=kinds[i - 1]) for i, s in stats.items()})  # as blocks report it
        rep.close()
        assert all(w in buf.getvalue() for w in words), buf.getvalue()
