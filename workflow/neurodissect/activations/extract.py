"""extract_activations: every requested layer of one model, one forward pass
per batch, streamed into one store per layer (layout: :mod:`.store`).

Forward hooks reduce each layer's tensor while the pass runs, so nothing
larger than a batch is held:

- spatial maps (B, C, h, w) → pooled (B, C) by ``activations.pooling`` (mean
  or max); the maps themselves are kept as float16 for layers listed in
  ``activations.spatial_maps``;
- vision-transformer token sequences (B, 1 + g², D) → the class token or the
  mean of the patch tokens (``activations.vit_tokens``); the patch tokens,
  reshaped to a (D, g, g) grid, are the spatial maps;
- vectors (B, C) (a Linear's output, a head's input) as they are.

A NaN/Inf activation stops extraction with an error naming the images.

With ``activations.augment_views`` V > 0, V augmented views of every train
image (:mod:`.views`) pass through the model too and become the store's
``train_aug`` split: extra rows for the SAE (``sae.train_splits``), no maps.
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.func import functional_call
from torch.utils.data import DataLoader, Subset

from ..config import settings_from
from ..data.manifest import SPLITS, read_manifest
from ..errors import ConfigError, InputError
from ..io import PathLike
from ..opaque import LayerSpec, load_opaque, resolve_layer
from ..opaque.archs import get_module
from ..opaque.data import ManifestImages, eval_transform, preprocess_record
from ..runtime import pick_device, progress
from .store import StoreWriter
from .views import AugmentedViews

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ExtractParams:
    """The ``activations`` config section plus the image size and runtime keys extraction uses."""

    pooling: str = "mean"
    vit_tokens: str = "cls"
    spatial_maps: list[str] = field(default_factory=list)
    batch_size: int = 128
    chunk_rows: int = 1024
    augment_views: int = 0
    augment_seed: int = 0
    image_size: int = 64
    device: str = "auto"
    num_workers: int = 0
    shards: int = 1  # jobs (one GPU each) that write row ranges of the same stores

    @classmethod
    def from_config(
        cls, activations: dict, opaque: dict, runtime: dict | None = None
    ) -> ExtractParams:
        keys = {"image_size": opaque["image_size"]}
        return settings_from(cls, runtime, keys, activations, section="activations")


@dataclass(frozen=True)
class LayerShape:
    """What one forward pass showed about a layer's output."""

    layer_shape: tuple[int, ...]  # per image, e.g. (512, 2, 2), (17, 768) or (512,)
    n_units: int
    grid: tuple[int, int] | None  # spatial (h, w) if the layer has a map
    pooling: str  # mean | max | cls | mean_patch_tokens | none


def _as_tensor(value, spec: LayerSpec) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        return value
    raise InputError(
        f"layer {spec.name!r}: module {spec.module} returns {type(value).__name__}, not a tensor; "
        "choose a module that returns one tensor (see the model's module names)"
    )


