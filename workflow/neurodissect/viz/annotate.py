"""Figures of neuron annotation: exemplar grid per unit with its assigned concepts and
confidence, a unit → concepts table, and (datasets with boxes) heatmaps over images with
the finding's box. Written into one folder per layer (a report directory output)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from ..io import PathLike, atomic_path  # noqa: E402

OK, MISS, FLAGGED = "#1a9641", "#d7191c", "#7f7f7f"
N_IMAGES = 6


def _save(fig, dest: Path, dpi: int) -> None:
    fig.tight_layout()
    with atomic_path(dest) as tmp:
        fig.savefig(tmp, dpi=dpi, format="png")
    plt.close(fig)


def pick_units(concepts: pd.DataFrame, units: pd.DataFrame, n: int) -> list[int]:
    """Units to show: scored ones first (in unit order), then the best-scoring others."""
    scored = units.loc[~units["dead"], "unit"].astype(int).tolist()
    tops = concepts[concepts["rank"] == 0].sort_values("score", ascending=False)
    rest = [int(u) for u in tops["unit"] if int(u) not in set(scored)]
    return (scored + rest)[:n]


def concept_lines(concepts: pd.DataFrame, unit: int, k: int = 3) -> list[str]:
    g = concepts[concepts["unit"] == unit].sort_values("rank").head(k)
    return [
        f"{c} ({s:.3g}, p={p:.2g}, stab={st:.2f})"
        for c, s, p, st in zip(g["concept"], g["score"], g["p_value"], g["stability"], strict=True)
    ]


def plot_exemplar_grid(dest, concepts, exemplars, units, manifest, shown, dpi, layer="") -> None:
    from ..data.images import load_image

    paths = dict(zip(manifest.df["image_id"].astype(str), manifest.df["path"], strict=True))
    truth = units.set_index("unit") if len(units) else None
    fig, axes = plt.subplots(
        max(1, len(shown)),
        N_IMAGES + 1,
        figsize=(1.4 * (N_IMAGES + 1) + 2.2, 1.45 * max(1, len(shown))),
        gridspec_kw={"width_ratios": [3.2] + [1] * N_IMAGES},
        squeeze=False,
    )
    for ax in axes.ravel():
        ax.set_axis_off()
    if not shown:
        axes[0, 0].text(0, 0.5, "no unit has exemplars", va="center")
    for row, unit in enumerate(shown):
        lines = concept_lines(concepts, unit)
        flagged = bool(concepts.loc[concepts["unit"] == unit, "uninterpretable"].any())
        color = FLAGGED if flagged else "black"
        title = f"unit {unit}" + (" (uninterpretable)" if flagged else "")
        if truth is not None and unit in truth.index:
            t = truth.loc[unit]
            color = OK if t["top1"] else MISS
            title += f"\ntruth: {t['truth']}"
        axes[row, 0].text(
            0,
            0.5,
            title + "\n" + "\n".join(lines),
            va="center",
            fontsize=6.5,
            color=color,
            transform=axes[row, 0].transAxes,
        )
        ids = exemplars.loc[exemplars["unit"] == unit].sort_values("rank")
        for col, (image_id, act) in enumerate(zip(ids["image_id"], ids["activation"], strict=True)):
            if col >= N_IMAGES:
                break
            img = load_image(manifest.root / paths[str(image_id)], manifest.channels)
            ax = axes[row, col + 1]
            ax.imshow(np.asarray(img), cmap="gray" if manifest.channels == 1 else None)
            ax.set_title(f"{act:.2g}", fontsize=6)
    fig.suptitle(
        f"{layer}: top exemplars per unit with assigned concepts "
        "(score, permutation p, bootstrap stability); green/red = top-1 right/wrong",
        fontsize=8,
    )
    _save(fig, dest, dpi)


def plot_concept_table(dest, concepts, units, shown, significance, dpi, layer="") -> None:
    truth = units.set_index("unit") if len(units) else None
    rows, colors = [], []
    for unit in shown:
        g = concepts[concepts["unit"] == unit].sort_values("rank")
        top = g.iloc[0]
        t = truth.loc[unit] if truth is not None and unit in truth.index else None
        rows.append(
            [
                str(unit),
                "; ".join(g["concept"].head(4)),
                f"{top['p_value']:.2g}",
                f"{top['stability']:.2f}",
                "" if t is None else t["truth"],
                "" if t is None else ("yes" if t["top1"] else "no"),
            ]
        )
        colors.append(FLAGGED if top["p_value"] > significance else "black")
    fig, ax = plt.subplots(figsize=(10, 0.3 * max(1, len(rows)) + 0.9))
    ax.set_axis_off()
    if rows:
        table = ax.table(
            cellText=rows,
            loc="center",
            cellLoc="left",
            colLabels=["unit", "assigned concepts", "p (top)", "stability", "truth", "top-1 right"],
            colWidths=[0.06, 0.46, 0.08, 0.08, 0.22, 0.1],
        )
        table.auto_set_font_size(False)
        table.set_fontsize(7)
        for i, c in enumerate(colors):
            for j in range(6):
                table[i + 1, j].get_text().set_color(c)
    ax.set_title(
        f"{layer}: unit → concepts (grey: top concept not significant at p ≤ {significance})",
        fontsize=9,
    )
    _save(fig, dest, dpi)


def plot_localization(dest, localization, manifest, dpi, layer="") -> None:
    from matplotlib.patches import Rectangle

    from ..data.images import load_image

    paths = dict(zip(manifest.df["image_id"].astype(str), manifest.df["path"], strict=True))
    examples = localization.examples
    fig, axes = plt.subplots(
        1, max(1, len(examples)), figsize=(2.6 * max(1, len(examples)), 2.9), squeeze=False
    )
    cols = ["iou", "pointing_hit", "pointing_ceiling"]
    per_unit = localization.per_image.groupby("unit")[cols].mean()
    for ax, ex in zip(axes[0], examples, strict=False):
        img = load_image(manifest.root / paths[ex["image_id"]], manifest.channels)
        ax.imshow(np.asarray(img), cmap="gray" if manifest.channels == 1 else None)
        ax.imshow(ex["heat"], cmap="jet", alpha=0.45)
        for x, y, w, h in ex["boxes"]:
            ax.add_patch(Rectangle((x, y), w, h, fill=False, edgecolor="white", linewidth=1.2))
        m = per_unit.loc[ex["unit"]]
        ax.set_title(
            f"unit {ex['unit']} ({ex['truth']})\nIoU {m['iou']:.2f}, "
            f"pointing {m['pointing_hit']:.2f} (max {m['pointing_ceiling']:.2f})",
            fontsize=7,
        )
        ax.set_axis_off()
    # max: the share of images where some cell centre of the map's own grid is in a box
    fig.suptitle(
        f"{layer}: unit heatmap over the image, box of the finding "
        "(pointing max: the best any map of this grid can score)",
        fontsize=8,
    )
    _save(fig, dest, dpi)


def annotation_figures(
    out_dir: PathLike,
    concepts,
    exemplars,
    units,
    manifest,
    localization,
    *,
    n_units: int = 8,
    significance: float = 0.05,
    dpi: int = 120,
    layer: str = "",
) -> list[Path]:
    """Write exemplars.png, concepts.png (and localization.png with boxes) into ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    shown = pick_units(concepts, units, n_units)
    written = [out / "exemplars.png", out / "concepts.png"]
    plot_exemplar_grid(written[0], concepts, exemplars, units, manifest, shown, dpi, layer)
    plot_concept_table(
        written[1],
        concepts,
        units,
        pick_units(concepts, units, 3 * n_units),
        significance,
        dpi,
        layer,
    )
    if localization is not None and localization.examples:
        written.append(out / "localization.png")
        plot_localization(written[-1], localization, manifest, dpi, layer)
    return written
