"""Drawing primitives for the synthetic generators: a supersampled float canvas,
soft masks drawn with PIL, smooth noise and curves.

Coordinates are fractions of the image side (0..1), so one scene description
renders at any size. Images are drawn at ``SUPERSAMPLE`` times the output size
and box-filtered down, which anti-aliases thin structures (hairs, vessels,
ruler ticks) instead of letting them vanish or alias at 32-64 px.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

SUPERSAMPLE = 2
Point = tuple[float, float]


class Canvas:
    """A float32 image in [0, 1] (H x W x C) at the supersampled resolution."""

    def __init__(self, size: int, channels: int, fill: Sequence[float]) -> None:
        self.size = size
        self.res = size * SUPERSAMPLE
        self.pixels = np.empty((self.res, self.res, channels), dtype=np.float32)
        self.pixels[:] = np.asarray(fill, dtype=np.float32)

    def px(self, fraction: float) -> float:
        """A length given as a fraction of the side, in supersampled pixels."""
        return fraction * self.res

    def mask(self, draw: Callable[[ImageDraw.ImageDraw, Canvas], None], blur: float = 0.0):
        """(res, res) float32 in [0, 1]: what ``draw(d, canvas)`` paints in white, blurred
        by ``blur`` (fraction of the side)."""
        img = Image.new("L", (self.res, self.res), 0)
        draw(ImageDraw.Draw(img), self)
        if blur > 0:
            img = img.filter(ImageFilter.GaussianBlur(self.px(blur)))
        return np.asarray(img, dtype=np.float32) / 255.0

    def paint(self, mask: np.ndarray, color: Sequence[float], alpha: float = 1.0) -> None:
        """Blend ``color`` over the canvas where ``mask`` is set (mask x alpha opacity)."""
        rows = np.flatnonzero(mask.max(axis=1) > 0)
        if not len(rows):
            return
        cols = np.flatnonzero(mask[rows[0] : rows[-1] + 1].max(axis=0) > 0)
        box = (slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))  # only where painted
        a = (np.minimum(mask[box], 1.0) * np.float32(alpha))[..., None]
        target = self.pixels[box]
        target += a * (np.asarray(color, dtype=np.float32) - target)

    def shade(self, field: np.ndarray, amount: float) -> None:
        """Multiply brightness by ``1 + amount * field`` (field roughly in [-1, 1])."""
        self.pixels *= (1.0 + amount * field)[..., None]

    def to_uint8(self) -> np.ndarray:
        """Box-filter down to ``size`` and quantise: (size, size, C) uint8."""
        s, p = SUPERSAMPLE, self.pixels
        total = sum(p[i::s, j::s] for i in range(s) for j in range(s))
        return (np.clip(total * (255.0 / s**2) + 0.5, 0.0, 255.0)).astype(np.uint8)


def smooth_noise(rng: np.random.Generator, res: int, cells: int) -> np.ndarray:
    """(res, res) float32 noise in [-1, 1], smooth over about ``res / cells`` pixels."""
    grid = rng.random((cells, cells), dtype=np.float32)
    img = Image.fromarray(grid, mode="F").resize((res, res), Image.Resampling.BICUBIC)
    return np.clip(np.asarray(img) * 2.0 - 1.0, -1.0, 1.0)


def radial_field(res: int, cx: float, cy: float) -> np.ndarray:
    """(res, res) distance of each pixel from (cx, cy), in fractions of the side."""
    coords = (np.arange(res, dtype=np.float32) + 0.5) / res
    return np.hypot(coords[None, :] - cx, coords[:, None] - cy)


def blob_outline(
    center: Point, radius: float, harmonics: Sequence[tuple[int, float, float]], n: int = 96
) -> list[Point]:
    """A closed outline r(θ) = radius · (1 + Σ a·cos(kθ + φ)) over (k, a, φ) harmonics."""
    theta = np.linspace(0.0, 2 * np.pi, n, endpoint=False)
    r = np.ones_like(theta)
    for k, amp, phase in harmonics:
        r += amp * np.cos(k * theta + phase)
    r = radius * np.clip(r, 0.3, None)
    return list(zip(center[0] + r * np.cos(theta), center[1] + r * np.sin(theta), strict=True))


def bezier(points: Sequence[Point], n: int = 24) -> list[Point]:
    """A quadratic or cubic Bézier curve through its control points, as a polyline."""
    p = np.asarray(points, dtype=np.float64)
    t = np.linspace(0.0, 1.0, n)[:, None]
    if len(p) == 3:
        out = (1 - t) ** 2 * p[0] + 2 * (1 - t) * t * p[1] + t**2 * p[2]
    elif len(p) == 4:
        out = (1 - t) ** 3 * p[0] + 3 * (1 - t) ** 2 * t * p[1] + 3 * (1 - t) * t**2 * p[2]
        out += t**3 * p[3]
    else:
        raise ValueError("bezier needs 3 or 4 control points")
    return [tuple(q) for q in out]


def scaled(points: Sequence[Point], canvas: Canvas) -> list[tuple[float, float]]:
    """Fractional points → supersampled pixel coordinates."""
    return [(x * canvas.res, y * canvas.res) for x, y in points]


def ellipse_box(center: Point, rx: float, ry: float, canvas: Canvas) -> list[float]:
    cx, cy = center
    return [canvas.px(cx - rx), canvas.px(cy - ry), canvas.px(cx + rx), canvas.px(cy + ry)]


def stroke(canvas: Canvas, fraction: float) -> int:
    """A line width of ``fraction`` of the side in supersampled pixels, never thinner
    than one output pixel (so strokes survive downsampling at 32 px)."""
    return max(SUPERSAMPLE, int(round(canvas.px(fraction))))


class Scene:
    """Which planted concepts a render draws, which it shows, and whose random draws
    each uses: the recipe of one image, optionally with one concept toggled.

    A concept present in the recipe draws from the image's own stream ``rng`` whether it
    is shown or not, so removing it (a *dry* draw: same draws, nothing painted) leaves
    every later draw, and so every other concept and the sensor noise, unchanged. A
    concept added by the toggle draws from its own stream ``toggle_rng``, so the image's
    stream is untouched as well. Without a toggle, a render is the generator's image.
    ``region`` collects, at the canvas resolution, where the watched concept (default: the
    toggled one) painted or would have painted.
    """

    def __init__(
        self,
        rng: np.random.Generator,
        present: dict[str, bool],
        toggle: str | None = None,
        toggle_rng: np.random.Generator | None = None,
        watch: str | None = None,
    ):
        if toggle is not None and toggle not in present:
            raise KeyError(f"unknown concept {toggle!r}")
        if toggle is not None and not present[toggle] and toggle_rng is None:
            raise ValueError(f"adding {toggle!r} needs its own random stream (toggle_rng)")
        self.rng, self.present = rng, dict(present)
        self.toggle, self.toggle_rng = toggle, toggle_rng
        self.watch = toggle if watch is None else watch
        self.region: np.ndarray | None = None

    def shows(self, name: str) -> bool:
        return bool(self.present[name]) != (name == self.toggle)

    def rng_for(self, name: str) -> np.random.Generator | None:
        """The stream ``name`` draws from, or None when it is neither present nor added."""
        if self.present[name]:
            return self.rng
        return self.toggle_rng if name == self.toggle else None

    def note(self, name: str, mask: np.ndarray) -> None:
        """Record ``mask`` as part of where ``name`` changes the image (if it is watched)."""
        if name == self.watch:
            m = mask > 0
            self.region = m if self.region is None else self.region | m

    def canvas_for(self, name: str, canvas: Canvas):
        """The canvas ``name``'s drawer paints on: the real one, or for the toggled concept
        one that records where it paints (and paints only if the concept is shown)."""
        return canvas if name != self.watch else _Recording(canvas, self, self.shows(name))


class _Recording:
    """A canvas proxy: masks are drawn as usual (they may consume random draws), paints
    are recorded in the scene's region and applied only when ``live``."""

    def __init__(self, canvas: Canvas, scene: Scene, live: bool) -> None:
        self._canvas, self._scene, self._live = canvas, scene, live
        self.size, self.res = canvas.size, canvas.res

    def px(self, fraction: float) -> float:
        return self._canvas.px(fraction)

    def mask(self, draw, blur: float = 0.0) -> np.ndarray:
        return self._canvas.mask(draw, blur)

    def paint(self, mask: np.ndarray, color: Sequence[float], alpha: float = 1.0) -> None:
        self._scene.note(self._scene.watch, mask)
        if self._live:
            self._canvas.paint(mask, color, alpha)


def output_region(region: np.ndarray | None, size: int) -> np.ndarray:
    """A canvas-resolution region → (size, size) bool: output pixels it touches."""
    if region is None:
        return np.zeros((size, size), dtype=bool)
    s = SUPERSAMPLE
    return region.reshape(size, s, size, s).any(axis=(1, 3))
