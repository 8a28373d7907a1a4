"""One-page summary of a run ({dataset}/{model}): the opaque model, the
annotation of each dissected layer, the SAE and the concept bottleneck model,
each panel drawn from that stage's flat metrics.json."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from ..io import atomic_path  # noqa: E402

SPLITS = ("train", "val", "test")
ANNOTATION_KEYS = ("hit_rate", "top1_accuracy", "precision", "recall", "f1", "mean_cosine")
SAE_LABELS = {
    "fvu": "FVU",
    "dead_fraction": "dead latents",
    "planted_recovered_fraction": "planted recovered",
    "named_correct_fraction": "named correctly",
}


def _load(path) -> dict:
    return json.loads(Path(path).read_text()) if path and Path(path).exists() else {}


def _bars(ax, groups: dict[str, dict[str, float]], title: str, ylim=(0, 1.05)) -> None:
    """Grouped bars: one group per key of ``groups``, its present series centred in it."""
    series = list(dict.fromkeys(s for g in groups.values() for s in g))  # first-seen order
    ax.set_title(title, fontsize=9)
    if not series:
        ax.text(0.5, 0.5, "no metrics", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
        return
    colours = {s: plt.cm.tab10(i) for i, s in enumerate(series)}
    width = 0.8 / len(series)
    for x, values in enumerate(groups.values()):
        present = [s for s in series if s in values]
        for i, s in enumerate(present):
            v = values[s]
            pos = x + (i - (len(present) - 1) / 2) * width
            ax.bar(pos, v, width, color=colours[s], label=s)
            ax.annotate(f"{v:.2f}", (pos, v), ha="center", va="bottom", fontsize=6)
    handles = [plt.Rectangle((0, 0), 1, 1, color=colours[s]) for s in series]
    ax.legend(handles, series, fontsize=6, loc="lower right")
    ax.set_xticks(range(len(groups)), [g.replace("_", " ") for g in groups], fontsize=7)
    ax.set_ylim(*ylim)
    ax.tick_params(axis="y", labelsize=7)


def plot_summary(run: str, opaque, annotations: dict[str, str], sae, cbm, dest, dpi=120) -> None:
    op, sa, cb = _load(opaque), _load(sae), _load(cbm)
    fig, axes = plt.subplots(2, 2, figsize=(10, 7))

    score = "mean_auroc" if any(k.endswith("_mean_auroc") for k in op) else "balanced_accuracy"
    opaque_groups = {
        metric: {s: op[f"{s}_{metric}"] for s in SPLITS if f"{s}_{metric}" in op}
        for metric in ("accuracy", score, "macro_f1")
        if any(f"{s}_{metric}" in op for s in SPLITS)
    }
    _bars(axes[0, 0], opaque_groups, f"Opaque model (best epoch {op.get('best_epoch', '?')})")

    ann = {layer: _load(p) for layer, p in annotations.items()}
    ann_groups = {k: {layer: m[k] for layer, m in ann.items() if k in m} for k in ANNOTATION_KEYS}
    _bars(axes[0, 1], {k: v for k, v in ann_groups.items() if v}, "Neuron annotation by layer")

    sae_groups = {label: {"SAE": sa[k]} for k, label in SAE_LABELS.items() if k in sa}
    if "opaque_accuracy" in sa and "fidelity_accuracy" in sa:
        sae_groups["head accuracy"] = {
            "on features": sa["opaque_accuracy"],
            "on SAE reconstruction": sa["fidelity_accuracy"],
        }
    title = "Sparse autoencoder" + (f" (L0 = {sa['l0']:.1f})" if "l0" in sa else "")
    _bars(axes[1, 0], sae_groups, title)

    cbm_groups = {}
    for metric in ("accuracy", "balanced_accuracy", "macro_f1", "mean_auroc"):
        pair = {who: cb[f"{who}_{metric}"] for who in ("opaque", "cbm") if f"{who}_{metric}" in cb}
        if pair:
            cbm_groups[metric] = pair
    if "explanation_planted_hit_rate" in cb:
        cbm_groups["explanation hit"] = {"cbm": cb["explanation_planted_hit_rate"]}
    _bars(axes[1, 1], cbm_groups, "Concept bottleneck model vs opaque (test)")

    fig.suptitle(f"neurodissect run {run}", fontsize=11)
    fig.tight_layout()
    with atomic_path(dest) as tmp:
        fig.savefig(tmp, dpi=dpi, format="png")
    plt.close(fig)
