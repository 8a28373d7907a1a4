"""Stage `opaque`: the target ("opaque") classifiers.

Public API (other stages rely on these names):

- :func:`build_model` — a torchvision backbone with a head for the dataset's classes,
  randomly initialised, from torchvision's official weights, or from a checkpoint file.
- :func:`load_opaque` — the trained ``opaque/model.pt`` as an eval-mode module.
- :func:`head_weights` — the final Linear as numpy ``(W (K, C), b (K,))``.
- :func:`predict_from_penultimate` — class probabilities from penultimate features.
- :func:`resolve_layer` / :func:`layer_names` — layer aliases and module names.

Grayscale data are fed as 3 identical channels (see :mod:`.data`), so the
backbones always take RGB and pretrained weights stay usable; ``in_channels``
adapts the first conv instead, for callers who want that.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ..errors import InputError
from ..io import PathLike, read_weights
from .archs import (
    ARCHITECTURES,
    HEAD_MODULES,
    VIT_PATCH,
    LayerSpec,
    adapt_input_channels,
    check_arch,
    create,
    head_linear,
    is_vit,
    layer_names,
    replace_head,
    resolve_layer,
)
from .checkpoints import LoadReport, load_weights, read_checkpoint, torchvision_checkpoint

__all__ = [
    "ARCHITECTURES",
    "HEAD_MODULES",
    "LayerSpec",
    "LoadReport",
    "build_model",
    "build_model_with_report",
    "head_linear",
    "head_weights",
    "layer_names",
    "load_opaque",
    "predict_from_penultimate",
    "replace_head",
    "resolve_layer",
]


def build_model_with_report(
    arch: str, n_classes: int, in_channels: int = 3, weights: str = "none", image_size: int = 224
) -> tuple[nn.Module, LoadReport | None]:
    """:func:`build_model`, plus what was loaded from the weights (None for random init)."""
    model = create(arch, n_classes, image_size)
    report = None
    if weights == "torchvision":
        state, source = torchvision_checkpoint(arch)
        report = load_weights(model, arch, state, source)
    elif weights != "none":
        report = load_weights(model, arch, read_checkpoint(weights), str(weights))
    adapt_input_channels(model, arch, in_channels)
    return model, report


def build_model(
    arch: str, n_classes: int, in_channels: int = 3, weights: str = "none", image_size: int = 224
) -> nn.Module:
    """``arch`` (one of :data:`ARCHITECTURES`) with an ``n_classes``-way Linear head.

    ``weights``: ``none`` (random init; seed torch first), ``torchvision`` (the
    official ImageNet weights; needs internet or the TORCH_HOME cache), or a
    path to a state dict (nesting and key prefixes are handled, see
    :mod:`.checkpoints`). A pretrained head for other classes is replaced by a
    fresh one. ``image_size`` matters only for vit_b_16 (multiple of 16).
    """
    return build_model_with_report(arch, n_classes, in_channels, weights, image_size)[0]


def _shape_of(state: dict, arch: str) -> tuple[int, int]:
    """(in_channels, image_size) a saved state dict was built for."""
    first = state.get(f"{ARCHITECTURES[arch][2]}.weight")
    in_channels = int(first.shape[1]) if first is not None and first.ndim == 4 else 3
    image_size = 224
    pos = state.get("encoder.pos_embedding")
    if is_vit(arch) and pos is not None:
        image_size = int(round((pos.shape[1] - 1) ** 0.5)) * VIT_PATCH
    return in_channels, image_size


def load_opaque(model_pt: PathLike, arch: str, n_classes: int) -> nn.Module:
    """The trained classifier ``model_pt`` (a state dict written by train_opaque) in eval mode.

    A corrupt file or a state dict of another architecture / class count is an
    InputError naming the file and the mismatching keys.
    """
    check_arch(arch)
    state = read_weights(model_pt, "model checkpoint not found")
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise InputError(f"{model_pt}: not a state dict of tensors")
    in_channels, image_size = _shape_of(state, arch)
    with torch.device("meta"):  # no random init: every tensor comes from the file
        model = create(arch, n_classes, image_size)
        adapt_input_channels(model, arch, in_channels)
    want = model.state_dict()
    missing = sorted(set(want) - set(state))
    unexpected = sorted(set(state) - set(want))
    shapes = [
        f"{k}: {tuple(state[k].shape)} vs {tuple(v.shape)}"
        for k, v in want.items()
        if k in state and state[k].shape != v.shape
    ]
    if missing or unexpected or shapes:
        raise InputError(
            f"{model_pt}: not a {arch} state dict for {n_classes} classes "
            f"(missing {missing[:8]}{'...' if len(missing) > 8 else ''}, "
            f"unexpected {unexpected[:8]}{'...' if len(unexpected) > 8 else ''}, "
            f"shape mismatches {shapes[:8]})"
        )
    model.load_state_dict(state, assign=True)
    return model.eval()


def head_weights(state_dict_or_model: dict | nn.Module, arch: str) -> tuple[np.ndarray, np.ndarray]:
    """The classification head as numpy float32 ``W`` (K, C) and ``b`` (K,).

    ``logits = feats @ W.T + b`` for penultimate features ``feats`` (N, C).
    """
    check_arch(arch)
    state = (
        state_dict_or_model.state_dict()
        if isinstance(state_dict_or_model, nn.Module)
        else state_dict_or_model
    )
    head = HEAD_MODULES[arch]
    try:
        w, b = state[f"{head}.weight"], state[f"{head}.bias"]
    except KeyError:
        raise InputError(f"state dict has no {arch} head ({head}.weight / {head}.bias)") from None
    return (
        w.detach().cpu().float().numpy().astype(np.float32),
        b.detach().cpu().float().numpy().astype(np.float32),
    )


def predict_from_penultimate(
    W: np.ndarray, b: np.ndarray, feats: np.ndarray, multilabel: bool
) -> np.ndarray:
    """Class probabilities (N, K) from penultimate features (N, C) and the head.

    Softmax over classes for multi-class models, an independent sigmoid per
    class for multi-label ones — the scores :func:`neurodissect.evaluate.classification.classification_metrics` expects.
    """
    logits = np.asarray(feats, dtype=np.float64) @ np.asarray(W, np.float64).T + np.asarray(b)
    if multilabel:
        return (0.5 * (1.0 + np.tanh(0.5 * logits))).astype(np.float32)  # overflow-free sigmoid
    logits -= logits.max(axis=1, keepdims=True)
    p = np.exp(logits)
    return (p / p.sum(axis=1, keepdims=True)).astype(np.float32)
