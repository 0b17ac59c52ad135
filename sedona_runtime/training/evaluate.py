"""Top-1/top-5 error of the final classifier and of the auxiliary ensemble of the last two blocks' heads."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

import torch

from sedona_runtime.training.block import Block
from sedona_runtime.training.losses import ensemble_log_probs, topk_errors


@dataclass
class EvalResult:
    """Errors as fractions in [0, 1]; the ensemble ones are None when K = 1 (no auxiliary head)."""

    samples: int
    top1_error: float
    top5_error: float
    ensemble_top1_error: float | None = None
    ensemble_top5_error: float | None = None


class ErrorCounter:
    """Accumulates top-1/top-5 misses of the classifier and of the ensemble over batches."""

    def __init__(self, ensemble: bool) -> None:
        self.ensemble = ensemble
        self.n = 0
        self.miss = {1: 0, 5: 0}
        self.ens_miss = {1: 0, 5: 0}

    def add(self, final_logits: torch.Tensor, y: torch.Tensor,
            prev_logits: torch.Tensor | None = None) -> None:
        """Count one batch: the last block's logits and, for the ensemble, the block before it's."""
        y = y.to(final_logits.device)
        self.n += int(y.numel())
        for k, m in topk_errors(final_logits, y).items():
            self.miss[k] += m
        if self.ensemble:
            assert prev_logits is not None
            for k, m in topk_errors(ensemble_log_probs([final_logits, prev_logits]), y).items():
                self.ens_miss[k] += m

    def result(self) -> EvalResult:
        """The accumulated errors as fractions."""
        n = max(1, self.n)
        ens = (self.ens_miss[1] / n, self.ens_miss[5] / n) if self.ensemble else (None, None)
        return EvalResult(self.n, self.miss[1] / n, self.miss[5] / n, *ens)


@torch.no_grad()
def evaluate(blocks: Sequence[Block], batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
             device: torch.device, dtype: torch.dtype = torch.float32, amp: bool = False) -> EvalResult:
    """Errors over `batches` of the chained blocks (eval mode; training modes restored afterwards)."""
    modes = [b.training for b in blocks]
    for b in blocks:
        b.eval()
    counter = ErrorCounter(ensemble=len(blocks) > 1)
    try:
        for x, y in batches:
            x = x.to(device, dtype=dtype) if x.is_floating_point() else x.to(device)
            prev = None
            with torch.autocast(device.type, dtype=torch.float16, enabled=amp and device.type == "cuda"):
                for i, b in enumerate(blocks):
                    x = b(x)
                    if len(blocks) > 1 and i == len(blocks) - 2:
                        prev = b.head(x).float()
                final = blocks[-1].head(x).float()
            counter.add(final, y, prev)
    finally:
        for b, m in zip(blocks, modes):
            b.train(m)
    return counter.result()
