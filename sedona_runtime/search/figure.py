"""A picture of the search result like the paper's Figure 4: softmax(alpha)_0 per layer, argmax beta."""
from __future__ import annotations

import io
import logging
from pathlib import Path
from typing import Sequence

import torch

from sedona_runtime.utils.io import atomic_write_bytes

log = logging.getLogger(__name__)


def plot_alpha_beta(
    alpha: torch.Tensor, beta: torch.Tensor, head_pool: Sequence[str], path: str | Path, title: str = ""
) -> Path | None:
    """Bar chart of softmax(alpha[l])_0 per boundary, each bar labelled with its argmax-beta head.

    matplotlib is an optional dependency: without it this logs a warning and returns None.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")  # no display needed; must precede pyplot's import
        import matplotlib.pyplot as plt
    except ImportError:
        log.warning("matplotlib is not installed: skipping the alpha/beta figure (pip install matplotlib)")
        return None
    a = torch.softmax(alpha.detach().double().cpu(), 1)[:, 0].tolist()
    heads = beta.detach().argmax(1).tolist()
    layers = list(range(1, len(a) + 1))
    colors = plt.get_cmap("viridis")
    fig, ax = plt.subplots(figsize=(max(5.0, 0.35 * len(a) + 2), 3.2))
    bars = ax.bar(layers, a, color=[colors(h / max(1, len(head_pool) - 1)) for h in heads])
    for bar, h in zip(bars, heads):
        ax.text(bar.get_x() + bar.get_width() / 2, bar.get_height() + 0.01, str(h + 1), ha="center", va="bottom",
                fontsize=7)
    ax.axhline(0.5, color="grey", lw=0.6, ls="--")
    ax.set_ylim(0, 1.1)
    ax.set_xlabel("layer l (cut after it)")
    ax.set_ylabel("softmax(alpha_l)_0  (local)")
    ax.set_xticks(layers)
    ax.tick_params(axis="x", labelsize=7)
    ax.set_title(title or f"learned decoupling (bar label: argmax beta in {', '.join(head_pool)}; 1-based)", fontsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    try:
        fig.savefig(buf, format="png", dpi=150)
    finally:
        plt.close(fig)
    return atomic_write_bytes(path, buf.getvalue())
