"""Figure comparing runs: one panel per headline metric, a bar per
(dataset, architecture) at the mean over seeds, every seed as a dot."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from ..evaluate.compare import headline  # noqa: E402
from ..io import atomic_path  # noqa: E402


def plot_comparison(summary: pd.DataFrame, long: pd.DataFrame, dest, dpi: int = 120) -> None:
    heads = headline(summary)
    panels = list(heads.groupby(["stage", "metric"], sort=True))
    n = max(1, len(panels))
    fig, axes = plt.subplots(1, n, figsize=(3.2 * n, 3.4), squeeze=False)
    for ax, ((stage, metric), part) in zip(axes[0], panels, strict=False):
        labels = [f"{d}\n{a or '-'}" for d, a in zip(part["dataset"], part["arch"], strict=True)]
        x = range(len(part))
        ax.bar(x, part["mean"], yerr=part["std"], color="#8fb3d9", edgecolor="#2c5d8f", capsize=3)
        for i, (d, a) in enumerate(zip(part["dataset"], part["arch"], strict=True)):
            pts = long[
                (long.dataset == d)
                & (long.arch == a)
                & (long.stage == stage)
                & (long.metric == metric)
            ]
            ax.scatter([i] * len(pts), pts["value"], color="#1b3a5c", s=12, zorder=3)
        ax.set_xticks(list(x), labels, fontsize=7)
        ax.set_title(f"{stage}\n{metric}", fontsize=8)
        ax.tick_params(axis="y", labelsize=7)
    if not panels:
        axes[0][0].text(0.5, 0.5, "no headline metrics yet", ha="center", va="center")
        axes[0][0].set_axis_off()
    fig.suptitle("Runs compared (bar = mean over seeds, dots = seeds)", fontsize=9)
    fig.tight_layout()
    with atomic_path(dest) as tmp:
        fig.savefig(tmp, dpi=dpi, format="png")
    plt.close(fig)
