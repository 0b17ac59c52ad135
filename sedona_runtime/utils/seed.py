"""Deterministic seeding: stable seeds derived from (seed, purpose, index...) and process-wide seeding."""
from __future__ import annotations

import hashlib
import random
from contextlib import contextmanager
from typing import Any, Iterator

import torch

_MASK63 = (1 << 63) - 1


def derive_seed(*parts: int | str) -> int:
    """A 63-bit seed that depends only on `parts` (stable across processes, platforms and Python runs).

    Python's `hash()` is salted per process for strings, so it cannot be used: the pipeline's
    coordinator and the single-process trainer must derive identical seeds.
    """
    text = "\x1f".join(f"{type(p).__name__}:{p}" for p in parts)
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little") & _MASK63


def make_generator(*parts: int | str) -> torch.Generator:
    """A CPU torch.Generator seeded with `derive_seed(*parts)`."""
    gen = torch.Generator()
    gen.manual_seed(derive_seed(*parts))
    return gen


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA) so that model initialisation is reproducible."""
    random.seed(seed)
    try:
        import numpy as np

        np.random.seed(seed % (1 << 32))
    except ImportError:  # numpy is a dependency, but seeding must not be what breaks without it
        pass
    torch.manual_seed(seed)  # also seeds every CUDA device


@contextmanager
def seeded_globals(*parts: int | str) -> Iterator[None]:
    """Seed torch's (CPU), Python's and NumPy's global generators from `derive_seed(*parts)` for the
    duration of the block, then restore their previous states (user code drawing from the global
    generators becomes a pure function of `parts` without disturbing anyone else's randomness)."""
    seed = derive_seed(*parts)
    torch_state, py_state = torch.get_rng_state(), random.getstate()
    try:
        import numpy as np
    except ImportError:  # pragma: no cover - numpy is a dependency
        np = None  # type: ignore[assignment]
    np_state: Any = np.random.get_state() if np is not None else None
    torch.default_generator.manual_seed(seed)  # the CPU generator only: CUDA streams stay untouched
    random.seed(seed)
    if np is not None:
        np.random.seed(seed % (1 << 32))
    try:
        yield
    finally:
        torch.set_rng_state(torch_state)
        random.setstate(py_state)
        if np is not None:
            np.random.set_state(np_state)
