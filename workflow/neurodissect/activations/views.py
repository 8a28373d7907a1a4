"""Augmented views of the train images: extra feature rows for the SAE.

The opaque model is fixed, so features of randomly augmented copies of an
image are new samples of the distribution it was trained on: ``V`` views per
train image turn N rows into N·V. The views use the model's own training
augmentation (:func:`neurodissect.opaque.data.train_transform` for the
manifest's modality), so they stay inside what the model saw in training.

Each view draws its randomness from a generator seeded by (seed, image id,
view index) alone, so the same config gives the same bytes whatever the batch
size, worker count or row order.
"""

from __future__ import annotations

import hashlib

import torch
from torch.utils.data import Dataset

from ..data.manifest import Manifest
from ..opaque.data import ManifestImages, train_transform


def view_seed(seed: int, image_id: str, view: int) -> int:
    """A 63-bit torch seed for one view of one image."""
    digest = hashlib.sha256(f"{int(seed)}\0{image_id}\0{int(view)}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


class AugmentedViews(Dataset):
    """``views`` augmented copies of every image of ``manifest``, image-major:
    item i is view ``i % views`` of image ``i // views``; yields (tensor, image id)."""

    def __init__(self, manifest: Manifest, image_size: int, views: int, seed: int = 0) -> None:
        if views < 1:
            raise ValueError(f"views must be >= 1, got {views}")
        modality = manifest.meta.get("modality", "other")
        self.images = ManifestImages(manifest, train_transform(modality, image_size))
        self.views, self.seed = int(views), int(seed)

    @property
    def ids(self) -> list[str]:
        """Image id of every row, each train id ``views`` times in a row."""
        return [i for i in self.images.ids for _ in range(self.views)]

    def __len__(self) -> int:
        return len(self.images) * self.views

    def __getitem__(self, i: int):
        image, view = divmod(i, self.views)
        image_id = self.images.ids[image]
        # the transforms draw from torch's global generator: seed a private copy of it
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(view_seed(self.seed, image_id, view))
            x = self.images.transform(self.images.read(image))
        return x, image_id
