"""Figures of the concept bottleneck model: each class's top concepts, explanations of
single test images, and a heat-strip of concept scores over the test images."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from ..io import PathLike, atomic_path  # noqa: E402

POS, NEG = "#1a9641", "#d7191c"


def _save(fig, dest: PathLike, dpi: int) -> None:
    fig.tight_layout()
    with atomic_path(Path(dest)) as tmp:
        fig.savefig(tmp, dpi=dpi, format="png")
    plt.close(fig)


def class_concept_table(scores, W, labels, classes, concepts, top: int = 5) -> pd.DataFrame:
    """Per class: the concepts with the largest mean contribution w_yc · s_c(x) over the
    test images of that class (class, concept, contribution, rank)."""
    rows = []
    scores = np.asarray(scores, np.float64)
    labels = np.asarray(labels)
    for y, cls in enumerate(classes):
        members = labels[:, y] > 0.5 if labels.ndim == 2 else labels == y
        if not members.any():
            continue
        mean = (scores[members] * np.asarray(W, np.float64)[y]).mean(0)
        for rank, c in enumerate(np.argsort(-mean, kind="stable")[:top], start=1):
            rows.append(
                {"class": cls, "concept": concepts[c], "contribution": mean[c], "rank": rank}
            )
    return pd.DataFrame(rows, columns=["class", "concept", "contribution", "rank"])


def plot_class_concepts(dest, table: pd.DataFrame, dpi: int = 120, title: str = "") -> None:
    classes = list(dict.fromkeys(table["class"]))
    n = max(1, len(classes))
    cols = min(4, n)
    nrows = int(np.ceil(n / cols))
    fig, axes = plt.subplots(nrows, cols, figsize=(3.4 * cols, 2.2 * nrows), squeeze=False)
    for ax in axes.ravel():
        ax.set_axis_off()
    for ax, cls in zip(axes.ravel(), classes, strict=False):
        ax.set_axis_on()
        g = table[table["class"] == cls].sort_values("rank", ascending=False)
        vals = g["contribution"].to_numpy()
        ax.barh(np.arange(len(g)), vals, color=[POS if v >= 0 else NEG for v in vals])
        ax.set_yticks(np.arange(len(g)), g["concept"].tolist(), fontsize=7)
        ax.set_title(cls, fontsize=9)
        ax.axvline(0, color="black", lw=0.5)
        ax.tick_params(axis="x", labelsize=7)
    if not classes:
        axes[0, 0].text(0.5, 0.5, "no test images", ha="center")
    fig.suptitle(
        title
        or "top concepts per class: mean contribution w·s to the class logit over its test images",
        fontsize=9,
    )
    _save(fig, dest, dpi)


def plot_explanations(
    dest, explanations: pd.DataFrame, image_ids, manifest, truth=None, dpi: int = 120
) -> None:
    """Each shown test image next to the top contributions to its predicted class (concepts
    with a zero score, i.e. not among the image's OMP atoms, are left out).
    ``truth``: image_id → true class name (shown in the title)."""
    from ..data.images import load_image

    paths = dict(zip(manifest.df["image_id"].astype(str), manifest.df["path"], strict=True))
    n = max(1, len(image_ids))
    fig, axes = plt.subplots(
        n, 2, figsize=(7.5, 1.9 * n), squeeze=False, gridspec_kw={"width_ratios": [1, 2.6]}
    )
    for ax in axes.ravel():
        ax.set_axis_off()
    for row, image_id in enumerate(image_ids):
        g = explanations[explanations["image_id"] == str(image_id)].sort_values("rank")
        img = load_image(manifest.root / paths[str(image_id)], manifest.channels)
        ax_img, ax_bar = axes[row]
        ax_img.imshow(np.asarray(img), cmap="gray" if manifest.channels == 1 else None)
        label = f"{image_id}\npredicted: {g['class'].iloc[0] if len(g) else '?'}"
        if truth is not None:
            label += f"\ntrue: {truth.get(str(image_id), '?')}"
        ax_img.set_title(label, fontsize=7)
        ax_bar.set_axis_on()
        g = g[g["score"] != 0].iloc[::-1]  # concepts the sparse code did not use: no bar
        vals = g["contribution"].to_numpy()
        ax_bar.barh(np.arange(len(g)), vals, color=[POS if v >= 0 else NEG for v in vals])
        ax_bar.set_yticks(
            np.arange(len(g)),
            [f"{c} (s={s:.2g})" for c, s in zip(g["concept"], g["score"], strict=True)],
            fontsize=7,
        )
        ax_bar.axvline(0, color="black", lw=0.5)
        ax_bar.tick_params(axis="x", labelsize=7)
    axes[-1, 1].set_xlabel("contribution w_yc · s_c(x) to the predicted class logit", fontsize=7)
    _save(fig, dest, dpi)


def plot_concept_strip(dest, scores, labels, classes, concepts, dpi: int = 120) -> None:
    """Heat-strip: test images (columns, grouped by class) x concepts (rows), colour = the
    concept score standardised per concept (clipped to ±3)."""
    s = np.asarray(scores, np.float64)
    labels = np.asarray(labels)
    group = labels.argmax(1) if labels.ndim == 2 else labels
    order = np.argsort(group, kind="stable")
    sd = s.std(0)
    sd[sd == 0] = 1.0
    z = np.clip((s - s.mean(0)) / sd, -3, 3)[order].T
    fig, ax = plt.subplots(figsize=(10, 1.2 + 0.16 * max(1, len(concepts))))
    im = ax.imshow(z, aspect="auto", cmap="RdBu_r", vmin=-3, vmax=3, interpolation="nearest")
    ax.set_yticks(np.arange(len(concepts)), concepts, fontsize=6)
    bounds = np.flatnonzero(np.diff(group[order])) + 0.5
    for x in bounds:
        ax.axvline(x, color="black", lw=0.6)
    edges = np.concatenate([[-0.5], bounds, [len(order) - 0.5]])
    present = [classes[int(c)] for c in np.unique(group[order])]
    ax.set_xticks((edges[:-1] + edges[1:]) / 2, present, fontsize=7)
    ax.set_xlabel("test images grouped by (first) true class", fontsize=8)
    fig.colorbar(im, ax=ax, fraction=0.02, pad=0.01).set_label("score (z)", fontsize=7)
    ax.set_title("concept scores (OMP coefficients) of every test image", fontsize=9)
    _save(fig, dest, dpi)


def pick_images(explanations: pd.DataFrame, n: int) -> list[str]:
    """Up to ``n`` test images, one per predicted class first (in test order), then the rest."""
    first = explanations[explanations["rank"] == 1]
    ids = first["image_id"].astype(str).tolist()
    per_class = list(dict.fromkeys(first.drop_duplicates("class")["image_id"].astype(str)))
    rest = [i for i in ids if i not in set(per_class)]
    return (per_class + rest)[:n]


def cbm_figures(
    result,
    explanations: pd.DataFrame,
    manifest,
    concepts,
    classes,
    out: dict,
    n_images: int,
    dpi: int,
) -> None:
    """The three figures from :func:`neurodissect.evaluate.cbm.evaluate_cbm`'s result;
    ``out`` has keys class_concepts, explanations, heatstrip."""
    arr = result.arrays
    table = class_concept_table(arr["scores"], arr["W"], arr["labels"], classes, concepts)
    plot_class_concepts(out["class_concepts"], table, dpi)
    labels = np.asarray(arr["labels"])
    true = labels.argmax(1) if labels.ndim == 2 else labels
    truth = {str(i): classes[int(y)] for i, y in zip(arr["image_ids"], true, strict=True)}
    plot_explanations(
        out["explanations"], explanations, pick_images(explanations, n_images), manifest, truth, dpi
    )
    plot_concept_strip(out["heatstrip"], arr["scores"], arr["labels"], classes, concepts, dpi)
