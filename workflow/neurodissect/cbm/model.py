"""The concept bottleneck model (rule ``build_cbm``).

Concept scores s(x) = OMP coefficients of the centred features x − μ over the selected
CAVs (the dictionary D, K x C; μ = train mean; :mod:`.omp`), for every image of every
split → ``scores.zarr`` (the activation-store layout, one unit per concept).

Two linear heads are fitted on the train split, each with its inverse regularisation C
chosen on the val split from ``c_grid`` (primary metric: balanced accuracy, or mean
AUROC for multi-label data; ties → the smaller C):

- ``coefficients`` — logistic regression on the standardised concept scores;
- ``reconstruction`` — on the standardised OMP reconstruction x̂ = s·D (the published
  variant).

Both are multinomial (softmax) for multi-class data and one sigmoid per label
(one-vs-rest) for multi-label data. The standardisation, and for ``reconstruction``
the dictionary, are folded into the weights, so each head is stored as concept-space
weights: logits = s(x) Wᵀ + b with W (n_classes, K). Hence the contribution of concept c
to class y is exactly w_yc · s_c(x), and the contributions plus b_y sum to the logit.
``cbm.features`` picks the head that is "the" CBM (keys W, b, C); both are kept.

``model.npz`` (no pickle): dictionary, feature_mean, latents, concepts, classes,
multilabel, n_nonzero, features, W, b, C, and per head {head}_W, {head}_b, {head}_C,
{head}_val_score; plus the selection counts n_concepts_requested / n_concepts_used.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from ..config import settings_from
from ..errors import InputError
from ..io import PathLike, atomic_path
from .omp import DEFAULT_GPU_MEMORY_MB, DEFAULT_MEMORY_MB, batched_omp, omp_backend

log = logging.getLogger(__name__)

HEADS = ("coefficients", "reconstruction")
ABSENT_LOGIT = -30.0  # bias of a class never seen in train


@dataclass(frozen=True)
class CBMParams:
    n_nonzero: int = 160
    features: str = "coefficients"
    c_grid: tuple[float, ...] = (0.001, 0.01, 0.1, 1.0, 10.0, 100.0)
    max_iter: int = 2000
    memory_mb: float = DEFAULT_MEMORY_MB
    gpu_memory_mb: float = DEFAULT_GPU_MEMORY_MB
    omp_min_pivot: float = 1e-6

    @classmethod
    def from_config(cls, cfg: dict[str, Any]) -> CBMParams:
        params = settings_from(cls, cfg, section="cbm", choices={"features": HEADS})
        return replace(params, c_grid=tuple(float(c) for c in params.c_grid))


# -- linear heads ----------------------------------------------------------------------
def predict_proba(scores: np.ndarray, W: np.ndarray, b: np.ndarray, multilabel: bool) -> np.ndarray:
    """Class probabilities from concept scores (softmax, or a sigmoid per label)."""
    logits = np.asarray(scores, np.float64) @ np.asarray(W, np.float64).T + np.asarray(b)
    if multilabel:
        return 0.5 * (1.0 + np.tanh(0.5 * logits))
    logits = logits - logits.max(axis=1, keepdims=True)
    p = np.exp(logits)
    return p / p.sum(axis=1, keepdims=True)


def _standardiser(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mean = x.mean(0)
    sd = x.std(0)
    sd[sd < 1e-12] = 1.0
    return mean, sd


def _fit_logistic(
    z: np.ndarray, y: np.ndarray, n_classes: int, multilabel: bool, c: float, max_iter: int
) -> tuple[np.ndarray, np.ndarray]:
    """(W (n_classes, F), b) on standardised ``z``."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    W = np.zeros((n_classes, z.shape[1]))
    b = np.zeros(n_classes)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        if multilabel:
            for k in range(n_classes):
                yk = y[:, k].astype(int)
                if yk.min() == yk.max():  # a label constant in train: its prevalence
                    prev = np.clip(yk.mean(), 1e-6, 1 - 1e-6)
                    b[k] = np.log(prev / (1 - prev))
                    continue
                lr = LogisticRegression(C=c, max_iter=max_iter).fit(z, yk)
                W[k], b[k] = lr.coef_[0], lr.intercept_[0]
            return W, b
        present = np.unique(y)
        if len(present) < 2:
            b[:] = ABSENT_LOGIT
            b[present] = 0.0
            return W, b
        lr = LogisticRegression(C=c, max_iter=max_iter).fit(z, y)
        cls = lr.classes_.astype(int)
        b[:] = ABSENT_LOGIT
        if len(cls) == 2:  # sklearn's binary form: one logit z → softmax over [−z/2, z/2]
            W[cls[0]], W[cls[1]] = -lr.coef_[0] / 2, lr.coef_[0] / 2
            b[cls[0]], b[cls[1]] = -lr.intercept_[0] / 2, lr.intercept_[0] / 2
        else:
            W[cls], b[cls] = lr.coef_, lr.intercept_
    return W, b


