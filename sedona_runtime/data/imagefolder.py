"""ImageFolder trees (Tiny-ImageNet, ImageNet): data_dir/train and data_dir/val, decoded on demand."""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch

from sedona_runtime.data.base import ImageDataset
from sedona_runtime.utils.errors import SedonaError

IMAGENET_STATS = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
IMG_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")


class FolderImageDataset(ImageDataset):
    """(path, label) samples decoded with PIL to RGB uint8 (3,S,S) of fixed size S = image_size.

    Every image is resized so that its shorter side is `resize_to`, then center-cropped to S x S
    (ImageNet's standard 256 -> 224 evaluation transform when resize_to = S * 256 / 224; plain resize
    when resize_to = S). Training augmentation then works on these fixed-size tensors.
    """

    decodes = True  # reading a batch decodes files: DataLoader workers pay (data.feeder)

    def __init__(self, samples: list[tuple[str, int]], classes: list[str], image_size: int, resize_to: int) -> None:
        from torchvision import transforms

        self.samples, self.classes = samples, classes
        self.num_classes = len(classes)
        self.mean, self.std = IMAGENET_STATS
        self.transform = transforms.Compose(
            [transforms.Resize(resize_to), transforms.CenterCrop(image_size), transforms.PILToTensor()]
        )
        self._labels = torch.tensor([y for _, y in samples], dtype=torch.int64)
        self._pool: ThreadPoolExecutor | None = None

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        from PIL import Image

        path, label = self.samples[index]
        try:
            with Image.open(path) as img:
                return self.transform(img.convert("RGB")), label
        except OSError as exc:
            raise SedonaError(f"{path}: cannot decode image ({exc})") from None

    def get_batch(self, indices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # PIL decodes with the GIL released, so threads overlap the decoding of one batch's files.
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1), thread_name_prefix="decode")
        items = list(self._pool.map(self.__getitem__, indices.tolist()))
        return torch.stack([x for x, _ in items]), torch.tensor([y for _, y in items], dtype=torch.int64)

    def __getstate__(self) -> dict:  # a thread pool cannot be pickled (DataLoader workers, RPC)
        return {**self.__dict__, "_pool": None}

    @property
    def labels(self) -> torch.Tensor:
        return self._labels


def _shown(names: list[str]) -> str:
    return ", ".join(names[:5]) + (f" (+{len(names) - 5} more)" if len(names) > 5 else "")


def is_hidden(name: str) -> bool:
    """Names starting with '.' (.ipynb_checkpoints, .DS_Store, macOS ._ files) are never data."""
    return name.startswith(".")


def _scan_tree(root: Path, what: str) -> tuple[list[tuple[str, int]], list[str]]:
    """(samples, classes) of <root>/<class>/**/<image>; hidden folders and files are skipped at every level."""
    from torchvision.datasets.folder import make_dataset

    classes = sorted(d.name for d in root.iterdir() if d.is_dir() and not is_hidden(d.name))
    if not classes:
        raise SedonaError(f"{root}: no class folders in the {what} tree (expected {root}/<class>/<image files>)")
    class_to_idx = {c: i for i, c in enumerate(classes)}

    def visible_image(path: str) -> bool:
        parts = Path(path).relative_to(root).parts
        return path.lower().endswith(IMG_EXTENSIONS) and not any(is_hidden(p) for p in parts)

    samples = make_dataset(str(root), class_to_idx, is_valid_file=visible_image, allow_empty=True)
    if not samples:
        raise SedonaError(f"{root}: no image files found in the {what} tree")
    empty = sorted(set(classes) - {classes[y] for _, y in samples})
    if empty:  # a class without images would still get an output of the classifier
        raise SedonaError(f"{root}: class folder(s) without image files in the {what} tree: {_shown(empty)}")
    return samples, classes


def check_same_classes(splits: dict[str, list[str]], root: Path) -> None:
    """SedonaError naming the difference when the splits' class lists differ ({"train/": [...], "val/": [...]})."""
    (first, ref), *rest = splits.items()
    for name, classes in rest:
        lacks, extra = sorted(set(ref) - set(classes)), sorted(set(classes) - set(ref))
        if lacks or extra:
            diff = "; ".join(x for x in (f"{name} lacks {_shown(lacks)}" if lacks else "",
                                         f"{name} has {_shown(extra)}, not in {first}" if extra else "") if x)
            raise SedonaError(f"{root}: the class lists of {first} and {name} differ: {diff} "
                              f"({len(ref)} vs {len(classes)} classes); every split needs the same classes")


def _scan_val(root: Path, classes: list[str]) -> list[tuple[str, int]]:
    """The val tree: class folders (ImageNet layout) or images/ + val_annotations.txt (Tiny-ImageNet)."""
    class_to_idx = {c: i for i, c in enumerate(classes)}
    annotations = root / "val_annotations.txt"
    if annotations.is_file():
        samples, seen = [], set()
        for n, line in enumerate(annotations.read_text().splitlines(), start=1):
            parts = line.split("\t")
            if not line.strip():
                continue
            if len(parts) < 2 or parts[1] not in class_to_idx:
                raise SedonaError(f"{annotations}:{n}: expected '<file>\\t<class of train/>...', got {line[:80]!r}")
            samples.append((str(root / "images" / parts[0]), class_to_idx[parts[1]]))
            seen.add(parts[1])
        check_same_classes({"train/": classes, "val/ (val_annotations.txt)": sorted(seen)}, root.parent)
        return samples
    val_samples, val_classes = _scan_tree(root, "val")
    check_same_classes({"train/": classes, "val/": val_classes}, root.parent)
    return [(path, class_to_idx[val_classes[y]]) for path, y in val_samples]


def load_imagefolder(data_dir: str, image_size: int) -> tuple[FolderImageDataset, FolderImageDataset]:
    """(train, test) from data_dir/train and data_dir/val; both yield uint8 (3, image_size, image_size)."""
    root = Path(data_dir).expanduser()
    for sub in ("train", "val"):
        if not (root / sub).is_dir():
            raise SedonaError(f"{root}: missing {sub}/ (expected an ImageFolder tree: {root}/train/<class>/..., {root}/val/...)")
    train_samples, classes = _scan_tree(root / "train", "train")
    test_samples = _scan_val(root / "val", classes)
    # ImageNet-scale images are resized to 256/224 of the crop first (the standard evaluation
    # transform); Tiny-ImageNet-scale ones (<= 64 px) are only resized.
    resize_to = image_size if image_size <= 64 else round(image_size * 256 / 224)
    return (
        FolderImageDataset(train_samples, classes, image_size, resize_to),
        FolderImageDataset(test_samples, classes, image_size, resize_to),
    )
