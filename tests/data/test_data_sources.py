"""build_data for every source: embedded digits, CIFAR pickles, ImageFolder trees, synthetic; bad input."""
from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from sedona_runtime.data import DataConfig, build_data
from sedona_runtime.data.augment import PadCropFlip, PadCropRotateFlip, RandomResizedCropFlip
from sedona_runtime.data.stream import BatchStream, eval_batches
from sedona_runtime.utils.errors import SedonaError

from data_helpers import write_cifar, write_imagefolder


def _all(ds):
    return ds.get_batch(torch.arange(len(ds)))


def test_digits_default_is_the_real_sklearn_set():
    from sklearn.datasets import load_digits

    bundle = build_data(DataConfig())
    assert bundle.note.startswith("embedded default: scikit-learn digits (1,797 real 8x8 images) resized to 32x32x3")
    assert (bundle.num_classes, bundle.input_shape, bundle.stem) == (10, (3, 32, 32), "cifar")
    assert len(bundle.test) == 359 and len(bundle.train) + len(bundle.val) == 1797 - 359
    assert len(bundle.val) == pytest.approx(0.1 * 1438, abs=10)
    assert isinstance(bundle.augment, PadCropFlip) and not bundle.augment.flip  # digits are not mirror-symmetric
    # At 8x8 the images are the raw gray levels scaled 0..16 -> 0..255, replicated to 3 channels.
    raw = build_data(DataConfig(image_size=8, val_fraction=0.0))
    x, y = _all(raw.train)
    xt, yt = _all(raw.test)
    images = torch.cat([x, xt])
    digits = load_digits()
    expect = torch.as_tensor(np.round(digits.images / 16 * 255), dtype=torch.uint8)
    assert torch.equal(images[:, 0], images[:, 2])
    # Same multiset of (image, label) pairs as scikit-learn's, nothing lost or duplicated.
    ours = sorted((tuple(i.flatten().tolist()), int(l)) for i, l in zip(images[:, 0], torch.cat([y, yt])))
    theirs = sorted((tuple(i.flatten().tolist()), int(l)) for i, l in zip(expect, digits.target))
    assert ours == theirs


def test_splits_are_deterministic_disjoint_and_stratified():
    a, b, c = (build_data(DataConfig(seed=s)) for s in (0, 0, 1))
    assert torch.equal(a.val.indices, b.val.indices) and torch.equal(a.train.indices, b.train.indices)
    assert not torch.equal(a.val.indices, c.val.indices)  # validation split follows the seed ...
    assert torch.equal(_all(a.test)[0], _all(c.test)[0])  # ... the test split does not
    assert not set(a.val.indices.tolist()) & set(a.train.indices.tolist())
    counts = torch.bincount(a.test.labels, minlength=10)
    assert counts.min() >= 34 and counts.max() <= 38  # ~20% of each class (174..183 per class)


@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
def test_cifar_pickles(tmp_path, name):
    x_np, y_np = write_cifar(tmp_path, name)
    folder = tmp_path / ("cifar-10-batches-py" if name == "cifar10" else "cifar-100-python")
    for data_dir in (tmp_path, folder):  # the parent or the folder itself
        bundle = build_data(DataConfig(dataset=name, data_dir=str(data_dir), val_fraction=0.0))
        x, y = _all(bundle.train)
        assert torch.equal(x, torch.from_numpy(x_np).permute(0, 3, 1, 2)) and torch.equal(y, torch.from_numpy(y_np))
        assert bundle.num_classes == (10 if name == "cifar10" else 100) and bundle.stem == "cifar"
        assert len(bundle.test) == (6 if name == "cifar10" else 18)
        assert isinstance(bundle.augment, PadCropFlip) and bundle.augment.flip and bundle.augment.padding == 4
    split = build_data(DataConfig(dataset=name, data_dir=str(tmp_path), val_fraction=0.5))
    assert len(split.train) + len(split.val) == len(x_np)


def test_cifar_bad_directories(tmp_path):
    def err(data_dir):
        with pytest.raises(SedonaError) as info:
            build_data(DataConfig(dataset="cifar10", data_dir=str(data_dir)))
        return str(info.value)

    assert err(tmp_path / "nope").startswith(f"{tmp_path / 'nope'}: cifar10 data directory not found")
    assert "no cifar-10-batches-py/ here" in err(tmp_path)
    write_cifar(tmp_path, "cifar10")
    folder = tmp_path / "cifar-10-batches-py"
    (folder / "data_batch_3").unlink()
    assert err(tmp_path) == f"{folder}: missing data_batch_3 (expected the standard cifar10 python-pickle files)"
    (folder / "data_batch_3").write_bytes(b"not a pickle")  # malformed files: tests/data/test_data_malformed.py
    assert err(tmp_path).startswith(f"{folder / 'data_batch_3'}: not a readable python pickle")
    with pytest.raises(SedonaError, match="needs a data directory"):
        build_data(DataConfig(dataset="cifar10"))


