"""Turn SEDONA's continuous (alpha, beta) into a K-block decoupling: an optional ranking first, then alpha/beta."""
from __future__ import annotations

from typing import Any, Sequence

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


def rank_boundaries(alpha: Matrix, ranking: Sequence[Sequence[Any]] | None = None) -> list[int]:
    """Boundary indices (0-based: i is the cut after layer i+1), best first.

    The layers of `ranking` ([layer, head] pairs, 1-based layers) come first, in its order; the rest
    follow by softmax(alpha[i])[0] descending, computed in float64 from the stored values, exact ties
    going to the earlier boundary (a stable sort, so the order never depends on platform). Why the
    ranking: 19 released ResNet-152 boundaries score exactly 0.5 in float32, where the release's own
    topk picks in an unspecified order. float64 separates every released score (no exact tie is left),
    but the paper's Tables 10-13 order some of them otherwise (e.g. ResNet-101's 29 before 19), so the
    shipped files carry the tables as `ranking` and the scores decide only beyond them.
    """
    scores = boundary_scores(alpha)
    first = [int(layer) - 1 for layer, _ in ranking or ()]
    if any(not 0 <= i < len(scores) for i in first) or len(set(first)) != len(first):
        raise SedonaError(f"ranking must name distinct boundary layers in 1..{len(scores)}, got {[i + 1 for i in first]}")
    taken = set(first)
    return first + sorted((i for i in range(len(scores)) if i not in taken), key=lambda i: (-scores[i], i))


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


def boundary_head(i: int, beta: Matrix, head_pool: Sequence[str], ranking: Sequence[Sequence[Any]] | None = None) -> str:
    """The head of 0-based boundary i: the ranking's head where it lists the layer, else argmax beta[i]."""
    for layer, head in ranking or ():
        if int(layer) == i + 1:
            return str(head)
    return best_head(torch.as_tensor(beta, dtype=torch.float64)[i].tolist(), head_pool)


def discretize(
    alpha: Matrix,
    beta: Matrix,
    K: int,  # noqa: N803 - the paper's name
    head_pool: Sequence[str],
    arch: str,
    num_layers: int,
    *,
    ranking: Sequence[Sequence[Any]] | None = None,
    source: str = "",
) -> Decoupling:
    """The K-block decoupling: cut at the K-1 best-ranked boundaries (rank_boundaries), each with its
    head (boundary_head: the ranking's, else argmax beta).

    Without `ranking` this is the release's rule (models/base.py update_model: topk of
    softmax(alpha)[:, 0], argmax beta) with a stated tie rule. With it (the shipped files carry the
    paper's Tables 10-13) the ranking's layers and heads decide first. The result keeps alpha, beta,
    head_pool and ranking, so any other K can be re-derived from it. SedonaError for a K outside
    1..num_layers, a shape mismatch, or a ranking naming a layer twice or outside 1..num_layers-1.
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
    ranking_l = None if ranking is None else [[int(layer), str(head)] for layer, head in ranking]
    cuts = sorted(rank_boundaries(alpha_l, ranking_l)[: K - 1])
    boundaries = [i + 1 for i in cuts]  # boundary index i is the cut after 1-based layer i+1
    heads = [boundary_head(i, beta_l, head_pool, ranking_l) for i in cuts]
    dec = Decoupling(
        arch=arch,
        num_layers=num_layers,
        blocks=blocks_from_boundaries(boundaries, heads, num_layers),
        alpha=alpha_l,
        beta=beta_l,
        head_pool=list(head_pool),
        source=source,
        ranking=ranking_l,
    )
    validate(dec)
    return dec


def rediscretize(dec: Decoupling, K: int, *, source: str | None = None) -> Decoupling:  # noqa: N803
    """Re-derive `dec` (which must carry alpha/beta; its ranking too, if any) at a different K."""
    if dec.alpha is None or dec.beta is None or dec.head_pool is None:
        raise SedonaError(
            f"{dec.origin or dec.arch}: carries no alpha/beta/head_pool, so it cannot be re-derived for K={K}"
        )
    return discretize(
        dec.alpha, dec.beta, K, dec.head_pool, dec.arch, dec.num_layers, ranking=dec.ranking,
        source=dec.source if source is None else source,
    )
