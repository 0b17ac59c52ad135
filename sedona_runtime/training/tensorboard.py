"""TensorBoard event files mirroring metrics.jsonl: every numeric value of every record, as a scalar."""
from __future__ import annotations

import os
from typing import Any, Iterator

from sedona_runtime.utils.errors import SedonaError

INSTALL_HINT = "pip install 'sedona-runtime[tensorboard]' (or pip install tensorboard)"


def scalars(record: dict, prefix: str = "") -> Iterator[tuple[str, float]]:
    """(tag, value) of every number in a metrics record except its `step`.

    Nested dicts join their keys with '/'; list entries are per block and become 'block1', 'block2', ...
    (e.g. {"loss": [0.5, 0.7]} -> loss/block1, loss/block2). Strings, booleans and None are skipped.
    """
    for key, value in record.items():
        if not prefix and key == "step":
            continue
        tag = f"{prefix}{key}"
        yield from _values(tag, value)


def _values(tag: str, value: Any) -> Iterator[tuple[str, float]]:
    if isinstance(value, bool) or value is None:
        return
    if isinstance(value, (int, float)):
        yield tag, float(value)
    elif isinstance(value, dict):
        yield from scalars(value, f"{tag}/")
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value, start=1):
            yield from _values(f"{tag}/block{i}", v)


class ScalarWriter:
    """Writes metrics records as TensorBoard scalars under `log_dir` (torch.utils.tensorboard).

    `purge_step`: a resumed run drops the events of steps >= it from the earlier files (they are
    recomputed), as metrics.jsonl drops its lines past the checkpoint.
    """

    def __init__(self, log_dir: str | os.PathLike, purge_step: int | None = None) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise SedonaError(f"TensorBoard event files need the tensorboard package: {INSTALL_HINT}") from None
        self.writer = SummaryWriter(log_dir=str(log_dir), purge_step=purge_step)

    def write(self, record: dict) -> None:
        """Every scalar of `record` at its `step`, flushed (a crash loses nothing already logged)."""
        step = int(record.get("step", 0))
        for tag, value in scalars(record):
            self.writer.add_scalar(tag, value, step)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()
