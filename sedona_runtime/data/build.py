"""build_data: a DataConfig into train/validation/test sets, shapes, stem and augmentation."""
from __future__ import annotations

import logging
from dataclasses import dataclass

from sedona_runtime.data.augment import Augment, make_augment
from sedona_runtime.data.base import ImageDataset, split_dataset
from sedona_runtime.data.config import DataConfig

log = logging.getLogger(__name__)


@dataclass
class DataBundle:
    """What a trainer needs to know about its data."""

    train: ImageDataset
    val: ImageDataset | None  # None when val_fraction is 0
    test: ImageDataset
    num_classes: int
    input_shape: tuple[int, int, int]  # (C, H, W)
    stem: str  # "cifar" | "tiny_imagenet" | "imagenet": the model stem that fits these images
    note: str  # one line for the user, e.g. that the embedded default is in use
    augment: Augment | None = None  # training augmentation (None when cfg.augment is False)
    class_names: list[str] | None = None  # label i's name where the data names them (ImageFolder: its folders);
                                          # recorded in config.json, checked by `evaluate` on other data


def stem_for_size(image_size: int) -> str:
    """The model stem for square inputs of this size: CIFAR-scale up to 32 px, Tiny-ImageNet up to 64."""
    if image_size <= 32:
        return "cifar"
    return "tiny_imagenet" if image_size <= 64 else "imagenet"


def build_data(cfg: DataConfig, *, check_images: bool = True, progress=None) -> DataBundle:
    """Load cfg.dataset (SedonaError for a missing or malformed data directory) and split off validation.

    An ImageFolder tree has every image file checked first unless `check_images` is False (see
    data.image_check; `progress(done, total, elapsed_s)` hears about a long check).
    """
    cfg.validate()
    if cfg.is_user:
        return _build_user(cfg)
    size = cfg.size
    if cfg.dataset == "digits":
        from sedona_runtime.data.digits import digits_splits

        train, test = digits_splits(size)
        kind = "digits"
        note = f"embedded default: scikit-learn digits (1,797 real 8x8 images) resized to {size}x{size}x3"
    elif cfg.dataset in ("cifar10", "cifar100"):
        from sedona_runtime.data.cifar import load_cifar

        train, test = load_cifar(cfg.dataset, cfg.data_dir)
        kind = "cifar"
        note = f"{cfg.dataset.upper()} from {cfg.data_dir}"
    elif cfg.dataset == "imagefolder":
        from sedona_runtime.data.imagefolder import load_imagefolder

        train, test = load_imagefolder(cfg.data_dir, size)
        kind = "tiny_imagenet" if size <= 64 else "imagenet"
        note = f"ImageFolder {cfg.data_dir}: {train.num_classes} classes at {size}x{size}"
        if check_images:  # every file of every split, before training: a bad one is found now, not at the end
            from sedona_runtime.data.image_check import check_images as check

            paths = [p for p, _ in train.samples] + [p for p, _ in test.samples]
            seconds = check(paths, f"ImageFolder {cfg.data_dir}", progress=progress)
            note += f" ({len(paths):,} image files checked in {seconds:.1f} s)"
    else:
        from sedona_runtime.data.synthetic import synthetic_splits

        train, test = synthetic_splits(cfg.synthetic_size, cfg.synthetic_classes, size)
        kind = stem_for_size(size)
        note = f"synthetic: {cfg.synthetic_classes} classes at {size}x{size}x3 (for tests and speed benchmarks)"
    class_names = list(train.classes) if isinstance(getattr(train, "classes", None), list) else None
    train, val = split_dataset(train, cfg.val_fraction, "validation", cfg.seed)
    note += f"; {len(train)} train / {len(val) if val is not None else 0} val / {len(test)} test"
    log.info("data: %s", note)
    return DataBundle(
        train=train,
        val=val,
        test=test,
        num_classes=train.num_classes,
        input_shape=(3, size, size),
        stem=stem_for_size(size),
        note=note,
        augment=make_augment(kind, size) if cfg.augment else None,
        class_names=class_names,
    )


def _build_user(cfg: DataConfig) -> DataBundle:
    """A user's data set function: its images as they are (no built-in augmentation: random transforms
    belong in its Datasets, seeded per step), validation split off the training set unless it gave one."""
    from sedona_runtime.data.user import load_user_data

    train, val, test, classes, shape = load_user_data(cfg.dataset, cfg.import_root, cfg.data_dir)
    if val is None:
        train, val = split_dataset(train, cfg.val_fraction, "validation", cfg.seed)
    note = (f"data set {cfg.dataset}: {classes} classes at {shape[1]}x{shape[2]}x{shape[0]}; {len(train)} train / "
            f"{len(val) if val is not None else 0} val / {len(test)} test")
    log.info("data: %s", note)
    return DataBundle(train=train, val=val, test=test, num_classes=classes, input_shape=shape,
                      stem=stem_for_size(shape[1]), note=note, augment=None)
