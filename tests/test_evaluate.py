"""Run comparison: metrics of every run in one table, mean ± std across seeds."""

from __future__ import annotations

import json
import subprocess
import sys

import pandas as pd
import pytest

from neurodissect.errors import InputError
from neurodissect.evaluate.compare import collect_metrics, summarise, write_comparison
from neurodissect.viz.compare import plot_comparison


def write_metrics(root, rel, values):
    path = root / rel / "metrics.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(values))


@pytest.fixture
def results(tmp_path):
    for seed, acc in [(0, 0.80), (1, 0.90), (2, 0.85)]:
        write_metrics(
            tmp_path, f"derm/resnet18-s{seed}/opaque", {"test_accuracy": acc, "split": "test"}
        )
        write_metrics(tmp_path, f"derm/resnet18-s{seed}/annotate/fc", {"hit_rate": 1.0})
    write_metrics(tmp_path, "derm/densenet121-s0/opaque", {"test_accuracy": 0.7, "split": "test"})
    write_metrics(tmp_path, "derm/clip", {"recall_at_1": 0.25, "split": "test"})
    return tmp_path


def test_long_table_parses_dataset_model_seed_and_stage(results):
    long = collect_metrics(results)
    row = long[(long.model == "resnet18-s2") & (long.stage == "opaque")].iloc[0]
    assert (row.dataset, row.arch, row.seed, row.metric, row.value) == (
        "derm",
        "resnet18",
        2,
        "test_accuracy",
        0.85,
    )
    assert set(long.stage) == {"opaque", "annotate/fc", "clip"}
    assert "split" not in set(long.metric)  # non-numbers are not metrics
    clip = long[long.stage == "clip"].iloc[0]
    assert clip.model == "" and clip.seed == -1


def test_summary_is_mean_and_sample_std_over_seeds(results):
    s = summarise(collect_metrics(results)).set_index(["arch", "stage", "metric"])
    acc = s.loc[("resnet18", "opaque", "test_accuracy")]
    assert acc["mean"] == pytest.approx(0.85)
    assert acc["std"] == pytest.approx(pd.Series([0.8, 0.9, 0.85]).std(ddof=1))
    assert acc["n"] == 3 and acc["seeds"] == "0,1,2"
    single = s.loc[("densenet121", "opaque", "test_accuracy")]
    assert single["n"] == 1 and single["std"] == 0


def test_cli_writes_parquet_and_markdown(results):
    proc = subprocess.run(
        [sys.executable, "-m", "neurodissect.cli", "compare", str(results)],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    md = (results / "comparison.md").read_text()
    assert "| derm | resnet18 | 0.85 ± 0.05 (n=3) |" in md
    assert "## annotate/fc" in md and "## clip" in md
    rows = pd.read_parquet(results / "comparison.parquet")
    assert len(rows) == 4  # one per (dataset, arch, stage, metric)


def test_comparison_figure_is_a_real_png(results, tmp_path):
    summary = write_comparison(results, tmp_path / "s.parquet", tmp_path / "s.md")
    plot_comparison(summary, collect_metrics(results), tmp_path / "cmp.png")
    assert (tmp_path / "cmp.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_no_metrics_is_a_clear_error(tmp_path):
    with pytest.raises(InputError, match="no metrics.json"):
        write_comparison(tmp_path, tmp_path / "a.parquet", tmp_path / "a.md")
