"""Stage `cav`: one concept activation vector (CAV) per named SAE latent (rule ``train_cavs``).

For latent j with train-split activations a_j: positives = the images in its top
``top_fraction`` (the ⌈qN⌉ largest activations, and only where a_j > 0, so a latent
that rarely fires gets fewer positives and a dead one none); negatives = a seeded
sample of the other train images, ``negative_ratio`` per positive. The classifier
is linear on the opaque model's features (the SAE's input layer) and the CAV is its
weight vector, unit-normed, in the raw feature space (where OMP later uses it).

Classifier: Fisher's linear discriminant with one shared, shrunk covariance,
w_k = Σ_α⁻¹ (μ_pos,k − μ_neg,k) on standardised features (Σ_α = (1 − α)·corr + α·I).
Why this rather than K logistic regressions: it is closed form and vectorised across
concepts — one C x C Cholesky factorisation shared by all K concepts and one
(K x N) @ (N x C) product for the class means, streamed over the store — so there is
no optimiser to tune or converge, and it is deterministic. Using the covariance of
all train images is not an approximation of LDA's pooled within-class covariance in
direction: for a split of the data into two groups, total = within + p(1−p)ΔμΔμᵀ,
and by Sherman–Morrison Σ_total⁻¹Δμ ∝ Σ_within⁻¹Δμ. The bias is LDA's:
−w·(μ_pos + μ_neg)/2 + log(n_pos / n_neg).

Held-out accuracy: on the ``heldout_split`` (val) with positives defined by the same
(train) activation threshold and negatives sampled at the same ratio; balanced
accuracy is recorded too (chance = 0.5 whatever the ratio).

Only names that passed the naming confidence test are used (``interpretable_only``),
unless ``include_uninterpretable``; none at all is an InputError saying so.

Outputs: ``cavs.zarr`` (group: ``cavs`` K x C float32 unit rows, ``bias`` K; attrs
latents, names, n_units, kind="cavs") and ``cav_accuracy.parquet`` (every named latent,
also those without a CAV: status ``no_positives`` / ``no_negatives``; name_score is the
naming score of concepts.parquet, which picks the representative of latents named alike
in select_concepts).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from .config import settings_from
from .errors import InputError
from .io import PathLike, atomic_path, write_parquet

log = logging.getLogger(__name__)

ACCURACY_COLUMNS = (
    "latent",
    "name",
    "name_score",
    "heldout_accuracy",
    "heldout_balanced_accuracy",
    "n_pos",
    "n_neg",
    "n_pos_heldout",
    "n_neg_heldout",
    "threshold",
    "status",
)
OK, NO_POSITIVES, NO_NEGATIVES = "ok", "no_positives", "no_negatives"


@dataclass(frozen=True)
class CAVParams:
    top_fraction: float = 0.05
    negative_ratio: float = 3.0
    shrinkage: float = 0.1
    heldout_split: str = "val"
    include_uninterpretable: bool = False
    seed: int = 0

    @classmethod
    def from_config(cls, cfg: dict[str, Any]) -> CAVParams:
        return settings_from(cls, cfg, section="cav")


@dataclass
class CAVs:
    """K unit CAVs (rows) with the bias of their classifier: decision = cav·x + bias."""

    cavs: np.ndarray  # (K, C) float32
    bias: np.ndarray  # (K,) float32
    latents: np.ndarray  # (K,) int64
    names: list[str]


# -- positives / negatives ------------------------------------------------------------
def top_thresholds(latent_acts: np.ndarray, top_fraction: float) -> np.ndarray:
    """Per column: the ⌈qN⌉-th largest value (the positive threshold; > 0 enforced later)."""
    n = len(latent_acts)
    if not n:
        return np.full(latent_acts.shape[1], np.inf)
    k = min(n, max(1, math.ceil(top_fraction * n)))
    return np.partition(latent_acts, n - k, axis=0)[n - k]


def positives(latent_acts: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """(N, K) bool: activation at or above the threshold and strictly positive."""
    return (latent_acts >= thresholds[None, :]) & (latent_acts > 0)


def sample_negatives(pos: np.ndarray, ratio: float, seed: int, latents, salt: int = 0):
    """(N, K) bool: per column, ⌈ratio·n_pos⌉ non-positive rows drawn without replacement
    with a generator seeded by (seed, latent, salt) — independent of the other latents."""
    neg = np.zeros_like(pos)
    for col, latent in enumerate(latents):
        p = pos[:, col]
        n_pos = int(p.sum())
        rest = np.flatnonzero(~p)
        n_neg = min(len(rest), math.ceil(ratio * n_pos))
        if n_pos and n_neg:
            rng = np.random.default_rng([int(seed), int(latent), int(salt)])
            neg[rng.choice(rest, size=n_neg, replace=False), col] = True
    return neg


# -- the classifier -------------------------------------------------------------------
class _Moments:
    """Streaming sums over row blocks: Σx, Σxxᵀ and the per-concept sums of pos / neg rows."""

    def __init__(self, n_features: int, n_concepts: int) -> None:
        self.n = 0
        self.s = np.zeros(n_features)
        self.ss = np.zeros((n_features, n_features))
        self.pos = np.zeros((n_concepts, n_features))
        self.neg = np.zeros((n_concepts, n_features))

    def update(self, x: np.ndarray, pos: np.ndarray, neg: np.ndarray) -> None:
        x = np.asarray(x, dtype=np.float64)
        self.n += len(x)
        self.s += x.sum(0)
        self.ss += x.T @ x
        self.pos += pos.T.astype(np.float64) @ x
        self.neg += neg.T.astype(np.float64) @ x


def lda_directions(
    moments: _Moments, n_pos: np.ndarray, n_neg: np.ndarray, shrinkage: float
) -> tuple[np.ndarray, np.ndarray]:
    """Raw-space LDA weights (K, C) and biases (K,) from streamed moments (see module doc)."""
    from scipy.linalg import cho_factor, cho_solve

    n = max(moments.n, 1)
    mean = moments.s / n
    cov = moments.ss / n - np.outer(mean, mean)
    sd = np.sqrt(np.clip(np.diag(cov), 0, None))
    sd[sd < 1e-12] = 1.0  # constant features: leave them unscaled (their Δμ is ~0)
    corr = cov / np.outer(sd, sd)
    shrunk = (1.0 - shrinkage) * corr + shrinkage * np.eye(len(sd))
    mu_pos = moments.pos / np.maximum(n_pos, 1)[:, None]
    mu_neg = moments.neg / np.maximum(n_neg, 1)[:, None]
    delta_std = (mu_pos - mu_neg) / sd  # (K, C)
    w_std = cho_solve(cho_factor(shrunk, lower=True), delta_std.T).T
    w = w_std / sd  # decision w·x is the same in raw and standardised coordinates
    with np.errstate(divide="ignore"):
        prior = np.log(np.maximum(n_pos, 1) / np.maximum(n_neg, 1))
    bias = -np.einsum("kc,kc->k", w, (mu_pos + mu_neg) / 2.0) + prior
    return w, bias


def fit_cavs(
    feature_blocks, latent_acts: np.ndarray, latents, params: CAVParams
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """CAVs from train features streamed as ``feature_blocks`` (row blocks in order) and
    the train activations ``latent_acts`` (N, K) of the named ``latents``.

    Returns (unit CAVs (K, C), bias (K,), n_pos (K,), n_neg (K,), thresholds (K,));
    rows without positives or negatives are zero with bias 0.
    """
    thresholds = top_thresholds(latent_acts, params.top_fraction)
    pos = positives(latent_acts, thresholds)
    neg = sample_negatives(pos, params.negative_ratio, params.seed, latents)
    moments = None
    start = 0
    for block in feature_blocks:
        if moments is None:
            moments = _Moments(block.shape[1], latent_acts.shape[1])
        stop = start + len(block)
        moments.update(block, pos[start:stop], neg[start:stop])
        start = stop
    if moments is None or start != len(latent_acts):
        raise ValueError(f"features have {start} rows but the latents {len(latent_acts)}")
    n_pos, n_neg = pos.sum(0), neg.sum(0)
    w, bias = lda_directions(moments, n_pos, n_neg, params.shrinkage)
    norms = np.linalg.norm(w, axis=1)
    valid = (n_pos > 0) & (n_neg > 0) & (norms > 0)
    cavs = np.zeros_like(w)
    cavs[valid] = w[valid] / norms[valid, None]
    bias = np.where(valid, bias / np.where(norms > 0, norms, 1.0), 0.0)
    return cavs, bias, n_pos, n_neg, thresholds


def heldout_scores(
    feature_blocks, latent_acts, thresholds, cavs, bias, latents, params: CAVParams
) -> dict[str, np.ndarray]:
    """Accuracy / balanced accuracy of each CAV's classifier on a held-out split."""
    pos = positives(latent_acts, thresholds)
    neg = sample_negatives(pos, params.negative_ratio, params.seed, latents, salt=1)
    tp = np.zeros(len(cavs))
    tn = np.zeros(len(cavs))
    start = 0
    for block in feature_blocks:
        stop = start + len(block)
        decide = np.asarray(block, np.float64) @ cavs.T.astype(np.float64) + bias > 0
        tp += (decide & pos[start:stop]).sum(0)
        tn += (~decide & neg[start:stop]).sum(0)
        start = stop
    n_pos, n_neg = pos.sum(0), neg.sum(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        acc = (tp + tn) / (n_pos + n_neg)
        bal = 0.5 * (tp / n_pos + tn / n_neg)
    return {"accuracy": acc, "balanced_accuracy": bal, "n_pos": n_pos, "n_neg": n_neg}


# -- store I/O ------------------------------------------------------------------------
def write_cavs(cavs: CAVs, dest: PathLike, attrs: dict[str, Any] | None = None) -> None:
    import zarr

    with atomic_path(dest) as tmp:
        g = zarr.open_group(tmp, mode="w", zarr_format=3)
        k, c = cavs.cavs.shape
        arr = g.create_array("cavs", shape=(k, c), dtype="float32", chunks=(max(k, 1), c))
        b = g.create_array("bias", shape=(k,), dtype="float32", chunks=(max(k, 1),))
        if k:
            arr[:] = cavs.cavs.astype(np.float32)
            b[:] = cavs.bias.astype(np.float32)
        g.attrs.update(
            {
                **(attrs or {}),
                "kind": "cavs",
                "n_units": int(c),
                "latents": [int(x) for x in cavs.latents],
                "names": list(cavs.names),
            }
        )


def read_cavs(path: PathLike) -> CAVs:
    import zarr

    try:
        g = zarr.open_group(path, mode="r")
        attrs = dict(g.attrs)
        cavs = np.asarray(g["cavs"][:], dtype=np.float32)
        bias = np.asarray(g["bias"][:], dtype=np.float32)
    except Exception as exc:  # zarr raises several types for a missing / foreign folder
        raise InputError(f"{path}: not a readable CAV store ({exc})") from None
    if attrs.get("kind") != "cavs" or len(attrs.get("latents", [])) != len(cavs):
        raise InputError(f"{path}: not a CAV store (attrs kind/latents do not fit the arrays)")
    return CAVs(cavs, bias, np.asarray(attrs["latents"], dtype=np.int64), list(attrs["names"]))


def _checked_store(path: PathLike, manifest, split: str):
    from .activations.store import ActivationStore
    from .data.manifest import check_same_ids

    store = ActivationStore(path)
    ids = manifest.split(split).df["image_id"]
    check_same_ids(store.image_ids(split), ids, f"{path} ({split})", manifest.path)
    return store


def _latent_columns(store, split: str, latents: np.ndarray, where: PathLike) -> np.ndarray:
    """(N, K) activations of the named ``latents``, read chunk by chunk (only K columns kept)."""
    if len(latents) and int(latents.max()) >= store.n_units:
        raise InputError(
            f"named latents up to {int(latents.max())} but {where} has {store.n_units} latents"
        )
    parts = [np.asarray(b[:, latents], dtype=np.float32) for _, _, b in store.iter_chunks(split)]
    return np.concatenate(parts) if parts else np.zeros((0, len(latents)), np.float32)


def train_cavs(
    features_path: PathLike,
    latents_path: PathLike,
    concepts_path: PathLike,
    manifest_path: PathLike,
    cavs_out: PathLike,
    accuracy_out: PathLike,
    params: CAVParams,
) -> dict[str, Any]:
    """Rule ``train_cavs``: CAVs of every interpretable named latent (see module doc)."""
    from .data.manifest import read_manifest
    from .naming.table import read_concepts
    from .runtime import progress

    manifest = read_manifest(manifest_path)
    named = read_concepts(concepts_path, interpretable_only=not params.include_uninterpretable)
    if not len(named):
        n_all = len(read_concepts(concepts_path))
        raise InputError(
            f"{concepts_path}: none of its {n_all} named latents is interpretable (all flagged "
            "by the naming confidence test), so there is no concept to build a CAV for; name "
            "more images / raise naming.n_permutations, or set cav.include_uninterpretable: "
            "true to use the flagged names anyway"
        )
    latents = named["latent"].to_numpy(dtype=np.int64)
    stores = {}
    for split in ("train", params.heldout_split):
        feats = _checked_store(features_path, manifest, split)
        lat = _checked_store(latents_path, manifest, split)
        stores[split] = (feats, _latent_columns(lat, split, latents, latents_path))

    feats, train_acts = stores["train"]
    blocks = (b for _, _, b in progress(feats.iter_chunks("train"), desc="CAV moments (train)"))
    cavs, bias, n_pos, n_neg, thresholds = fit_cavs(blocks, train_acts, latents, params)
    feats_h, held_acts = stores[params.heldout_split]
    blocks = (b for _, _, b in feats_h.iter_chunks(params.heldout_split))
    held = heldout_scores(blocks, held_acts, thresholds, cavs, bias, latents, params)

    status = np.where(n_pos == 0, NO_POSITIVES, np.where(n_neg == 0, NO_NEGATIVES, OK))
    status = np.where((status == OK) & ~np.any(cavs != 0, axis=1), NO_POSITIVES, status)
    table = pd.DataFrame(
        {
            "latent": latents,
            "name": named["name"].astype(str).to_numpy(),
            "name_score": named["score"].astype(np.float64).to_numpy(),
            "heldout_accuracy": np.where(status == OK, held["accuracy"], np.nan),
            "heldout_balanced_accuracy": np.where(status == OK, held["balanced_accuracy"], np.nan),
            "n_pos": n_pos.astype(np.int64),
            "n_neg": n_neg.astype(np.int64),
            "n_pos_heldout": held["n_pos"].astype(np.int64),
            "n_neg_heldout": held["n_neg"].astype(np.int64),
            "threshold": thresholds.astype(np.float64),
            "status": status.astype(str),
        }
    )
    ok = status == OK
    if (~ok).any():
        log.warning(
            "%d named latents get no CAV (listed in %s): %s",
            int((~ok).sum()),
            accuracy_out,
            table.loc[~ok, ["latent", "status"]].to_dict("records")[:10],
        )
    write_cavs(
        CAVs(cavs[ok], bias[ok], latents[ok], table.loc[ok, "name"].tolist()),
        cavs_out,
        attrs={"features": str(features_path), "top_fraction": params.top_fraction},
    )
    write_parquet(table, accuracy_out)
    summary = {
        "n_named": int(len(latents)),
        "n_cavs": int(ok.sum()),
        "mean_heldout_accuracy": float(np.nanmean(table["heldout_accuracy"])) if ok.any() else None,
    }
    log.info("CAVs: %s", summary)
    return summary
