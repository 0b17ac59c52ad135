"""Reporters: plain periodic lines for logs, a rich live bar for terminals; both fed by the trainer."""
from __future__ import annotations

import io

from rich.console import Console

from sedona_runtime.training.display import PlainReporter, Progress, RichReporter, RunInfo, format_progress


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
