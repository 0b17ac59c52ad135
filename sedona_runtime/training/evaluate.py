"""Top-1/top-5 error of every block's head, of the final classifier and of the auxiliary ensemble."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Sequence

import torch

from sedona_runtime.training.block import Block
from sedona_runtime.training.losses import ensemble_log_probs, topk_errors


@dataclass
class EvalResult:
    """Errors as fractions in [0, 1].

    `block_top1_error[i]` / `block_top5_error[i]` are block i+1's own head's errors on the features it
    computes (the last entry is the final classifier: the same as `top1_error`/`top5_error`), as in
    DGL's per-layer tables. The ensemble (the last two blocks' heads, paper Sec. 4.3) is None when K = 1.
    """

    samples: int
    top1_error: float
    top5_error: float
    ensemble_top1_error: float | None = None
    ensemble_top5_error: float | None = None
    block_top1_error: list[float] = field(default_factory=list)
    block_top5_error: list[float] = field(default_factory=list)


class ErrorCounter:
    """Accumulates top-1/top-5 misses of every block's head and of the ensemble over batches.

    Takes logits and labels only (no model code), so any evaluator can count with it: the single-process
    trainer, or a coordinator receiving each block's logits from its process.
    """

    def __init__(self) -> None:
        self.n = 0
        self.blocks: int | None = None
        self.miss: list[dict[int, int]] = []
        self.ens_miss = {1: 0, 5: 0}

    def add(self, block_logits: Sequence[torch.Tensor], y: torch.Tensor) -> None:
        """Count one batch: `block_logits[i]` (N, classes) of block i+1's head, the last the final classifier.

        Raises ValueError when the number of blocks changes between batches or a batch size disagrees.
        """
        if not block_logits:
            raise ValueError("ErrorCounter.add needs the logits of at least one block")
        if self.blocks is None:
            self.blocks = len(block_logits)
            self.miss = [{1: 0, 5: 0} for _ in block_logits]
        elif len(block_logits) != self.blocks:
            raise ValueError(f"got the logits of {len(block_logits)} blocks, earlier batches had {self.blocks}")
        final = block_logits[-1]
        y = y.to(final.device)
        if any(z.shape[0] != y.shape[0] for z in block_logits):
            raise ValueError(f"logits of {[z.shape[0] for z in block_logits]} samples for {y.shape[0]} labels")
        self.n += int(y.numel())
        for counts, z in zip(self.miss, block_logits):
            for k, m in topk_errors(z.to(final.device), y).items():
                counts[k] += m
        if self.blocks > 1:
            ens = ensemble_log_probs([final, block_logits[-2].to(final.device)])
            for k, m in topk_errors(ens, y).items():
                self.ens_miss[k] += m

    def result(self) -> EvalResult:
        """The accumulated errors as fractions (all zero when nothing was counted)."""
        n = max(1, self.n)
        blocks1 = [c[1] / n for c in self.miss] or [0.0]
        blocks5 = [c[5] / n for c in self.miss] or [0.0]
        ens = (self.ens_miss[1] / n, self.ens_miss[5] / n) if (self.blocks or 1) > 1 else (None, None)
        return EvalResult(self.n, blocks1[-1], blocks5[-1], *ens, block_top1_error=blocks1, block_top5_error=blocks5)


def eval_record(result: EvalResult, split: str = "val") -> dict:
    """The metrics.jsonl fields of an evaluation: `<split>_top1_error`, ..., `<split>_block_top1_error`."""
    out = {f"{split}_top1_error": result.top1_error, f"{split}_top5_error": result.top5_error}
    if result.ensemble_top1_error is not None:
        out[f"{split}_ensemble_top1_error"] = result.ensemble_top1_error
        out[f"{split}_ensemble_top5_error"] = result.ensemble_top5_error
    out[f"{split}_block_top1_error"] = list(result.block_top1_error)
    out[f"{split}_block_top5_error"] = list(result.block_top5_error)
    return out


@torch.no_grad()
def block_logits(blocks: Sequence[Block], x: torch.Tensor) -> list[torch.Tensor]:
    """Every block's head on the features of the chained blocks, in float32 (the last: the classifier)."""
    out = []
    for b in blocks:
        x = b(x)
        out.append(b.head(x).float())
    return out


@torch.no_grad()
def evaluate(blocks: Sequence[Block], batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
             device: torch.device, dtype: torch.dtype = torch.float32, amp: bool = False) -> EvalResult:
    """Errors over `batches` of the chained blocks (eval mode; training modes restored afterwards)."""
    modes = [b.training for b in blocks]
    for b in blocks:
        b.eval()
    counter = ErrorCounter()
    try:
        for x, y in batches:
            x = x.to(device, dtype=dtype) if x.is_floating_point() else x.to(device)
            with torch.autocast(device.type, dtype=torch.float16, enabled=amp and device.type == "cuda"):
                logits = block_logits(blocks, x)
            counter.add(logits, y)
    finally:
        for b, m in zip(blocks, modes):
            b.train(m)
    return counter.result()
