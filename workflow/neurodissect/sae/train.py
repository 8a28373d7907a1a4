"""Training loop for any SAE variant (rule ``train_sae``): streaming batches,
decoder constraint, dead-latent bookkeeping and resampling, resumable state.

One step: normalised batch → variant loss → backward → remove the gradient
component parallel to each decoder row → Adam → renormalise decoder rows.
A latent is *dead* when it has not fired on any training row for
``dead_window`` epochs; TopK's auxiliary loss uses that mask every step, and
resampling (Bricken et al. 2023) re-initialises dead latents every
``resample_every`` epochs during the first ``resample_until`` of training
towards inputs the SAE reconstructs worst.

Everything random after initialisation is drawn from generators seeded by
(seed, epoch), and the resume state is written at epoch boundaries, so a run
resumed after a kill produces the same weights as an uninterrupted one.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import time
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..activations.store import ActivationStore
from ..config import settings_from
from ..errors import ConfigError, InputError
from ..io import PathLike, load_state_dict, remove_path, save_state_dict, write_history
from ..runtime import checkpoint_written, out_of_memory_as_error, pick_device, progress
from .base import SAEConfig, SparseAutoencoder, get_variant, variant_keys
from .metrics import evaluate_arrays
from .stream import StoreRows, epoch_rng, feature_moments

log = logging.getLogger(__name__)

RESUME_FILE = "state.pt"
PRE_BIAS_INITS = ("mean", "geometric_median")
NORMALIZATIONS = ("scalar", "standardize", "whiten", "none")


@dataclass(frozen=True)
class SAETrainParams:
    """Loop settings; the variant's own settings (λ, k, ...) live in its config class."""

    variant: str = "relu_l1"
    train_splits: tuple[str, ...] = ("train",)  # e.g. ("train", "train_aug"): one pool of rows
    lr: float = 5e-4
    batch_size: int = 256
    epochs: int = 150
    normalize: str = "scalar"  # scalar | standardize | whiten | none (true = scalar, false = none)
    normalize_eps: float = 0.1  # shrinkage of standardize / whiten, x the mean variance
    pre_bias_init: str = "mean"
    resample: bool = True
    resample_every: int = 25
    resample_until: float = 0.5
    resample_rows: int = 16384
    dead_window: float = 1.0
    monitor_split: str = "val"
    monitor_rows: int = 4096
    buffer_mb: float = 256.0
    checkpoint_seconds: float = 60.0
    amp: bool = True
    seed: int = 0

    @classmethod
    def from_config(cls, cfg: dict[str, Any]) -> SAETrainParams:
        # the sae section also holds the variants' keys (sae.base.SAEConfig): not unknown
        variant_only = variant_keys() - {f.name for f in fields(cls)}
        loop = {k: v for k, v in cfg.items() if k not in variant_only}
        choices = {"pre_bias_init": PRE_BIAS_INITS}
        params = settings_from(cls, loop, section="sae", choices=choices)
        params = replace(params, train_splits=tuple(params.train_splits))
        if isinstance(params.normalize, bool):  # the former boolean key
            params = replace(params, normalize="scalar" if params.normalize else "none")
        if params.normalize not in NORMALIZATIONS:
            raise ConfigError(f"sae.normalize: {params.normalize!r} is not one of {NORMALIZATIONS}")
        if not params.normalize_eps >= 0:
            raise ConfigError(f"sae.normalize_eps: {params.normalize_eps!r} must be >= 0")
        if not params.train_splits:
            raise ConfigError("sae.train_splits: empty; list the store splits to train on")
        return params

    def resample_due(self, epoch: int) -> bool:
        """Resample after this (0-based) epoch?"""
        done = epoch + 1
        return (
            self.resample
            and done % self.resample_every == 0
            and done <= self.resample_until * self.epochs
            and done < self.epochs
        )


@dataclass(frozen=True)
class SAESettings:
    """What train_sae reads from the ``sae`` section: the loop's settings and the chosen
    variant's own (λ, k, ...: its :class:`~.base.SAEConfig` subclass)."""

    train: SAETrainParams
    variant: SAEConfig

    @classmethod
    def from_config(cls, cfg: dict[str, Any]) -> SAESettings:
        train = SAETrainParams.from_config(cfg)
        return cls(train, get_variant(train.variant).config_class.from_dict(cfg))