@dataclass
class LinearHead:
    W: np.ndarray  # (n_classes, F) on raw (unstandardised) inputs
    b: np.ndarray
    C: float
    val_score: float
    grid: dict[float, float]  # C → val score


def fit_head(
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_val: np.ndarray,
    y_val: np.ndarray,
    n_classes: int,
    multilabel: bool,
    c_grid=(0.01, 0.1, 1.0, 10.0),
    max_iter: int = 2000,
) -> LinearHead:
    """Logistic regression on standardised inputs, C picked on val; the standardisation
    folded into the returned weights (``x @ W.T + b`` are the logits of raw ``x``)."""
    from ..evaluate.classification import classification_metrics, primary_metric

    x_train = np.asarray(x_train, np.float64)
    mean, sd = _standardiser(x_train)
    z_train = (x_train - mean) / sd
    metric = primary_metric(multilabel)
    best: LinearHead | None = None
    grid: dict[float, float] = {}
    for c in sorted(float(c) for c in c_grid):
        Wz, bz = _fit_logistic(z_train, y_train, n_classes, multilabel, c, max_iter)
        W = Wz / sd
        b = bz - Wz @ (mean / sd)
        score = classification_metrics(y_val, predict_proba(x_val, W, b, multilabel), multilabel)[
            metric
        ]
        score = -np.inf if np.isnan(score) else float(score)
        grid[c] = score
        if best is None or score > best.val_score:
            best = LinearHead(W, b, c, score, grid)
    assert best is not None
    return best


