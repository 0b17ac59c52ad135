"""Resolve the trainer's device and its decoupling for the model, with an explicit opt-in for retargeting."""
from __future__ import annotations

import re

import torch

from sedona_runtime.utils.errors import SedonaError

_KSPEC = re.compile(r"^(?P<name>[a-z]+):(?P<k>\d+)$")
# For `sedona:K --retarget` on a model without a searched decoupling: the shipped search whose shape is
# closest (plain conv stacks take VGG-19's, bottleneck ResNets ResNet-50's).
_SEDONA_SOURCE = {"small": "vgg19", "small_resnet": "resnet50"}


def resolve_device(name: str) -> torch.device:
    """'auto' -> CUDA when available, else CPU; 'cpu', 'cuda' or 'cuda:N' must name a device that exists."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    usage = "use auto, cpu, cuda or cuda:N"
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        raise SedonaError(f"device {name!r}: unknown device ({usage})") from None
    if device.type not in ("cpu", "cuda"):
        raise SedonaError(f"device {name!r}: not supported by the trainer ({usage})")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise SedonaError(f"device {name!r} requested but CUDA is not available (use cpu or auto)")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise SedonaError(f"device {name!r}: only {torch.cuda.device_count()} CUDA device(s) are visible")
    return device


def resolve_for_model(spec: str, arch: str, num_layers: int, *, retarget: bool = False):
    """The Decoupling `spec` names, fitted to model `arch` (`num_layers` layers).

    A decoupling file or shipped name made for another architecture is an error unless `retarget`,
    which maps its cuts proportionally (decoupling.retarget). `sedona:K` on an architecture without a
    shipped search likewise needs `retarget`, and then re-derives K blocks from the closest shipped search.
    """
    from sedona_runtime.decoupling import list_shipped, load_decoupling, resolve_decoupling
    from sedona_runtime.decoupling import retarget as retarget_fn
    from sedona_runtime.decoupling.resolve import is_spec, sedona_decoupling

    m = _KSPEC.match(spec or "")
    if m and m.group("name") == "sedona":
        shipped_archs = {n.rsplit("_k", 1)[0] for n in list_shipped()}
        if arch not in shipped_archs:
            source = _SEDONA_SOURCE.get(arch, "resnet50" if "resnet" in arch else "vgg19")
            if not retarget:
                raise SedonaError(f"{spec}: no SEDONA search is shipped for arch {arch!r}; pass --retarget to map "
                                  f"{source}'s searched decoupling onto it, or pass a decoupling file")
            k = int(m.group("k"))
            src_layers = load_decoupling(sorted(n for n in list_shipped() if n.startswith(f"{source}_k"))[0]).num_layers
            return retarget_fn(sedona_decoupling(source, src_layers, k), arch, num_layers)
    if not is_spec(spec or ""):  # a file or shipped name (a malformed NAME:K is refused by resolve_decoupling)
        dec = load_decoupling(spec)
        if dec.arch != arch and not retarget:
            raise SedonaError(f"decoupling {spec}: made for arch {dec.arch!r} ({dec.num_layers} layers), but the model "
                              f"is {arch!r} ({num_layers} layers); pass --retarget to map its cuts onto {arch}")
    return resolve_decoupling(spec, arch, num_layers, allow_retarget=retarget)