# -- initialisation ------------------------------------------------------------
def geometric_median(points: np.ndarray, iters: int = 200, tol: float = 1e-7) -> np.ndarray:
    """Weiszfeld's algorithm: the point minimising the summed Euclidean distance."""
    pts = np.asarray(points, dtype=np.float64)
    y = pts.mean(0)
    for _ in range(iters):
        w = 1.0 / np.maximum(np.linalg.norm(pts - y, axis=1), 1e-12)
        y_new = (w[:, None] * pts).sum(0) / w.sum()
        if np.linalg.norm(y_new - y) <= tol * (1.0 + np.linalg.norm(y)):
            return y_new
        y = y_new
    return y


@dataclass
class InputStatistics:
    """The SAE's input normalisation x' = (x T) / scale, from the training rows."""

    mean: np.ndarray  # (d,) raw feature mean (b_pre starts there)
    scale: float
    transform: np.ndarray | None  # (d, d) T, or None (scalar normalisation)
    inverse: np.ndarray | None  # T⁻¹
    total_variance: float  # mean squared distance of a normalised row to the mean


def input_statistics(
    blocks, normalize: str | bool = "scalar", where: str = "features", eps: float = 0.1
) -> InputStatistics:
    """The normalisation of raw feature row blocks.

    - ``scalar``: one scale, so a row's mean squared distance to the mean equals the
      number of features (unit variance per feature on average);
    - ``standardize``: each feature divided by its standard deviation first;
    - ``whiten``: ZCA whitening, T = U diag(λ + ε)^-½ Uᵀ of the covariance U diag(λ) Uᵀ
      (symmetric, so features stay close to their own axes);
    - ``none``: raw features.

    ``eps`` shrinks standardize / whiten towards scalar: ε = eps x the mean variance is
    added to every variance before dividing, so near-constant features or directions
    (noise) are not blown up to unit variance. After T the scalar step still applies, so
    ``l1_coefficient`` means the same for every normalisation.
    """
    if isinstance(normalize, bool):
        normalize = "scalar" if normalize else "none"
    full = normalize == "whiten"
    n, mean, second = feature_moments(blocks, full=full)
    cov_diag = np.diag(second) if full else second
    sq_dist = float(cov_diag.sum())
    if not np.isfinite(mean).all() or not np.isfinite(second).all():
        raise InputError(f"{where}: non-finite features (NaN/inf)")
    if sq_dist <= 0:
        raise InputError(f"{where}: the {n} rows are all identical; nothing to learn")
    d = len(mean)
    shrink = eps * sq_dist / d
    transform = inverse = None
    if normalize == "standardize":
        std = np.sqrt(np.maximum(cov_diag, 0.0) + shrink)
        transform, inverse = np.diag(1.0 / std), np.diag(std)
    elif normalize == "whiten":
        lam, u = np.linalg.eigh((second + second.T) / 2)
        # eigenvalues below float64 round-off of the largest are zero: a direction the
        # features never vary in (e.g. one feature the sum of others) cannot be whitened
        lam = np.where(lam > 1e-12 * lam.max(), lam, 0.0)
        root = np.sqrt(lam + shrink)
        if not (root > 0).all():
            raise InputError(
                f"{where}: the features are linearly dependent (singular covariance), so "
                "sae.normalize: whiten needs sae.normalize_eps > 0"
            )
        transform, inverse = (u / root) @ u.T, (u * root) @ u.T
    if transform is not None:
        # variance left after T: trace(Tᵀ C T)
        cov = second if full else np.diag(second)
        sq_dist = float(((cov @ transform) * transform).sum())
    scale = math.sqrt(sq_dist / d) if normalize != "none" else 1.0
    return InputStatistics(mean, scale, transform, inverse, sq_dist / scale**2)