class LayerTaps:
    """Forward hooks reducing the requested layers during one forward pass.

    Use as a context manager (hooks are removed on exit); ``taps(x)`` runs the
    model once and returns ``{name: (pooled (B, C) float32, maps (B, C, h, w) float16 | None)}``.
    """

    def __init__(
        self,
        model: nn.Module,
        specs: Sequence[LayerSpec],
        *,
        pooling: str = "mean",
        vit_tokens: str = "cls",
        spatial: Iterable[str] = (),
    ) -> None:
        if pooling not in ("mean", "max"):
            raise ConfigError(f"activations.pooling must be mean or max, got {pooling!r}")
        self.model, self.specs = model, list(specs)
        self.pooling, self.vit_tokens, self.spatial = pooling, vit_tokens, set(spatial)
        self._out: dict[str, tuple[torch.Tensor, torch.Tensor | None]] = {}
        self._calls: dict[tuple[str, str], int] = defaultdict(int)
        self._raw_shapes: dict[str, tuple[int, ...]] = {}
        self._handles: list = []

    def __enter__(self) -> LayerTaps:
        groups: dict[tuple[str, str], list[LayerSpec]] = defaultdict(list)
        for spec in self.specs:
            groups[(spec.module, spec.capture)].append(spec)
        for (module, capture), specs in groups.items():
            mod = get_module(self.model, module)
            if capture == "input":
                h = mod.register_forward_pre_hook(self._hook(module, capture, specs, True))
            else:
                h = mod.register_forward_hook(self._hook(module, capture, specs, False))
            self._handles.append(h)
        return self

    def __exit__(self, *exc) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()

    def _hook(self, module: str, capture: str, specs: list[LayerSpec], pre: bool):
        def hook(_mod, args, output=None):
            self._calls[(module, capture)] += 1
            value = args[0] if pre else output
            for spec in specs:
                self._raw_shapes[spec.name] = tuple(getattr(value, "shape", ())[1:])
                # reduce now: a later in-place op (DenseNet's F.relu) must not reach our copy
                self._out[spec.name] = self.reduce(_as_tensor(value, spec).detach(), spec)

        if pre:
            return lambda mod, args: hook(mod, args)
        return hook

    def reduce(self, t: torch.Tensor, spec: LayerSpec) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(pooled (B, C) float32, float16 maps or None) of one layer's batch tensor."""
        want_maps = spec.name in self.spatial
        if t.ndim == 4 and t.shape[2] * t.shape[3] > 1:
            pooled = t.mean(dim=(2, 3)) if self.pooling == "mean" else t.amax(dim=(2, 3))
            maps = t.to(torch.float16, copy=True) if want_maps else None
            return pooled.float(), maps
        if t.ndim == 4:  # (B, C, 1, 1): already pooled
            return t.flatten(1).to(torch.float32, copy=True), None
        if t.ndim == 3:
            return self._reduce_tokens(t, spec, want_maps)
        if t.ndim == 2:
            return t.to(torch.float32, copy=True), None
        raise InputError(
            f"layer {spec.name!r} ({spec.module}): output of shape {tuple(t.shape)} is not "
            "(B, C), (B, C, h, w) or a (B, 1 + g*g, D) token sequence"
        )

    def _reduce_tokens(self, t: torch.Tensor, spec: LayerSpec, want_maps: bool):
        b, n_tokens, dim = t.shape
        g = math.isqrt(n_tokens - 1)
        if g * g != n_tokens - 1:
            raise InputError(
                f"layer {spec.name!r} ({spec.module}): {n_tokens} tokens are not a class token "
                "plus a square grid of patch tokens"
            )
        patches = t[:, 1:]
        pooled = t[:, 0] if self.vit_tokens == "cls" else patches.mean(dim=1)
        maps = None
        if want_maps:
            maps = patches.transpose(1, 2).reshape(b, dim, g, g).to(torch.float16, copy=True)
        return pooled.to(torch.float32, copy=True), maps

    def __call__(self, x: torch.Tensor) -> dict[str, tuple[torch.Tensor, torch.Tensor | None]]:
        return self._run(self.model, x)

    def _run(self, forward, x: torch.Tensor) -> dict[str, tuple[torch.Tensor, torch.Tensor | None]]:
        self._out.clear()
        self._calls.clear()
        forward(x)
        for (module, _capture), n in self._calls.items():
            if n != 1:
                raise ConfigError(
                    f"module {module} runs {n} times per forward pass (a shared module); "
                    "choose one that runs once, e.g. its parent block"
                )
        missing = [s.name for s in self.specs if s.name not in self._out]
        if missing:
            raise ConfigError(f"layers {missing} are not used in the model's forward pass")
        return dict(self._out)

    def shapes(self, image_size: int, channels: int = 3) -> dict[str, LayerShape]:
        """Describe every layer's output for ``image_size`` inputs.

        Runs on the meta device (shapes only, no arithmetic), so it costs no
        real forward pass and no kernel warm-up for an odd batch size.
        """
        meta_state = {
            name: torch.empty_like(t, device="meta")
            for name, t in (*self.model.named_parameters(), *self.model.named_buffers())
        }
        x = torch.zeros(1, channels, image_size, image_size, device="meta")
        spatial, self.spatial = self.spatial, {s.name for s in self.specs}
        try:
            with torch.inference_mode():
                out = self._run(lambda inp: functional_call(self.model, meta_state, (inp,)), x)
        finally:
            self.spatial = spatial
        shapes = {}
        for spec in self.specs:
            pooled, maps = out[spec.name]
            raw = self._raw_shapes[spec.name]
            grid = tuple(maps.shape[2:]) if maps is not None else None
            if grid is None:
                pooling = "none"
            elif len(raw) == 2:  # tokens
                pooling = "cls" if self.vit_tokens == "cls" else "mean_patch_tokens"
            else:
                pooling = self.pooling
            shapes[spec.name] = LayerShape(raw, int(pooled.shape[1]), grid, pooling)
        return shapes


