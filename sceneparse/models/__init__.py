"""The model zoo: one file per network and a plain name -> builder table.

A builder is called as `builder(num_classes, **options)` and returns an `nn.Module` that follows
the model contract in CONTRIBUTING.md (any H, W >= 32; logits (N, num_classes, H, W); training
mode may return `(logits, aux_logits)`, in which case the module has a non-None `aux_head`).
"""
from __future__ import annotations

import functools
import inspect

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from sceneparse.models.dabnet import DABNet
from sceneparse.models.lmffnet import LMFFNet
from sceneparse.models.psp_vgg19 import PSPVGG19
from sceneparse.models.pspnet import PSPNet
from sceneparse.models.pspnet_lite import PSPNetLite
from sceneparse.models.segnet import SegNet, SegNetBasic
from sceneparse.models.weights import load_backbone_weights
from sceneparse.utils import SceneparseError

__all__ = ["DABNet", "LMFFNet", "MODELS", "PSPNet", "PSPNetLite", "PSPVGG19", "SegNet", "SegNetBasic",
           "build_model", "count_flops", "list_models", "load_backbone_weights"]

MODELS = {
    "pspnet_resnet18": functools.partial(PSPNet, backbone="resnet18"),
    "pspnet_resnet34": functools.partial(PSPNet, backbone="resnet34"),
    "pspnet_resnet50": functools.partial(PSPNet, backbone="resnet50"),
    "pspnet_resnet101": functools.partial(PSPNet, backbone="resnet101"),
    "segnet_vgg16": SegNet,
    "segnet_basic": SegNetBasic,
    "pspnet_lite": PSPNetLite,
    "psp_vgg19": PSPVGG19,
    "dabnet": DABNet,
    "dabnet_psp": functools.partial(DABNet, pyramid=True),
    "lmffnet": LMFFNet,
}


def list_models() -> list[str]:
    """Names accepted by `build_model`, in table order."""
    return list(MODELS)


def _options(builder) -> list[str]:
    fixed = set(builder.keywords) if isinstance(builder, functools.partial) else set()
    params = list(inspect.signature(builder).parameters)[1:]  # after num_classes
    return [p for p in params if p not in fixed]


def build_model(name: str, num_classes: int, **options) -> nn.Module:
    """Build a zoo network by name; unknown names and options raise a one-line SceneparseError."""
    if name not in MODELS:
        raise SceneparseError(f"unknown model '{name}' (valid: {', '.join(MODELS)})")
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise SceneparseError(f"model '{name}': num_classes must be a positive integer, got {num_classes!r}")
    builder = MODELS[name]
    valid = _options(builder)
    unknown = [k for k in options if k not in valid]
    if unknown:
        raise SceneparseError(f"model '{name}': unknown option(s) {', '.join(unknown)} "
                              f"(valid: {', '.join(valid) or 'none'})")
    try:
        return builder(num_classes, **options)
    except (TypeError, ValueError) as e:  # a bad option value from a config, e.g. dropout: "high"
        raise SceneparseError(f"model '{name}': bad option value ({str(e).splitlines()[0]})") from None


def count_flops(model: nn.Module, x: torch.Tensor) -> int:
    """FLOPs of one forward pass of `model` on `x` (convolutions and matrix products; a multiply-add
    counts 2). On the meta device (model and `x` built under `torch.device("meta")`) this costs no
    memory and no compute."""
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(x)
    return int(counter.get_total_flops())
