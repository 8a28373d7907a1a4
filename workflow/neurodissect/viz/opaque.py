"""Learning curve of the opaque classifier: losses and val metrics per epoch,
the kept (best) epoch marked; for a loaded model with a re-fitted head, the
linear probe's val score against its regularisation instead."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from ..io import PathLike, atomic_path  # noqa: E402

METRIC_LABELS = {
    "val_accuracy": "accuracy",
    "val_balanced_accuracy": "balanced accuracy",
    "val_macro_f1": "macro-F1",
    "val_mean_auroc": "mean AUROC",
}


def _test_summary(metrics: dict, multilabel: bool) -> str:
    key = "test_mean_auroc" if multilabel else "test_balanced_accuracy"
    name = "mean AUROC" if multilabel else "balanced acc."
    if key not in metrics:
        return ""
    return (
        f"test {name} {metrics[key]:.3f}, accuracy {metrics.get('test_accuracy', float('nan')):.3f}"
    )


def _plot_epochs(axes, history: pd.DataFrame, best_epoch: int) -> None:
    loss_ax, metric_ax = axes
    loss_ax.plot(history["epoch"], history["train_loss"], "o-", ms=3, label="train (augmented)")
    loss_ax.plot(history["epoch"], history["val_loss"], "o-", ms=3, label="val")
    loss_ax.set_xlabel("epoch")
    loss_ax.set_ylabel("loss")
    loss_ax.legend(fontsize=8)
    for col, label in METRIC_LABELS.items():
        if col in history:
            metric_ax.plot(history["epoch"], history[col], "o-", ms=3, label=label)
    metric_ax.set_xlabel("epoch")
    metric_ax.set_ylabel("val metric")
    metric_ax.set_ylim(0, 1.02)
    metric_ax.legend(fontsize=8)
    for ax in axes:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.axvline(best_epoch, color="grey", ls="--", lw=1)
        ax.grid(alpha=0.3)
    metric_ax.text(best_epoch, 0.02, f" kept: epoch {best_epoch}", fontsize=8, color="grey")


def _plot_probe(axes, grid: list[dict] | None) -> None:
    probe_ax, note_ax = axes
    if grid:
        key = next(k for k in grid[0] if k.startswith("val_"))
        probe_ax.semilogx([g["C"] for g in grid], [g[key] for g in grid], "o-")
        for g in grid:
            if g.get("chosen"):
                probe_ax.axvline(g["C"], color="grey", ls="--", lw=1)
        probe_ax.set_ylim(0, 1.02)
        probe_ax.set_xlabel("inverse regularisation C (dashed: chosen)")
        probe_ax.set_ylabel(key.replace("_", " "))
        probe_ax.set_title("linear probe on frozen penultimate features", fontsize=9)
        probe_ax.grid(alpha=0.3)
    else:
        probe_ax.set_axis_off()
    note_ax.set_axis_off()
    note_ax.text(
        0.5,
        0.5,
        "not trained (opaque.train: false):\nweights loaded from file"
        + ("" if grid else "\nwith their own head"),
        ha="center",
        va="center",
    )


def plot_learning_curve(
    history: pd.DataFrame,
    dest: PathLike,
    multilabel: bool,
    best_epoch: int,
    metrics: dict,
    *,
    probe_grid: list[dict] | None = None,
    title: str = "",
    dpi: int = 120,
) -> None:
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    if len(history):
        _plot_epochs(axes, history, best_epoch)
    else:
        _plot_probe(axes, probe_grid)
    summary = _test_summary(metrics, multilabel)
    fig.suptitle(" — ".join(p for p in (title, summary) if p), fontsize=10)
    fig.tight_layout()
    with atomic_path(dest) as tmp:
        fig.savefig(tmp, dpi=dpi, format="png")
    plt.close(fig)