def prepare_model(model: SparseAutoencoder, blocks, params: SAETrainParams, source=None, where=""):
    """Set the model's normalisation and pre-bias start from the training rows; returns
    the total variance (normalised units) that turns squared error into FVU."""
    stats = input_statistics(blocks, params.normalize, where, params.normalize_eps)
    center = stats.mean
    if params.pre_bias_init == "geometric_median":
        center = geometric_median(source.sample(8192, epoch_rng(params.seed, -1)))
    model.set_input_statistics(
        torch.from_numpy(stats.mean),
        stats.scale,
        torch.from_numpy(center),
        *(None if m is None else torch.from_numpy(m) for m in (stats.transform, stats.inverse)),
    )
    return stats.total_variance


# -- resampling ----------------------------------------------------------------
@torch.no_grad()
def resample_dead_latents(
    model: SparseAutoencoder,
    optimizer: torch.optim.Optimizer,
    dead: torch.Tensor,
    inputs: np.ndarray,
    rng: np.random.Generator,
    encoder_scale: float = 0.2,
) -> int:
    """Point each dead latent at an input the SAE reconstructs badly; returns how many.

    Inputs are drawn with probability ∝ squared reconstruction error; the
    decoder row becomes the (centred, unit) input direction, the encoder
    column the same direction at ``encoder_scale`` x the mean live encoder
    norm, the encoder bias 0, and Adam's moments of those entries are reset.
    """
    ids = dead.nonzero().squeeze(1)
    if len(ids) == 0 or len(inputs) == 0:
        return 0
    x = model.normalize_input(torch.from_numpy(inputs).to(model.W_dec.device))
    pre = model.preactivations(x)
    code = model.code_from(x, pre, *model.select(pre))
    err = (model.decode_code(code) - x).pow(2).sum(1).double().cpu().numpy()
    weight = err**2
    p = weight / weight.sum() if weight.sum() > 0 else np.full(len(err), 1 / len(err))
    chosen = rng.choice(len(err), size=len(ids), p=p, replace=len(ids) > np.count_nonzero(p))
    directions = x[torch.from_numpy(chosen).to(x.device)] - model.b_pre
    directions /= directions.norm(dim=1, keepdim=True).clamp_min(1e-8)
    alive = ~dead
    enc_norm = model.W_enc[:, alive].norm(dim=0).mean() if alive.any() else torch.tensor(1.0)
    model.W_dec[ids] = directions
    model.W_enc[:, ids] = directions.t() * (encoder_scale * enc_norm)
    model.b_enc[ids] = 0.0
    for param, index in (
        (model.W_dec, (ids,)),
        (model.W_enc, (slice(None), ids)),
        (model.b_enc, (ids,)),
    ):
        for moment in optimizer.state.get(param, {}).values():
            if torch.is_tensor(moment) and moment.shape == param.shape:
                moment[index] = 0.0
    return int(len(ids))


# -- resume --------------------------------------------------------------------
class ResumeState:
    """Training state at an epoch boundary in ``directory`` (outside the rule's outputs).

    Only a state whose fingerprint (training settings + input store) matches
    is resumed; anything else is ignored and overwritten.
    """

    def __init__(self, directory: PathLike, fingerprint: str) -> None:
        self.path = Path(directory) / RESUME_FILE
        self.fingerprint = fingerprint

    def load(self) -> dict[str, Any] | None:
        if not self.path.exists():
            return None
        try:
            state = load_state_dict(self.path)
        except ValueError as exc:
            log.warning("ignoring unreadable resume state %s (%s)", self.path, exc)
            return None
        if state.get("fingerprint") != self.fingerprint:
            log.info(
                "resume state %s was made with other settings or inputs: starting fresh", self.path
            )
            return None
        return state

    def save(self, state: dict[str, Any]) -> None:
        save_state_dict({**state, "fingerprint": self.fingerprint}, self.path)
        checkpoint_written(int(state["epoch"]))

    def clear(self) -> None:
        remove_path(self.path.parent)


