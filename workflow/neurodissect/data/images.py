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
    with Image.open(path) as img:
        img.load()
        return to_mode(img, channels)
