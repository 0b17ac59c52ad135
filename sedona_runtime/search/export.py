"""The search's results on disk: continuous (alpha, beta), discretized decouplings (Sec. 3.4), baselines."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Sequence

import torch

from sedona_runtime.decoupling import discretize, save_decoupling
from sedona_runtime.utils.errors import SedonaError
from sedona_runtime.utils.io import atomic_write_json
from sedona_runtime.utils.seed import make_generator

log = logging.getLogger(__name__)

LAYOUT = (
    "alpha[l] = [logit_local, logit_backprop] for the boundary after layer l+1 (layers are 1-based; "
    "the last layer has none); beta[l] = logits over head_pool"
)


def valid_blocks(blocks: Sequence[int], num_layers: int) -> list[int]:
    """The requested K values a network of `num_layers` layers can be cut into (K <= L), sorted."""
    return sorted({k for k in blocks if 2 <= k <= num_layers})


def random_logits(rows: int, cols: int, *seed_parts: int | str) -> torch.Tensor:
    """Standard-normal logits from a seeded generator (Table 4's random alpha or beta)."""
    return torch.randn(rows, cols, generator=make_generator(*seed_parts), dtype=torch.float64)


def write_results(
    out_dir: str | Path,
    alpha: torch.Tensor,
    beta: torch.Tensor,
    head_pool: Sequence[str],
    arch: str,
    num_layers: int,
    blocks: Sequence[int],
    *,
    random_alpha: bool = False,
    random_beta: bool = False,
    seed: int = 0,
    source: str = "",
) -> dict[str, list[str]]:
    """alpha_beta.json and one decoupling file per K (`<arch>_k<K>.json`), plus the Table 4 baselines.

    Every decoupling carries the continuous alpha and beta it was cut from (random ones for the
    baselines), so that any other K can be re-derived from it. Returns {kind: [paths]}.
    """
    out = Path(out_dir)
    a = alpha.detach().to("cpu", torch.float64)
    b = beta.detach().to("cpu", torch.float64)
    ks = valid_blocks(blocks, num_layers)
    skipped = sorted(set(blocks) - set(ks))
    if skipped:
        log.warning("%s has %d layers: no decoupling for K = %s", arch, num_layers, ", ".join(map(str, skipped)))
    atomic_write_json(out / "alpha_beta.json", {
        "source": source, "layout": LAYOUT, "arch": arch, "num_layers": num_layers,
        "head_pool": list(head_pool), "alpha": a.tolist(), "beta": b.tolist(),
        "softmax_alpha_local": torch.softmax(a, 1)[:, 0].tolist(),
    })
    variants = {"learned": (a, b, "")}
    if random_alpha:
        variants["random_alpha"] = (random_logits(num_layers - 1, 2, "random-alpha", seed), b, "_random_alpha")
    if random_beta:
        variants["random_beta"] = (a, random_logits(num_layers - 1, len(head_pool), "random-beta", seed), "_random_beta")
    written: dict[str, list[str]] = {}
    for kind, (va, vb, suffix) in variants.items():
        note = source if kind == "learned" else f"{source}; Table 4 baseline: {kind.replace('_', ' ')}"
        for k in ks:
            dec = discretize(va, vb, k, list(head_pool), arch, num_layers, source=note)
            path = out / f"{arch.replace(':', '.')}_k{k}{suffix}.json"  # a user network's import path, file-safe
            save_decoupling(dec, path)
            written.setdefault(kind, []).append(str(path))
    return written


def export_checkpoint(out_dir: str | Path) -> dict:
    """Write the decouplings of a stopped search from its last checkpoint's (alpha, beta).

    Same files as a finished search (alpha_beta.json, `<arch>_k<K>.json`, the figure), each decoupling's
    `source` saying how many outer steps it had; the run stays resumable. Returns {"decouplings",
    "figure", "outer_steps", "search_steps"}. SedonaError when there is no search in `out_dir`, or when it
    stopped before its first outer step (alpha and beta are still their initial zeros).
    """
    from sedona_runtime.search.checkpoint import load_checkpoint
    from sedona_runtime.search.config import SearchConfig, check_blocks
    from sedona_runtime.search.figure import plot_alpha_beta
    from sedona_runtime.training.run_dir import RunDir
    from sedona_runtime.utils.config import from_dict

    run = RunDir(out_dir)
    cfg = from_dict(SearchConfig, run.read_config(), where=str(run.config))
    ck = load_checkpoint(run.last_checkpoint)
    num_layers, ks = check_blocks(cfg)
    pretrain = cfg.pretrain_steps if cfg.pretrain else 0
    done = int(ck["step"]) - pretrain
    if done <= 0:
        raise SedonaError(f"{out_dir}: the search stopped during pretraining (step {ck['step']} of its {pretrain} "
                          "pretraining steps), before "
                          "any outer step: alpha and beta are still zero. Continue it with --resume")
    alpha, beta = ck["bilevel"]["alpha"], ck["bilevel"]["beta"]
    source = (f"SEDONA search, stopped after {done} of {cfg.search_steps} outer steps: {cfg.model.arch} on "
              f"{cfg.data.dataset}, {pretrain} pretraining steps (T = {cfg.inner_steps}), seed {cfg.seed}")
    files = write_results(run.path, alpha, beta, cfg.head_pool, cfg.model.arch, num_layers, ks,
                          random_alpha=cfg.random_alpha, random_beta=cfg.random_beta, seed=cfg.seed, source=source)
    figure = plot_alpha_beta(alpha, beta, cfg.head_pool, run.path / "alpha_beta.png",
                             title=f"{cfg.model.arch} after {done} of {cfg.search_steps} outer steps")
    return {"decouplings": files, "figure": str(figure) if figure else None, "outer_steps": done,
            "search_steps": cfg.search_steps}
