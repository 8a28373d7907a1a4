"""Localization of a unit: its spatial map (or, for a class unit, the CAM) against boxes.

A map (h, w) is upsampled bilinearly to the stored image (H, W) — the model saw the
whole image resized to a square, so the grid covers the whole image — and thresholded at
its top q % of pixels. IoU compares that mask with the union of the finding's boxes; the
pointing game scores a hit when the centre of the map's highest cell (on the map's own
grid) lies inside a box. Its ceiling asks whether ANY cell centre of that grid lies inside a
box: the best any map of that resolution can score (a 2 x 2 map of a 64-pixel image can
only point at (16, 16), (16, 48), (48, 16) or (48, 48), and misses a small box elsewhere
whatever it activates on).

For a linear head after global average pooling, the CAM of class k is
Σ_c W[k, c] · A_c(x, y) over the last conv layer's maps A — identical to Grad-CAM there.
"""

from __future__ import annotations

import numpy as np


def interpolation_matrix(n_out: int, n_in: int) -> np.ndarray:
    """(n_out, n_in) bilinear weights with half-pixel centres (align_corners=False)."""
    centres = (np.arange(n_out) + 0.5) * n_in / n_out - 0.5
    centres = np.clip(centres, 0, n_in - 1)
    lo = np.floor(centres).astype(int)
    hi = np.minimum(lo + 1, n_in - 1)
    frac = centres - lo
    m = np.zeros((n_out, n_in))
    m[np.arange(n_out), lo] += 1.0 - frac
    m[np.arange(n_out), hi] += frac
    return m


def upsample(maps: np.ndarray, height: int, width: int) -> np.ndarray:
    """(..., h, w) → (..., height, width) bilinear."""
    maps = np.asarray(maps, dtype=np.float64)
    ry = interpolation_matrix(height, maps.shape[-2])
    rx = interpolation_matrix(width, maps.shape[-1])
    return np.einsum("yh,...hw,xw->...yx", ry, maps, rx)


def class_activation_maps(maps: np.ndarray, head_weight: np.ndarray) -> np.ndarray:
    """(N, C, h, w) conv maps and (K, C) head weights → (N, K, h, w) CAMs."""
    return np.einsum("nchw,kc->nkhw", np.asarray(maps, np.float64), np.asarray(head_weight))


def top_mask(heat: np.ndarray, top_percent: float) -> np.ndarray:
    """Pixels in the top ``top_percent`` % of ``heat`` (H, W) (at least the maximum)."""
    cut = np.percentile(heat, 100.0 - top_percent)
    return heat >= min(cut, heat.max())


def box_mask(boxes: np.ndarray, height: int, width: int) -> np.ndarray:
    """Union of boxes (x, y, w, h) in pixels of an (height, width) image; a pixel is inside
    when its centre is."""
    mask = np.zeros((height, width), dtype=bool)
    cy, cx = np.arange(height) + 0.5, np.arange(width) + 0.5
    for x, y, w, h in np.asarray(boxes, dtype=np.float64).reshape(-1, 4):
        rows = (cy >= y) & (cy <= y + h)
        cols = (cx >= x) & (cx <= x + w)
        mask |= rows[:, None] & cols[None, :]
    return mask


def iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 0.0


def cell_centres(n_cells: int, n_pixels: int) -> np.ndarray:
    """Pixel index under the centre of each of ``n_cells`` cells spanning ``n_pixels``."""
    return np.minimum(n_pixels - 1, ((np.arange(n_cells) + 0.5) * n_pixels / n_cells).astype(int))


def peak_point(heat: np.ndarray, height: int, width: int) -> tuple[int, int]:
    """Pixel (row, col) of an (height, width) image under the centre of the (first) highest
    cell of ``heat`` (h, w), a map at its own resolution.

    The peak is taken on the map's own grid, not on its upsampled copy: bilinear upsampling
    with clamped edges turns a border cell into a flat plateau that reaches the image
    border, and the first maximum of that plateau is the image corner (a 2 x 2 layer4 map
    of a 64-pixel image pointed at a corner for three of its four cells).
    """
    heat = np.asarray(heat)
    r, c = np.unravel_index(np.argmax(heat), heat.shape)
    return int(cell_centres(heat.shape[0], height)[r]), int(cell_centres(heat.shape[1], width)[c])


def pointing_hit(heat: np.ndarray, inside: np.ndarray) -> bool:
    """True when the centre of the highest cell of ``heat`` (a map at its own resolution,
    or already at the image's) lies in ``inside`` (the image's box mask)."""
    y, x = peak_point(heat, *inside.shape)
    return bool(inside[y, x])


def pointing_ceiling(grid_shape: tuple[int, int], inside: np.ndarray) -> bool:
    """True when some cell centre of an (h, w) grid lies in ``inside`` (the image's box
    mask): whether any map of that resolution can win the pointing game on this image."""
    rows = cell_centres(grid_shape[0], inside.shape[0])
    cols = cell_centres(grid_shape[1], inside.shape[1])
    return bool(inside[np.ix_(rows, cols)].any())


def localize(
    heat_small: np.ndarray, boxes: np.ndarray, height: int, width: int, top_percent: float
) -> tuple[float, bool, bool]:
    """(IoU, pointing hit, pointing ceiling) of one map (h, w) against one image's boxes."""
    heat = upsample(heat_small, height, width)
    inside = box_mask(boxes, height, width)
    return (
        iou(top_mask(heat, top_percent), inside),
        pointing_hit(heat_small, inside),
        pointing_ceiling(np.shape(heat_small), inside),
    )
