"""A bad image file is found before training (every file of every split: header and end marker, in parallel),
and an error inside a DataLoader worker is one line naming the file."""
from __future__ import annotations

import io

import numpy as np
import pytest

from data_helpers import write_imagefolder
from sedona_runtime.data import DataConfig, build_data
from sedona_runtime.data import image_check
from sedona_runtime.utils.errors import SedonaError


def _jpeg(seed: int = 0) -> bytes:
    from PIL import Image

    pixels = np.random.default_rng(seed).integers(0, 255, (24, 24, 3), dtype=np.uint8)  # noise: a long file
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="JPEG", quality=95)
    return buf.getvalue()


def test_whole_images_pass_and_truncated_ones_are_named(tmp_path):
    good, appended, cut = tmp_path / "good.jpg", tmp_path / "appended.jpg", tmp_path / "cut.jpg"
    good.write_bytes(_jpeg())
    appended.write_bytes(_jpeg() + b"camera trailer after the end marker")  # valid: decodes in full
    assert image_check.check_image(str(good)) is None and image_check.check_image(str(appended)) is None
    for keep in (400, len(_jpeg()) - 100):  # in the header, and in the image data (the header parses)
        cut.write_bytes(_jpeg()[:keep])
        assert "truncated" in image_check.check_image(str(cut)).lower()


def test_a_truncated_jpeg_in_val_is_found_when_the_data_loads(tmp_path):
    write_imagefolder(tmp_path)
    bad = tmp_path / "val" / "bee" / "zz.jpg"
    bad.write_bytes(_jpeg()[:400])  # the test split: used to be decoded first after all training
    with pytest.raises(SedonaError) as info:
        build_data(DataConfig(dataset="imagefolder", data_dir=str(tmp_path), image_size=8))
    msg = str(info.value)
    assert msg.startswith(f"{bad}: cannot read image (") and "truncated" in msg.lower() and "\n" not in msg, msg
    bad.unlink()
    bundle = build_data(DataConfig(dataset="imagefolder", data_dir=str(tmp_path), image_size=8))
    assert "image files checked in" in bundle.note  # how long the check took, in the run header's data line


def test_a_long_check_reports_progress(tmp_path, monkeypatch):
    paths = []
    for i in range(5):
        (tmp_path / f"{i}.jpg").write_bytes(_jpeg(i))
        paths.append(str(tmp_path / f"{i}.jpg"))
    monkeypatch.setattr(image_check, "PROGRESS_EVERY_S", 0.0)
    monkeypatch.setattr(image_check, "CHUNK", 2)
    seen = []
    image_check.check_images(paths, "test", progress=lambda done, total, s: seen.append((done, total)))
    assert seen[-1] == (5, 5) and seen[0] == (2, 5)


def test_a_bad_file_inside_a_dataloader_worker_is_one_line_naming_it(tmp_path):
    # What a DataLoader does with a worker's exception (torch's own ExceptionWrapper: the same type, its
    # message the worker's whole traceback), fed through read_ahead's wrapper; no worker process is started.
    from torch._utils import ExceptionWrapper

    from sedona_runtime.data.feeder import _one_line_errors
    from sedona_runtime.data.imagefolder import load_imagefolder

    write_imagefolder(tmp_path)
    bad = tmp_path / "val" / "ant" / "0.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n not an image")
    _, test = load_imagefolder(str(tmp_path), 8)  # no check: as if it broke after the run started
    index = [p for p, _ in test.samples].index(str(bad))

    def worker_batches():
        try:
            test[index]
        except SedonaError:
            wrapped = ExceptionWrapper(where="in DataLoader worker process 0")
        yield from ()
        wrapped.reraise()

    with pytest.raises(SedonaError) as info:
        list(_one_line_errors(worker_batches()))
    msg = str(info.value)
    assert msg.startswith(f"{bad}: cannot decode image") and "\n" not in msg and "worker" not in msg, msg


def test_the_trainer_decodes_the_test_split_at_the_first_validation(tmp_path, monkeypatch):
    # A file that passes the header check but does not decode is found at the first validation, not at the end.
    from sedona_runtime.data import image_check as ic
    from sedona_runtime.training.config import TrainConfig
    from sedona_runtime.training.greedy import GreedyTrainer

    write_imagefolder(tmp_path / "tree", per_class=6)
    bad = tmp_path / "tree" / "val" / "bee" / "zz.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n not an image")
    monkeypatch.setattr(ic, "check_image", lambda path: None)  # as if the header check had passed it
    cfg = TrainConfig(decoupling="dgl:2", steps=50, batch_size=4, eval_interval=1, checkpoint_interval=0,
                      device="cpu", out_dir=str(tmp_path / "run"))
    cfg.model.width, cfg.data = 0.25, DataConfig(dataset="imagefolder", data_dir=str(tmp_path / "tree"),
                                                  image_size=8, workers=0, val_fraction=0.25)
    trainer = GreedyTrainer(cfg)
    with pytest.raises(SedonaError, match="cannot decode image"):
        trainer.run()
    assert trainer.step == 1  # stopped at the first validation, not after 50 steps
