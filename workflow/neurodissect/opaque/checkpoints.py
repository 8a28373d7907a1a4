"""Loading weights that were not written by this workflow: torchvision's
official weights and users' checkpoints (ImageNet / MoCo / fine-tuned).

A foreign checkpoint may nest its state dict (under ``state_dict``,
``model``, ...), prefix every key (``module.``, ``backbone.``,
``module.encoder_q.``), carry extra entries (a MoCo key encoder, a queue, an
MLP projection head) or a head for other classes. :func:`load_weights` maps
its keys onto the model by the longest key suffix the model knows, keeps the
best-matching prefix group, and requires the whole backbone to match in name
and shape; the head is loaded only where it fits. Anything else is one
InputError naming the file and listing the unmatched keys.
"""

from __future__ import annotations

import logging
import re
from collections import defaultdict
from dataclasses import dataclass, field

import torch
from torch import nn

from ..errors import InputError, collect
from ..io import PathLike, read_weights
from .archs import ARCHITECTURES, HEAD_MODULES, VIT_PATCH, is_vit

log = logging.getLogger(__name__)

NESTED_KEYS = ("state_dict", "model", "model_state_dict", "net", "network", "module")
# torchvision's pre-0.3 DenseNet names (CheXNet-era checkpoints): norm.1 -> norm1
_OLD_DENSENET = re.compile(
    r"^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|running_var))$"
)
_OPTIONAL_BUFFERS = ("num_batches_tracked",)


@dataclass
class LoadReport:
    """What :func:`load_weights` took from a checkpoint."""

    source: str
    n_loaded: int
    head_loaded: bool
    prefix: str = ""
    unused: list[str] = field(default_factory=list)

    def as_record(self) -> dict:
        return {
            "weights_source": self.source,
            "n_tensors_loaded": self.n_loaded,
            "head_loaded": self.head_loaded,
            "key_prefix_stripped": self.prefix,
            "n_checkpoint_keys_unused": len(self.unused),
        }


def unwrap_state_dict(obj, source: str) -> dict[str, torch.Tensor]:
    """The flat name → tensor mapping inside a saved object (nested dicts followed by name)."""
    seen = []
    while isinstance(obj, dict):
        tensors = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
        if tensors:
            return {str(k): v for k, v in tensors.items()}
        nested = next((k for k in NESTED_KEYS if isinstance(obj.get(k), dict)), None)
        if nested is None:
            break
        seen.append(nested)
        obj = obj[nested]
    keys = sorted(map(str, obj))[:10] if isinstance(obj, dict) else type(obj).__name__
    raise InputError(
        f"{source}: no state dict of tensors found (followed {seen or 'nothing'}; "
        f"found {keys}); expected a state dict, possibly nested under one of {list(NESTED_KEYS)}"
    )


def read_checkpoint(path: PathLike) -> dict[str, torch.Tensor]:
    """Read a weights-only ``.pt``/``.pth`` file and unwrap its state dict; errors name the file."""
    obj = read_weights(path, "checkpoint file not found (opaque.weights)")
    return unwrap_state_dict(obj, str(path))


def _rename_old_densenet(key: str) -> str:
    m = _OLD_DENSENET.match(key)
    return m.group(1) + m.group(2) if m else key


def match_keys(checkpoint_keys, target_keys) -> tuple[str, dict[str, str]]:
    """(prefix, {checkpoint key: model key}) for the prefix group matching most model keys.

    Each checkpoint key is matched by its longest dotted suffix that is a model
    key; what precedes it is its prefix (``module.encoder_q.``). Keys of other
    prefix groups (a MoCo key encoder) are left out.
    """
    target = set(target_keys)
    groups: dict[str, dict[str, str]] = defaultdict(dict)
    for key in checkpoint_keys:
        parts = _rename_old_densenet(key).split(".")
        for i in range(len(parts)):
            suffix = ".".join(parts[i:])
            if suffix in target:
                groups[".".join(parts[:i])][key] = suffix
                break
    if not groups:
        return "", {}
    prefix = max(groups, key=lambda p: (len(groups[p]), -len(p)))
    return (prefix + "." if prefix else ""), groups[prefix]


def _fit_vit_positions(state: dict[str, torch.Tensor], model: nn.Module) -> None:
    """Interpolate a ViT's position embedding to the model's grid (a different image size)."""
    from torchvision.models.vision_transformer import interpolate_embeddings

    key = "encoder.pos_embedding"
    want = model.state_dict()[key].shape
    if key in state and state[key].shape != want and state[key].ndim == 3:
        grid = int(round((want[1] - 1) ** 0.5))
        state.update(interpolate_embeddings(grid * VIT_PATCH, VIT_PATCH, {key: state[key]}))


def load_weights(
    model: nn.Module, arch: str, checkpoint: dict[str, torch.Tensor], source: str
) -> LoadReport:
    """Load ``checkpoint`` into ``model`` in place: the backbone must match fully; the head only if it fits."""
    target = model.state_dict()
    prefix, mapping = match_keys(checkpoint, target)
    if not mapping:
        raise InputError(
            f"{source}: no tensor name matches a {arch} (first checkpoint keys: "
            f"{sorted(checkpoint)[:8]}); is it a checkpoint of another architecture?"
        )
    state = {model_key: checkpoint[key] for key, model_key in mapping.items()}
    if is_vit(arch):
        _fit_vit_positions(state, model)
    head = HEAD_MODULES[arch]
    head_keys = {f"{head}.weight", f"{head}.bias"}
    problems = []
    for name, tensor in target.items():
        optional = name.rsplit(".", 1)[-1] in _OPTIONAL_BUFFERS
        if name in head_keys or (optional and name not in state):
            continue
        if name not in state:
            problems.append(f"missing from the checkpoint: {name} {tuple(tensor.shape)}")
        elif state[name].shape != tensor.shape:
            problems.append(
                f"shape mismatch: {name} is {tuple(state[name].shape)} in the checkpoint, "
                f"{tuple(tensor.shape)} in {arch}"
            )
    unused = sorted(set(checkpoint) - set(mapping))
    if problems:
        problems += [f"unused checkpoint key: {k}" for k in unused]
        raise InputError(collect(problems, f"{source}: checkpoint does not fit {arch}"))
    head_loaded = all(k in state and state[k].shape == target[k].shape for k in head_keys)
    if not head_loaded:
        for k in head_keys:
            state.pop(k, None)
    merged = {k: state.get(k, v).to(v.dtype) for k, v in target.items()}
    model.load_state_dict(merged)
    if unused:
        log.info("%s: %d checkpoint tensors not used (e.g. %s)", source, len(unused), unused[:3])
    log.info(
        "%s: loaded %d tensors (prefix %r stripped); head %s",
        source,
        len(state),
        prefix,
        "loaded" if head_loaded else "not loaded (different classes)",
    )
    return LoadReport(source, len(state), head_loaded, prefix, unused)


def torchvision_checkpoint(arch: str) -> tuple[dict[str, torch.Tensor], str]:
    """The official torchvision weights of ``arch`` (needs internet unless cached in TORCH_HOME)."""
    from torchvision.models import get_model_weights

    weights = get_model_weights(ARCHITECTURES[arch][0]).DEFAULT
    try:
        return weights.get_state_dict(progress=False), f"torchvision:{weights}"
    except Exception as exc:  # offline: urllib / hub errors of many kinds
        raise InputError(
            f"could not fetch the torchvision weights {weights} for {arch} ({type(exc).__name__}: "
            f"{exc}); without internet, download {weights.url} elsewhere and set opaque.weights "
            "to that file"
        ) from None
