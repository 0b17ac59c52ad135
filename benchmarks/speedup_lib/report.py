"""Figures, the JSON record, the screen table and the PNG pictures of a speedup benchmark run."""
from __future__ import annotations

import logging
import platform
from pathlib import Path
from typing import Any

import torch

log = logging.getLogger(__name__)


def environment() -> dict[str, Any]:
    """Hardware and library versions the figures came from."""
    import psutil

    env = {"python": platform.python_version(), "torch": torch.__version__, "platform": platform.platform(),
           "cpu": platform.processor() or platform.machine(), "cores": psutil.cpu_count(logical=True),
           "cuda": torch.cuda.is_available()}
    if torch.cuda.is_available():
        env["gpus"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    return env


def table_rows(result: dict) -> list[list[str]]:
    """One row per measured configuration: name, step time, samples/s, speedup, ideal, efficiency, predicted."""
    base = result["baseline"]
    rows = [["backprop (1 process)", f"{base['step_s'] * 1e3:.1f}", f"{base['samples_per_s']:.0f}", "1.00", "-", "-", "-"]]
    for d in result["decouplings"]:
        mark = " (!)" if d.get("flags") else ""  # see the verdict's WARNING below the table
        rows.append([d["name"], f"{d['step_s'] * 1e3:.1f}", f"{d['samples_per_s']:.0f}", f"{d['speedup']:.2f}{mark}",
                     f"{d['ideal_speedup']:.2f}", f"{d['efficiency']:.2f}{mark}", f"{d['predicted_speedup']:.2f}"])
    return rows


HEADER = ["run", "step ms", "samples/s", "speedup", "ideal", "efficiency", "predicted"]


def save_pngs(result: dict, out: Path) -> list[str]:
    """Timeline of each block's busy/idle time per decoupling, and speedups per decoupling."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:  # plotting is an optional extra
        log.warning("matplotlib is not installed: no PNG pictures (pip install sedona-runtime[plot])")
        return []
    written = []
    decs = result["decouplings"]
    fig, axes = plt.subplots(len(decs), 1, figsize=(10, 1.2 + 1.1 * len(decs) * 1.5), squeeze=False)
    for ax, d in zip(axes[:, 0], decs):
        timeline = d["timeline"]
        t0 = min(a for spans in timeline.values() for _, a, _ in spans)
        for i, spans in sorted(timeline.items(), key=lambda kv: int(kv[0])):
            ax.broken_barh([(a - t0, b - a) for _, a, b in spans], (int(i) - 0.4, 0.8), color=f"C{int(i) - 1}")
        ax.set_yticks(range(1, len(timeline) + 1), [f"block {i}" for i in range(1, len(timeline) + 1)])
        ax.invert_yaxis()
        ax.set_title(f"{d['name']}: busy (bars) and idle (gaps), one repetition", fontsize=9)
        ax.set_xlabel("seconds")
    fig.tight_layout()
    written.append(_save(fig, out / "timeline.png"))

    fig, ax = plt.subplots(figsize=(7, 3.5))
    names = [d["name"] for d in decs]
    xs = range(len(decs))
    w = 0.27
    ax.bar([x - w for x in xs], [d["speedup"] for d in decs], w, label="measured")
    ax.bar(list(xs), [d["ideal_speedup"] for d in decs], w, label="ideal (measured profile)")
    ax.bar([x + w for x in xs], [d["predicted_speedup"] for d in decs], w, label="predicted (1-device profile)")
    ax.axhline(1.0, color="k", lw=0.8)
    ax.set_xticks(list(xs), names, fontsize=8)
    ax.set_ylabel("speedup over backprop")
    ax.set_title(f"{result['config']['arch']} x{result['config']['width']}, K={result['config']['blocks']}, "
                 f"batch {result['config']['batch_size']}", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    written.append(_save(fig, out / "speedup.png"))
    return written


def _save(fig: Any, path: Path) -> str:
    """Render to memory, then write atomically: a crash never leaves half a PNG."""
    import io

    import matplotlib.pyplot as plt

    from sedona_runtime.utils.io import atomic_write_bytes

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())
    return str(path)
