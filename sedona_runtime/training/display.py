"""Progress reporting: the trainer calls a Reporter; the CLI picks a rich live display or plain lines."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable


@dataclass
class Progress:
    """One training step as the reporter sees it (step = completed steps)."""

    step: int
    total: int
    losses: list[float]
    lr: float
    samples_per_s: float
    elapsed_s: float
    eta_s: float


@dataclass
class RunInfo:
    """What is about to run."""

    blocks: list[str]
    total_steps: int
    start_step: int
    device: str
    notes: list[str] = field(default_factory=list)


class Reporter:
    """No-op base: subclasses override what they show. The library never writes to the screen itself."""

    def start(self, info: RunInfo) -> None:
        """Training is about to start (or resume)."""

    def step(self, progress: Progress) -> None:
        """Called every log interval."""

    def validated(self, step: int, val_error: float, best_error: float) -> None:
        """A validation pass finished."""

    def finish(self, summary: dict) -> None:
        """Training and test evaluation are done."""

    def close(self) -> None:
        """Release the screen (also called when training fails)."""


def _fmt_time(seconds: float) -> str:
    seconds = max(0, int(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"


def format_progress(p: Progress) -> str:
    """One plain line: step, per-block losses, lr, throughput, ETA."""
    losses = " ".join(f"{v:.4f}" for v in p.losses)
    return (f"step {p.step}/{p.total}  loss [{losses}]  lr {p.lr:.3g}  "
            f"{p.samples_per_s:.0f} samples/s  eta {_fmt_time(p.eta_s)}")


class PlainReporter(Reporter):
    """Periodic plain lines through `write` (for logs and pipes), at most every `every` steps."""

    def __init__(self, write: Callable[[str], None], every: int = 50) -> None:
        self.write = write
        self.every = max(1, every)
        self._last = -1

    def start(self, info: RunInfo) -> None:
        what = "resuming at step %d" % info.start_step if info.start_step else "training"
        self.write(f"{what}: {len(info.blocks)} block(s) on {info.device}, {info.total_steps} steps")
        for line in info.blocks + info.notes:
            self.write(f"  {line}")

    def step(self, progress: Progress) -> None:
        if self._last < 0 or progress.step - self._last >= self.every or progress.step == progress.total:
            self._last = progress.step
            self.write(format_progress(progress))

    def validated(self, step: int, val_error: float, best_error: float) -> None:
        self.write(f"step {step}: val error {val_error:.2%} (best {best_error:.2%})")


class RichReporter(Reporter):
    """A rich live view: a progress bar with ETA and a table of per-block losses and throughput.

    The console is the caller's (the CLI owns the screen); this class only renders to it.
    """

    def __init__(self, console) -> None:  # rich.console.Console
        from rich.progress import BarColumn, Progress as Bar, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        self.console = console
        self.bar = Bar(TextColumn("[bold]train"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                       TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(),
                       TextColumn("{task.fields[info]}"), console=console, transient=False)
        self.task = None
        self.blocks: list[str] = []
        self.val = ""

    def start(self, info: RunInfo) -> None:
        self.blocks = info.blocks
        for line in info.blocks + info.notes:
            self.console.print(f"  {line}", markup=False, highlight=False)
        self.task = self.bar.add_task("train", total=info.total_steps, completed=info.start_step, info="")
        self.bar.start()

    def step(self, progress: Progress) -> None:
        losses = " ".join(f"b{i + 1}={v:.3f}" for i, v in enumerate(progress.losses))
        info = f"{losses}  {progress.samples_per_s:.0f}/s  lr {progress.lr:.2g}{self.val}"
        self.bar.update(self.task, completed=progress.step, info=info)

    def validated(self, step: int, val_error: float, best_error: float) -> None:
        self.val = f"  val {val_error:.1%} (best {best_error:.1%})"

    def close(self) -> None:
        self.bar.stop()
