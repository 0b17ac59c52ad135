"""Malformed data on disk: one error naming the file (CIFAR pickles), hidden entries skipped and class lists
that must agree (ImageFolder), and through the CLI one line, exit 2, no run directory."""
from __future__ import annotations

import pickle

import numpy as np
import pytest

from sedona_runtime.cli.train import main
from sedona_runtime.data import DataConfig, build_data
from sedona_runtime.utils.errors import SedonaError

from data_helpers import write_cifar, write_imagefolder, write_png


class _RunsCode:
    """A pickle that would call a function when loaded (what the restricted unpickler must refuse)."""

    def __reduce__(self):
        return (print, ("this must never be printed",))


def _batch(n_images: int = 4, n_labels: int | None = None, **over) -> dict:
    n_labels = n_images if n_labels is None else n_labels
    entry = {"data": np.zeros((n_images, 3072), np.uint8), "labels": [i % 10 for i in range(n_labels)]}
    entry.update(over)
    return {k: v for k, v in entry.items() if v is not None}


def _truncated(folder) -> bytes:
    return (folder / "data_batch_1").read_bytes()[:500]


CIFAR_CASES = [
    ("count", lambda f: pickle.dumps(_batch(40, 37)), "40 images but 37 labels"),
    ("missing key", lambda f: pickle.dumps(_batch(labels=None)), "missing key(s) 'labels' (has: 'data')"),
    ("shape", lambda f: pickle.dumps(_batch(data=np.zeros((2, 100), np.uint8))),
     "'data' must be uint8 rows of 3072 values (3x32x32 images), got uint8 (2, 100)"),
    ("dtype", lambda f: pickle.dumps(_batch(data=np.zeros((4, 3072), np.float32))),
     "'data' must be uint8 rows of 3072 values (3x32x32 images), got float32 (4, 3072)"),
    ("not a dict", lambda f: pickle.dumps([1, 2, 3]), "expected a pickled dict with 'data' and 'labels', got list"),
    ("label type", lambda f: pickle.dumps(_batch(labels=["cat"] * 4)), "'labels' must be a list of integer class labels"),
    ("label range", lambda f: pickle.dumps(_batch(labels=[0, 1, 2, 10])), "labels must be in 0..9, found 0..10"),
    ("truncated", _truncated, "not a readable python pickle, truncated or corrupt (UnpicklingError"),
    ("empty", lambda f: b"", "not a readable python pickle, truncated or corrupt (EOFError"),
    ("runs code", lambda f: pickle.dumps({"data": _RunsCode()}),
     "it refers to builtins.print, which is not loaded (that could run code)"),
]


@pytest.mark.parametrize("case, content, message", CIFAR_CASES, ids=[c[0] for c in CIFAR_CASES])
@pytest.mark.parametrize("file", ["data_batch_4", "test_batch"])
def test_malformed_cifar_file_is_one_error_naming_it(tmp_path, capsys, case, content, message, file):
    write_cifar(tmp_path)
    folder = tmp_path / "cifar-10-batches-py"
    (folder / file).write_bytes(content(folder))
    with pytest.raises(SedonaError) as info:
        build_data(DataConfig(dataset="cifar10", data_dir=str(tmp_path)))
    assert str(info.value).startswith(f"{folder / file}: ") and message in str(info.value), str(info.value)
    assert "\n" not in str(info.value)
    assert "must never be printed" not in capsys.readouterr().out


def test_cifar100_reads_fine_labels(tmp_path):
    write_cifar(tmp_path, "cifar100")
    folder = tmp_path / "cifar-100-python"
    (folder / "train").write_bytes(pickle.dumps(_batch(3, labels=[0, 99, 100])))
    with pytest.raises(SedonaError, match="missing key.*'fine_labels'"):
        build_data(DataConfig(dataset="cifar100", data_dir=str(tmp_path)))
    (folder / "train").write_bytes(pickle.dumps({"data": np.zeros((3, 3072), np.uint8), "fine_labels": [0, 99, 100]}))
    with pytest.raises(SedonaError, match=r"train: labels must be in 0..99, found 0..100"):
        build_data(DataConfig(dataset="cifar100", data_dir=str(tmp_path)))


