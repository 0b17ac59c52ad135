"""A trained network's weights under its own module's keys: torchvision's (the torchvision format), or those
of the module a user's --model callable returns (the state_dict format's key map)."""
from __future__ import annotations

import torch
from torch import nn

from sedona_runtime.trained.load import TrainedRun
from sedona_runtime.utils.errors import SedonaError

_OTHERS = "use --format pt2 (no code needed to load) or --format state_dict instead"


def torchvision_state(run: TrainedRun) -> tuple[dict[str, torch.Tensor], str]:
    """(state dict with torchvision's keys, the builder that takes it: e.g. 'torchvision.models.resnet50').

    `builder(num_classes=N).load_state_dict(state)` then computes the run's network exactly:
    - a `--model MODULE:CALLABLE` run whose callable returns a torchvision ResNet or VGG: the callable is
      called again (on the meta device: no weights), the layered form wraps that very module (shared
      modules, models.wrap.to_layered), the trained weights go into it, and its own state dict is written;
    - our resnet50/101/152 with the ImageNet stem at width 1 on 3 channels: the same modules as
      torchvision's (models.torchvision_compat proves the forward equal), keys mapped back.
    Raises SedonaError naming why any other network has no torchvision form, and the formats that work.
    """
    arch = run.cfg.model.arch
    from sedona_runtime.utils.imports import is_import_path

    if is_import_path(arch):
        return _from_user_callable(run), _builder_name(arch)
    return _from_builtin_resnet(run), f"torchvision.models.{arch}"


def _builder_name(spec: str) -> str:
    module, _, name = spec.partition(":")
    return f"torchvision.models.{name}" if module.startswith("torchvision.models") else spec


def _rebuild(run: TrainedRun) -> tuple[object, nn.Module]:
    """(what the run's --model callable returns, re-called on the meta device: no weights; its layered form,
    which holds that very object's modules: models.wrap.to_layered)."""
    from sedona_runtime.models.wrap import to_layered
    from sedona_runtime.utils.imports import call_user, load_callable

    spec = run.cfg.model.arch
    fn = load_callable(spec, run.cfg.model.import_root, what="model")
    with torch.device("meta"):  # structure only: every tensor is replaced by the trained one
        raw = call_user(fn, spec, "model", num_classes=run.cfg.model.num_classes)
        layered = to_layered(raw, arch=spec)
    return raw, layered


def own_key_map(run: TrainedRun) -> dict[str, str] | None:
    """{layered key: the same tensor's key in the module the run's --model callable returns}, for users who
    load the state_dict format into their own `build(num_classes=N)` without sedona_runtime; None for a
    built-in network, or a callable that returns a list or a LayeredNet (its keys are the layered ones)."""
    from sedona_runtime.models.layered import LayeredNet
    from sedona_runtime.utils.imports import is_import_path

    if not is_import_path(run.cfg.model.arch):
        return None
    raw, layered = _rebuild(run)
    if not isinstance(raw, nn.Module) or isinstance(raw, LayeredNet):
        return None
    own = {id(v): k for k, v in raw.state_dict(keep_vars=True).items()}
    mapping = {k: own.get(id(v)) for k, v in layered.state_dict(keep_vars=True).items()}
    return mapping if all(mapping.values()) and len(mapping) == len(own) else None


def _from_user_callable(run: TrainedRun) -> dict[str, torch.Tensor]:
    from sedona_runtime.models.torchvision_wrap import is_resnet, is_vgg

    spec = run.cfg.model.arch
    raw, layered = _rebuild(run)
    if not isinstance(raw, nn.Module) or not (is_resnet(raw) or is_vgg(raw)):
        raise SedonaError(f"--format torchvision: {spec} builds a {type(raw).__name__}, not a torchvision ResNet "
                          f"or VGG; {_OTHERS}")
    try:
        layered.load_state_dict(run.model.state_dict(), strict=True, assign=True)
    except RuntimeError as exc:
        raise SedonaError(f"--format torchvision: {spec} now builds another network than the run trained: "
                          f"{str(exc).strip().splitlines()[0]}") from None
    state = raw.state_dict()
    left = [k for k, v in state.items() if v.is_meta]
    if left:  # a module of the ResNet/VGG outside the layered form: never true for torchvision's own
        raise SedonaError(f"--format torchvision: {spec}: {left[0]} is not part of the trained network; {_OTHERS}")
    return {k: v.detach().clone() for k, v in state.items()}


def _from_builtin_resnet(run: TrainedRun) -> dict[str, torch.Tensor]:
    from sedona_runtime.models.resnet import DEPTHS
    from sedona_runtime.models.torchvision_compat import torchvision_resnet_key_map

    m = run.cfg.model
    if m.arch not in DEPTHS:
        mlp = " (its classifier is the SEDONA release's MLP, not torchvision's)" if m.arch == "vgg19" else ""
        raise SedonaError(f"--format torchvision: {m.arch} has no torchvision counterpart{mlp}; it takes resnet50/"
                          f"101/152 and --model torchvision.models:... networks; {_OTHERS}")
    why = [f"its stem is {m.stem!r}, torchvision's is 'imagenet' (7x7 stride-2 convolution and max-pool)"
           if m.stem != "imagenet" else "",
           f"its width is {m.width}, torchvision's is 1" if m.width not in (None, 1, 1.0) else "",
           f"it takes {m.in_channels} channels, torchvision's 3" if m.in_channels != 3 else ""]
    why = [w for w in why if w]
    if why:
        raise SedonaError(f"--format torchvision: this {m.arch} is not torchvision's: {'; '.join(why)}; {_OTHERS}")
    back = {layered: tv for tv, layered in torchvision_resnet_key_map(DEPTHS[m.arch]).items()}
    state = {}
    for key, value in run.model.state_dict().items():
        prefix = next(p for p in back if key.startswith(p))  # every key of the layered ResNet has one
        state[back[prefix] + key[len(prefix):]] = value.detach().clone()
    return state
