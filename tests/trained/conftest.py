"""Fixtures of the trained-run tests: small finished runs (a user network on uint8 images, torchvision's
ResNet-18), the reference logits of `evaluate`'s computation, and a Python without sedona_runtime."""
from __future__ import annotations

import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
import torch

from sedona_runtime.cli.train import main as train_main

MODEL, DATA = "byo_user_pkg.nets:build", "byo_user_pkg.data:build"
# --workers 0: no DataLoader processes to start (each would import torch; the data is tiny).
COMMON = ["--decoupling", "dgl:2", "--batch-size", "16", "--workers", "0", "--device", "cpu", "--plain"]


def _train(out: Path, *argv: str) -> Path:
    assert train_main([*COMMON, *argv, "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="session")
def user_run(user_pkg, tmp_path_factory):
    """The user's nn.Sequential on its uint8 images (160 train, 32 val, 40 test): 4 steps, validation every 2."""
    return _train(tmp_path_factory.mktemp("trained") / "user", "--model", MODEL, "--dataset", DATA,
                  "--steps", "4", "--eval-interval", "2")


@pytest.fixture(scope="session")
def torchvision_run(user_pkg, tmp_path_factory):
    """torchvision's ResNet-18 taken as it is, on the user's 12x12 uint8 images: 2 steps."""
    return _train(tmp_path_factory.mktemp("trained") / "tv", "--model", "torchvision.models:resnet18",
                  "--dataset", DATA, "--steps", "2", "--eval-interval", "0")


def reference(run_dir: Path, weights: str = "best") -> tuple[torch.Tensor, torch.Tensor, object]:
    """(raw test images of the first evaluation batch, their preprocessed input, the TrainedRun): what
    `python -m sedona_runtime.evaluate RUN` feeds its network (trained.evaluate -> training.evaluate.evaluate:
    eval_batches' preprocessing; `logits_of` is the rest)."""
    from sedona_runtime.data import build_data, eval_batches
    from sedona_runtime.data.stream import eval_raw_batch
    from sedona_runtime.trained.load import load_run

    trained = load_run(run_dir, weights=weights)
    test = build_data(trained.cfg.data).test
    size = trained.cfg.eval_batch_size
    raw = eval_raw_batch(test, size, 0).x
    x, _ = next(eval_batches(test, size))
    for b in trained.blocks:
        b.eval()
    return raw, x, trained


def logits_of(trained, x: torch.Tensor) -> list[torch.Tensor]:
    """Every block's head's logits (the last: the classifier's) on the preprocessed batch `x`, as
    training.evaluate.evaluate computes them: on the same batch (a GEMM's result may depend on the batch size)."""
    from sedona_runtime.training.evaluate import block_logits

    with torch.no_grad():
        return block_logits(trained.blocks, x.to(trained.dtype))


def run_without_package(script: str, cwd: Path, timeout: float = 180) -> subprocess.CompletedProcess:
    """Run `script` in a Python where sedona_runtime cannot be imported (asserted first): -I (no PYTHONPATH, no
    user site, no script folder), -S (no .pth files: the editable install's finder is one), the environment's
    site-packages appended by hand, in `cwd` (outside the repository). One torch thread, as in the tests."""
    paths = sorted({sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]})
    prelude = (f"import sys\nsys.path += {paths!r}\n"
               "try:\n    import sedona_runtime\nexcept ImportError:\n    pass\n"
               "else:\n    raise SystemExit('sedona_runtime is importable: ' + sedona_runtime.__file__)\n"
               "import torch\ntorch.set_num_threads(1)\n")
    proc = subprocess.run([sys.executable, "-I", "-S", "-c", prelude + script], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-3000:] + proc.stdout[-2000:]
    return proc
