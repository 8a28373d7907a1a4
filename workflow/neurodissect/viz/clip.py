"""Training curve of the small CLIP: contrastive loss per epoch (left) and the val
split's image→report recall@1/@5 with the test scores of the kept model (right)."""

from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from ..io import PathLike, atomic_path  # noqa: E402


def _fmt(value) -> str:
    return (
        "n/a"
        if value is None or (isinstance(value, float) and math.isnan(value))
        else f"{value:.3f}"
    )


def plot_clip_training(
    history: pd.DataFrame,
    metrics: dict,
    dest: PathLike,
    *,
    n_val: int = 0,
    title: str = "",
    dpi: int = 120,
) -> None:
    fig, (loss_ax, recall_ax) = plt.subplots(1, 2, figsize=(9, 3.4), constrained_layout=True)
    loss_ax.plot(
        history["epoch"], history["train_loss"], "o-", ms=3, label="train (sampled sentences)"
    )
    loss_ax.set_xlabel("epoch")
    loss_ax.set_ylabel("contrastive loss")
    loss_ax.legend(fontsize=8)
    for k, style in ((1, "o-"), (5, "s-")):
        recall_ax.plot(
            history["epoch"], history[f"val_recall_at_{k}"], style, ms=3, label=f"val recall@{k}"
        )
    if n_val:
        recall_ax.axhline(5 / n_val, color="grey", ls=":", lw=1, label="chance @5")
    recall_ax.set_xlabel("epoch")
    recall_ax.set_ylabel("image → report recall")
    recall_ax.set_ylim(0, 1.02)
    recall_ax.legend(fontsize=8)
    for ax in (loss_ax, recall_ax):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    zeroshot = metrics.get("zeroshot_balanced_accuracy", metrics.get("zeroshot_mean_auroc"))
    zs_name = "bal. acc." if "zeroshot_balanced_accuracy" in metrics else "mean AUROC"
    fig.suptitle(
        f"{title + ': ' if title else ''}CLIP test recall@1 {_fmt(metrics.get('recall_at_1'))}, "
        f"@5 {_fmt(metrics.get('recall_at_5'))} (n={metrics.get('n_test', 0)}); "
        f"zero-shot {zs_name} {_fmt(zeroshot)}",
        fontsize=9,
    )
    with atomic_path(dest) as tmp:
        fig.savefig(tmp, dpi=dpi, format="png")
    plt.close(fig)
