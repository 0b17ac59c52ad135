"""Training augmentation on whole batches of [0,1] tensors, every random draw from an explicit generator.

Each augmentation splits into `draw(n, h, w, gen)`, the random draws of a batch (small CPU tensors), and
`apply(x, draws)`, a deterministic function of the batch and its draws on x's device. The pipeline's
coordinator draws (a pure function of the step's seed) and block 1 applies on its own device, exactly
as the single-process trainer does on its device: same draws, same input.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from sedona_runtime.utils.errors import SedonaError

Draws = dict[str, torch.Tensor]


class Augment:
    """Maps a float batch (N,C,H,W) in [0,1] to a batch of the same shape and range."""

    def draw(self, n: int, h: int, w: int, gen: torch.Generator) -> Draws:
        """The random draws of a batch of n images of h x w (CPU tensors, from `gen` only)."""
        raise NotImplementedError

    def apply(self, x: torch.Tensor, draws: Draws) -> torch.Tensor:
        """The augmented batch: a deterministic function of x and its draws, computed on x's device."""
        raise NotImplementedError

    def __call__(self, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        n, _, h, w = x.shape
        return self.apply(x, self.draw(n, h, w, gen))

    def spec(self) -> dict:
        """Its kind and parameters as JSON values (a run's spec records it; `augment_from_spec` rebuilds it)."""
        raise NotImplementedError


def _flip_mask(n: int, gen: torch.Generator) -> torch.Tensor:
    return torch.rand(n, generator=gen) < 0.5


class PadCropFlip(Augment):
    """Zero-pad by `padding`, take a random crop of the original size, flip horizontally with p = 0.5.

    The CIFAR recipe of the paper (Appendix E). One gather per batch: crop offsets and the flip are
    folded into per-sample row/column indices.
    """

    def __init__(self, padding: int = 4, flip: bool = True) -> None:
        self.padding, self.flip = padding, flip

    def draw(self, n: int, h: int, w: int, gen: torch.Generator) -> Draws:
        p = self.padding
        oy = torch.randint(0, 2 * p + 1, (n,), generator=gen)
        ox = torch.randint(0, 2 * p + 1, (n,), generator=gen)
        flip = _flip_mask(n, gen) if self.flip else torch.zeros(n, dtype=torch.bool)
        return {"oy": oy, "ox": ox, "flip": flip}

    def apply(self, x: torch.Tensor, draws: Draws) -> torch.Tensor:
        n, c, h, w = x.shape
        p = self.padding
        oy, ox, flip = (draws[k].to(x.device) for k in ("oy", "ox", "flip"))
        hp, wp = h + 2 * p, w + 2 * p
        xp = F.pad(x, (p, p, p, p)).reshape(n, c, hp * wp)
        rows = oy[:, None] + torch.arange(h, device=x.device)  # (N,H) rows of the padded image
        cols = ox[:, None] + torch.arange(w, device=x.device)  # (N,W)
        cols = torch.where(flip[:, None], cols.flip(1), cols)
        # A flat gather is ~5x faster than the equivalent 4-D advanced indexing on CPU.
        idx = (rows[:, :, None] * wp + cols[:, None, :]).reshape(n, 1, h * w).expand(n, c, h * w)
        return xp.gather(2, idx).reshape(n, c, h, w)

    def spec(self) -> dict:
        return {"kind": "pad_crop_flip", "padding": self.padding, "flip": self.flip}

    def __repr__(self) -> str:
        return f"PadCropFlip(padding={self.padding}, flip={self.flip})"


def _sample(theta: torch.Tensor, x: torch.Tensor, padding_mode: str) -> torch.Tensor:
    grid = F.affine_grid(theta.to(x.device, x.dtype), list(x.shape), align_corners=False)
    # Bilinear weights are a convex combination, so a [0,1] input stays in [0,1]; clamp absorbs rounding.
    return F.grid_sample(x, grid, mode="bilinear", padding_mode=padding_mode, align_corners=False).clamp_(0.0, 1.0)


class PadCropRotateFlip(Augment):
    """Tiny-ImageNet recipe of the paper: padding + random crop, random rotation, random flip.

    One affine resampling per batch: a random integer shift in [-padding, padding] pixels (zero fill,
    as padding + crop), a rotation uniform in [-degrees, degrees], and a horizontal flip with p = 0.5.
    The draws are the affine matrices themselves (N, 2, 3), float64.
    """

    def __init__(self, padding: int = 8, degrees: float = 15.0) -> None:
        self.padding, self.degrees = padding, degrees

    def draw(self, n: int, h: int, w: int, gen: torch.Generator) -> Draws:
        p = self.padding
        dy = torch.randint(-p, p + 1, (n,), generator=gen).double()
        dx = torch.randint(-p, p + 1, (n,), generator=gen).double()
        angle = (torch.rand(n, generator=gen, dtype=torch.float64) * 2 - 1) * math.radians(self.degrees)
        sign = torch.where(_flip_mask(n, gen), -1.0, 1.0).double()
        cos, sin = torch.cos(angle), torch.sin(angle)
        # Output -> input coordinates (normalized): x_in = R(angle) @ (sign * x_out, y_out) - shift.
        theta = torch.stack(
            [torch.stack([cos * sign, -sin, -2 * dx / w], 1), torch.stack([sin * sign, cos, -2 * dy / h], 1)], 1
        )
        return {"theta": theta}

    def apply(self, x: torch.Tensor, draws: Draws) -> torch.Tensor:
        return _sample(draws["theta"], x, "zeros")

    def spec(self) -> dict:
        return {"kind": "pad_crop_rotate_flip", "padding": self.padding, "degrees": self.degrees}

    def __repr__(self) -> str:
        return f"PadCropRotateFlip(padding={self.padding}, degrees={self.degrees})"


class RandomResizedCropFlip(Augment):
    """ImageNet recipe: torchvision's RandomResizedCrop (scale, ratio, 10 tries, center fallback) + flip.

    Vectorized: every sample draws its 10 candidate boxes at once; the first that fits is used. The
    crop is resampled bilinearly to the input size (no antialiasing, unlike torchvision's PIL path).
    """

    def __init__(self, scale: tuple[float, float] = (0.08, 1.0), ratio: tuple[float, float] = (3 / 4, 4 / 3)) -> None:
        self.scale, self.ratio, self.tries = scale, ratio, 10

    def draw(self, n: int, h: int, w: int, gen: torch.Generator) -> Draws:
        f64 = torch.float64
        area = h * w * (self.scale[0] + (self.scale[1] - self.scale[0]) * torch.rand(n, self.tries, generator=gen, dtype=f64))
        lo, hi = math.log(self.ratio[0]), math.log(self.ratio[1])
        ratio = torch.exp(lo + (hi - lo) * torch.rand(n, self.tries, generator=gen, dtype=f64))
        cw = torch.sqrt(area * ratio).round()
        ch = torch.sqrt(area / ratio).round()
        ok = (cw >= 1) & (cw <= w) & (ch >= 1) & (ch <= h)
        first = ok.to(torch.int8).argmax(dim=1, keepdim=True)  # first fitting try (0 if none fits)
        cw, ch = cw.gather(1, first).squeeze(1), ch.gather(1, first).squeeze(1)
        fallback = ~ok.any(dim=1)
        if fallback.any():  # torchvision's fallback: the largest center crop within the ratio range
            in_ratio = w / h
            fw = w if in_ratio <= self.ratio[1] else round(h * self.ratio[1])
            fh = h if in_ratio >= self.ratio[0] else round(w / self.ratio[0])
            cw = torch.where(fallback, float(fw), cw)
            ch = torch.where(fallback, float(fh), ch)
        top = torch.floor(torch.rand(n, generator=gen, dtype=f64) * (h - ch + 1))
        left = torch.floor(torch.rand(n, generator=gen, dtype=f64) * (w - cw + 1))
        top = torch.where(fallback, ((h - ch) / 2).round(), top)
        left = torch.where(fallback, ((w - cw) / 2).round(), left)
        sign = torch.where(_flip_mask(n, gen), -1.0, 1.0).double()
        zero = torch.zeros(n, dtype=f64)
        # Crop box [left, left + cw) x [top, top + ch) in pixels -> normalized affine (align_corners=False).
        theta = torch.stack(
            [
                torch.stack([sign * cw / w, zero, (2 * left + cw) / w - 1], 1),
                torch.stack([zero, ch / h, (2 * top + ch) / h - 1], 1),
            ],
            1,
        )
        return {"theta": theta}

    def apply(self, x: torch.Tensor, draws: Draws) -> torch.Tensor:
        return _sample(draws["theta"], x, "border")

    def spec(self) -> dict:
        return {"kind": "random_resized_crop_flip", "scale": list(self.scale), "ratio": list(self.ratio)}

    def __repr__(self) -> str:
        return f"RandomResizedCropFlip(scale={self.scale}, ratio={self.ratio})"


def make_augment(kind: str, image_size: int) -> Augment:
    """The paper's training augmentation for data set kind: digits, cifar, tiny_imagenet or imagenet."""
    if kind == "cifar":
        return PadCropFlip(padding=4 * image_size // 32 or 1, flip=True)
    if kind == "digits":  # digits are not mirror-symmetric (2 vs 5): shifts only
        return PadCropFlip(padding=4 * image_size // 32 or 1, flip=False)
    if kind == "tiny_imagenet":
        return PadCropRotateFlip(padding=image_size // 8 or 1, degrees=15.0)
    if kind == "imagenet":
        return RandomResizedCropFlip()
    raise SedonaError(f"unknown augmentation kind {kind!r} (known: digits, cifar, tiny_imagenet, imagenet)")


def augment_from_spec(spec: dict | None) -> Augment | None:
    """The augmentation `Augment.spec()` describes (None: none); SedonaError for an unknown kind or bad fields.

    JSON keeps every parameter exactly (ints, and floats by their shortest repr), so the rebuilt one applies
    the same function: the pipeline's block 1 rebuilds the run's augmentation from its spec this way.
    """
    if spec is None:
        return None
    kinds = {"pad_crop_flip": PadCropFlip, "pad_crop_rotate_flip": PadCropRotateFlip,
             "random_resized_crop_flip": RandomResizedCropFlip}
    if not isinstance(spec, dict) or spec.get("kind") not in kinds:
        raise SedonaError(f"augmentation {spec!r}: unknown kind (known: {', '.join(kinds)})")
    params = {k: tuple(v) if isinstance(v, list) else v for k, v in spec.items() if k != "kind"}
    try:
        return kinds[spec["kind"]](**params)
    except TypeError as exc:
        raise SedonaError(f"augmentation {spec!r}: {exc}") from None
