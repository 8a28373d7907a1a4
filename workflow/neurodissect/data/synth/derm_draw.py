"""How synthderm images look: skin with shading and sensor noise, a lesion whose
outline, colour and structures are the planted attributes, and artifacts on top.
:func:`render` is a pure function of the concept flags and a random stream;
:func:`render_scene` renders the same recipe with one concept added or removed
(see :class:`.draw.Scene`).
"""

from __future__ import annotations

import numpy as np

from .draw import (
    Canvas,
    Scene,
    bezier,
    blob_outline,
    ellipse_box,
    radial_field,
    scaled,
    smooth_noise,
    stroke,
)

NETWORK_BROWN = (0.30, 0.17, 0.09)
DOT_BROWN = (0.18, 0.10, 0.06)
PINK = (0.90, 0.48, 0.52)


def render(rng: np.random.Generator, present: dict[str, bool], size: int, difficulty: float):
    """(size, size, 3) uint8 dermoscopy-like image showing exactly the ``present`` concepts."""
    return render_scene(Scene(rng, present), size, difficulty)


def render_scene(scene: Scene, size: int, difficulty: float):
    """(size, size, 3) uint8 image of ``scene`` (a recipe, maybe with one concept toggled)."""
    rng, shows = scene.rng, scene.shows
    strength = 1.0 - 0.4 * difficulty  # opacity of the planted structures
    skin = np.array([0.90, 0.72, 0.62]) + rng.uniform(-0.05, 0.05, 3) * [1, 1.2, 1.2]
    cv = Canvas(size, 3, skin)
    cv.shade(smooth_noise(rng, cv.res, 5), 0.05)
    cv.shade(-(radial_field(cv.res, 0.5, 0.5) ** 2), 0.5)  # darker towards the corners

    center = (0.5 + rng.uniform(-0.05, 0.05), 0.5 + rng.uniform(-0.05, 0.05))
    radius = rng.uniform(0.25, 0.31) * (1.0 - 0.2 * difficulty)
    harmonics = [(2, rng.uniform(0.02, 0.08), rng.uniform(0, 6.3))]
    if (r := scene.rng_for("asymmetry")) is not None:
        drawn = [
            (1, r.uniform(0.3, 0.38), r.uniform(0, 6.3)),
            (3, r.uniform(0.08, 0.12), r.uniform(0, 6.3)),
        ]
        harmonics += drawn if shows("asymmetry") else []
    if (r_border := scene.rng_for("irregular_border")) is not None:
        drawn = [
            (int(k), r_border.uniform(0.08, 0.12), r_border.uniform(0, 6.3))
            for k in r_border.choice(np.arange(7, 14), 3, replace=False)
        ]
        harmonics += drawn if shows("irregular_border") else []
    outline = blob_outline(center, radius, harmonics, n=128)
    if r_border is not None:
        jitter = r_border.uniform(0.85, 1.15, len(outline))
        if shows("irregular_border"):
            outline = [
                (center[0] + (x - center[0]) * j, center[1] + (y - center[1]) * j)
                for (x, y), j in zip(outline, jitter, strict=True)
            ]
    edge_blur = 0.004 if shows("irregular_border") else 0.012
    lesion = cv.mask(lambda d, c: d.polygon(scaled(outline, c), fill=255), blur=edge_blur)
    inner = cv.mask(lambda d, c: d.polygon(scaled(outline, c), fill=255), blur=0.03) ** 2
    for name in ("asymmetry", "irregular_border"):  # the outline: all that lies on the lesion
        scene.note(name, lesion + inner)

    brown = np.array([0.62, 0.40, 0.26]) + rng.uniform(-0.12, 0.1) * np.array([1, 0.9, 0.8])
    halo = radial_field(cv.res, *center)
    ring = np.clip(1.0 - np.abs(halo - radius * 1.15) / (radius * 0.5), 0, 1)
    scene.note("erythema", ring + lesion)  # the halo and the lesion's colour
    if shows("erythema"):
        cv.paint(ring, PINK, 0.6 * strength)
        brown = 0.3 * brown + 0.7 * np.array([0.86, 0.36, 0.40])
    cv.paint(lesion, brown, 0.92)
    if shows("asymmetry"):  # one side darker, as asymmetric colour as well as shape
        side = np.clip((radial_field(cv.res, center[0] + radius, center[1]) / radius) - 1, 0, 1)
        cv.paint(lesion * side, brown * 0.45, 0.85)
    cv.shade(smooth_noise(rng, cv.res, 9) * lesion, 0.08)

    for name, draw in DRAWERS:
        if (r := scene.rng_for(name)) is not None:
            draw(scene.canvas_for(name, cv), r, center, radius, lesion, inner, strength)
    cv.pixels += rng.normal(0, 0.012 + 0.02 * difficulty, cv.pixels.shape[:2])[..., None]
    return cv.to_uint8()


