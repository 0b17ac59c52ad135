"""Regenerate sedona_runtime/decoupling/shipped/*.json from the released SEDONA alpha/beta values."""
from __future__ import annotations

import json
import sys
from pathlib import Path

from sedona_runtime.decoupling.discretize import discretize
from sedona_runtime.decoupling.schema import Decoupling, save_decoupling
from sedona_runtime.heads.registry import AUX_POOL
from sedona_runtime.utils.errors import SedonaError

REPO = Path(__file__).resolve().parents[1]
REFERENCE = REPO.parent / "shared" / "reference" / "sedona-released-alpha-beta.json"
SHIPPED = REPO / "sedona_runtime" / "decoupling" / "shipped"
ARCHS = ("vgg19", "resnet50", "resnet101", "resnet152")
KS = (2, 4, 8, 16)


def build_all(reference: Path = REFERENCE) -> dict[str, Decoupling]:
    """name -> decoupling for every shipped (arch, K), derived from the reference file."""
    try:
        ref = json.loads(reference.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise SedonaError(f"{reference}: cannot read the released alpha/beta ({exc})") from None
    out = {}
    for arch in ARCHS:
        entry = ref["architectures"][arch]
        for k in KS:
            source = (
                f"SEDONA (ICLR 2021) released alpha/beta for {arch} (CIFAR-10 search, 0.25x width), "
                f"file {reference.name}; discretized for K={k}: cut at the K-1 boundaries with the largest "
                "softmax(alpha)[0] (exact ties -> earlier boundary), head argmax(beta) (ties -> first in pool)"
            )
            out[f"{arch}_k{k}"] = discretize(
                entry["alpha"], entry["beta"], k, list(AUX_POOL), arch, entry["num_layers"], source=source
            )
    return out


def main() -> int:
    """Write every shipped file (atomically) and list what was written."""
    reference = Path(sys.argv[1]) if len(sys.argv) > 1 else REFERENCE
    for name, dec in build_all(reference).items():
        save_decoupling(dec, SHIPPED / f"{name}.json")
        sys.stdout.write(f"{name}: cuts after layers {dec.boundaries}, heads {dec.heads}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