def _check_finite(
    acts: np.ndarray, maps: np.ndarray | None, ids: Sequence[str], layer: str, split: str
) -> None:
    bad = ~np.isfinite(acts).all(axis=1)
    what = "NaN/Inf activation"
    if maps is not None and not bad.any():
        bad = ~np.isfinite(maps.reshape(len(maps), -1)).all(axis=1)
        what = "spatial map value outside the float16 range (or NaN)"
    if bad.any():
        culprits = [str(ids[i]) for i in np.flatnonzero(bad)]
        raise InputError(
            f"{what} in layer {layer!r} for {len(culprits)} {split} image(s): {culprits[:10]}"
            f"{' ...' if len(culprits) > 10 else ''}; check these images and the model checkpoint"
        )


def write_split(
    taps: LayerTaps,
    writers: dict[str, StoreWriter],
    split: str,
    image_ids: Sequence[str],
    inputs: Iterable[torch.Tensor],
    device,
    rows: tuple[int, int] | None = None,
    *,
    augmented: bool = False,
) -> None:
    """Run every input batch of ``split`` (in ``image_ids`` order) through ``taps`` once and
    append each layer's rows to its writer (only ``rows=(start, stop)`` for one shard)."""
    for writer in writers.values():
        writer.begin_split(split, image_ids, rows=rows, augmented=augmented)
    start, stop = rows if rows is not None else (0, len(image_ids))
    with torch.inference_mode():
        for x in inputs:
            out = taps(x.to(device, non_blocking=True))
            ids = image_ids[start : start + len(x)]
            start += len(x)
            for name, (pooled, maps) in out.items():
                acts = pooled.cpu().numpy()
                maps_np = maps.cpu().numpy() if maps is not None else None
                _check_finite(acts, maps_np, ids, name, split)
                writers[name].append(split, acts, maps_np)
    if start != stop:
        raise ValueError(f"{split}: the model saw images up to row {start}, expected {stop}")


def resolve_layers(model: nn.Module, arch: str | None, layers: Sequence[str]) -> list[LayerSpec]:
    """Every requested layer resolved; all unknown names in one ConfigError."""
    specs, problems = [], []
    for name in layers:
        try:
            specs.append(resolve_layer(model, arch, name))
        except ConfigError as exc:
            problems.append(str(exc))
    if problems:
        raise ConfigError("\n".join(problems))
    return specs


def spatial_layers(
    specs: Sequence[LayerSpec], shapes: dict[str, LayerShape], requested: Sequence[str]
) -> set[str]:
    """Names of the extracted layers whose maps are kept (requested by name or module)."""
    keep = set()
    for spec in specs:
        if spec.name not in requested and spec.module not in requested:
            continue
        if shapes[spec.name].grid is None:
            log.info(
                "no spatial maps for layer %s: its output %s has no spatial grid",
                spec.name,
                shapes[spec.name].layer_shape,
            )
        else:
            keep.add(spec.name)
    extracted = {s.name for s in specs} | {s.module for s in specs}
    for name in requested:
        if name not in extracted:
            log.info(
                "activations.spatial_maps names %s, which is not extracted (not in layers)", name
            )
    return keep