# -- the model file --------------------------------------------------------------------
@dataclass
class ConceptModel:
    """A loaded ``model.npz``."""

    arrays: dict[str, np.ndarray]

    def __getitem__(self, key: str) -> np.ndarray:
        return self.arrays[key]

    @property
    def concepts(self) -> list[str]:
        return [str(c) for c in self.arrays["concepts"]]

    @property
    def classes(self) -> list[str]:
        return [str(c) for c in self.arrays["classes"]]

    @property
    def multilabel(self) -> bool:
        return bool(self.arrays["multilabel"])

    def head(self, name: str | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(W, b) of ``name`` (a HEADS entry) or of the configured head."""
        if name is None:
            return self.arrays["W"], self.arrays["b"]
        return self.arrays[f"{name}_W"], self.arrays[f"{name}_b"]

    def scores(self, features: np.ndarray, memory_mb: float = DEFAULT_MEMORY_MB) -> np.ndarray:
        """Concept scores of raw features (N, C)."""
        x = np.asarray(features, np.float64) - self.arrays["feature_mean"]
        min_pivot = float(self.arrays["omp_min_pivot"]) if "omp_min_pivot" in self.arrays else 0.0
        return batched_omp(
            x,
            self.arrays["dictionary"],
            int(self.arrays["n_nonzero"]),
            memory_mb=memory_mb,
            min_pivot=min_pivot,
        )

    def predict_proba(self, scores: np.ndarray, head: str | None = None) -> np.ndarray:
        W, b = self.head(head)
        return predict_proba(scores, W, b, self.multilabel)


def save_model(arrays: dict[str, Any], dest: PathLike) -> None:
    with atomic_path(dest) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, **{k: np.asarray(v) for k, v in arrays.items()})


def load_model(path: PathLike) -> ConceptModel:
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except FileNotFoundError:
        raise InputError(f"{path}: CBM model not found (run build_cbm first)") from None
    except Exception as exc:  # numpy raises several types for a corrupt / pickled file
        raise InputError(f"{path}: not a readable CBM model.npz ({exc})") from None
    need = ("dictionary", "feature_mean", "concepts", "classes", "W", "b", "n_nonzero")
    missing = [k for k in need if k not in arrays]
    if missing:
        raise InputError(f"{path}: not a CBM model.npz (missing {missing})")
    return ConceptModel(arrays)


# -- the rule --------------------------------------------------------------------------
def build_cbm(
    features_path: PathLike,
    cavs_path: PathLike,
    selected_path: PathLike,
    manifest_path: PathLike,
    scores_out: PathLike,
    model_out: PathLike,
    params: CBMParams,
    device: str = "cpu",
) -> dict[str, Any]:
    """Rule ``build_cbm`` (see module doc)."""
    import pandas as pd

    from ..activations.store import StoreWriter
    from ..cav import read_cavs
    from ..data.manifest import read_manifest
    from ..io import read_parquet_metadata
    from ..runtime import pick_device, progress
    from .selection import SELECTED_COLUMNS

    manifest = read_manifest(manifest_path)
    store = _checked_features(features_path, manifest)
    cavs = read_cavs(cavs_path)
    try:
        selected = pd.read_parquet(selected_path).sort_values("rank")
    except Exception as exc:  # pyarrow raises several types for a missing / foreign file
        raise InputError(f"{selected_path}: not a readable selection table ({exc})") from None
    missing = [c for c in SELECTED_COLUMNS if c not in selected.columns]
    if missing:
        raise InputError(f"{selected_path}: not a selected-concepts table (missing {missing})")
    row = {int(j): i for i, j in enumerate(cavs.latents)}
    unknown = [int(j) for j in selected["latent"] if int(j) not in row]
    if unknown:
        raise InputError(f"{selected_path}: latents {unknown[:10]} have no CAV in {cavs_path}")
    if cavs.cavs.shape[1] != store.n_units:
        raise InputError(
            f"{cavs_path} has CAVs of {cavs.cavs.shape[1]} features but "
            f"{features_path} has {store.n_units}"
        )
    D = cavs.cavs[[row[int(j)] for j in selected["latent"]]].astype(np.float64)
    k = len(D)
    n_nonzero = min(int(params.n_nonzero), k)
    if n_nonzero < params.n_nonzero:
        log.info(
            "cbm.n_nonzero = %d > %d concepts: every image uses at most %d",
            params.n_nonzero,
            k,
            n_nonzero,
        )
    dev = str(pick_device(device))  # cpu → the compiled OMP, cuda → the torch one

    # feature mean of the train split (streamed)
    total, count = np.zeros(store.n_units), 0
    for _, _, block in store.iter_chunks("train"):
        total += np.asarray(block, np.float64).sum(0)
        count += len(block)
    mean = total / max(count, 1)

    names = selected["name"].astype(str).tolist()
    kept: dict[str, np.ndarray] = {}
    attrs = {
        "kind": "cbm_scores",
        "concepts": names,
        "latents": [int(j) for j in selected["latent"]],
        "n_nonzero": n_nonzero,
    }
    with StoreWriter(scores_out, n_units=k, attrs=attrs) as writer:
        for split in store.splits:
            writer.begin_split(split, store.image_ids(split))
            parts = []
            for _, _, block in progress(store.iter_chunks(split), desc=f"OMP scores ({split})"):
                s = batched_omp(
                    np.asarray(block, np.float64) - mean,
                    D,
                    n_nonzero,
                    memory_mb=params.memory_mb,
                    device=dev,
                    gpu_memory_mb=params.gpu_memory_mb,
                    min_pivot=params.omp_min_pivot,
                )
                writer.append(split, s.astype(np.float32))
                if split in ("train", "val"):
                    parts.append(s)
            if split in ("train", "val"):
                kept[split] = np.concatenate(parts) if parts else np.zeros((0, k))
    for split in ("train", "val"):
        if split not in kept or not len(kept[split]):
            raise InputError(
                f"{features_path}: the {split} split is empty or missing; "
                "the CBM needs train (fit) and val (choose C)"
            )

    labels = {s: manifest.split(s).labels() for s in ("train", "val")}
    n_classes = len(manifest.classes)
    arrays: dict[str, Any] = {
        "dictionary": D.astype(np.float32),
        "feature_mean": mean,
        "latents": selected["latent"].to_numpy(np.int64),
        "concepts": np.asarray(names, dtype=str),
        "classes": np.asarray(manifest.classes, dtype=str),
        "multilabel": manifest.multilabel,
        "n_nonzero": n_nonzero,
        "omp_min_pivot": params.omp_min_pivot,
        "features": params.features,
        "c_grid": np.asarray(params.c_grid),
    }
    meta = read_parquet_metadata(selected_path)
    for key in ("n_concepts_requested", "n_concepts_used"):
        arrays[key] = int(meta.get(key, k))
    summary: dict[str, Any] = {
        "n_concepts": k,
        "n_nonzero": n_nonzero,
        "device": dev,
        "omp_backend": omp_backend("auto", dev),
    }
    for head in HEADS:

        def inputs(split, head=head):
            return kept[split] if head == "coefficients" else kept[split] @ D

        fit = fit_head(
            inputs("train"),
            labels["train"],
            inputs("val"),
            labels["val"],
            n_classes,
            manifest.multilabel,
            params.c_grid,
            params.max_iter,
        )
        W = fit.W if head == "coefficients" else fit.W @ D.T  # fold x̂ = s·D into concept space
        arrays.update(
            {
                f"{head}_W": W,
                f"{head}_b": fit.b,
                f"{head}_C": fit.C,
                f"{head}_val_score": fit.val_score,
            }
        )
        summary[f"{head}_C"] = fit.C
        summary[f"{head}_val_score"] = fit.val_score
        log.info("%s head: val scores by C %s → C = %g", head, fit.grid, fit.C)
    arrays.update(
        W=arrays[f"{params.features}_W"],
        b=arrays[f"{params.features}_b"],
        C=arrays[f"{params.features}_C"],
    )
    save_model(arrays, model_out)
    return summary


def _checked_features(features_path: PathLike, manifest):
    """The feature store, its every split's image ids equal to the manifest's."""
    from ..activations.store import ActivationStore
    from ..data.manifest import check_same_ids

    store = ActivationStore(features_path)
    for split in store.splits:
        ids = manifest.split(split).df["image_id"]
        check_same_ids(store.image_ids(split), ids, f"{features_path} ({split})", manifest.path)
    missing = [
        s for s in ("train", "val", "test") if s not in store.splits and len(manifest.split(s))
    ]
    if missing:
        raise InputError(f"{features_path} lacks splits {missing} of {manifest.path}")
    return store
