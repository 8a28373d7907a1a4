"""Dictionary baselines (rule ``sae_baselines``): is the SAE better than what a
user gets without one?

On the same features, each method is fitted on the train split and scored on
``eval_split`` with the SAE's own metrics: FVU, L0 (non-zero codes per row),
planted_recovered_fraction (a component reaching AUROC ≥ recovery_auroc for
the concept) and mcc (Hungarian matching on |Pearson correlation|).

- ``identity`` — the raw units themselves (no dictionary; FVU 0);
- ``pca``, ``ica`` (FastICA), ``nmf`` — scikit-learn, seeded, with as many
  components as the SAE has live latents, capped at the feature dimension
  (PCA / ICA cannot have more; NMF is capped too so its cost stays bounded).

A PCA or ICA component's sign is arbitrary, so a concept counts as recovered
by the component or by its negation; NMF codes and identity are used as they
are (their sign means something). The SAE's own row is computed here by the
same code from its checkpoint and latents (equal to its metrics.json), so the
table compares like with like, and renaming latents does not refit the baselines.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from ..activations.store import ActivationStore
from ..config import settings_from
from ..errors import ConfigError, InputError
from ..evaluate.groundtruth import (
    auroc_matrix,
    correlation_matrix,
    matched_correlation,
    read_planted_concepts,
)
from ..io import PathLike, write_parquet
from .metrics import evaluate_arrays, fvu

log = logging.getLogger(__name__)

METHODS = ("identity", "pca", "ica", "nmf")
COLUMNS = ("method", "n_components", "planted_recovered_fraction", "mcc", "fvu", "l0")
TRAIN_SPLIT = "train"


@dataclass(frozen=True)
class BaselineParams:
    baselines: tuple[str, ...] = METHODS
    baseline_max_iter: int = 200
    eval_split: str = "test"
    recovery_auroc: float = 0.9
    seed: int = 0

    @classmethod
    def from_config(cls, cfg: dict[str, Any]) -> BaselineParams:
        params = settings_from(cls, cfg, section="sae")
        unknown = [m for m in params.baselines if m not in METHODS]
        if unknown:
            raise ConfigError(f"sae.baselines: unknown methods {unknown}; known: {list(METHODS)}")
        return params


def fit_codes(
    method: str,
    train: np.ndarray,
    test: np.ndarray,
    n_components: int,
    seed: int = 0,
    max_iter: int = 200,
) -> tuple[np.ndarray, np.ndarray, bool]:
    """(codes of ``test``, their reconstruction, whether code signs are arbitrary)."""
    train = np.asarray(train, np.float64)
    test = np.asarray(test, np.float64)
    if method == "identity":
        return test, test, False
    from sklearn.decomposition import NMF, PCA, FastICA

    if method == "pca":
        model = PCA(n_components, random_state=seed).fit(train)
        codes = model.transform(test)
        return codes, model.inverse_transform(codes), True
    if method == "ica":
        model = FastICA(
            n_components, random_state=seed, max_iter=max_iter, whiten="unit-variance"
        ).fit(train)
        codes = model.transform(test)
        return codes, model.inverse_transform(codes), True
    if method == "nmf":
        shift = min(0.0, float(train.min()))  # NMF needs non-negative data
        model = NMF(n_components, init="nndsvda", random_state=seed, max_iter=max_iter)
        model.fit(train - shift)
        codes = model.transform(np.clip(test - shift, 0, None))
        return codes, codes @ model.components_ + shift, False
    raise ConfigError(f"sae.baselines: unknown method {method!r}")


def dictionary_scores(
    codes: np.ndarray, present: np.ndarray | None, signed: bool, threshold: float = 0.9
) -> dict[str, float | None]:
    """planted_recovered_fraction and mcc of codes (N, U) against presence (N, K)."""
    if present is None or present.shape[1] == 0:
        return {"planted_recovered_fraction": None, "mcc": None}
    scores = np.hstack([codes, -codes]) if signed else codes
    auc = auroc_matrix(scores, present)
    evaluable = ~np.isnan(auc).all(1)
    best = np.nanmax(np.where(evaluable[:, None], auc, 0.0), axis=1)
    recovered = float((best[evaluable] >= threshold).mean()) if evaluable.any() else None
    mcc, _ = matched_correlation(correlation_matrix(codes, present))
    return {"planted_recovered_fraction": recovered, "mcc": mcc}


def baseline_rows(train, test, present, n_components: int, p: BaselineParams) -> list[dict]:
    """One row per method in ``p.baselines`` (pure: arrays in, rows out)."""
    rows = []
    d = train.shape[1]
    for method in p.baselines:
        # centring leaves rank ≤ rows − 1: more components would be degenerate directions
        n = d if method == "identity" else max(1, min(n_components, d, len(train) - 1))
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            codes, recon, signed = fit_codes(method, train, test, n, p.seed, p.baseline_max_iter)
        for w in caught:
            log.warning("%s: %s", method, w.message)
        row = {
            "method": method,
            "n_components": n,
            "fvu": fvu(test, recon),
            "l0": float((np.abs(codes) > 1e-12).sum(1).mean()),
        }
        row.update(dictionary_scores(codes, present, signed, p.recovery_auroc))
        rows.append(row)
    return rows


def sae_row(model, latents: np.ndarray, test: np.ndarray, present, p: BaselineParams) -> dict:
    """The SAE scored exactly like a baseline; its live latents set the baselines' size."""
    live = int((latents > 0).any(0).sum())
    held_out = evaluate_arrays(model, test)
    row = {"method": "sae", "n_components": live, "fvu": held_out["fvu"], "l0": held_out["l0"]}
    row.update(dictionary_scores(latents, present, False, p.recovery_auroc))
    return row


def sae_baselines(
    acts_path: PathLike,
    model_path: PathLike,
    latents_path: PathLike,
    table_out: PathLike,
    params: BaselineParams,
    *,
    gt_table: PathLike | None = None,
    figure_out: PathLike | None = None,
    dpi: int = 120,
) -> pd.DataFrame:
    """Fit every baseline, add the SAE's row, write baselines.parquet (+ a figure)."""
    acts = ActivationStore(acts_path)
    for split in (TRAIN_SPLIT, params.eval_split):
        if split not in acts.splits or acts.n_rows(split) == 0:
            raise InputError(f"{acts_path}: no {split} rows (splits {acts.splits})")
    from .base import load_sae

    latents = ActivationStore(latents_path)
    ids = acts.image_ids(params.eval_split)
    if list(latents.image_ids(params.eval_split)) != list(ids):
        raise InputError(f"{latents_path} and {acts_path} list other images in {params.eval_split}")
    test = acts.acts_array(params.eval_split)[:]
    present = None
    truth = read_planted_concepts(gt_table) if gt_table is not None else None
    if truth is not None and truth.concepts:
        present = truth.aligned(ids, f"{acts_path} ({params.eval_split})")
    sae = sae_row(
        load_sae(model_path), latents.acts_array(params.eval_split)[:], test, present, params
    )
    rows = [
        sae,
        *baseline_rows(
            acts.acts_array(TRAIN_SPLIT)[:], test, present, max(1, sae["n_components"]), params
        ),
    ]
    table = pd.DataFrame(rows, columns=list(COLUMNS))
    for col in COLUMNS[2:]:
        table[col] = table[col].astype("float64")
    write_parquet(table, table_out)
    if figure_out is not None:
        from ..viz.sae import plot_baselines

        plot_baselines(table, figure_out, dpi=dpi)
    log.info("dictionary baselines:\n%s", table.to_string(index=False))
    return table