def extract_activations(
    manifest_path: PathLike,
    model_pt: PathLike,
    out_paths: dict[str, PathLike],
    *,
    arch: str,
    model_name: str,
    params: ExtractParams,
    threads: int | None = None,
    shard: int | None = None,
) -> dict[str, Any]:
    """Rule entry point: one store per layer of ``out_paths`` (layer name → store path), every
    split, manifest row order within each split. Returns what goes into provenance.

    ``shard=i`` (of ``params.shards``): write only shard i's rows, as a part for
    ``shards.seal_shards``."""
    if threads:
        torch.set_num_threads(int(threads))
    manifest = read_manifest(manifest_path)
    device = pick_device(params.device)
    model = load_opaque(model_pt, arch, len(manifest.classes)).to(device)
    specs = resolve_layers(model, arch, list(out_paths))
    with LayerTaps(model, specs, pooling=params.pooling, vit_tokens=params.vit_tokens) as taps:
        shapes = taps.shapes(params.image_size)
        taps.spatial = spatial_layers(specs, shapes, params.spatial_maps)
        common = {
            "kind": "activations",
            "arch": arch,
            "model": model_name,
            "classes": manifest.classes,
            "task": manifest.task,
            "preprocess": preprocess_record(params.image_size),
        }
        ranges = plan_shard(manifest, specs, shapes, taps.spatial, params, shard)
        if ranges is not None:
            common |= ranges[1]
        with contextlib.ExitStack() as stack:
            writers = {}
            for spec in specs:
                shape = shapes[spec.name]
                attrs = {
                    **common,
                    "layer": spec.name,
                    "module": spec.module,
                    "capture": spec.capture,
                    "pooling": shape.pooling,
                    "layer_shape": list(shape.layer_shape),
                    "class_units": spec.class_units,
                }
                writers[spec.name] = stack.enter_context(
                    StoreWriter(
                        out_paths[spec.name],
                        n_units=shape.n_units,
                        attrs=attrs,
                        chunk_rows=params.chunk_rows,
                        spatial_shape=shape.grid if spec.name in taps.spatial else None,
                    )
                )
            _extract_splits(
                taps, writers, manifest, params, device, ranges[0] if ranges is not None else None
            )
            if params.augment_views > 0 and len(manifest.split("train")):
                _extract_views(taps, writers, manifest, params, device)
    log.info("extracted %s", {s.name: shapes[s.name].layer_shape for s in specs})
    return {
        "layers": {s.name: s.module for s in specs},
        "device": str(device),
        "spatial_maps": sorted(taps.spatial),
        "preprocess": common["preprocess"],
        "augment_views": params.augment_views,
    }


def _extract_splits(taps, writers, manifest, params: ExtractParams, device, ranges=None) -> None:
    transform = eval_transform(params.image_size)
    for split in SPLITS:
        rows = manifest.split(split)
        if not len(rows):
            continue
        dataset = ManifestImages(rows, transform)
        span = ranges[split] if ranges is not None else None
        images = dataset if span is None else Subset(dataset, range(*span))
        _write_dataset(taps, writers, split, images, dataset.ids, params, device, span)


def _extract_views(taps, writers, manifest, params: ExtractParams, device) -> None:
    """The ``train_aug`` split: augment_views views per train image, pooled features only."""
    dataset = AugmentedViews(
        manifest.split("train"), params.image_size, params.augment_views, params.augment_seed
    )
    spatial, taps.spatial = taps.spatial, set()
    try:
        _write_dataset(
            taps, writers, "train_aug", dataset, dataset.ids, params, device, augmented=True
        )
    finally:
        taps.spatial = spatial


def _write_dataset(
    taps,
    writers,
    split,
    images,
    ids,
    params: ExtractParams,
    device,
    span=None,
    *,
    augmented: bool = False,
) -> None:
    loader = DataLoader(
        images,
        batch_size=params.batch_size,
        shuffle=False,
        num_workers=params.num_workers,
        pin_memory=device.type == "cuda",
    )
    inputs = (x for x, _ in progress(loader, desc=f"extract {split}"))
    try:
        write_split(taps, writers, split, ids, inputs, device, span, augmented=augmented)
    except torch.OutOfMemoryError:
        raise ConfigError(
            f"out of GPU memory extracting activations at activations.batch_size="
            f"{params.batch_size} on {device}; lower it (nothing is retried automatically)"
        ) from None


def plan_shard(manifest, specs, shapes, spatial, params: ExtractParams, shard: int | None):
    """Shard ``shard``'s row range per split (aligned to the chunks of every layer's arrays)
    and its ``shard`` attrs; None when not sharding."""
    if shard is None:
        return None
    from .shards import row_alignment, shard_attrs, shard_range

    n_rows = {s: len(manifest.split(s)) for s in SPLITS if len(manifest.split(s))}
    ranges = {}
    for split, n in n_rows.items():
        # whole chunks of every store, and whole batches: a batch's numbers depend on its
        # size and company (kernel blocking), so shards must batch exactly like S = 1
        align = math.lcm(
            params.batch_size,
            *(
                row_alignment(
                    n,
                    params.chunk_rows,
                    shapes[s.name].n_units,
                    shapes[s.name].grid if s.name in spatial else None,
                )
                for s in specs
            ),
        )
        ranges[split] = shard_range(n, align, params.shards, shard)
    return ranges, shard_attrs(shard, params.shards, ranges, n_rows)
