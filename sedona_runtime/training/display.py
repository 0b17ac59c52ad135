"""Progress reporting: the trainer calls a Reporter; the screen-owning ones live in sedona_runtime.cli.display."""
from __future__ import annotations

from dataclasses import dataclass, field


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
    """What is about to run. `blocks`: each block's label (Block.name); `layers`: each block's (layers "1-3",
    head name) as data, for displays that show them in columns (empty when unknown)."""

    blocks: list[str]
    total_steps: int
    start_step: int
    device: str
    notes: list[str] = field(default_factory=list)
    layers: list[tuple[str, str]] = field(default_factory=list)


def block_layers(blocks) -> list[tuple[str, str]]:
    """(layers "first-last", head name) of each training.block.Block."""
    return [(f"{b.first}-{b.last}", b.head_name) for b in blocks]


class Reporter:
    """No-op base: subclasses override what they show. The library never writes to the screen itself."""

    def checking_images(self, done: int, total: int, elapsed_s: float) -> None:
        """The data's image files are being checked before training (a large tree; every few seconds)."""

    def start(self, info: RunInfo) -> None:
        """Training is about to start (or resume)."""

    def step(self, progress: Progress) -> None:
        """Called every log interval."""

    def validated(self, step: int, val_error: float, best_error: float) -> None:
        """A validation pass finished."""

    def stopping(self, step: int, signal_name: str) -> None:
        """A stop signal (SIGINT = Ctrl-C, or SIGTERM) came: training stops after step `step`, saving a
        checkpoint there; a second signal stops at once without saving it."""

    def finish(self, summary: dict) -> None:
        """Training and test evaluation are done."""

    def close(self) -> None:
        """Release the screen (also called when training fails)."""


def network_line(cfg, input_shape: tuple[int, ...]) -> str:
    """What the run trains, as resolved: 'network: resnet152 at width 0.25, input 3x8x8'."""
    width = "" if cfg.model.width is None else f" at width {cfg.model.width:g}"
    return f"network: {cfg.model.arch}{width}, input {'x'.join(str(int(d)) for d in input_shape)}"
