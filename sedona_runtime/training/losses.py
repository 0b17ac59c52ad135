"""Local losses of a block and the auxiliary-ensemble combination of head outputs."""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F


def local_loss(head: nn.Module, features: torch.Tensor, y: torch.Tensor,
               label_smoothing: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(loss, logits) of `head` on `features`: the head's own `local_loss` when it has one (every `Head`
    does; PredSim overrides it), else label-smoothed cross-entropy of its output."""
    if hasattr(head, "local_loss"):
        return head.local_loss(features, y, label_smoothing)
    logits = head(features)
    return F.cross_entropy(logits, y, label_smoothing=label_smoothing), logits


def ensemble_log_probs(logits: Sequence[torch.Tensor]) -> torch.Tensor:
    """Sum of the log-softmax outputs of several heads (paper Sec. 4.3: the last two blocks' heads)."""
    if not logits:
        raise ValueError("ensemble of no heads")
    # log-softmax in float32 at least, so a float16 (autocast) logit tensor does not lose the ranking.
    out = [F.log_softmax(z.float() if z.dtype in (torch.float16, torch.bfloat16) else z, dim=1) for z in logits]
    return torch.stack(out).sum(dim=0)


def topk_errors(scores: torch.Tensor, y: torch.Tensor, ks: Sequence[int] = (1, 5)) -> dict[int, int]:
    """Number of samples whose label is not among the top-k scores, for each k (k clamped to #classes)."""
    n_classes = scores.shape[1]
    kmax = min(max(ks), n_classes)
    top = scores.topk(kmax, dim=1).indices                     # (N, kmax), best first
    hit = top.eq(y.view(-1, 1))
    return {k: int((~hit[:, : min(k, n_classes)].any(dim=1)).sum()) for k in ks}
