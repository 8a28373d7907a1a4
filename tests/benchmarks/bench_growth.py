"""Benchmark: cost growth with the number of images N (2k, 8k, 32k synthetic images).

For each N: random 64 px PNGs and a resnet18 (random weights), then, each stage in a
fresh process so its peak RSS (VmHWM) is its own:
  extract   extract_activations (penultimate + layer4 pooled) over all splits
  exemplars select_exemplars on the penultimate store (annotate.memory_mb budget)
  matching  MAMMI matching of those exemplar sets against a 2,000-concept vocabulary
            (image embeddings: random unit vectors, one per image, D = 512)
  sae       train_sae (the default config's sae section, SAE_EPOCHS epochs) on the store
Recorded per stage and N: seconds per 1,000 images and peak RSS. Targets: at the largest
N, s/1k images within 1.2x of the smallest N for every stage, and peak RSS within 1.2x.

Records: results/bench/growth.json (+ results/bench/growth.csv for the plot:
tests/benchmarks/plot_growth.py writes results/bench/growth.png).
Run: .venv/bin/python tests/benchmarks/bench_growth.py [--quick]   (quick: N = 500..2,000)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import record  # noqa: E402

os.environ.setdefault("TQDM_DISABLE", "1")

SIZES = [2000, 8000, 32000] if not record.quick() else [500, 1000, 2000]
STAGES = ("extract", "exemplars", "matching", "sae")
IMAGE_SIZE, N_CONCEPTS, DIM, SAE_EPOCHS, MEMORY_MB = 64, 2000, 512, 2, 256
TARGET = 1.2

_CHILD = r"""
import json, sys, time
sys.path.insert(0, {here!r})
import bench_growth as g

def hwm_mb():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024

g.import_stage({stage!r})
base = hwm_mb()
t = time.perf_counter()
g.run_stage({stage!r}, {tmp!r})
print(json.dumps({{"seconds": time.perf_counter() - t, "peak_mb": hwm_mb(), "base_mb": base}}))
"""


def import_stage(stage: str) -> None:
    """Import the stage's libraries before the baseline RSS is read."""
    import torch  # noqa: F401

    import neurodissect.activations.extract  # noqa: F401
    import neurodissect.annotate.exemplars  # noqa: F401
    import neurodissect.annotate.matching  # noqa: F401
    import neurodissect.sae.train  # noqa: F401


def run_stage(stage: str, tmp: str) -> None:
    import numpy as np
    import torch

    torch.set_num_threads(2)
    tmp = Path(tmp)
    acts = tmp / "penultimate.zarr"
    if stage == "extract":
        from neurodissect.activations.extract import ExtractParams, extract_activations

        params = ExtractParams(image_size=IMAGE_SIZE, batch_size=128)
        extract_activations(
            tmp / "data" / "manifest.parquet",
            tmp / "model.pt",
            {"penultimate": acts, "layer4": tmp / "layer4.zarr"},
            arch="resnet18",
            model_name="growth-s0",
            params=params,
        )
    elif stage == "exemplars":
        from neurodissect.annotate.exemplars import ExemplarParams, select_exemplars

        select_exemplars(
            acts, tmp / "exemplars.parquet", ExemplarParams(probe_split="all", memory_mb=MEMORY_MB)
        )
    elif stage == "matching":
        from neurodissect.activations.store import ActivationStore
        from neurodissect.annotate import confidence as conf
        from neurodissect.annotate.exemplars import read_exemplars
        from neurodissect.annotate.matching import mammi_scorer, match_units

        store = ActivationStore(acts)
        ids = store.image_ids(store.resolve_splits("all"))
        rng = np.random.default_rng(0)

        def unit_rows(n):
            x = rng.normal(size=(n, DIM)).astype(np.float32)
            return x / np.linalg.norm(x, axis=1, keepdims=True)

        image_emb, text_emb, template = unit_rows(len(ids)), unit_rows(N_CONCEPTS), unit_rows(1)[0]
        df, _ = read_exemplars(tmp / "exemplars.parquet")
        row_of = {i: r for r, i in enumerate(ids)}
        sets = [np.array([row_of[i] for i in g.image_id]) for _, g in df.groupby("unit")]
        match_units(
            mammi_scorer(image_emb, text_emb, template),
            conf.pad_sets(sets),
            conf.AlphaCut(95.0),
            memory_mb=MEMORY_MB,
        )
    elif stage == "sae":
        from dataclasses import fields

        from neurodissect.config import load_yaml, validate
        from neurodissect.sae.base import variant_keys
        from neurodissect.sae.train import SAESettings, SAETrainParams, train_sae

        conf_dir = record.ROOT / "config"
        cfg = validate(load_yaml(conf_dir / "config.yaml"), conf_dir / "schema.yaml")
        # the demo's SAE on the store's train split (the bench extracts no augmented views)
        # (the keys train_sae reads: not the layer nor those only evaluation reads)
        params = {**cfg["sae"], "epochs": SAE_EPOCHS, "train_splits": ["train"]}
        keys = {f.name for f in fields(SAETrainParams)} | variant_keys()
        params = SAESettings.from_config({k: v for k, v in params.items() if k in keys})
        train_sae(acts, tmp / "sae.pt", tmp / "history.csv", None, params, device="cpu")
    else:
        raise ValueError(stage)


