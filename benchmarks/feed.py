"""How fast one coordinator can feed the pipeline: raw batches per second from its data loader.

    python benchmarks/feed.py                          # ImageFolder 224 px with 0, 2, 4 workers; CIFAR-size uint8
    python benchmarks/feed.py --workers 0 8 --images 2000 --json bench_out/feed.json

Two sources, both through the code the coordinator runs (data.feeder.read_ahead over BatchStream.raw):
- an ImageFolder tree of JPEGs that this script writes itself (ImageNet-like: 256 px on the shorter side,
  decoded, resized to 256 and center-cropped to 224, with the RandomResizedCrop draws of every batch),
  timed with 0 (the coordinator's own thread), 2 and 4 DataLoader worker processes;
- CIFAR-size in-memory uint8 images (32x32, 50,000 of them): a gather plus the draws, no decoding.
The coordinator feeds block 1 only, one batch per pipeline step whatever K is: a feed rate of R batches/s
keeps fed any pipeline whose step takes at least 1/R s (with K GPUs of equal blocks, the time one
block's step takes on one GPU). Batches are raw (uint8, a quarter of float32's bytes); normalization and
augmentation run on block 1's device, so they are not part of the feed.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sedona_runtime.data.augment import make_augment  # noqa: E402
from sedona_runtime.data.base import TensorImageDataset  # noqa: E402
from sedona_runtime.data.feeder import train_batches  # noqa: E402
from sedona_runtime.data.stream import BatchStream  # noqa: E402


def write_tree(root: Path, images: int, classes: int, side: int = 256) -> None:
    """An ImageFolder tree of smooth random JPEGs (photo-like sizes, about 15-25 KiB each at 256 px)."""
    from PIL import Image

    g = torch.Generator().manual_seed(0)
    for i in range(images):
        folder = root / "train" / f"class{i % classes:03d}"
        folder.mkdir(parents=True, exist_ok=True)
        low = torch.rand(3, side // 16, side // 16, generator=g)
        img = torch.nn.functional.interpolate(low[None], size=(side, side + side // 3), mode="bicubic")[0]
        img = (img + 0.05 * torch.randn(img.shape, generator=g)).clamp(0, 1)
        Image.fromarray((img.permute(1, 2, 0) * 255).to(torch.uint8).numpy()).save(folder / f"{i:05d}.jpg", quality=90)
        (root / "val" / f"class{i % classes:03d}").mkdir(parents=True, exist_ok=True)
    for c in range(classes):  # the loader wants a val split too: one image per class
        src = next((root / "train" / f"class{c:03d}").iterdir())
        (root / "val" / f"class{c:03d}" / src.name).write_bytes(src.read_bytes())


def rate(stream: BatchStream, batches: int, workers: int, repeats: int) -> dict:
    """Median batches/s over `repeats` passes of `batches` steps (worker start-up excluded: first batch waited)."""
    samples = []
    for r in range(repeats):
        it = train_batches(stream, r * batches, (r + 1) * batches + 1, workers)
        next(it)  # the pool is up and the first batch decoded: from here on it is the steady rate
        t0 = time.perf_counter()
        for _ in range(batches):
            next(it)
        samples.append(batches / (time.perf_counter() - t0))
        del it
    return {"batches_per_s": statistics.median(samples), "samples": samples}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=640, help="JPEGs in the ImageFolder tree")
    p.add_argument("--batch-size", type=int, default=64, help="ImageFolder batch size")
    p.add_argument("--batches", type=int, default=8, help="timed batches per pass")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--workers", type=int, nargs="+", default=[0, 2, 4])
    p.add_argument("--json", help="also write the results here")
    args = p.parse_args(argv)
    torch.set_num_threads(1)  # the coordinator runs on one thread while the blocks train
    from sedona_runtime.data.imagefolder import load_imagefolder

    results: dict = {"cpu_count": os.cpu_count(), "torch": torch.__version__, "imagefolder": {}, "cifar": {}}
    with tempfile.TemporaryDirectory() as tmp:
        print(f"writing {args.images} JPEGs ...", flush=True)
        write_tree(Path(tmp), args.images, classes=10)
        train, _ = load_imagefolder(tmp, 224)
        stream = BatchStream(train, args.batch_size, 0, make_augment("imagenet", 224))
        for w in args.workers:
            r = rate(stream, args.batches, w, args.repeats)
            results["imagefolder"][str(w)] = r
            print(f"imagefolder 224 px, batch {args.batch_size}, {w} worker(s): {r['batches_per_s']:.2f} batches/s "
                  f"({r['batches_per_s'] * args.batch_size:.0f} images/s)", flush=True)
    g = torch.Generator().manual_seed(0)
    cifar = TensorImageDataset(torch.randint(0, 256, (50_000, 3, 32, 32), dtype=torch.uint8, generator=g),
                               torch.randint(0, 10, (50_000,), generator=g), (0.5,) * 3, (0.25,) * 3, 10)
    stream = BatchStream(cifar, 128, 0, make_augment("cifar", 32))
    r = rate(stream, 200, 0, args.repeats)
    results["cifar"] = r
    print(f"CIFAR-size uint8, batch 128, in memory: {r['batches_per_s']:.0f} batches/s "
          f"(one batch every {1e3 / r['batches_per_s']:.2f} ms)", flush=True)
    best = max(results["imagefolder"].values(), key=lambda x: x["batches_per_s"])["batches_per_s"]
    print(f"one coordinator keeps fed any pipeline whose step takes at least {1e3 / best:.0f} ms (ImageFolder 224 px, "
          f"batch {args.batch_size}) or {1e3 / r['batches_per_s']:.2f} ms (CIFAR-size in memory, batch 128)")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(results, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
