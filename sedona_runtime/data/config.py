"""DataConfig: which data set, where it lives, and how batches are drawn from it."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sedona_runtime.utils.errors import SedonaError

DATASETS = ("digits", "cifar10", "cifar100", "imagefolder", "synthetic")
# Input resolution when `image_size` is left unset. Digits are upsampled from 8x8 to 32 because VGG-19's
# five poolings need at least 32x32 (pass image_size=8 to train on the raw digits); an ImageFolder tree is
# read at Tiny-ImageNet's 64x64 unless told otherwise (ImageNet runs pass e.g. 224).
DEFAULT_IMAGE_SIZE = {"digits": 32, "cifar10": 32, "cifar100": 32, "imagefolder": 64, "synthetic": 32}
NEEDS_DATA_DIR = ("cifar10", "cifar100", "imagefolder")  # the others are built in and read no directory
# Training BatchNorm needs two samples or more: with one, a per-channel batch statistic over 1x1 features
# is undefined (torch raises) and over larger maps it is one image's own, which training cannot use.
MIN_BATCH_SIZE = 2


def guess_dataset(data_dir: str) -> str | None:
    """The data set a directory looks like (for error messages): cifar10, cifar100, imagefolder or None."""
    path = Path(data_dir).expanduser()
    for name, folder in (("cifar10", "cifar-10-batches-py"), ("cifar100", "cifar-100-python")):
        if path.name == folder or (path / folder).is_dir():
            return name
    return "imagefolder" if (path / "train").is_dir() else None


@dataclass
class DataConfig:
    """Data set selection and batching; round-trips through JSON with the run's config."""

    # digits | cifar10 | cifar100 | imagefolder | synthetic, or a user's data set function by import path
    # MODULE:CALLABLE returning (train, val, test) torch Datasets or a DataBundle (data.user.load_user_data).
    dataset: str = "digits"
    data_dir: str | None = None
    image_size: int | None = None  # None: DEFAULT_IMAGE_SIZE[dataset] (see `size`)
    val_fraction: float = 0.1  # share of the training split held out for validation
    # The search's batch size. A training run's is TrainConfig.batch_size, its one place: the resolver
    # (training.resolver) leaves this None in a training run's spec.
    batch_size: int | None = 128
    augment: bool = True
    workers: int | None = None  # DataLoader worker processes reading batches ahead (None: data.feeder default)
    seed: int = 0
    synthetic_size: int = 512  # synthetic: training samples (before the validation split)
    synthetic_classes: int = 10  # synthetic: number of classes
    # For an import path: the directory put on sys.path before importing it (utils.imports.import_root).
    import_root: str | None = None

    @property
    def is_user(self) -> bool:
        """True when `dataset` is a user's data set function (an import path)."""
        from sedona_runtime.utils.imports import is_import_path

        return is_import_path(self.dataset)

    @property
    def size(self) -> int:
        """The input resolution: `image_size`, or the data set's default when it is unset."""
        return self.image_size if self.image_size is not None else DEFAULT_IMAGE_SIZE.get(self.dataset, 32)

    def validate(self) -> None:
        """SedonaError naming the first bad field."""
        if self.dataset not in DATASETS and not self.is_user:
            raise SedonaError(f"data.dataset: unknown data set {self.dataset!r} (known: {', '.join(DATASETS)}; "
                              "or a data set function by import path, MODULE:CALLABLE)")
        for name in ("image_size", "batch_size", "synthetic_size", "synthetic_classes"):
            value = getattr(self, name)
            if name in ("image_size", "batch_size") and value is None:
                continue
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise SedonaError(f"data.{name}: must be a positive integer, got {value!r}")
        if self.batch_size is not None and self.batch_size < MIN_BATCH_SIZE:
            raise SedonaError(f"data.batch_size: must be at least {MIN_BATCH_SIZE} (BatchNorm cannot train on a "
                              f"single sample), got {self.batch_size} (--batch-size)")
        # A data set function decides itself whether it reads --data-dir (data.user checks its signature).
        if self.data_dir and self.dataset not in NEEDS_DATA_DIR and not self.is_user:
            guess = guess_dataset(self.data_dir)
            hint = (f"pass --dataset {guess}" if guess else
                    f"pass --dataset {', '.join(NEEDS_DATA_DIR[:-1])} or {NEEDS_DATA_DIR[-1]} with it")
            raise SedonaError(f"data.data_dir: --data-dir {self.data_dir} was given, but data set {self.dataset!r} "
                              f"reads no directory; {hint}, or leave out --data-dir")
        if self.workers is not None and (not isinstance(self.workers, int) or self.workers < 0):
            raise SedonaError(f"data.workers: must be a whole number >= 0, got {self.workers!r} (--workers)")
        if self.size < 8:
            raise SedonaError(f"data.image_size: must be at least 8, got {self.image_size}")
        if not isinstance(self.val_fraction, (int, float)) or not 0.0 <= self.val_fraction < 1.0:
            raise SedonaError(f"data.val_fraction: must be in [0, 1), got {self.val_fraction!r}")
        if not isinstance(self.seed, int) or isinstance(self.seed, bool):
            raise SedonaError(f"data.seed: must be an integer, got {self.seed!r}")
        if self.dataset in NEEDS_DATA_DIR and not self.data_dir:
            raise SedonaError(f"data.data_dir: data set {self.dataset!r} needs a data directory (--data-dir)")
        if self.dataset in ("cifar10", "cifar100") and self.size != 32:
            raise SedonaError(f"data.image_size: {self.dataset} images are 32x32, got image_size {self.image_size}")