def _inside(rng, center, radius, spread=0.75):
    """A random point inside the lesion disc (fraction ``spread`` of the radius)."""
    r, a = radius * spread * np.sqrt(rng.random()), rng.uniform(0, 2 * np.pi)
    return center[0] + r * np.cos(a), center[1] + r * np.sin(a)


def _pigment_network(cv, rng, center, radius, lesion, inner, strength):
    step = radius * rng.uniform(0.22, 0.28)
    angle = rng.uniform(0, np.pi)
    width = stroke(cv, 0.012)

    def grid(d, c):
        for orient in (angle, angle + np.pi / 2 + rng.uniform(-0.2, 0.2)):
            u, v = np.cos(orient), np.sin(orient)
            for off in np.arange(-1.5 * radius, 1.5 * radius, step):
                p0 = (
                    center[0] + off * -v - 1.5 * radius * u,
                    center[1] + off * u - 1.5 * radius * v,
                )
                p1 = (
                    center[0] + off * -v + 1.5 * radius * u,
                    center[1] + off * u + 1.5 * radius * v,
                )
                d.line(scaled([p0, p1], c), fill=255, width=width)

    cv.paint(cv.mask(grid) * lesion, NETWORK_BROWN, 0.85 * strength)


def _dots_globules(cv, rng, center, radius, lesion, inner, strength):
    spots = [
        (_inside(rng, center, radius, 0.85), rng.uniform(0.012, 0.022))
        for _ in range(int(rng.integers(7, 13)))
    ]

    def dots(d, c):
        for p, r in spots:
            d.ellipse(ellipse_box(p, r, r, c), fill=255)

    cv.paint(cv.mask(dots, blur=0.003), DOT_BROWN, 0.95 * strength)


def _streaks(cv, rng, center, radius, lesion, inner, strength):
    n = int(rng.integers(12, 19))
    angles = np.sort(rng.uniform(0, 2 * np.pi, n))
    width = stroke(cv, 0.012)

    def lines(d, c):
        for a in angles:
            r0, r1 = radius * rng.uniform(0.75, 0.9), radius * rng.uniform(1.25, 1.45)
            u, v = np.cos(a), np.sin(a)
            d.line(
                scaled(
                    [
                        (center[0] + r0 * u, center[1] + r0 * v),
                        (center[0] + r1 * u, center[1] + r1 * v),
                    ],
                    c,
                ),
                fill=255,
                width=width,
            )

    cv.paint(cv.mask(lines), NETWORK_BROWN, 0.95 * strength)


def _blue_white_veil(cv, rng, center, radius, lesion, inner, strength):
    where = _inside(rng, center, radius, 0.35)
    shape = blob_outline(
        where,
        radius * rng.uniform(0.5, 0.65),
        [(k, rng.uniform(0.05, 0.15), rng.uniform(0, 6.3)) for k in (2, 3, 5)],
    )
    veil = cv.mask(lambda d, c: d.polygon(scaled(shape, c), fill=255), blur=0.015)
    cv.paint(veil * lesion, (0.62, 0.72, 0.88), 0.8 * strength)


