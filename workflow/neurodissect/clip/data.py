"""Image–report pairs for CLIP training and images for embedding.

Training texts are sampled from the report each epoch: every sentence is kept with
probability ``sentence_keep`` (at least one), in random order. The text tower thus
sees single findings ("Dermoscopic diagnosis: melanoma.") as well as whole reports,
which is what it later embeds as concept prompts ("an image showing melanoma").
The draw depends only on (seed, epoch, row), so a resumed run sees the same texts.
"""

from __future__ import annotations

import re

import numpy as np
import torch
from torch.utils.data import Dataset

from ..data.images import load_image
from ..data.manifest import Manifest
from ..errors import InputError

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def split_sentences(text: str) -> list[str]:
    """Sentences of a report (split after . ! ? followed by whitespace)."""
    return [s for s in _SENTENCE_END.split(" ".join(str(text).split())) if s]


def sample_sentences(sentences: list[str], keep: float, rng: np.random.Generator) -> str:
    """A random subset of ``sentences`` (each kept with probability ``keep``, at least
    one) joined in random order; ``keep`` >= 1 gives the report as written."""
    if keep >= 1 or len(sentences) <= 1:
        return " ".join(sentences)
    kept = np.flatnonzero(rng.random(len(sentences)) < keep)
    if not len(kept):
        kept = np.array([rng.integers(len(sentences))])
    return " ".join(sentences[i] for i in rng.permutation(kept))


def _read_rgb(path, channels: int, image_id: str):
    try:
        return load_image(path, channels).convert("RGB")
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: cannot read image {image_id!r} ({exc})") from None


class ImageTextPairs(Dataset):
    """(image tensor, sampled report text) for each row of a manifest split."""

    def __init__(self, manifest: Manifest, transform, *, seed: int, sentence_keep: float):
        self.paths = manifest.image_paths()
        self.ids = manifest.df["image_id"].astype(str).tolist()
        self.sentences = [split_sentences(r) for r in manifest.df["report"].fillna("")]
        self.channels = manifest.channels
        self.transform = transform
        self.seed, self.keep, self.epoch = int(seed), float(sentence_keep), 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int):
        rng = np.random.default_rng((self.seed, self.epoch, i))
        text = sample_sentences(self.sentences[i], self.keep, rng)
        return self.transform(_read_rgb(self.paths[i], self.channels, self.ids[i])), text


class ManifestImageFiles(Dataset):
    """Preprocessed image tensors of a manifest split, in row order (for embedding)."""

    def __init__(self, manifest: Manifest, transform) -> None:
        self.paths = manifest.image_paths()
        self.ids = manifest.df["image_id"].astype(str).tolist()
        self.channels = manifest.channels
        self.transform = transform

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.transform(_read_rgb(self.paths[i], self.channels, self.ids[i]))
