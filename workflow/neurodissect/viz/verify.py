"""Figure of verify_names: the paired AUROC of every verifiable name (confirmed or not)
and a few probe pairs (the same image with and without a named concept)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from ..io import PathLike, atomic_path  # noqa: E402

CONFIRMED, REFUTED = "#2c7fb8", "#d95f0e"
N_PAIRS_SHOWN = 3


def plot_verification(table, probes, dest: PathLike, dpi: int = 120, top: int = 30) -> None:
    v = table.loc[table["verifiable"].astype(bool)].sort_values("auroc", ascending=False).head(top)
    concepts = list(dict.fromkeys(v["concept"]))[:N_PAIRS_SHOWN] if probes is not None else []
    fig = plt.figure(figsize=(11, max(3.5, 0.25 * len(v) + 1.5)))
    grid = fig.add_gridspec(max(1, len(concepts)), 3, width_ratios=[2.2, 0.6, 0.6])
    bars = fig.add_subplot(grid[:, 0])
    if v.empty:
        bars.text(
            0.5, 0.5, "no name is a planted concept: nothing to verify", ha="center", va="center"
        )
        bars.set_axis_off()
    else:
        shown = v.iloc[::-1]
        y = np.arange(len(shown))
        colors = [CONFIRMED if c else REFUTED for c in shown["confirmed"].fillna(False)]
        bars.barh(y, shown["auroc"] - 0.5, left=0.5, color=colors)
        bars.axvline(0.5, color="grey", lw=0.8)
        labels = [f"unit {u}: {n}" for u, n in zip(shown["unit"], shown["name"], strict=True)]
        bars.set_yticks(y, labels, fontsize=7)
        bars.set_xlim(0, 1)
        bars.set_xlabel("paired AUROC (with vs without the named concept)", fontsize=8)
        n_ok = int(v["confirmed"].fillna(False).sum())
        bars.set_title(f"{n_ok} of {len(v)} shown names confirmed (blue)", fontsize=9)
        bars.tick_params(axis="x", labelsize=7)
    for row, concept in enumerate(concepts):
        pair = probes.pair(concept, 0)
        for col, (img, label) in enumerate(
            ((pair.with_concept, "with"), (pair.without, "without"))
        ):
            ax = fig.add_subplot(grid[row, 1 + col])
            ax.imshow(img, cmap="gray" if img.ndim == 2 else None, vmin=0, vmax=255)
            ax.set_title(f"{label} {concept}", fontsize=7)
            ax.set_axis_off()
    fig.tight_layout()
    with atomic_path(dest) as tmp:
        fig.savefig(tmp, dpi=dpi, format="png")
    plt.close(fig)
