"""How synthcxr images look: anatomy (body, lungs with vascular markings and ribs,
mediastinum, heart, diaphragm, clavicles) with small random variation, then the
planted findings and devices. Every planted structure's box is measured from the
mask it was drawn with, in pixels of the output image. :func:`render_scene` renders
the same recipe with one concept added or removed (see :class:`.draw.Scene`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .draw import (
    SUPERSAMPLE,
    Canvas,
    Scene,
    bezier,
    blob_outline,
    ellipse_box,
    scaled,
    smooth_noise,
    stroke,
)

METAL = 0.97


@dataclass
class Anatomy:
    lungs: list[list[tuple[float, float]]]  # outline per side (0 right = image left)
    hilum: list[tuple[float, float]]
    heart_center: tuple[float, float]
    heart_radii: tuple[float, float]


def mirror(points, flip: bool):
    return [(1.0 - x, y) if flip else (x, y) for x, y in points]


def lung_outline(rng: np.random.Generator, side: int) -> list[tuple[float, float]]:
    """Right lung in image-left coordinates (mirrored for the left): apex, lateral wall to
    the costophrenic angle, diaphragm dome, medial border."""
    j = lambda s=0.01: rng.normal(0, s)  # noqa: E731
    apex = (0.31 + j(), 0.12 + j())
    angle = (0.11 + j(), 0.76 + j(0.015))
    medial_base = (0.45 + j(), 0.70 + j())
    lateral = bezier([apex, (0.15 + j(), 0.14), (0.07 + j(), 0.45), angle], 24)
    dome_top = 0.60 + j(0.015)
    dome = bezier([angle, (0.2, dome_top), (0.38, dome_top), medial_base], 16)
    medial = bezier([medial_base, (0.45 + j(), 0.45), (0.43, 0.22), apex], 16)
    return mirror(lateral + dome[1:] + medial[1:-1], flip=side == 1)


def render(
    rng: np.random.Generator,
    present: dict[str, bool],
    sides: dict[str, int],
    size: int,
    difficulty: float,
):
    """(size, size) uint8 radiograph showing the ``present`` concepts (findings on
    ``sides``: 0 = patient's right, drawn on the image's left), {concept: [(x, y, w, h),
    ...]} boxes in pixels, and the lung zone (0..2) chosen for each focal finding."""
    return render_scene(Scene(rng, present), sides, size, difficulty)


def render_scene(scene: Scene, sides: dict[str, int], size: int, difficulty: float):
    """:func:`render` of ``scene`` (a recipe, maybe with one concept toggled)."""
    rng, shows = scene.rng, scene.shows
    strength = 1.0 - 0.35 * difficulty
    cv = Canvas(size, 1, [0.08])
    wall = 0.03 + rng.uniform(0, 0.02)
    body = [
        (0.38, -0.1),
        (0.62, -0.1),
        (0.7, 0.04),
        (1 - wall, 0.14),
        (1 - wall, 1.1),
        (wall, 1.1),
        (wall, 0.14),
        (0.3, 0.04),
    ]
    cv.paint(cv.mask(lambda d, c: d.polygon(scaled(body, c), fill=255), blur=0.03), [0.5])
    spine = cv.mask(
        lambda d, c: d.rectangle(ellipse_box((0.5, 0.5), 0.04, 0.6, c), fill=255), blur=0.02
    )
    cv.paint(spine, [0.62], 0.7)

    anatomy = Anatomy(
        lungs=[lung_outline(rng, s) for s in (0, 1)],
        hilum=[(0.38, 0.45), (0.62, 0.45)],
        heart_center=(0.54 + rng.normal(0, 0.01), 0.6 + rng.normal(0, 0.01)),
        heart_radii=(0.15 + rng.normal(0, 0.008), 0.13 + rng.normal(0, 0.006)),
    )
    lung_masks = [
        cv.mask(lambda d, c, o=o: d.polygon(scaled(o, c), fill=255), blur=0.008)
        for o in anatomy.lungs
    ]
    lungs = np.maximum(*lung_masks)
    cv.paint(lungs, [0.17], 0.9)
    _markings(cv, rng, anatomy, lungs)
    _ribs_and_clavicles(cv, rng)

    boxes: dict[str, list[tuple[float, float, float, float]]] = {}
    zones: dict[str, int] = {}
    for name, draw in (("pneumothorax", _pneumothorax), ("pleural_effusion", _effusion)):
        if (r := scene.rng_for(name)) is not None:
            side = sides[name]
            box = draw(scene.canvas_for(name, cv), anatomy, side, lung_masks[side], r, strength)
            if shows(name):
                boxes[name] = [box]
    heart_radii = anatomy.heart_radii
    if shows("cardiomegaly"):
        heart_radii = (heart_radii[0] * 1.4, heart_radii[1] * 1.18)
    heart_box, heart = _heart(cv, anatomy.heart_center, heart_radii)
    scene.note("cardiomegaly", heart)
    if shows("cardiomegaly"):
        boxes["cardiomegaly"] = [heart_box]
    for name, draw in (("consolidation", _consolidation), ("mass", _mass), ("nodule", _nodule)):
        if (r := scene.rng_for(name)) is not None:
            side, zone = sides[name], int(r.integers(3))
            box = draw(
                scene.canvas_for(name, cv), anatomy, side, zone, lung_masks[side], r, strength
            )
            if shows(name):
                zones[name], boxes[name] = zone, [box]
    for name, draw in DEVICE_DRAWERS:
        if (r := scene.rng_for(name)) is not None:
            drawn = draw(scene.canvas_for(name, cv), r, sides, strength)
            if shows(name):
                boxes[name] = drawn
    cv.pixels += rng.normal(0, 0.015 + 0.02 * difficulty, cv.pixels.shape)
    return cv.to_uint8()[..., 0], boxes, zones


def mask_box(mask: np.ndarray, threshold: float = 0.5) -> tuple[float, float, float, float]:
    """(x, y, w, h) in output pixels of the part of a supersampled mask above threshold."""
    ys, xs = np.nonzero(mask > threshold)
    if not len(xs):
        return (0.0, 0.0, 0.0, 0.0)
    s = SUPERSAMPLE
    return (
        xs.min() / s,
        ys.min() / s,
        (xs.max() + 1 - xs.min()) / s,
        (ys.max() + 1 - ys.min()) / s,
    )


def _markings(cv, rng, anatomy, lungs):
    width = max(1, int(round(cv.px(0.006))))

    def vessels(d, c):
        for side, (hx, hy) in enumerate(anatomy.hilum):
            sign = -1 if side == 0 else 1
            for _ in range(9):
                a = rng.uniform(-1.3, 1.3)
                length = rng.uniform(0.12, 0.24)
                end = (hx + sign * length * np.cos(a), hy + length * np.sin(a))
                mid = (
                    (hx + end[0]) / 2 + rng.normal(0, 0.02),
                    (hy + end[1]) / 2 + rng.normal(0, 0.02),
                )
                d.line(scaled(bezier([(hx, hy), mid, end], 12), c), fill=255, width=width)

    cv.paint(cv.mask(vessels, blur=0.004) * lungs, [0.45], 0.55)
    cv.shade(smooth_noise(rng, cv.res, 16) * lungs, 0.12)


def _ribs_and_clavicles(cv, rng):
    width = stroke(cv, 0.014)

    def ribs(d, c):
        for side in (0, 1):
            for i in range(7):
                y0 = 0.2 + i * 0.075 + rng.normal(0, 0.004)
                arc = [(0.47, y0), (0.3, y0 - 0.06), (0.14, y0 - 0.01), (0.07, y0 + 0.1)]
                d.line(scaled(mirror(bezier(arc, 20), side == 1), c), fill=255, width=width)

    def clavicles(d, c):
        for side in (0, 1):
            arc = [(0.46, 0.17), (0.33, 0.16), (0.22, 0.1), (0.12, 0.11)]
            d.line(scaled(mirror(bezier(arc, 16), side == 1), c), fill=255, width=2 * width)

    cv.paint(cv.mask(ribs, blur=0.004), [0.6], 0.22)
    cv.paint(cv.mask(clavicles, blur=0.004), [0.72], 0.6)


def _heart(cv, center, radii):
    shape = blob_outline((center[0] + 0.02, center[1]), 1.0, [], n=48)
    shape = [
        (center[0] + (x - center[0]) * radii[0], center[1] + (y - center[1]) * radii[1])
        for x, y in shape
    ]
    heart = cv.mask(lambda d, c: d.polygon(scaled(shape, c), fill=255), blur=0.01)
    cv.paint(heart, [0.7], 0.92)
    return mask_box(heart), heart


def _pneumothorax(cv, anatomy, side, lung, rng, strength):
    """The lung collapses towards the hilum: the rim between wall and collapsed lung is
    black (no markings), bounded by the visceral pleural line."""
    hx, hy = anatomy.hilum[side]
    f = rng.uniform(0.62, 0.75)
    collapsed = [(hx + (x - hx) * f, hy + (y - hy) * f + 0.04) for x, y in anatomy.lungs[side]]
    inner = cv.mask(lambda d, c: d.polygon(scaled(collapsed, c), fill=255), blur=0.004)
    rim = np.clip(lung - inner, 0, 1)
    cv.paint(rim, [0.04], strength)
    line = (
        cv.mask(
            lambda d, c: d.line(
                scaled(collapsed + collapsed[:1], c), fill=255, width=stroke(c, 0.01)
            ),
        )
        * lung
    )
    cv.paint(line, [0.62], 0.9 * strength)
    return mask_box(rim)


def _effusion(cv, anatomy, side, lung, rng, strength):
    """Fluid at the base, meniscus rising laterally: the costophrenic angle is blunted."""
    level = rng.uniform(0.5, 0.58)
    fluid = [(0.0, level - 0.07), (0.25, level), (0.5, level + 0.02), (0.5, 1.0), (0.0, 1.0)]
    fluid = mirror(fluid, side == 1)
    region = cv.mask(lambda d, c: d.polygon(scaled(fluid, c), fill=255), blur=0.01)
    wet = region * np.clip(lung * 1.5, 0, 1)
    cv.paint(wet, [0.64], 0.95 * strength)
    return mask_box(wet)


def _lung_point(anatomy, side, zone, rng):
    """A point well inside one lung, in the upper / middle / lower zone."""
    x = rng.uniform(0.19, 0.32)
    y = (0.28, 0.4, 0.5)[zone] + rng.uniform(-0.04, 0.04)
    return (1.0 - x if side == 1 else x, y)


def _nodule(cv, anatomy, side, zone, lung, rng, strength):
    p, r = _lung_point(anatomy, side, zone, rng), rng.uniform(0.022, 0.03)
    spot = cv.mask(lambda d, c: d.ellipse(ellipse_box(p, r, r, c), fill=255), blur=0.004)
    cv.paint(spot, [0.8], 0.9 * strength)
    return mask_box(spot, 0.3)


def _mass(cv, anatomy, side, zone, lung, rng, strength):
    p, r = _lung_point(anatomy, side, zone, rng), rng.uniform(0.06, 0.08)
    shape = blob_outline(p, r, [(k, rng.uniform(0.04, 0.1), rng.uniform(0, 6.3)) for k in (3, 5)])
    blob = cv.mask(lambda d, c: d.polygon(scaled(shape, c), fill=255), blur=0.006)
    cv.paint(blob, [0.78], 0.92 * strength)
    return mask_box(blob, 0.3)


def _consolidation(cv, anatomy, side, zone, lung, rng, strength):
    p = _lung_point(anatomy, side, zone, rng)
    puffs = [
        ((p[0] + rng.normal(0, 0.04), p[1] + rng.normal(0, 0.04)), rng.uniform(0.03, 0.05))
        for _ in range(int(rng.integers(6, 10)))
    ]

    def draw(d, c):
        for q, r in puffs:
            d.ellipse(ellipse_box(q, r, r, c), fill=255)

    cloud = cv.mask(draw, blur=0.015) * np.clip(lung * 1.3, 0, 1)
    cloud *= 0.75 + 0.25 * smooth_noise(rng, cv.res, 20)
    cv.paint(cloud, [0.74], 0.9 * strength)
    return mask_box(cloud, 0.3)


def _pacemaker(cv, rng, sides, strength):
    g = (0.76 + rng.normal(0, 0.02), 0.22 + rng.normal(0, 0.015))
    heart_apex = (0.56 + rng.normal(0, 0.02), 0.68)

    def draw(d, c):
        d.rounded_rectangle(ellipse_box(g, 0.045, 0.032, c), radius=c.px(0.012), fill=255)
        for k in range(int(rng.integers(1, 3))):
            lead = bezier([g, (0.62, 0.2 + 0.03 * k), (0.5, 0.42), heart_apex], 24)
            d.line(scaled(lead, c), fill=255, width=stroke(c, 0.008), joint="curve")

    device = cv.mask(draw)
    cv.paint(device, [METAL], strength)
    return [mask_box(device)]


def _central_line(cv, rng, sides, strength):
    tip = (0.46 + rng.normal(0, 0.01), 0.36 + rng.normal(0, 0.02))
    line = bezier([(0.37 + rng.normal(0, 0.02), 0.0), (0.39, 0.14), (0.45, 0.2), tip], 24)
    device = cv.mask(
        lambda d, c: d.line(scaled(line, c), fill=255, width=stroke(c, 0.008), joint="curve")
    )
    cv.paint(device, [METAL], 0.9 * strength)
    return [mask_box(device)]


def _chest_tube(cv, rng, sides, strength):
    side = sides["chest_tube"]
    path = mirror(
        bezier(
            [
                (0.03, 0.8 + rng.normal(0, 0.02)),
                (0.12, 0.62),
                (0.13, 0.4),
                (0.22 + rng.normal(0, 0.02), 0.22),
            ],
            24,
        ),
        side == 1,
    )
    tube = cv.mask(
        lambda d, c: d.line(scaled(path, c), fill=255, width=stroke(c, 0.022), joint="curve")
    )
    lumen = cv.mask(
        lambda d, c: d.line(scaled(path, c), fill=255, width=stroke(c, 0.007), joint="curve")
    )
    cv.paint(tube, [METAL], 0.9 * strength)
    cv.paint(lumen, [0.45], 0.6 * strength)
    return [mask_box(tube)]


def _ecg_electrodes(cv, rng, sides, strength):
    spots = [(0.2, 0.2), (0.8, 0.2), (0.25, 0.85), (0.75, 0.85)]
    chosen = [spots[i] for i in sorted(rng.choice(4, int(rng.integers(2, 5)), replace=False))]
    boxes = []
    for sx, sy in chosen:
        p = (sx + rng.normal(0, 0.03), sy + rng.normal(0, 0.03))
        edge = (0.0 if p[0] < 0.5 else 1.0, p[1] + rng.normal(0, 0.1))

        def draw(d, c, p=p, edge=edge):
            d.ellipse(ellipse_box(p, 0.028, 0.028, c), outline=255, width=stroke(c, 0.008))
            d.ellipse(ellipse_box(p, 0.008, 0.008, c), fill=255)
            wire = bezier([p, ((p[0] + edge[0]) / 2, p[1] - 0.05), edge], 16)
            d.line(scaled(wire, c), fill=255, width=stroke(c, 0.005))

        lead = cv.mask(draw)
        cv.paint(lead, [METAL], 0.85 * strength)
        boxes.append(mask_box(lead))  # electrode and wire
    return boxes


def _sternotomy_wires(cv, rng, sides, strength):
    ys = np.linspace(0.3, 0.58, int(rng.integers(4, 7)))

    def draw(d, c):
        for y in ys:
            p = (0.5 + rng.normal(0, 0.006), y)
            d.ellipse(ellipse_box(p, 0.02, 0.012, c), outline=255, width=stroke(c, 0.007))

    wires = cv.mask(draw)
    cv.paint(wires, [METAL], strength)
    return [mask_box(wires)]


DEVICE_DRAWERS = [
    ("central_line", _central_line),
    ("sternotomy_wires", _sternotomy_wires),
    ("pacemaker", _pacemaker),
    ("chest_tube", _chest_tube),
    ("ecg_electrodes", _ecg_electrodes),
]