def test_python2_pickles_with_the_old_numpy_module_name_load(tmp_path):
    """The released files were written by Python 2 numpy: their arrays name numpy.core.multiarray."""
    write_cifar(tmp_path)
    path = tmp_path / "cifar-10-batches-py" / "data_batch_2"
    data = pickle.dumps(pickle.loads(path.read_bytes()), protocol=2)
    path.write_bytes(data.replace(b"numpy._core.multiarray\n", b"numpy.core.multiarray\n"))
    assert len(build_data(DataConfig(dataset="cifar10", data_dir=str(tmp_path), val_fraction=0.0)).train) == 30


def test_hidden_entries_are_skipped_in_every_split(tmp_path):
    write_imagefolder(tmp_path)
    for split in ("train", "val"):
        write_png(tmp_path / split / ".ipynb_checkpoints" / "0.png", (1, 2, 3))  # a hidden "class"
        write_png(tmp_path / split / "ant" / ".hidden" / "x.png", (1, 2, 3))  # a hidden folder inside a class
        (tmp_path / split / "bee" / "._0.png").write_bytes(b"AppleDouble, not an image")  # a hidden file
    bundle = build_data(DataConfig(dataset="imagefolder", data_dir=str(tmp_path), image_size=16, val_fraction=0.0))
    assert bundle.num_classes == 2 and bundle.train.classes == ["ant", "bee"]
    assert (len(bundle.train), len(bundle.test)) == (6, 2)
    assert not any("/." in path for path, _ in bundle.train.samples + bundle.test.samples)


@pytest.mark.parametrize("tiny_val", [False, True])
def test_class_lists_of_the_splits_must_agree(tmp_path, tiny_val):
    write_imagefolder(tmp_path, classes=("ant", "bee"), tiny_val=tiny_val)
    write_png(tmp_path / "train" / "wasp" / "0.png", (9, 9, 9))  # in train/ only
    with pytest.raises(SedonaError) as info:
        build_data(DataConfig(dataset="imagefolder", data_dir=str(tmp_path)))
    val = "val/ (val_annotations.txt)" if tiny_val else "val/"
    assert str(info.value) == (f"{tmp_path}: the class lists of train/ and {val} differ: {val} lacks wasp "
                               "(3 vs 2 classes); every split needs the same classes")


def test_val_with_more_classes_and_empty_class_folders_are_refused(tmp_path):
    write_imagefolder(tmp_path, classes=("ant", "bee"))
    for i in range(7):
        write_png(tmp_path / "val" / f"x{i}" / "0.png", (9, 9, 9))
    with pytest.raises(SedonaError, match=r"val/ has x0, x1, x2, x3, x4 \(\+2 more\), not in train/ \(2 vs 9"):
        build_data(DataConfig(dataset="imagefolder", data_dir=str(tmp_path)))
    other = tmp_path / "other"
    write_imagefolder(other, classes=("ant", "bee"))
    (other / "train" / "empty").mkdir()
    with pytest.raises(SedonaError, match="class folder\\(s\\) without image files in the train tree: empty"):
        build_data(DataConfig(dataset="imagefolder", data_dir=str(other)))


def test_cli_malformed_data_is_one_line_and_leaves_no_run_directory(tmp_path, capsys):
    write_cifar(tmp_path / "data")
    folder = tmp_path / "data" / "cifar-10-batches-py"
    (folder / "data_batch_1").write_bytes(pickle.dumps(_batch(40, 37)))
    out = tmp_path / "run"
    rc = main(["--dataset", "cifar10", "--data-dir", str(tmp_path / "data"), "--steps", "1", "--device", "cpu",
               "--out", str(out)])
    err = capsys.readouterr().err
    assert rc == 2 and err == f"error: {folder / 'data_batch_1'}: 40 images but 37 labels\n"
    assert not out.exists()


@pytest.mark.parametrize("split, files", [("train", [f"data_batch_{i}" for i in range(1, 6)]), ("test", ["test_batch"])])
def test_empty_cifar_pickles_are_one_error_naming_the_files(tmp_path, split, files):
    # Well-formed files with zero images used to reach torch.cat(): "expected a non-empty list of Tensors".
    write_cifar(tmp_path)
    folder = tmp_path / "cifar-10-batches-py"
    for name in files:
        (folder / name).write_bytes(pickle.dumps({"data": np.zeros((0, 3072), np.uint8), "labels": []}))
    with pytest.raises(SedonaError) as info:
        build_data(DataConfig(dataset="cifar10", data_dir=str(tmp_path)))
    assert str(info.value).startswith(f"{folder}: {', '.join(files)} hold") and "no images" in str(info.value)
