"""A search's checkpoint on disk: last.pt, and the weight memory as one file per entry, each written once."""
from __future__ import annotations

from pathlib import Path

from sedona_runtime.search.memory import WeightMemory, WeightSet
from sedona_runtime.training.checkpoint import safe_load
from sedona_runtime.utils.errors import SedonaError
from sedona_runtime.utils.io import atomic_torch_save

CHECKPOINT_VERSION = 2  # 2: memory entries in checkpoints/memory/, one file each, with momentum and step count


def load_checkpoint(path: Path) -> dict:
    """A search's checkpoints/last.pt (SedonaError if missing, unreadable or of another version).

    Loaded with `weights_only=True` (training.checkpoint.safe_load): tensors and plain values, never code.
    """
    if not Path(path).is_file():
        raise SedonaError(f"no search checkpoint at {path}")
    ck = safe_load(path, "checkpoint")
    if not isinstance(ck, dict) or ck.get("version") != CHECKPOINT_VERSION:
        raise SedonaError(f"{path}: not a search checkpoint of version {CHECKPOINT_VERSION}")
    return ck


class MemoryFiles:
    """`checkpoints/memory/entry-<age>.pt`, one per memory entry (its weights, momentum and step count).

    An entry never changes after it enters the memory, and its age is unique, so a checkpoint writes only
    the entries that are not on disk yet and names the rest by age in last.pt: about one entry per outer
    step at most, instead of the whole memory (50 entries) each time. Order keeps every committed
    checkpoint loadable: new entry files first, then last.pt, then the files last.pt no longer names.
    """

    def __init__(self, directory: Path) -> None:
        self.dir = Path(directory)

    def path(self, age: int) -> Path:
        return self.dir / f"entry-{age:08d}.pt"

    def on_disk(self) -> dict[int, Path]:
        """{age: file} of every entry file present."""
        if not self.dir.is_dir():
            return {}
        out = {}
        for p in self.dir.glob("entry-*.pt"):
            try:
                out[int(p.stem.split("-", 1)[1])] = p
            except ValueError:
                continue
        return out

    def write_new(self, memory: WeightMemory) -> int:
        """Write the entries of `memory` that have no file yet; returns how many were written."""
        present = self.on_disk()
        written = 0
        for age, weights in memory.items():
            if age not in present:
                atomic_torch_save(self.path(age), weights.to_dict())
                written += 1
        return written

    def remove_unreferenced(self, memory: WeightMemory) -> None:
        """Delete entry files whose age `memory` no longer holds (call after last.pt is committed)."""
        keep = set(memory.ages)
        for age, p in self.on_disk().items():
            if age not in keep:
                p.unlink(missing_ok=True)

    def read(self, age: int) -> WeightSet:
        """The entry of `age` (SedonaError naming the file if it is missing or unreadable)."""
        p = self.path(age)
        if not p.is_file():
            raise SedonaError(f"weight-memory entry {p} named by the checkpoint is missing")
        entry = safe_load(p, "weight-memory entry")
        try:
            return WeightSet.from_dict(entry)
        except (KeyError, TypeError, ValueError) as exc:
            raise SedonaError(f"{p}: not a weight-memory entry ({type(exc).__name__}: {exc})") from None

    def clear(self) -> None:
        """Remove every entry file (a fresh run in a replaced directory)."""
        for p in self.on_disk().values():
            p.unlink(missing_ok=True)