def fingerprint(
    params: SAETrainParams, settings: dict[str, Any], store: ActivationStore, device: str = "cpu"
) -> str:
    """What a resumed run must share with the interrupted one (the device type too: a
    CPU-written state continued on a GPU would give neither run's weights)."""
    loop = {k: v for k, v in asdict(params).items() if k not in ("checkpoint_seconds",)}
    acts = store.acts_array("train")
    ident = {
        "loop": loop,
        "variant": settings,
        "store": str(Path(store.path).resolve()),
        "shape": list(acts.shape),
        "attrs": store.attrs,
        "device": torch.device(device).type,
    }
    if params.train_splits != ("train",):  # (a train-only run keeps its former fingerprint)
        ident["rows"] = [store.n_rows(s) for s in params.train_splits]
    blob = json.dumps(ident, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()


# -- the loop ------------------------------------------------------------------
def _train_epoch(model, optimizer, batches, since_fired, dead_after) -> dict[str, float]:
    """One pass of optimisation steps; returns sums over rows of the loss terms, the
    squared error, the active-latent count and the number of rows.

    The sums stay on the device until the epoch ends (one host sync per epoch, not
    several per step); a diverged loss is therefore reported at the end of its epoch."""
    sums: dict[str, Any] = {"rows": 0.0, "nnz": 0.0}
    for batch in batches:
        x = model.normalize_input(torch.from_numpy(batch).to(since_fired.device, non_blocking=True))
        loss, stats, code = model.training_loss(x, since_fired >= dead_after)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        model.remove_parallel_gradient_()
        optimizer.step()
        model.normalize_decoder_()
        since_fired += len(x)
        since_fired[code.cols] = 0
        for key, value in stats.items():
            value = value.double()
            sums[key] = sums.get(key, 0.0) + (value if key == "sq_err" else value * len(x))
        sums["rows"] += len(x)
        sums["nnz"] += len(code.cols)
    sums = {k: float(v) for k, v in sums.items()}
    if not math.isfinite(sums.get("loss", 0.0)):
        raise InputError(
            f"SAE training diverged (loss {sums['loss']}); lower sae.lr or check the "
            "features for extreme values"
        )
    return sums


def fit(
    model: SparseAutoencoder,
    source,
    params: SAETrainParams,
    *,
    total_variance: float,
    monitor: np.ndarray | None = None,
    resume: ResumeState | None = None,
    optimizer: torch.optim.Optimizer | None = None,
) -> list[dict[str, float]]:
    """Train ``model`` in place on batches from ``source``; returns one history row per epoch.

    ``total_variance`` = mean squared distance of a (normalised) training row to
    the mean, turning the summed squared error into a training FVU. ``optimizer``
    continues an earlier run's Adam (default: a fresh one at ``params.lr``).
    """
    device = model.W_dec.device
    optimizer = optimizer or torch.optim.Adam(model.parameters(), lr=params.lr)
    since_fired = torch.zeros(model.n_latents, dtype=torch.int64, device=device)
    history: list[dict[str, float]] = []
    start = 0
    state = resume.load() if resume else None
    if state is not None:
        model.load_state_dict(state["model"]["state"])
        optimizer.load_state_dict(state["optimizer"])
        since_fired.copy_(state["since_fired"])
        history = [dict(row) for row in state["history"]]
        start = int(state["epoch"])
        log.info("resumed from %s at epoch %d of %d", resume.path, start, params.epochs)
    dead_after = max(1, round(params.dead_window * source.n_rows))
    last_save = time.monotonic()

    bar = progress(
        range(start, params.epochs),
        desc=f"train SAE ({model.variant})",
        initial=start,
        total=params.epochs,
    )
    for epoch in bar:
        t0 = time.perf_counter()
        sums = _train_epoch(model, optimizer, source.epoch(epoch), since_fired, dead_after)
        dead = since_fired >= dead_after
        n_seen = sums.pop("rows")
        row = {
            "epoch": epoch + 1,
            "samples": (epoch + 1) * source.n_rows,
            "seconds": time.perf_counter() - t0,
            "train_fvu": sums.pop("sq_err") / (n_seen * total_variance),
            "train_l0": sums.pop("nnz") / n_seen,
            "train_dead_fraction": float(dead.float().mean()),
            **{f"train_{k}": v / n_seen for k, v in sums.items()},
            "n_resampled": 0,
        }
        if params.resample_due(epoch):
            rng = epoch_rng(params.seed, epoch, stream=1)
            row["n_resampled"] = n = resample_dead_latents(
                model, optimizer, dead, source.sample(params.resample_rows, rng), rng
            )
            since_fired[dead] = 0
            log.info("epoch %d: resampled %d dead latents of %d", epoch + 1, n, model.n_latents)
        if monitor is not None and len(monitor):
            m = evaluate_arrays(model, monitor)
            row.update({f"monitor_{k}": v for k, v in m.items()})
        history.append(row)
        bar.set_postfix(fvu=f"{row['train_fvu']:.3f}", l0=f"{row['train_l0']:.1f}")
        last = epoch + 1 == params.epochs
        if resume and not last and time.monotonic() - last_save >= params.checkpoint_seconds:
            resume.save(
                {
                    "epoch": epoch + 1,
                    "model": model.to_checkpoint(),
                    "optimizer": optimizer.state_dict(),
                    "since_fired": since_fired.cpu(),
                    "history": history,
                }
            )
            last_save = time.monotonic()
    bar.close()
    return history


# -- rule entry point ----------------------------------------------------------
def train_sae(
    acts_path: PathLike,
    model_out: PathLike,
    history_out: PathLike,
    curve_out: PathLike | None,
    params: SAESettings,
    *,
    device: str = "auto",
    resume_dir: PathLike | None = None,
    dpi: int = 120,
) -> dict[str, Any]:
    """Train an SAE on ``sae.train_splits`` of ``acts_path``; write sae.pt, history CSV, curve."""
    import pandas as pd

    p = params.train
    store = ActivationStore(acts_path)
    if "train" not in store.splits or store.n_rows("train") == 0:
        raise InputError(f"{store.path}: no train rows to fit the SAE on (splits {store.splits})")
    dev = pick_device(device)
    torch.manual_seed(p.seed)
    splits = list(p.train_splits)
    source = StoreRows(store, splits, p.batch_size, seed=p.seed, buffer_mb=p.buffer_mb)
    model = get_variant(p.variant)(store.n_units, params.variant)
    blocks = (b for _, _, b in store.iter_chunks(splits))
    total_variance = prepare_model(model, blocks, p, source, f"{store.path} ({'+'.join(splits)})")
    model.to(dev).train()
    model.amp = p.amp and dev.type == "cuda"
    monitor = None
    if p.monitor_split in store.splits and store.n_rows(p.monitor_split):
        monitor = store.acts_array(p.monitor_split)[: p.monitor_rows]
    settings = asdict(model.config)
    resume = (
        ResumeState(resume_dir, fingerprint(p, settings, store, str(dev))) if resume_dir else None
    )
    log.info(
        "SAE %s: %d features -> %d latents, %d train rows (%s), normalisation scale %.4g",
        p.variant,
        store.n_units,
        model.n_latents,
        source.n_rows,
        "streamed" if source.streamed else "in memory",
        float(model.input_scale),
    )

    with out_of_memory_as_error(
        f"training the SAE ({model.n_latents} latents) at sae.batch_size={p.batch_size} on {dev}",
        "lower sae.batch_size or sae.expansion",
    ):
        history = fit(
            model, source, p, total_variance=total_variance, monitor=monitor, resume=resume
        )

    ckpt = model.to_checkpoint()
    ckpt["training"] = {k: v for k, v in asdict(p).items()}
    save_state_dict(ckpt, model_out)
    frame = pd.DataFrame(history)
    timing = write_history(frame, history_out)
    if curve_out is not None:
        from ..viz.sae import plot_training_curve

        plot_training_curve(frame, curve_out, title=f"SAE {p.variant}", dpi=dpi)
    if resume:
        resume.clear()
    final = history[-1]
    return {
        "n_latents": model.n_latents,
        "train_rows": source.n_rows,
        "train_splits": splits,
        "streamed": source.streamed,
        "n_resampled_total": int(sum(r["n_resampled"] for r in history)),
        "final_train_fvu": final["train_fvu"],
        "final_train_l0": final["train_l0"],
        "device": str(dev),
        "timing": timing,
    }