def _vessels(cv, rng, center, radius, lesion, inner, strength):
    width = stroke(cv, 0.012)

    def branches(d, c):
        for _ in range(int(rng.integers(2, 4))):
            a = rng.uniform(0, 2 * np.pi)
            p0 = (center[0] - 0.8 * radius * np.cos(a), center[1] - 0.8 * radius * np.sin(a))
            p3 = (center[0] + 0.8 * radius * np.cos(a), center[1] + 0.8 * radius * np.sin(a))
            trunk = bezier([p0, _inside(rng, center, radius), _inside(rng, center, radius), p3])
            d.line(scaled(trunk, c), fill=255, width=width)
            for t in rng.choice(np.arange(6, 18), 2, replace=False):
                start = trunk[int(t)]
                end = _inside(rng, center, radius, 0.9)
                mid = ((start[0] + end[0]) / 2 + rng.normal(0, 0.03), (start[1] + end[1]) / 2)
                d.line(scaled(bezier([start, mid, end], 12), c), fill=255, width=width)

    cv.paint(cv.mask(branches), (0.86, 0.08, 0.10), 0.95 * strength)  # bright red


def _blue_grey_nests(cv, rng, center, radius, lesion, inner, strength):
    blobs = [
        blob_outline(
            _inside(rng, center, radius, 0.65),
            rng.uniform(0.055, 0.08),
            [(2, rng.uniform(0.2, 0.35), rng.uniform(0, 6.3))],
            n=32,
        )
        for _ in range(int(rng.integers(3, 6)))
    ]

    def nests(d, c):
        for b in blobs:
            d.polygon(scaled(b, c), fill=255)

    cv.paint(cv.mask(nests, blur=0.006), (0.30, 0.38, 0.62), 0.95 * strength)


def _scale(cv, rng, center, radius, lesion, inner, strength):
    flakes = [
        blob_outline(
            _inside(rng, center, radius, 0.8),
            rng.uniform(0.025, 0.045),
            [(k, rng.uniform(0.15, 0.3), rng.uniform(0, 6.3)) for k in (2, 3, 5)],
            n=24,
        )
        for _ in range(int(rng.integers(5, 9)))
    ]

    def draw(d, c):
        for f in flakes:
            d.polygon(scaled(f, c), fill=255)

    cv.paint(cv.mask(draw, blur=0.004), (0.96, 0.93, 0.80), 0.9 * strength)


def _milia_cysts(cv, rng, center, radius, lesion, inner, strength):
    spots = [
        (_inside(rng, center, radius, 0.8), rng.uniform(0.012, 0.018))
        for _ in range(int(rng.integers(5, 10)))
    ]

    def draw(d, c):
        for p, r in spots:
            d.ellipse(ellipse_box(p, r, r, c), fill=255)

    cv.paint(cv.mask(draw, blur=0.002), (1.0, 0.99, 0.90), 1.0 * strength)


def _fissures(cv, rng, center, radius, lesion, inner, strength):
    width = stroke(cv, 0.015)

    def draw(d, c):
        for _ in range(int(rng.integers(5, 8))):
            p0 = _inside(rng, center, radius, 0.7)
            pts = [p0]
            for _ in range(3):  # a short tortuous groove
                a = rng.uniform(0, 2 * np.pi)
                step = radius * rng.uniform(0.15, 0.25)
                pts.append((pts[-1][0] + step * np.cos(a), pts[-1][1] + step * np.sin(a)))
            d.line(scaled(bezier(pts, 16), c), fill=255, width=width, joint="curve")

    cv.paint(cv.mask(draw) * inner, (0.28, 0.22, 0.20), 0.9 * strength)


def _white_patch(cv, rng, center, radius, lesion, inner, strength):
    shape = blob_outline(
        _inside(rng, center, radius, 0.15),
        radius * rng.uniform(0.4, 0.5),
        [(k, rng.uniform(0.05, 0.12), rng.uniform(0, 6.3)) for k in (2, 3)],
    )
    patch = cv.mask(lambda d, c: d.polygon(scaled(shape, c), fill=255), blur=0.015)
    cv.paint(patch, (0.95, 0.91, 0.88), 0.92 * strength)


