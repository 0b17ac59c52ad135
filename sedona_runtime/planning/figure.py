"""The Pareto front of alpha score against predicted speedup as a PNG (matplotlib, optional)."""
from __future__ import annotations

import io
from pathlib import Path
from typing import Sequence

from sedona_runtime.planning.dp import Cut
from sedona_runtime.utils.errors import SedonaError
from sedona_runtime.utils.io import atomic_write_bytes

# (label, predicted speedup, alpha score or None) of a decoupling drawn beside the front.
Reference = tuple[str, float, "float | None"]


def save_front_png(path: str | Path, front: Sequence[Cut], references: Sequence[Reference] = (),
                   *, title: str = "", chosen: Cut | None = None, min_speedup: float | None = None) -> Path:
    """Draw the front (a staircase: each point is the best score at or above its speedup) and save it."""
    try:
        import matplotlib

        matplotlib.use("Agg", force=False)  # never needs a display
        import matplotlib.pyplot as plt
    except ImportError:
        raise SedonaError("saving the front as PNG needs matplotlib (pip install 'sedona-runtime[plot]')") from None
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    try:
        xs = [c.speedup for c in front]
        ys = [c.score for c in front]
        ax.step(xs, ys, where="pre", color="tab:blue", alpha=0.5)
        ax.plot(xs, ys, "o", color="tab:blue", label="Pareto front (exact)")
        if min_speedup is not None:
            ax.axvline(min_speedup, color="gray", linestyle=":", label=f"target {min_speedup:g}x")
        if chosen is not None:
            ax.plot([chosen.speedup], [chosen.score], "*", color="tab:red", markersize=14, label="chosen")
        for (label, speedup, score), marker in zip(references, "sDv^<>ph"):
            if score is None:
                ax.axvline(speedup, linestyle="--", alpha=0.6, label=f"{label} ({speedup:.2f}x)")
            else:
                ax.plot([speedup], [score], marker, markersize=8, label=f"{label} ({speedup:.2f}x)")
        ax.set_xlabel("predicted speedup over one-device backprop (x)")
        ax.set_ylabel("alpha score (sum of softmax(alpha)[local])")
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="best")
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="png")
    finally:
        plt.close(fig)
    return atomic_write_bytes(path, buf.getvalue())
