"""`neurodissect compare RESULTS_DIR`: every run's metrics in one table.

Metrics files live at ``{dataset}/{model}/{stage...}/metrics.json`` (model =
``<arch>-s<seed>``) or ``{dataset}/{stage}/metrics.json`` for dataset-level
stages (e.g. clip). The long table has one row per (dataset, model, stage,
metric); the summary aggregates seeds of the same architecture into
mean ± std, so a reader sees at once how much a number moves with the seed.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pandas as pd

from ..errors import InputError
from ..io import atomic_path, write_parquet
from ..storage import to_logical

MODEL_RE = re.compile(r"^(?P<arch>[a-z0-9_]+)-s(?P<seed>[0-9]+)$")
# headline numbers drawn in the comparison figure, per stage (first present wins)
HEADLINE = {
    "opaque": ["test_balanced_accuracy", "test_mean_auroc"],
    "cbm": ["cbm_balanced_accuracy", "cbm_mean_auroc"],
    "sae": ["fvu", "planted_recovered_fraction"],
    "annotate": ["hit_rate", "top1_accuracy"],
}


def collect_metrics(results_dir: str | os.PathLike, files=None) -> pd.DataFrame:
    """Long table: dataset, model, arch, seed, stage, metric, value (numbers only).

    ``files`` restricts the table to these metrics files (default: all under the folder).
    """
    root = Path(results_dir)
    rows = []
    paths = (
        sorted(Path(f) for f in files) if files is not None else sorted(root.rglob("metrics.json"))
    )
    for path in paths:
        # the logical path: a stored run's job reads local copies under .snakemake/storage
        parts = Path(to_logical(path)).relative_to(root).parts[:-1]
        if len(parts) < 2 or any(p.startswith(".") for p in parts):
            continue
        dataset, rest = parts[0], parts[1:]
        match = MODEL_RE.match(rest[0])
        model, arch, seed = ("", "", -1)
        if match:
            model, arch, seed = rest[0], match["arch"], int(match["seed"])
            rest = rest[1:]
        stage = "/".join(rest) or "run"
        try:
            metrics = json.loads(path.read_text())
        except ValueError as exc:
            raise InputError(f"{path}: not valid JSON ({exc})") from None
        for key, value in metrics.items():
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                continue
            rows.append((dataset, model, arch, seed, stage, key, float(value)))
    return pd.DataFrame(
        rows, columns=["dataset", "model", "arch", "seed", "stage", "metric", "value"]
    )


def summarise(long: pd.DataFrame) -> pd.DataFrame:
    """mean, std (ddof=1; 0 for a single seed), n and per-seed values per (dataset, arch, stage, metric)."""
    keys = ["dataset", "arch", "stage", "metric"]
    g = long.groupby(keys, sort=True)["value"]
    out = g.agg(mean="mean", n="count").reset_index()
    out["std"] = g.std(ddof=1).fillna(0.0).to_numpy()
    seeds = (
        long.sort_values("seed")
        .groupby(keys, sort=True)["seed"]
        .agg(lambda s: ",".join(map(str, s)))
    )
    out["seeds"] = seeds.to_numpy()
    return out[[*keys, "mean", "std", "n", "seeds"]]


def to_markdown(summary: pd.DataFrame) -> str:
    """One section per stage; rows = dataset/architecture, columns = metrics, cells mean ± std (n)."""
    lines = ["# neurodissect run comparison", ""]
    for stage, part in summary.groupby("stage", sort=True):
        part = part.assign(
            cell=[
                f"{m:.4g} ± {s:.2g} (n={n})" if n > 1 else f"{m:.4g}"
                for m, s, n in zip(part["mean"], part["std"], part["n"], strict=True)
            ]
        )
        wide = part.pivot_table(
            index=["dataset", "arch"], columns="metric", values="cell", aggfunc="first"
        )
        cols = list(wide.columns)
        lines += [
            f"## {stage}",
            "",
            "| dataset | model | " + " | ".join(cols) + " |",
            "|---|---|" + "---|" * len(cols),
        ]
        for (dataset, arch), row in wide.iterrows():
            cells = ["" if pd.isna(row[c]) else row[c] for c in cols]
            lines.append(f"| {dataset} | {arch or '-'} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def write_comparison(
    results_dir: str | os.PathLike, out_parquet, out_markdown, out_long=None, files=None
) -> pd.DataFrame:
    long = collect_metrics(results_dir, files)
    if long.empty:
        raise InputError(f"{results_dir}: no metrics.json files found — run the workflow first")
    summary = summarise(long)
    write_parquet(summary, out_parquet)
    if out_long is not None:
        write_parquet(long, out_long)
    with atomic_path(out_markdown) as tmp:
        tmp.write_text(to_markdown(summary))
    return summary


def headline(summary: pd.DataFrame) -> pd.DataFrame:
    """The numbers the comparison figure draws: one headline metric per stage family."""
    picked = []
    for stage, part in summary.groupby("stage"):
        family = stage.split("/")[0]
        for metric in HEADLINE.get(family, []):
            hit = part[part["metric"] == metric]
            if len(hit):
                picked.append(hit)
                break
    return pd.concat(picked) if picked else summary.iloc[0:0]


def compare_main(args) -> int:
    root = Path(args.results_dir)
    summary = write_comparison(root, root / "comparison.parquet", root / "comparison.md")
    with pd.option_context("display.width", 160, "display.max_rows", 500):
        print(to_markdown(summary))
    print(f"\nwrote {root / 'comparison.parquet'} and {root / 'comparison.md'}")
    return 0
