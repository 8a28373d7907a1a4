"""Reading images into a fixed mode, whatever the file stores.

Real datasets mix 8-bit grayscale, 16-bit grayscale, RGB and RGBA PNGs; each
is converted explicitly to the manifest's channel count (1 → 'L', 3 → 'RGB').
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from ..io import PathLike


def to_mode(img: Image.Image, channels: int) -> Image.Image:
    """Convert to 'L' (channels=1) or 'RGB' (channels=3).

    16-bit / 32-bit grayscale is rescaled to 8 bit by its dtype range (not per
    image, so intensities stay comparable); alpha is composited on black.
    """
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(img, dtype=np.float64)
        top = 65535.0 if arr.max() > 255 else 255.0
        img = Image.fromarray(np.clip(arr / top * 255.0 + 0.5, 0, 255).astype(np.uint8), "L")
    elif img.mode == "F":
        arr = np.asarray(img, dtype=np.float64)
        lo, hi = float(arr.min()), float(arr.max())
        scaled = (arr - lo) / (hi - lo or 1.0) * 255.0
        img = Image.fromarray(scaled.astype(np.uint8), "L")
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        img = img.convert("RGBA")
        background = Image.new("RGBA", img.size, (0, 0, 0, 255))
        img = Image.alpha_composite(background, img)
    target = "L" if channels == 1 else "RGB"
    return img.convert(target) if img.mode != target else img


def load_image(path: PathLike, channels: int = 3) -> Image.Image:
    """An image file, or the image array of an ``.npz`` archive, in the manifest's mode."""
    if str(path).lower().endswith(".npz"):
        return to_mode(read_npz_image(path), channels)
    with Image.open(path) as img:
        img.load()
        return to_mode(img, channels)


def read_npz_image(path: PathLike, key: str | None = None) -> Image.Image:
    """The image stored in an ``.npz`` (e.g. Harvard-FairVLMed's ``slo_fundus``).

    ``key`` names the array; by default the archive's only array with 2 or 3
    dimensions is the image (scalars, 1-D measurements and texts are skipped).
    H x W, H x W x C and C x H x W (C in 1, 3, 4) arrays are accepted.
    """
    from ..errors import InputError

    with np.load(path, allow_pickle=False) as npz:
        if key is None:
            candidates = [k for k in npz.files if npz[k].ndim in (2, 3)]
            if len(candidates) != 1:
                raise InputError(
                    f"{path}: expected exactly one image array (2-D or 3-D) in the .npz, "
                    f"found {candidates or 'none'} among {npz.files}"
                )
            key = candidates[0]
        arr = np.asarray(npz[key])
    if arr.ndim == 3 and arr.shape[0] in (1, 3, 4) and arr.shape[-1] not in (1, 3, 4):
        arr = np.moveaxis(arr, 0, -1)  # channel-first → channel-last
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.ndim == 3 and arr.shape[-1] in (3, 4):
        if arr.dtype != np.uint8:
            raise InputError(f"{path}: colour array {key!r} must be uint8, got {arr.dtype}")
        return Image.fromarray(arr, "RGB" if arr.shape[-1] == 3 else "RGBA")
    if arr.ndim != 2:
        raise InputError(f"{path}: array {key!r} of shape {arr.shape} is not an image")
    if arr.dtype == np.uint8:
        return Image.fromarray(arr, "L")
    if arr.dtype == np.uint16:
        return Image.fromarray(arr, "I;16")
    if np.issubdtype(arr.dtype, np.integer):
        return Image.fromarray(arr.astype(np.int32), "I")
    if np.issubdtype(arr.dtype, np.floating):
        return Image.fromarray(arr.astype(np.float32), "F")
    raise InputError(f"{path}: array {key!r} has dtype {arr.dtype}, not an image")
