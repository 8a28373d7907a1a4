"""Ground-truth recovery of the SAE at several settings on finished runs (not a timing
benchmark; `make bench` does not run it). docs/sae.md "Input normalisation, measured".

    PYTHONPATH=workflow python tests/benchmarks/sae_settings.py \\
        results/synthderm/resnet18-s0[,OTHER_RUN...] 'TAG={"normalize": "standardize"}' ...

Each RUN is a results/{dataset}/{model} folder with activations/penultimate.zarr (train,
train_aug, test) and ../data/concepts_gt.parquet. Every setting is the demo's SAE
(the sae section of config/config.yaml) with the given sae.* keys changed, trained by train_sae itself; it is scored
on the test split like evaluate_sae: planted_recovered_fraction, _of_encoded (logistic
probe on the train features) and mcc. One JSON line per run and setting is appended to
--out (default sae_settings.jsonl) and a summary is printed.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import yaml

from neurodissect.activations.store import ActivationStore
from neurodissect.evaluate.groundtruth import (
    auroc_matrix,
    correlation_matrix,
    matched_correlation,
    probe_auroc,
    read_planted_concepts,
)
from neurodissect.sae.base import load_sae
from neurodissect.sae.metrics import evaluate_arrays
from neurodissect.sae.train import SAESettings, train_sae

# the demo's SAE settings, read from the demo config so the table measures what it runs
DEMO_CONFIG = Path(__file__).resolve().parents[2] / "config" / "config.yaml"
BASE = yaml.safe_load(DEMO_CONFIG.read_text())["sae"]
THRESHOLD = 0.9


def encoded_concepts(store: ActivationStore, truth) -> np.ndarray:
    auc = probe_auroc(
        store.acts_array("train")[:],
        truth.aligned(store.image_ids("train"), "train"),
        store.acts_array("test")[:],
        truth.aligned(store.image_ids("test"), "test"),
    )
    return np.nan_to_num(auc) >= THRESHOLD


def score_setting(run: Path, settings: dict, encoded: np.ndarray) -> dict:
    store = ActivationStore(run / "activations" / "penultimate.zarr")
    truth = read_planted_concepts(run.parent / "data" / "concepts_gt.parquet")
    present = truth.aligned(store.image_ids("test"), "test")
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        train_sae(
            store.path,
            Path(tmp) / "sae.pt",
            Path(tmp) / "history.csv",
            None,
            SAESettings.from_config({**BASE, **settings}),
            device="cpu",
        )
        seconds = time.perf_counter() - t0
        model = load_sae(Path(tmp) / "sae.pt")
    test = store.acts_array("test")[:]
    z = model.encode(torch.from_numpy(test)).numpy()
    best = np.nanmax(np.nan_to_num(auroc_matrix(z, present), nan=0.0), axis=1)
    recovered = best >= THRESHOLD
    mcc, _ = matched_correlation(correlation_matrix(z, present))
    return {
        "run": str(run),
        "settings": settings,
        "seconds": round(seconds, 1),
        **evaluate_arrays(model, test),
        "planted_recovered_fraction": float(recovered.mean()),
        "planted_recovered_of_encoded": float(recovered[encoded].mean()),
        "mcc": mcc,
        "best_auroc": dict(zip(truth.concepts, best.round(3).tolist(), strict=True)),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", help="comma-separated results/{dataset}/{model} folders")
    ap.add_argument("settings", nargs="+", help="TAG=JSON of sae.* keys (TAG alone: BASE)")
    ap.add_argument("--out", default="sae_settings.jsonl")
    args = ap.parse_args()
    runs = [Path(r) for r in args.runs.split(",")]
    encoded = {}
    for run in runs:
        store = ActivationStore(run / "activations" / "penultimate.zarr")
        encoded[run] = encoded_concepts(
            store, read_planted_concepts(run.parent / "data" / "concepts_gt.parquet")
        )
    for spec in args.settings:
        tag, _, text = spec.partition("=")
        for run in runs:
            row = {"tag": tag, **score_setting(run, json.loads(text or "{}"), encoded[run])}
            with open(args.out, "a") as f:
                f.write(json.dumps(row) + "\n")
            print(
                tag,
                run.name,
                " ".join(
                    f"{k} {row[k]:.3f}"
                    for k in (
                        "planted_recovered_fraction",
                        "planted_recovered_of_encoded",
                        "mcc",
                        "l0",
                        "fvu",
                    )
                ),
                flush=True,
            )


if __name__ == "__main__":
    main()
