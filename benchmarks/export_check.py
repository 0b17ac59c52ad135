"""Does `export --format pt2` (the default) hold every shipped network? torch.export of each registered
architecture with every shipped decoupling's heads (and torchvision's ResNets/VGGs), the exported program's
logits compared with the eager network's, and the time each export takes.

    ./run python benchmarks/export_check.py [--width 0.25] [--size 32] [--archs vgg19,resnet50,...]

One line per case: arch, decoupling, heads kept, equal (bit for bit on one thread), export seconds.
"""
from __future__ import annotations

import argparse
import sys
import time

import torch


def _cases(archs: list[str]) -> list[tuple[str, str | None]]:
    from sedona_runtime.decoupling import list_shipped

    shipped = list_shipped()
    cases: list[tuple[str, str | None]] = []
    for arch in archs:
        if ":" in arch:
            cases.append((arch, None))
            continue
        names = [n for n in shipped if n.startswith(f"{arch}_k")] or ["dgl:2", "predsim:2"]
        cases += [(arch, n) for n in names]
    return cases


def check(arch: str, decoupling: str | None, width: float, size: int) -> tuple[int, bool, float]:
    """(auxiliary heads kept, logits equal, export seconds) for one network."""
    from sedona_runtime.decoupling import resolve_decoupling
    from sedona_runtime.heads import head_width_for
    from sedona_runtime.models import ModelConfig, build_model
    from sedona_runtime.models.exported import ExportedNet
    from sedona_runtime.trained.program import NormalizedNet, export_program
    from sedona_runtime.training.block import build_blocks, head_spec_fn

    user = ":" in arch
    cfg = ModelConfig(arch=arch, num_classes=10, width=1.0 if user else width, stem="cifar")
    torch.manual_seed(0)
    model = build_model(cfg)
    heads, after = [], []
    if decoupling is not None:
        dec = resolve_decoupling(decoupling, arch, model.num_layers)
        blocks = build_blocks(model, dec, head_spec_fn(model, (3, size, size), 10, head_width_for("cifar")))
        heads, after = [b.head for b in blocks[:-1]], [b.last for b in blocks[:-1]]
    net = NormalizedNet(ExportedNet(model, heads, after).eval(), [0.5] * 3, [0.25] * 3, 255.0, torch.float32,
                        heads=bool(heads))
    start = time.perf_counter()
    program = export_program(net, torch.zeros(2, 3, size, size, dtype=torch.uint8), arch)
    seconds = time.perf_counter() - start
    x = torch.randint(0, 256, (3, 3, size, size), dtype=torch.uint8)
    with torch.no_grad():
        want, got = net(x), program.module()(x)
    if not heads:
        want, got = (want,), (got,)
    return len(heads), all(torch.equal(a, b) for a, b in zip(want, got)), seconds


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--width", type=float, default=0.25)
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--archs", default="small,vgg19,resnet50,resnet101,resnet152,torchvision.models:resnet18,"
                                      "torchvision.models:resnet50,torchvision.models:vgg11_bn")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    failed = 0
    for arch, dec in _cases(args.archs.split(",")):
        heads, equal, seconds = check(arch, dec, args.width, args.size)
        failed += not equal
        print(f"{arch:28s} {dec or '-':14s} heads {heads:2d}  equal {equal}  export {seconds:5.1f} s", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
