"""Turn SEDONA's continuous (alpha, beta) into a K-block decoupling (the released code's rule)."""
from __future__ import annotations

from typing import Sequence

import torch

from sedona_runtime.decoupling.schema import BlockSpec, Decoupling, validate
from sedona_runtime.utils.errors import SedonaError

Matrix = Sequence[Sequence[float]] | torch.Tensor


def boundary_scores(alpha: Matrix) -> list[float]:
    """softmax(alpha[i])[0] per boundary i (the probability of cutting after layer i+1), in float64."""
    a = torch.as_tensor(alpha, dtype=torch.float64)
    if a.dim() != 2 or a.shape[1] != 2:
        raise SedonaError(f"alpha must have shape [L-1, 2], got {list(a.shape)}")
    return torch.softmax(a, dim=1)[:, 0].tolist()


def rank_boundaries(alpha: Matrix) -> list[int]:
    """Boundary indices (0-based: i is the cut after layer i+1), best first.

    Ordered by softmax(alpha[i])[0] descending; exact ties go to the earlier boundary. Ties are real:
    the released values are rounded to 6 decimals, so boundaries the search left undecided (logits
    ~1e-7) all score exactly 0.5. The rule is a stable sort, so the order never depends on platform.
    """
    scores = boundary_scores(alpha)
    return sorted(range(len(scores)), key=lambda i: (-scores[i], i))


def best_head(beta_row: Sequence[float], head_pool: Sequence[str]) -> str:
    """argmax over the head pool; exact ties go to the head listed first (the pool is ordered cheapest first)."""
    row = [float(v) for v in beta_row]
    if len(row) != len(head_pool):
        raise SedonaError(f"beta row has {len(row)} entries but the head pool has {len(head_pool)}")
    best = max(range(len(row)), key=lambda m: (row[m], -m))
    return head_pool[best]


def blocks_from_boundaries(boundaries: Sequence[int], heads: Sequence[str], num_layers: int) -> list[BlockSpec]:
    """Blocks for cuts after the 1-based layers `boundaries` (ascending), block k getting `heads[k]`."""
    blocks, first = [], 1
    for last, head in zip(boundaries, heads):
        blocks.append(BlockSpec(first=first, last=last, head=head))
        first = last + 1
    blocks.append(BlockSpec(first=first, last=num_layers, head=None))
    return blocks


def discretize(
    alpha: Matrix,
    beta: Matrix,
    K: int,  # noqa: N803 - the paper's name
    head_pool: Sequence[str],
    arch: str,
    num_layers: int,
    *,
    source: str = "",
) -> Decoupling:
    """The K-block decoupling: cut at the K-1 best-ranked boundaries, each with its argmax-beta head.

    The result keeps alpha, beta and head_pool, so any other K can be re-derived from it.
    """
    alpha_l = torch.as_tensor(alpha, dtype=torch.float64).tolist()
    beta_l = torch.as_tensor(beta, dtype=torch.float64).tolist()
    if len(alpha_l) != num_layers - 1 or len(beta_l) != num_layers - 1:
        raise SedonaError(
            f"{arch}: alpha and beta need one row per boundary ({num_layers - 1}), "
            f"got {len(alpha_l)} and {len(beta_l)}"
        )
    if not isinstance(K, int) or isinstance(K, bool) or not 1 <= K <= num_layers:
        raise SedonaError(f"{arch}: K must be an integer in 1..{num_layers} (the number of layers), got {K!r}")
    cuts = sorted(rank_boundaries(alpha_l)[: K - 1])
    boundaries = [i + 1 for i in cuts]  # boundary index i is the cut after 1-based layer i+1
    heads = [best_head(beta_l[i], head_pool) for i in cuts]
    dec = Decoupling(
        arch=arch,
        num_layers=num_layers,
        blocks=blocks_from_boundaries(boundaries, heads, num_layers),
        alpha=alpha_l,
        beta=beta_l,
        head_pool=list(head_pool),
        source=source,
    )
    validate(dec)
    return dec


def rediscretize(dec: Decoupling, K: int, *, source: str | None = None) -> Decoupling:  # noqa: N803
    """Re-derive `dec` (which must carry alpha/beta) at a different K."""
    if dec.alpha is None or dec.beta is None or dec.head_pool is None:
        raise SedonaError(
            f"{dec.origin or dec.arch}: carries no alpha/beta/head_pool, so it cannot be re-derived for K={K}"
        )
    return discretize(
        dec.alpha, dec.beta, K, dec.head_pool, dec.arch, dec.num_layers,
        source=dec.source if source is None else source,
    )
