"""What the demo's features and reports allow, measured on finished runs (a research
script, not a timing benchmark; `make bench` does not run it). docs/sae.md "Why the
dictionary stops at 12 of 17" and docs/verify.md "How far correlation can name".

    PYTHONPATH=workflow python tests/benchmarks/validity_ceilings.py \\
        results/synthderm/resnet18-s0[,OTHER_RUN...]

Per run (a results/{dataset}/{model} folder with activations/penultimate.zarr, sae/ and
../data/concepts_gt.parquet, ../vocab/doc_phrases.parquet):

1. Detectability. Per planted concept, held-out AUROC (test split) of: a logistic probe
   (any direction, fitted on train); the concept's own direction d_c of the additive model
   x ≈ class means + Σ_c presence_c d_c (least squares on train) read as a matched filter
   (x·d_c) and covariance-aware (x·Σ⁻¹d_c); the best raw unit; the best SAE latent; and the
   best atom of the SAE's own decoder with sparse codes inferred by FISTA at several λ (a
   sparser code than the encoder's). A concept a single latent can catch needs a matched
   filter near the probe; one detectable only through Σ⁻¹ is spread against louder class
   variance, and no sparse dictionary on these features isolates it.
2. Naming by correlation. For every SAE latent whose best-verified planted concept is
   known (sae/verification.parquet, from counterfactual renders), how often a namer that
   reads correlations picks that concept: the run's own names, the report phrase with the
   largest (marginal or ridge-partial) correlation with the latent, and the same on the
   generator's true presence labels (an oracle no real dataset has) — the ceiling of any
   correlational namer on these latents.
"""

from __future__ import annotations

import argparse
import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from neurodissect.activations.store import ActivationStore
from neurodissect.evaluate.groundtruth import auroc_matrix, probe_auroc, read_planted_concepts
from neurodissect.sae.base import load_sae
from neurodissect.verify.run import planted_concept_of, read_synonyms

FISTA_LAMBDAS = (0.3, 1.0, 3.0)
RIDGE = 100.0


def best_auroc(scores: np.ndarray, present: np.ndarray) -> np.ndarray:
    return np.nanmax(np.nan_to_num(auroc_matrix(scores, present), nan=0.0), axis=1)


def fista_codes(model, x_raw: torch.Tensor, lam: float, steps: int = 300) -> np.ndarray:
    """Non-negative lasso codes on the SAE's decoder, min ½‖x' − z W_dec‖² + λ‖z‖₁, by FISTA
    started at the encoder's code (x' = the SAE's normalised input minus b_pre)."""
    with torch.no_grad():
        x = model.normalize_input(x_raw.float()) - model.b_pre
        dec = model.W_dec
        step = 1.0 / torch.linalg.matrix_norm(dec @ dec.T, 2).item()
        z = torch.relu(x @ model.W_enc + model.b_enc)
        y, t = z.clone(), 1.0
        for _ in range(steps):
            z_next = torch.relu(y - step * ((y @ dec - x) @ dec.T + lam))
            t_next = (1 + (1 + 4 * t * t) ** 0.5) / 2
            y = z_next + (t - 1) / t_next * (z_next - z)
            z, t = z_next, t_next
    return z.numpy()


def detectability(run: Path) -> pd.DataFrame:
    store = ActivationStore(run / "activations" / "penultimate.zarr")
    truth = read_planted_concepts(run.parent / "data" / "concepts_gt.parquet")
    manifest = pd.read_parquet(run.parent / "data" / "manifest.parquet").set_index("image_id")
    x_tr, x_te = store.acts_array("train")[:], store.acts_array("test")[:]
    ids_tr, ids_te = list(store.image_ids("train")), list(store.image_ids("test"))
    p_tr, p_te = truth.aligned(ids_tr, "train"), truth.aligned(ids_te, "test")
    labels = sorted(manifest["label"].unique())
    onehot = (manifest.loc[ids_tr, "label"].to_numpy()[:, None] == labels).astype(float)
    design = np.hstack([onehot, p_tr.astype(float)])
    coef, *_ = np.linalg.lstsq(design, x_tr, rcond=None)
    directions = coef[len(labels) :]  # (K, D): each concept's additive effect
    cov = np.cov(x_tr, rowvar=False) + 1e-3 * np.eye(x_tr.shape[1])
    model = load_sae(run / "sae" / "sae.pt")
    x_te_t = torch.from_numpy(x_te)
    table = pd.DataFrame(
        {
            "probe": probe_auroc(x_tr, p_tr, x_te, p_te),
            "matched_filter": np.diag(auroc_matrix(x_te @ directions.T, p_te)),
            "covariance_aware": np.diag(
                auroc_matrix(x_te @ np.linalg.solve(cov, directions.T), p_te)
            ),
            "direction_norm": np.linalg.norm(directions, axis=1),
            "best_unit": best_auroc(x_te, p_te),
            "best_latent": best_auroc(model.encode(x_te_t).numpy(), p_te),
        },
        index=list(truth.concepts),
    )
    for lam in FISTA_LAMBDAS:
        table[f"fista_{lam:g}"] = best_auroc(fista_codes(model, x_te_t, lam), p_te)
    return table


