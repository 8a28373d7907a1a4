"""Dataset overview: a grid of sample images per class, each captioned with its
planted concepts (synthetic data) or its labels, with bounding boxes drawn where
the dataset has them."""

from __future__ import annotations

import textwrap

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402

from ..data.images import load_image  # noqa: E402
from ..data.manifest import Manifest, read_manifest  # noqa: E402
from ..io import PathLike, atomic_path  # noqa: E402

NO_FINDING = "no finding"
BOX_COLORS = [plt.get_cmap("tab20")(i) for i in (*range(0, 20, 2), *range(1, 20, 2))]


def choose_examples(manifest: Manifest, per_class: int) -> list[tuple[str, list[int]]]:
    """(row title, manifest row indices) per class: the first ``per_class`` images
    labelled with the class (multi-label: also a "no finding" row), test split first
    so the figure shows held-out images. Deterministic: manifest order."""
    df = manifest.df
    order = np.argsort((df["split"] != "test").to_numpy(), kind="stable")
    rows = []
    for k, cls in enumerate(manifest.classes):
        if manifest.multilabel:
            hit = df[manifest.label_columns[k]].to_numpy()[order] == 1
        else:
            hit = df["label"].to_numpy()[order] == k
        rows.append((cls, order[hit][:per_class].tolist()))
    if manifest.multilabel:
        none = (df[manifest.label_columns].to_numpy()[order] == 0).all(axis=1)
        rows.append((NO_FINDING, order[none][:per_class].tolist()))
    return [(title, idx) for title, idx in rows if idx]


def caption(image_id: str, concepts: pd.DataFrame | None, labels: list[str]) -> str:
    """Planted concepts of the image (or its labels when there is no ground truth)."""
    if concepts is not None and image_id in concepts.index:
        row = concepts.loc[image_id]
        names = [c.replace("_", " ") for c in concepts.columns if bool(row[c])]
        return ", ".join(names) if names else "(no planted concept)"
    return ", ".join(labels) if labels else NO_FINDING


def row_labels(manifest: Manifest, i: int) -> list[str]:
    if manifest.multilabel:
        values = manifest.df.loc[i, manifest.label_columns].to_numpy()
        return [c for c, v in zip(manifest.classes, values, strict=True) if v == 1]
    return [manifest.classes[int(manifest.df.loc[i, "label"])]]


def plot_dataset_overview(
    manifest_path: PathLike,
    boxes_path: PathLike,
    concepts_path: PathLike,
    dest: PathLike,
    *,
    per_class: int = 4,
    dpi: int = 120,
    title: str = "",
) -> int:
    """Write the overview figure; returns the number of images shown."""
    manifest = read_manifest(manifest_path)
    boxes = pd.read_parquet(boxes_path)
    gt = pd.read_parquet(concepts_path)
    concepts = gt.set_index("image_id") if len(gt.columns) > 1 else None
    groups = choose_examples(manifest, per_class)
    n_rows, n_cols = max(1, len(groups)), per_class
    fig, axes = plt.subplots(
        n_rows, n_cols, figsize=(1.9 * n_cols + 1.2, 2.25 * n_rows), squeeze=False
    )
    shown = 0
    colors = {}
    for r, (cls, indices) in enumerate(groups):
        names = manifest.class_synonyms.get(cls, [cls])
        label = (
            f"{cls}\n({names[1]})" if len(names) > 1 and names[1].lower() != cls.lower() else cls
        )
        axes[r, 0].set_ylabel(label, fontsize=8, rotation=0, ha="right", va="center")
        for c in range(n_cols):
            ax = axes[r, c]
            ax.set_xticks([])
            ax.set_yticks([])
            if c >= len(indices):
                ax.axis("off")
                continue
            i = indices[c]
            image_id = str(manifest.df.loc[i, "image_id"])
            img = np.asarray(load_image(manifest.root / manifest.df.loc[i, "path"], 3))
            ax.imshow(img, interpolation="nearest")
            for _, b in boxes[boxes["image_id"] == image_id].iterrows():
                color = colors.setdefault(b["finding"], BOX_COLORS[len(colors) % len(BOX_COLORS)])
                ax.add_patch(
                    Rectangle(
                        (b["x"] - 0.5, b["y"] - 0.5),
                        b["w"],
                        b["h"],
                        fill=False,
                        edgecolor=color,
                        linewidth=1.0,
                    )
                )
            text = caption(image_id, concepts, row_labels(manifest, i))
            ax.set_xlabel("\n".join(textwrap.wrap(text, 28)[:4]), fontsize=6)
            shown += 1
    if colors:
        handles = [Rectangle((0, 0), 1, 1, fill=False, edgecolor=c) for c in colors.values()]
        fig.legend(
            handles,
            list(colors),
            loc="lower center",
            ncol=min(4, len(colors)),
            fontsize=7,
            frameon=False,
        )
    counts = manifest.df["split"].value_counts()
    splits = ", ".join(f"{s} {int(counts.get(s, 0))}" for s in ("train", "val", "test"))
    what = "planted concepts" if concepts is not None else "labels"
    fig.suptitle(
        f"{title or manifest.meta['format']}: {len(manifest)} images ({splits}); captions: {what}",
        fontsize=9,
    )
    fig.tight_layout(rect=(0, 0.04 if colors else 0, 1, 0.97))
    with atomic_path(dest) as tmp:
        fig.savefig(tmp, dpi=dpi, format="png")
    plt.close(fig)
    return shown