@pytest.mark.parametrize("tiny_val", [False, True])
def test_imagefolder_trees(tmp_path, tiny_val):
    write_imagefolder(tmp_path, tiny_val=tiny_val)
    bundle = build_data(DataConfig(dataset="imagefolder", data_dir=str(tmp_path), image_size=16, val_fraction=0.0))
    assert (bundle.num_classes, len(bundle.train), len(bundle.test), bundle.input_shape) == (2, 6, 2, (3, 16, 16))
    x, y = _all(bundle.test)
    assert x.dtype == torch.uint8 and x.shape == (2, 3, 16, 16) and y.tolist() == [0, 1]
    assert x[1, 0].float().mean() == pytest.approx(200, abs=1) and x[0, 0].max() == 0  # solid colors survive
    assert isinstance(bundle.augment, PadCropRotateFlip)
    batches = list(eval_batches(bundle.train, 4))  # decoded on a thread pool, in index order
    assert [b[0].shape[0] for b in batches] == [4, 2]
    assert torch.cat([y for _, y in batches]).tolist() == [0, 0, 0, 1, 1, 1]
    x, y = BatchStream(bundle.train, 4, 0, bundle.augment).batch(1)
    assert x.shape == (4, 3, 16, 16) and x.dtype == torch.float32
    clone = pickle.loads(pickle.dumps(bundle.train))  # picklable despite its thread pool
    assert torch.equal(clone[5][0], bundle.train[5][0])


def test_imagefolder_scales_and_errors(tmp_path):
    write_imagefolder(tmp_path)
    big = build_data(DataConfig(dataset="imagefolder", data_dir=str(tmp_path), image_size=72, val_fraction=0.0))
    assert big.stem == "imagenet" and isinstance(big.augment, RandomResizedCropFlip)
    assert big.train[0][0].shape == (3, 72, 72)
    assert build_data(DataConfig(dataset="imagefolder", data_dir=str(tmp_path), image_size=64)).stem == "tiny_imagenet"
    unset = build_data(DataConfig(dataset="imagefolder", data_dir=str(tmp_path), val_fraction=0.0))
    assert unset.input_shape == (3, 64, 64) and unset.stem == "tiny_imagenet"  # Tiny-ImageNet size by default
    with pytest.raises(SedonaError, match=r"missing train/"):
        build_data(DataConfig(dataset="imagefolder", data_dir=str(tmp_path / "val")))
    (tmp_path / "val" / "wasp").mkdir()
    (tmp_path / "val" / "wasp" / "w.png").write_bytes((tmp_path / "val" / "ant" / "v.png").read_bytes())
    with pytest.raises(SedonaError, match=r"val/ has wasp, not in train/"):
        build_data(DataConfig(dataset="imagefolder", data_dir=str(tmp_path)))
    empty = tmp_path / "empty"
    (empty / "train" / "a").mkdir(parents=True)
    (empty / "val").mkdir()
    with pytest.raises(SedonaError, match=r"no image files found in the train tree"):
        build_data(DataConfig(dataset="imagefolder", data_dir=str(empty)))


def test_image_size_defaults_per_data_set():
    sizes = {name: DataConfig(dataset=name).size for name in ("digits", "cifar10", "cifar100", "imagefolder",
                                                                "synthetic")}
    assert sizes == {"digits": 32, "cifar10": 32, "cifar100": 32, "imagefolder": 64, "synthetic": 32}
    assert DataConfig().image_size is None and DataConfig(dataset="imagefolder", image_size=224).size == 224
    DataConfig(dataset="cifar10", data_dir="x").validate()  # unset is fine where only 32 is allowed


def test_synthetic_is_deterministic_and_learnable():
    cfg = DataConfig(dataset="synthetic", image_size=12, synthetic_size=300, synthetic_classes=3, val_fraction=0.0)
    a, b = build_data(cfg), build_data(cfg)
    xa, ya = _all(a.train)
    assert torch.equal(xa, _all(b.train)[0]) and torch.equal(ya, _all(b.train)[1])
    assert xa.shape == (300, 3, 12, 12) and torch.bincount(ya).tolist() == [100, 100, 100]
    # Learnable: the nearest class mean of the training set labels the test set almost perfectly.
    means = torch.stack([xa[ya == c].float().mean(0) for c in range(3)])
    xt, yt = _all(a.test)
    pred = torch.cdist(xt.float().flatten(1), means.flatten(1)).argmin(1)
    assert (pred == yt).float().mean() > 0.9


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"dataset": "mnist"}, "unknown data set 'mnist'"),
        ({"val_fraction": 1.0}, r"val_fraction: must be in \[0, 1\)"),
        ({"batch_size": 0}, "batch_size: must be a positive integer"),
        ({"batch_size": 1}, r"batch_size: must be at least 2 \(BatchNorm cannot train on a single sample\), got 1"),
        ({"data_dir": "x"}, "--data-dir x was given, but data set 'digits' reads no directory"),
        ({"image_size": 4}, "image_size: must be at least 8"),
        ({"dataset": "cifar10", "data_dir": "x", "image_size": 64}, "cifar10 images are 32x32"),
    ],
)
def test_bad_config(changes, message):
    with pytest.raises(SedonaError, match=message):
        build_data(DataConfig(**changes))
