"""SAE training curve: reconstruction (FVU), sparsity (L0) and dead latents per
epoch, on the training batches and on the held-out monitor split, with the
epochs where dead latents were resampled marked."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from ..io import atomic_path  # noqa: E402

PANELS = (
    ("fvu", "FVU (fraction of variance unexplained)", True),
    ("l0", "L0 (active latents per input)", False),
    ("dead_fraction", "dead latents (fraction)", False),
)


def plot_training_curve(history, dest, title: str = "SAE training", dpi: int = 120) -> None:
    """``history``: the per-epoch DataFrame written by train_sae."""
    fig, axes = plt.subplots(1, len(PANELS), figsize=(12, 3.6))
    epochs = history["epoch"].to_numpy()
    resampled = history.loc[history["n_resampled"] > 0, ["epoch", "n_resampled"]]
    for ax, (key, label, log_scale) in zip(axes, PANELS, strict=True):
        for prefix, name, style in (("train", "train batches", "-"), ("monitor", "held-out", "--")):
            col = f"{prefix}_{key}"
            if col in history:
                ax.plot(epochs, history[col].to_numpy(), style, label=name)
        for epoch, n in resampled.itertuples(index=False):
            ax.axvline(epoch, color="tab:red", alpha=0.3, lw=1)
            if key == "dead_fraction":
                ax.annotate(
                    f"{n}",
                    (epoch, ax.get_ylim()[1]),
                    fontsize=6,
                    color="tab:red",
                    ha="center",
                    va="top",
                )
        if log_scale and (history.filter(like=key) > 0).all().all():
            ax.set_yscale("log")
        ax.set_xlabel("epoch")
        ax.set_title(label, fontsize=9)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    if len(resampled):
        axes[-1].plot([], [], color="tab:red", alpha=0.3, label="resampling (count)")
        axes[-1].legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    with atomic_path(dest) as tmp:
        fig.savefig(tmp, dpi=dpi, format="png")
    plt.close(fig)


def plot_baselines(table, dest, dpi: int = 120) -> None:
    """Bars of planted_recovered_fraction and mcc per method (the SAE first); the tick
    labels carry each method's FVU and L0, the other side of the trade-off."""
    import numpy as np

    fig, ax = plt.subplots(figsize=(7.5, 3.6))
    x = np.arange(len(table))
    for offset, key, label in (
        (-0.2, "planted_recovered_fraction", "planted concepts recovered"),
        (0.2, "mcc", "MCC (matched |correlation|)"),
    ):
        values = table[key].astype(float).fillna(0.0).to_numpy()
        bars = ax.bar(x + offset, values, width=0.4, label=label)
        ax.bar_label(bars, fmt="%.2f", fontsize=7)
    ax.set_xticks(
        x,
        [
            f"{m}\nFVU {f:.3f}\nL0 {l0:.0f}"
            for m, f, l0 in zip(table["method"], table["fvu"], table["l0"], strict=True)
        ],
        fontsize=7,
    )
    ax.set_ylim(0, 1.1)
    ax.legend(fontsize=7, loc="upper right")
    ax.set_title("SAE vs dictionary baselines on the same features (held-out split)", fontsize=9)
    ax.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    with atomic_path(dest) as tmp:
        fig.savefig(tmp, dpi=dpi, format="png")
    plt.close(fig)