def naming_ceiling(run: Path, ridge: float = RIDGE) -> dict[str, float]:
    data = run.parent / "data"
    gt = json.loads((data / "concepts_gt.json").read_text())
    synonyms = read_synonyms(data / "concepts_gt.json", list(gt))
    verified = pd.read_parquet(run / "sae" / "verification.parquet").set_index("unit")
    names = pd.read_parquet(run / "sae" / "concepts.parquet").set_index("latent")["name"]
    store = ActivationStore(run / "sae" / "latents.zarr")
    ids = list(store.image_ids("train"))
    z = store.acts_array("train")[:].astype(np.float64)
    z -= z.mean(0)
    phrases = pd.read_parquet(run.parent / "vocab" / "doc_phrases.parquet")
    mentions = pd.crosstab(phrases["image_id"], phrases["concept"]).reindex(index=ids, fill_value=0)
    # candidate names: phrases that name a planted concept and vary over the reports
    named = [c for c in mentions.columns if planted_concept_of(c, synonyms)]
    m = mentions[named].to_numpy().clip(0, 1).astype(np.float64)
    varies = (m.mean(0) > 0.01) & (m.mean(0) < 0.99)
    m, named = m[:, varies], [n for n, v in zip(named, varies, strict=True) if v]
    presence = read_planted_concepts(data / "concepts_gt.parquet")
    p = presence.aligned(ids, "train").astype(np.float64)
    concepts = list(presence.concepts)
    units = [
        u
        for u in verified.index
        if isinstance(verified.at[u, "best_concept"], str)
        and u in names.index
        and planted_concept_of(names[u], synonyms)
    ]
    best = verified.loc[units, "best_concept"].to_numpy()

    def agreement(picked) -> float:
        return float(np.mean(np.asarray(picked, dtype=object) == best))

    def correlations(x: np.ndarray) -> np.ndarray:
        x = x - x.mean(0)
        norms = np.linalg.norm(z[:, units], axis=0)[:, None] * np.linalg.norm(x, axis=0)[None]
        return (z[:, units].T @ x) / np.maximum(norms, 1e-12)

    def partial(x: np.ndarray) -> np.ndarray:
        x = x - x.mean(0)
        return np.linalg.solve(x.T @ x + ridge * np.eye(x.shape[1]), x.T @ z[:, units]).T

    def as_concepts(scores, labels, to_concept):
        return [to_concept(labels[i]) for i in scores.argmax(1)]

    phrase_concept = lambda n: planted_concept_of(n, synonyms)  # noqa: E731
    return {
        "n_latents": len(units),
        "run_names": agreement([planted_concept_of(names[u], synonyms) for u in units]),
        "report_max_correlation": agreement(as_concepts(correlations(m), named, phrase_concept)),
        "report_ridge": agreement(as_concepts(partial(m), named, phrase_concept)),
        "oracle_max_correlation": agreement(as_concepts(correlations(p), concepts, str)),
        "oracle_ridge": agreement(as_concepts(partial(p), concepts, str)),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", help="comma-separated results/{dataset}/{model} folders")
    args = ap.parse_args()
    warnings.filterwarnings("ignore", category=UserWarning)
    pd.set_option("display.width", 200)
    for run in (Path(r) for r in args.runs.split(",")):
        table = detectability(run)
        print(f"== {run}: held-out AUROC per planted concept (recovered = best >= 0.9)")
        print(table.round(3).to_string())
        print(
            "recovered:", {c: int((table[c] >= 0.9).sum()) for c in table if c != "direction_norm"}
        )
        print("naming agreement with the best-verified concept:", naming_ceiling(run))


if __name__ == "__main__":
    main()
