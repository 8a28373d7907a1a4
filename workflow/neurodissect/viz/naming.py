"""Figure of the named SAE latents: the strongest names with their confidence,
and every name's p-value against its bootstrap stability."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from ..io import PathLike, atomic_path  # noqa: E402
from ..naming.table import read_concepts  # noqa: E402

INTERPRETABLE, FLAGGED = "#2c7fb8", "#bdbdbd"


def plot_named_concepts(
    concepts_path: PathLike, dest: PathLike, significance: float, dpi: int = 120, top: int = 20
) -> None:
    df = read_concepts(concepts_path)
    fig, (bars, scatter) = plt.subplots(
        1,
        2,
        figsize=(11, max(3.5, 0.28 * min(top, len(df)) + 1.2)),
        gridspec_kw={"width_ratios": [1.6, 1]},
    )
    if df.empty:
        for ax in (bars, scatter):
            ax.text(0.5, 0.5, "no latent could be named", ha="center", va="center")
            ax.set_axis_off()
    else:
        _plot_top_names(bars, df, top)
        _plot_confidence(scatter, df, significance)
    n_ok = int((~df["uninterpretable"]).sum())
    method = df["method"].iloc[0] if len(df) else "-"
    fig.suptitle(
        f"Named SAE latents ({method}): {n_ok} of {len(df)} significant at p <= {significance}",
        fontsize=10,
    )
    fig.tight_layout()
    with atomic_path(dest) as tmp:
        fig.savefig(tmp, dpi=dpi, format="png")
    plt.close(fig)


def _plot_top_names(ax, df, top: int) -> None:
    shown = df.sort_values(["uninterpretable", "score"], ascending=[True, False]).head(top)
    shown = shown.iloc[::-1]  # best at the top
    y = np.arange(len(shown))
    colors = [FLAGGED if u else INTERPRETABLE for u in shown["uninterpretable"]]
    ax.barh(y, shown["score"], color=colors)
    labels = [
        f"latent {lat}: {name}" for lat, name in zip(shown["latent"], shown["name"], strict=True)
    ]
    ax.set_yticks(y, labels, fontsize=7)
    for yi, (score, p, stab) in enumerate(
        zip(shown["score"], shown["p_value"], shown["stability"], strict=True)
    ):
        ax.text(score, yi, f"  p={p:.3g}, stab={stab:.2f}", va="center", fontsize=6)
    ax.set_xlabel("name score", fontsize=8)
    ax.set_title(f"top {len(shown)} names (grey = not significant)", fontsize=9)
    ax.tick_params(axis="x", labelsize=7)
    ax.margins(x=0.35)


def _plot_confidence(ax, df, significance: float) -> None:
    colors = [FLAGGED if u else INTERPRETABLE for u in df["uninterpretable"]]
    ax.scatter(-np.log10(df["p_value"]), df["stability"], c=colors, s=14, edgecolors="none")
    ax.axvline(-np.log10(significance), color="#d95f0e", lw=1, ls="--", label=f"p = {significance}")
    ax.set_xlabel("-log10 permutation p-value", fontsize=8)
    ax.set_ylabel("bootstrap stability of the name", fontsize=8)
    ax.set_ylim(-0.03, 1.03)
    ax.set_title("confidence of every name", fontsize=9)
    ax.tick_params(labelsize=7)
    ax.legend(fontsize=7, loc="lower right")