def _red_lacunae(cv, rng, center, radius, lesion, inner, strength):
    spots = [
        (_inside(rng, center, radius, 0.65), rng.uniform(0.035, 0.055))
        for _ in range(int(rng.integers(4, 8)))
    ]

    def draw(d, c):
        for p, r in spots:
            d.ellipse(ellipse_box(p, r, r * rng.uniform(0.75, 1.0), c), fill=255)

    cv.paint(cv.mask(draw, blur=0.003), (0.55, 0.04, 0.34), 0.95 * strength)  # red-purple


def _hair(cv, rng, center, radius, lesion, inner, strength):
    width = stroke(cv, 0.018)

    def draw(d, c):
        for _ in range(int(rng.integers(3, 7))):
            a = rng.uniform(0, np.pi)
            u, v = np.cos(a), np.sin(a)
            mid = (rng.uniform(0.2, 0.8), rng.uniform(0.2, 0.8))
            ctrl = [
                (
                    mid[0] + s * 0.8 * u + rng.normal(0, 0.12),
                    mid[1] + s * 0.8 * v + rng.normal(0, 0.12),
                )
                for s in (-1.0, -0.3, 0.3, 1.0)
            ]
            d.line(scaled(bezier(ctrl, 32), c), fill=255, width=width, joint="curve")

    cv.paint(cv.mask(draw), (0.10, 0.07, 0.05), 0.95 * strength)


def _ruler_marks(cv, rng, center, radius, lesion, inner, strength):
    side = int(rng.integers(4))  # 0 top, 1 bottom, 2 left, 3 right
    depth = rng.uniform(0.025, 0.06)  # distance of the ruler from the edge
    step = rng.uniform(0.055, 0.07)
    width = stroke(cv, 0.012)

    def place(along, across):  # ruler coordinates → image fractions
        across = depth + across if side in (0, 2) else 1 - depth - across
        return (along, across) if side in (0, 1) else (across, along)

    def strip(d, c):
        d.polygon(
            scaled([place(0, -0.02), place(1, -0.02), place(1, 0.12), place(0, 0.12)], c), fill=255
        )

    def ticks(d, c):
        for i, a in enumerate(np.arange(rng.uniform(0, step), 1.0, step)):
            length = 0.1 if i % 5 == 0 else 0.06
            d.line(scaled([place(a, -0.02), place(a, length)], c), fill=255, width=width)

    cv.paint(cv.mask(strip), (0.93, 0.92, 0.88), 0.55 * strength)
    cv.paint(cv.mask(ticks), (0.05, 0.05, 0.05), 0.95 * strength)


def _gel_bubbles(cv, rng, center, radius, lesion, inner, strength):
    bubbles = [
        ((rng.uniform(0.1, 0.9), rng.uniform(0.1, 0.9)), rng.uniform(0.045, 0.09))
        for _ in range(int(rng.integers(3, 6)))
    ]
    width = stroke(cv, 0.02)

    def fill(d, c):
        for p, r in bubbles:
            d.ellipse(ellipse_box(p, r, r, c), fill=255)

    def rims(d, c):
        for p, r in bubbles:
            d.ellipse(ellipse_box(p, r, r, c), outline=255, width=width)
            hp = (p[0] - 0.4 * r, p[1] - 0.4 * r)
            d.ellipse(ellipse_box(hp, 0.25 * r, 0.25 * r, c), fill=255)

    cv.paint(cv.mask(fill), (1.0, 1.0, 1.0), 0.45 * strength)
    cv.paint(cv.mask(rims), (0.98, 0.98, 0.98), 0.9 * strength)


# drawing order: lesion structures bottom-up, then artifacts on top
DRAWERS = [
    ("pigment_network", _pigment_network),
    ("dots_globules", _dots_globules),
    ("blue_grey_nests", _blue_grey_nests),
    ("red_lacunae", _red_lacunae),
    ("white_patch", _white_patch),
    ("scale", _scale),
    ("milia_cysts", _milia_cysts),
    ("fissures", _fissures),
    ("blue_white_veil", _blue_white_veil),
    ("vessels", _vessels),
    ("streaks", _streaks),
    ("gel_bubbles", _gel_bubbles),
    ("hair", _hair),
    ("ruler_marks", _ruler_marks),
]
