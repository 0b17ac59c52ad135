"""Regenerate sedona_runtime/decoupling/shipped/*.json from the released SEDONA alpha/beta and the paper's
Tables 10-13; `--markdown` prints the README's table of shipped decouplings instead of writing files."""
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
TABLE = {"vgg19": 13, "resnet50": 12, "resnet101": 11, "resnet152": 10}  # the paper's table for each arch
RULE = (
    "cut at the K-1 best-ranked boundaries: first the paper's Table {table} (layers in order of learned "
    "alpha, each with its aux head), then the rest by softmax(alpha)[0] of the exact float32 values computed "
    "in float64, exact ties -> earlier boundary, head argmax(beta) (ties -> first in pool)"
)


def paper_ranking(entry: dict) -> list[list]:
    """The paper's table as a decoupling ranking: [[layer, "auxN"], ...], best first."""
    table = entry["paper_table"]
    return [[int(layer), f"aux{int(h)}"] for layer, h in zip(table["layers_by_alpha"], table["aux_head"])]


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
                f"file {reference.name}; discretized for K={k}: " + RULE.format(table=TABLE[arch])
            )
            out[f"{arch}_k{k}"] = discretize(
                entry["alpha"], entry["beta"], k, list(AUX_POOL), arch, entry["num_layers"],
                ranking=paper_ranking(entry), source=source,
            )
    return out


def markdown(decs: dict[str, Decoupling]) -> str:
    """The README table: one row per shipped file, its cuts and heads."""
    rows = ["| shipped name | K | cuts after layers | aux heads (blocks 1..K-1) |", "| --- | --- | --- | --- |"]
    for arch in ARCHS:
        for k in KS:
            dec = decs[f"{arch}_k{k}"]
            heads = ", ".join(h.removeprefix("aux") for h in dec.heads)
            rows.append(f"| `{arch}_k{k}` | {k} | {', '.join(map(str, dec.boundaries))} | aux {heads} |")
    return "\n".join(rows) + "\n"


def main() -> int:
    """Write every shipped file (atomically) and list what was written; --markdown: print the table."""
    args = sys.argv[1:]
    as_markdown = "--markdown" in args
    args = [a for a in args if a != "--markdown"]
    decs = build_all(Path(args[0]) if args else REFERENCE)
    if as_markdown:
        sys.stdout.write(markdown(decs))
        return 0
    for name, dec in decs.items():
        save_decoupling(dec, SHIPPED / f"{name}.json")
        sys.stdout.write(f"{name}: cuts after layers {dec.boundaries}, heads {dec.heads}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
