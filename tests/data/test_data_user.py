"""A user's data set function: wrapped as ImageDatasets, normalized, and batches a pure function of (seed, step)."""
from __future__ import annotations

import pytest
import torch

from sedona_runtime.data import BatchStream, DataConfig, build_data, eval_batches
from sedona_runtime.utils.errors import SedonaError


def test_uint8_dataset_with_random_transforms(user_pkg):
    bundle = build_data(DataConfig(dataset="byo_user_pkg.data:build", seed=0))
    assert bundle.num_classes == 4 and bundle.input_shape == (3, 12, 12) and bundle.stem == "cifar"
    assert (len(bundle.train), len(bundle.val), len(bundle.test)) == (160, 32, 40)  # its own val split
    assert bundle.augment is None  # its images as they are: augmentation belongs in its Datasets
    # uint8 images are scaled and normalized with statistics of the training images, like the built-in sets.
    x, y = next(eval_batches(bundle.test, 40))
    assert x.dtype == torch.float32 and abs(float(x.mean())) < 0.5 and 0.5 < float(x.std()) < 2.0
    assert y.tolist() == [i % 4 for i in range(40)]
    # The Dataset flips at random from the global generator: each batch is still a pure function of
    # (seed, step), in any order and any process, and the caller's random state is untouched.
    stream = BatchStream(bundle.train, 16, seed=3)
    torch.manual_seed(123)
    before = torch.rand(3)
    a = [stream.batch(t)[0] for t in (0, 7, 12)]
    b = [BatchStream(bundle.train, 16, seed=3).batch(t)[0] for t in (12, 7, 0)][::-1]
    assert all(torch.equal(p, q) for p, q in zip(a, b))
    torch.manual_seed(123)
    assert torch.equal(torch.rand(3), before)
    other = BatchStream(bundle.train, 16, seed=4)
    assert not torch.equal(other.batch(0)[0], a[0])


def test_float_dataset_is_used_as_it_is_and_gets_a_validation_split(user_pkg):
    bundle = build_data(DataConfig(dataset="byo_user_pkg.data:build_float", val_fraction=0.25))
    assert (len(bundle.train), len(bundle.val), len(bundle.test)) == (72, 24, 24)  # stratified 25% of 96
    raw = bundle.test.dataset.images[:24]
    x, _ = next(eval_batches(bundle.test, 24))
    assert torch.equal(x, raw)  # no scaling, no normalization: the Dataset already normalizes


def test_bad_user_data_is_one_clear_line(user_pkg, tmp_path):
    import sys

    (tmp_path / "byo_bad_data.py").write_text(
        "import torch\n"
        "def not_square():\n"
        "    d = [(torch.zeros(3, 8, 9), 0)] * 4\n"
        "    return d, d, d\n"
        "def wrong_kind():\n"
        "    return 42\n"
        "def not_tensor():\n"
        "    d = [('image', 0)] * 4\n"
        "    return d, d\n"
        "def float_labels():\n"  # int() made every label 0: '1 classes' (issue 20)
        "    d = [(torch.zeros(3, 8, 8), 0.7)] * 4\n"
        "    return d, d, d\n"
        "class Targets(torch.utils.data.Dataset):\n"
        "    targets = torch.tensor([0.2, 0.9, 1.4, 0.1])\n"
        "    def __len__(self):\n"
        "        return 4\n"
        "    def __getitem__(self, i):\n"
        "        return torch.zeros(3, 8, 8), int(self.targets[i])\n"
        "def float_targets():\n"
        "    return Targets(), Targets(), Targets()\n")
    sys.path.insert(0, str(tmp_path))
    try:
        for fn, words in (("not_square", "must be square"), ("wrong_kind", "got int"),
                          ("not_tensor", r"must be a \(C, H, W\) tensor"),
                          ("float_labels", "got the float 0.7"), ("float_targets", "targets are floats")):
            with pytest.raises(SedonaError, match=words):
                build_data(DataConfig(dataset=f"byo_bad_data:{fn}"))
        with pytest.raises(SedonaError, match="takes no data_dir"):
            build_data(DataConfig(dataset="byo_user_pkg.data:build_float", data_dir=str(tmp_path)))
        with pytest.raises(SedonaError, match="unknown data set 'nope'"):
            build_data(DataConfig(dataset="nope"))
    finally:
        sys.path.remove(str(tmp_path))
