"""Latents of every image (rule ``encode_latents``): the SAE applied to each
split of the activation store, written as a store of the same layout
(kind ``sae_latents``, one unit per latent, same image ids and order)."""

from __future__ import annotations

import logging
from typing import Any

import torch

from ..activations.store import ActivationStore, StoreWriter
from ..errors import InputError
from ..io import PathLike
from ..runtime import pick_device, progress
from .base import load_sae

log = logging.getLogger(__name__)


def encode_latents(
    model_path: PathLike, acts_path: PathLike, out_path: PathLike, *, device: str = "auto"
) -> dict[str, Any]:
    dev = pick_device(device)
    model = load_sae(model_path, dev)
    store = ActivationStore(acts_path)
    if store.n_units != model.d_in:
        raise InputError(
            f"{acts_path} has {store.n_units} units but the SAE {model_path} was trained on "
            f"{model.d_in}: they come from different layers or models"
        )
    attrs = {
        "kind": "sae_latents",
        "layer": store.attrs.get("layer"),
        "variant": model.variant,
        "source_units": store.n_units,
    }
    chunk_rows = int(store.acts_array(store.splits[0]).chunks[0]) if store.splits else 1024
    counts = {}
    with StoreWriter(out_path, n_units=model.n_latents, attrs=attrs, chunk_rows=chunk_rows) as w:
        for split in store.splits:
            w.begin_split(split, store.image_ids(split))
            for _, _, block in progress(store.iter_chunks(split), desc=f"encode {split}"):
                z = model.encode(torch.from_numpy(block).to(dev))
                w.append(split, z.cpu().numpy())
            counts[split] = store.n_rows(split)
    log.info("encoded %s rows into %d latents", counts, model.n_latents)
    return {"rows": counts, "n_latents": model.n_latents, "device": str(dev)}