def measure(stage: str, tmp: Path) -> dict:
    code = _CHILD.format(here=str(Path(__file__).resolve().parent), stage=stage, tmp=str(tmp))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if proc.returncode:
        raise RuntimeError(f"stage {stage} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> int:
    import torch
    from bench_activations import write_images

    from neurodissect.io import save_state_dict
    from neurodissect.opaque import build_model

    rows = []
    for n in SIZES:
        with tempfile.TemporaryDirectory(prefix=f"bench_growth_{n}_") as d:
            tmp = Path(d)
            write_images(tmp / "data", n, IMAGE_SIZE)
            torch.manual_seed(0)
            save_state_dict(build_model("resnet18", 7).state_dict(), tmp / "model.pt")
            for stage in STAGES:
                m = measure(stage, tmp)
                rows.append({"n": n, "stage": stage, **m, "s_per_1k": 1000 * m["seconds"] / n})
                print(
                    f"  N={n} {stage}: {m['seconds']:.1f} s, {rows[-1]['s_per_1k']:.2f} s/1k "
                    f"images, peak RSS {m['peak_mb']:.0f} MB",
                    flush=True,
                )
    import pandas as pd

    table = pd.DataFrame(rows)
    record.OUT_DIR.mkdir(parents=True, exist_ok=True)
    table.to_csv(record.OUT_DIR / "growth.csv", index=False)
    lo, hi = min(SIZES), max(SIZES)
    records = []
    for stage in STAGES:
        a = table[(table.stage == stage) & (table.n == lo)].iloc[0]
        b = table[(table.stage == stage) & (table.n == hi)].iloc[0]
        per_n = {
            f"s_per_1k_n{int(r.n)}": r.s_per_1k for r in table[table.stage == stage].itertuples()
        }
        rss_n = {
            f"peak_mb_n{int(r.n)}": r.peak_mb for r in table[table.stage == stage].itertuples()
        }
        fields = {
            "stage": stage,
            "sizes": SIZES,
            "threads_ours": 2,
            "repeats": 1,
            **per_n,
            **rss_n,
            "dtype": "float32",
        }
        records.append(
            record.check_ratio(
                f"growth {stage}: s/1k images at N={hi} / N={lo}",
                b.s_per_1k / a.s_per_1k,
                TARGET,
                "<=",
                **fields,
            )
        )
        records.append(
            record.check_ratio(
                f"growth {stage}: peak RSS at N={hi} / N={lo}",
                b.peak_mb / a.peak_mb,
                TARGET,
                "<=",
                **fields,
            )
        )
    record.write("growth", records)
    return record.exit_code(records)


if __name__ == "__main__":
    sys.exit(main())
