"""Torchvision backbones by name: construction, the classification head, and
the names of the layers one can dissect.

Every architecture ends in one ``nn.Linear`` classification head (its module
name is :data:`HEAD_MODULES`). Two layer aliases are resolved against it:

- ``penultimate`` — the head's input (512-d for resnet18, the LayerNorm'd
  pooled features for convnext_tiny). For vit_b_16 it is the output of
  ``encoder.ln`` pooled over tokens per ``activations.vit_tokens``; with
  ``cls`` (the default) that is exactly the head's input.
- ``logits`` — the head's output: one unit per class, in manifest class order.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass

import torch
from torch import nn

from ..errors import ConfigError

# name -> (torchvision constructor name, head module, first conv module)
ARCHITECTURES = {
    "resnet18": ("resnet18", "fc", "conv1"),
    "resnet50": ("resnet50", "fc", "conv1"),
    "densenet121": ("densenet121", "classifier", "features.conv0"),
    "convnext_tiny": ("convnext_tiny", "classifier.2", "features.0.0"),
    "vit_b_16": ("vit_b_16", "heads.head", "conv_proj"),
}
HEAD_MODULES = {arch: head for arch, (_, head, _) in ARCHITECTURES.items()}
ALIASES = ("penultimate", "logits")
VIT_PATCH = 16


def check_arch(arch: str) -> None:
    if arch not in ARCHITECTURES:
        raise ConfigError(f"unknown architecture {arch!r}; valid: {sorted(ARCHITECTURES)}")


def is_vit(arch: str | None) -> bool:
    return arch == "vit_b_16"


def create(arch: str, n_classes: int, image_size: int = 224) -> nn.Module:
    """A randomly initialised ``arch`` with an ``n_classes`` head (seed torch first)."""
    import torchvision

    check_arch(arch)
    kwargs: dict = {"weights": None, "num_classes": int(n_classes)}
    if is_vit(arch):
        if image_size % VIT_PATCH:
            raise ConfigError(
                f"vit_b_16 needs an image size divisible by {VIT_PATCH}, got opaque.image_size={image_size}"
            )
        kwargs["image_size"] = int(image_size)
    return getattr(torchvision.models, ARCHITECTURES[arch][0])(**kwargs)


def get_module(model: nn.Module, name: str) -> nn.Module:
    return dict(model.named_modules())[name]


def _set_module(model: nn.Module, name: str, new: nn.Module) -> None:
    parent, _, leaf = name.rpartition(".")
    setattr(get_module(model, parent) if parent else model, leaf, new)


def head_linear(model: nn.Module, arch: str) -> nn.Linear:
    """The final classification ``nn.Linear`` of ``model``."""
    head = get_module(model, HEAD_MODULES[arch])
    if not isinstance(head, nn.Linear):
        raise TypeError(f"{arch}: {HEAD_MODULES[arch]} is {type(head).__name__}, not nn.Linear")
    return head


def replace_head(model: nn.Module, arch: str, n_classes: int) -> nn.Linear:
    """Swap the head for a fresh ``n_classes`` Linear (same input width); returns it."""
    old = head_linear(model, arch)
    new = nn.Linear(old.in_features, int(n_classes))
    _set_module(model, HEAD_MODULES[arch], new)
    return new


def adapt_input_channels(model: nn.Module, arch: str, in_channels: int) -> None:
    """Make the first conv take ``in_channels`` instead of RGB.

    The RGB kernel is summed over its input channels and spread evenly over the
    new ones, so a grey image gives the same output as its 3-channel copy did
    (this keeps pretrained weights meaningful).
    """
    if in_channels == 3:
        return
    name = ARCHITECTURES[arch][2]
    old = get_module(model, name)
    new = nn.Conv2d(
        in_channels,
        old.out_channels,
        old.kernel_size,
        old.stride,
        old.padding,
        old.dilation,
        old.groups,
        old.bias is not None,
    )
    with torch.no_grad():
        summed = old.weight.sum(dim=1, keepdim=True) / in_channels
        new.weight.copy_(summed.repeat(1, in_channels, 1, 1))
        if old.bias is not None:
            new.bias.copy_(old.bias)
    _set_module(model, name, new)


# -- layers ------------------------------------------------------------------------


@dataclass(frozen=True)
class LayerSpec:
    """A requested layer resolved to a module of the model.

    ``capture`` is ``output`` (the module's output) or ``input`` (its first
    input); ``class_units`` marks the head's output (one unit per class).
    """

    name: str
    module: str
    capture: str = "output"
    class_units: bool = False


def layer_names(model: nn.Module) -> list[str]:
    """Every named submodule (the root excluded), in definition order."""
    return [n for n, _ in model.named_modules() if n]


def _unknown_layer_message(name: str, arch: str | None, names: list[str]) -> str:
    close = difflib.get_close_matches(name, names, n=5, cutoff=0.6)
    shallow = [n for n in names if n.count(".") <= 2]
    omitted = len(names) - len(shallow)
    hint = f"; did you mean {close}?" if close else ""
    aliases = list(ALIASES) if arch else []
    more = f" (+ {omitted} deeper names of the same dotted form)" if omitted else ""
    return (
        f"unknown layer {name!r} for {arch or 'this model'}{hint} valid: aliases {aliases}; "
        f"module names {shallow}{more}"
    )


def resolve_layer(model: nn.Module, arch: str | None, name: str) -> LayerSpec:
    """Map an alias or module name to a :class:`LayerSpec`; unknown → ConfigError listing the model's names."""
    if arch is not None and name in ALIASES:
        head = HEAD_MODULES[arch]
        if name == "logits":
            return LayerSpec(name, head, "output", class_units=True)
        if is_vit(arch):
            return LayerSpec(name, "encoder.ln", "output")
        return LayerSpec(name, head, "input")
    names = layer_names(model)
    if name not in names:
        raise ConfigError(_unknown_layer_message(name, arch, names))
    head = HEAD_MODULES.get(arch or "")
    return LayerSpec(name, name, "output", class_units=name == head)
