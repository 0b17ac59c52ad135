"""A user's data set function (`--dataset my_pkg.data:build`): its torch Datasets as ImageDatasets."""
from __future__ import annotations

import inspect
from typing import Any

import torch
from torch.utils.data import Dataset

from sedona_runtime.data.base import ImageDataset, channel_stats
from sedona_runtime.utils.errors import SedonaError
from sedona_runtime.utils.seed import seeded_globals

STATS_SAMPLES = 1024  # uint8 images: per-channel mean/std estimated from this many training images


class UserImageDataset(ImageDataset):
    """A torch Dataset of (image tensor C,H,W, int label) seen as an ImageDataset.

    uint8 images are scaled to [0, 1] and normalized like the built-in data sets (`mean`/`std` set by
    `load_user_data` from the training images); float images are used as they are (mean 0, std 1), so a
    Dataset that already normalizes keeps its own. `seeded_by_step` tells BatchStream to seed torch's,
    Python's and NumPy's global generators from (seed, step) around each batch, so random transforms in
    the user's `__getitem__` make batches that are still a pure function of (seed, step).
    """

    seeded_by_step = True
    decodes = True  # reading a batch runs the user's code: DataLoader workers may pay (data.feeder)

    def __init__(self, dataset: Dataset, name: str, num_classes: int | None = None) -> None:
        self.dataset, self.name = dataset, name
        self.mean, self.std = (0.0,), (1.0,)
        self.num_classes = num_classes or 0
        self._labels: torch.Tensor | None = None

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        item = self.dataset[index]
        if not isinstance(item, (tuple, list)) or len(item) < 2:
            raise SedonaError(f"{self.name}[{index}]: expected (image tensor, label), got {type(item).__name__}")
        x, y = item[0], item[1]
        if not isinstance(x, torch.Tensor) or x.dim() != 3:
            got = f"shape {tuple(x.shape)}" if isinstance(x, torch.Tensor) else type(x).__name__
            raise SedonaError(f"{self.name}[{index}]: the image must be a (C, H, W) tensor, got {got}")
        if _is_float(y):  # int() would truncate 0.7 to 0: every label 0, "1 classes"
            raise SedonaError(f"{self.name}[{index}]: the label must be an integer class index 0..C-1, got the "
                              f"float {y!r} (convert the labels with .long() in the data set)")
        try:
            label = int(y)
        except (TypeError, ValueError):
            raise SedonaError(f"{self.name}[{index}]: the label must be an integer, got {y!r}") from None
        return x, label

    def get_batch(self, indices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        items = [self[int(i)] for i in indices]
        shapes = {tuple(x.shape) for x, _ in items}
        if len(shapes) > 1:
            raise SedonaError(f"{self.name}: images of one batch differ in shape ({sorted(shapes)[:3]}); "
                              "resize them to one size in the data set")
        return torch.stack([x for x, _ in items]), torch.tensor([y for _, y in items], dtype=torch.int64)

    @property
    def labels(self) -> torch.Tensor:
        """Every label: the Dataset's `targets`/`labels` attribute when it has one, else read item by item."""
        if self._labels is None:
            for attr in ("targets", "labels"):
                value = getattr(self.dataset, attr, None)
                if value is not None and not callable(value):
                    try:
                        raw = torch.as_tensor(value)
                        if raw.is_floating_point():
                            raise SedonaError(f"{self.name}: its {attr} are floats ({raw.dtype}); the labels must "
                                              "be integer class indices 0..C-1 (convert them with .long())")
                        self._labels = raw.to(torch.int64).flatten()
                    except (TypeError, ValueError, RuntimeError):
                        continue
                    if self._labels.numel() == len(self):
                        break
                    self._labels = None
            if self._labels is None:
                self._labels = torch.tensor([self[i][1] for i in range(len(self))], dtype=torch.int64)
        return self._labels


def _is_float(y: Any) -> bool:
    """A float label: a Python float, or a floating-point tensor or NumPy value."""
    if isinstance(y, float):
        return True
    if isinstance(y, torch.Tensor):
        return y.is_floating_point()
    kind = getattr(getattr(y, "dtype", None), "kind", None)  # NumPy scalars and arrays
    return kind == "f"


def _as_splits(result: Any, spec: str) -> tuple[Any, Any, Any]:
    """(train, val or None, test) from what the function returned."""
    from sedona_runtime.data.build import DataBundle

    if isinstance(result, DataBundle):
        return result.train, result.val, result.test
    if isinstance(result, dict):
        missing = [k for k in ("train", "test") if result.get(k) is None]
        if missing:
            raise SedonaError(f"data set {spec!r}: the returned dict lacks {', '.join(missing)}")
        return result["train"], result.get("val"), result["test"]
    if isinstance(result, (tuple, list)) and len(result) in (2, 3):
        return (result[0], None, result[1]) if len(result) == 2 else tuple(result)  # type: ignore[return-value]
    raise SedonaError(f"data set {spec!r}: expected (train, val, test) Datasets, (train, test), a dict or a "
                      f"DataBundle, got {type(result).__name__}")


def _wrap(ds: Any, name: str, num_classes: int | None) -> ImageDataset:
    if isinstance(ds, ImageDataset):
        return ds
    if not hasattr(ds, "__getitem__") or not hasattr(ds, "__len__"):
        raise SedonaError(f"{name}: expected a torch Dataset (with __getitem__ and __len__), got {type(ds).__name__}")
    if len(ds) == 0:
        raise SedonaError(f"{name}: is empty")
    return UserImageDataset(ds, name, num_classes)


def _num_classes(train: ImageDataset, fn_result: Any, spec: str) -> int:
    from sedona_runtime.data.build import DataBundle

    if isinstance(fn_result, DataBundle):
        return int(fn_result.num_classes)
    inner = getattr(train, "dataset", train)
    for attr in ("num_classes", "classes"):
        value = getattr(inner, attr, None)
        if isinstance(value, int) and value > 0:
            return value
        if isinstance(value, (list, tuple)) and value:
            return len(value)
    labels = train.labels
    if labels.numel() == 0 or int(labels.min()) < 0:
        raise SedonaError(f"data set {spec!r}: labels must be integers 0..C-1")
    return int(labels.max()) + 1


def load_user_data(spec: str, import_root: str | None, data_dir: str | None
                   ) -> tuple[ImageDataset, ImageDataset | None, ImageDataset, int, tuple[int, int, int]]:
    """(train, val or None, test, num_classes, input shape C,H,W) from the function `spec` names.

    The function is called with `data_dir=` when it accepts it (and `--data-dir` was given), else with no
    argument. Raises SedonaError naming the function for anything that does not fit.
    """
    from sedona_runtime.utils.imports import call_user, load_callable

    fn = load_callable(spec, import_root, what="data set")
    kwargs: dict[str, Any] = {}
    if data_dir is not None:
        try:
            params = inspect.signature(fn).parameters
        except (TypeError, ValueError):
            params = {}
        if "data_dir" not in params and not any(p.kind is p.VAR_KEYWORD for p in params.values()):
            raise SedonaError(f"data set {spec!r}: --data-dir was given, but the function takes no data_dir argument")
        kwargs["data_dir"] = data_dir
    result = call_user(fn, spec, "data set", **kwargs)
    train_ds, val_ds, test_ds = _as_splits(result, spec)
    train = _wrap(train_ds, f"data set {spec!r}: train", None)
    classes = _num_classes(train, result, spec)
    val = _wrap(val_ds, f"data set {spec!r}: val", classes) if val_ds is not None else None
    test = _wrap(test_ds, f"data set {spec!r}: test", classes)
    for ds in (train, val, test):
        if isinstance(ds, UserImageDataset):
            ds.num_classes = classes
    x, _ = train[0]
    shape = (int(x.shape[0]), int(x.shape[1]), int(x.shape[2]))
    if shape[1] != shape[2]:
        raise SedonaError(f"data set {spec!r}: images must be square (H == W) for the auxiliary heads, got {shape}")
    for ds, what in ((test, "test"), (val, "val")):
        if ds is not None:
            y, _ = ds[0]
            if tuple(y.shape) != shape:
                raise SedonaError(f"data set {spec!r}: {what} images have shape {tuple(y.shape)}, train images {shape}")
    users = [d for d in (train, val, test) if isinstance(d, UserImageDataset)]
    if x.dtype == torch.uint8:
        _set_stats(train, users)
    else:
        for ds in users:
            ds.mean, ds.std = (0.0,) * shape[0], (1.0,) * shape[0]
    return train, val, test, classes, shape


def _set_stats(train: ImageDataset, datasets: list[UserImageDataset]) -> None:
    """uint8 images: per-channel statistics from up to STATS_SAMPLES evenly spaced training images."""
    n = len(train)
    idx = torch.linspace(0, n - 1, min(n, STATS_SAMPLES)).round().long().unique()
    with seeded_globals("user-data-stats"):
        images, _ = train.get_batch(idx)
    mean, std = channel_stats(images)
    for ds in datasets:
        ds.mean, ds.std = mean, std
