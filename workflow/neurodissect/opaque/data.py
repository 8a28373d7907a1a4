"""Images of a manifest as tensors for the torchvision backbones.

Every image is read in the manifest's channel count, resized to a square
``image_size`` and, if grey, replicated to 3 identical channels (so
ImageNet-pretrained weights stay usable), then normalised with ImageNet's
statistics. Training adds augmentation suited to the modality. Training and
extraction call the same :func:`eval_transform`, so activations are computed
on exactly the inputs the model was evaluated on.
"""

from __future__ import annotations

import torch
from torch.utils.data import Dataset
from torchvision.transforms import v2

from ..data.images import load_image
from ..data.manifest import Manifest
from ..errors import InputError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def preprocess_record(image_size: int) -> dict:
    """How images are turned into model inputs (goes into provenance and store attrs)."""
    return {
        "image_size": int(image_size),
        "resize": "square, bilinear, antialiased",
        "grayscale": "replicated to 3 channels",
        "mean": list(IMAGENET_MEAN),
        "std": list(IMAGENET_STD),
    }


def _finish() -> list:
    return [v2.ToDtype(torch.float32, scale=True), v2.Normalize(IMAGENET_MEAN, IMAGENET_STD)]


def eval_transform(image_size: int) -> v2.Compose:
    """uint8 (3, H, W) → normalised float32 (3, S, S); deterministic."""
    return v2.Compose([v2.Resize((image_size, image_size), antialias=True), *_finish()])


def _augmentations(modality: str, image_size: int) -> list:
    s = image_size
    if modality == "dermoscopy":  # no canonical orientation; colour varies by device
        return [
            v2.RandomResizedCrop((s, s), scale=(0.75, 1.0), ratio=(0.9, 1.1), antialias=True),
            v2.RandomHorizontalFlip(),
            v2.RandomVerticalFlip(),
            v2.RandomApply([v2.RandomRotation(90)], p=0.5),
            v2.ColorJitter(brightness=0.15, contrast=0.15, saturation=0.1),  # hue: 4x the cost
        ]
    if modality == "chest_xray":  # anatomy has a side: no flips, only small geometric changes
        return [
            v2.Resize((s, s), antialias=True),
            v2.RandomAffine(degrees=7, translate=(0.05, 0.05), scale=(0.92, 1.08)),
            v2.ColorJitter(brightness=0.15, contrast=0.15),
        ]
    if modality == "fundus":
        return [
            v2.Resize((s, s), antialias=True),
            v2.RandomHorizontalFlip(),
            v2.RandomRotation(15),
            v2.ColorJitter(brightness=0.1, contrast=0.1, saturation=0.05),
        ]
    return [
        v2.RandomResizedCrop((s, s), scale=(0.8, 1.0), antialias=True),
        v2.RandomHorizontalFlip(),
    ]


def train_transform(modality: str, image_size: int, augment: bool = True) -> v2.Compose:
    """Augmentation for ``modality`` (dermoscopy | chest_xray | fundus | other), then normalise."""
    if not augment:
        return eval_transform(image_size)
    return v2.Compose([*_augmentations(modality, image_size), *_finish()])


class ImageCache:
    """Decoded images, resized to the model's input size, kept in memory across epochs.

    Used for small datasets read in the training process itself (num_workers 0):
    decoding is then paid once instead of once per epoch. Holds at most
    ``limit_bytes``; images beyond that are decoded on every read.
    """

    def __init__(self, image_size: int, limit_bytes: int = 1 << 30) -> None:
        self.image_size, self.limit_bytes = image_size, limit_bytes
        self._images: dict = {}
        self._bytes = 0

    def get(self, path, decode) -> torch.Tensor:
        x = self._images.get(path)
        if x is None:
            x = decode()
            if x.shape[-2:] != (self.image_size, self.image_size):
                x = v2.functional.resize(x, [self.image_size] * 2, antialias=True)
            if self._bytes + x.numel() <= self.limit_bytes:
                self._images[path] = x = x.contiguous()
                self._bytes += x.numel()
        return x


class ManifestImages(Dataset):
    """(image tensor, label) for each row of a manifest (one split), in row order.

    Labels are int64 class indices, or float32 multi-hot vectors for multi-label data.
    With a ``cache``, images are read already resized to its size (the
    transforms' own resize is then a no-op).
    """

    def __init__(self, manifest: Manifest, transform, cache: ImageCache | None = None) -> None:
        self.paths = manifest.image_paths()
        self.ids = manifest.df["image_id"].astype(str).tolist()
        self.labels = torch.from_numpy(manifest.labels().copy())
        self.channels = manifest.channels
        self.transform = transform
        self.cache = cache

    def __len__(self) -> int:
        return len(self.paths)

    def decode(self, i: int) -> torch.Tensor:
        """Image ``i`` as uint8 (3, H, W), read from its file."""
        try:
            img = load_image(self.paths[i], self.channels)
        except (OSError, ValueError) as exc:
            raise InputError(
                f"{self.paths[i]}: cannot read image {self.ids[i]!r} ({exc})"
            ) from None
        x = v2.functional.pil_to_tensor(img)
        return x.expand(3, -1, -1) if x.shape[0] == 1 else x

    def read(self, i: int) -> torch.Tensor:
        if self.cache is None:
            return self.decode(i)
        return self.cache.get(self.paths[i], lambda: self.decode(i))

    def __getitem__(self, i: int):
        return self.transform(self.read(i)), self.labels[i]
