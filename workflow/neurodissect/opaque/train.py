"""train_opaque: fit (or load) the target classifier of one (dataset, model).

Multi-class data: softmax + cross-entropy; multi-label data: one sigmoid per
class + binary cross-entropy (chosen from the manifest's task). AdamW with a
cosine learning-rate decay per step, optional class-balanced sampling,
modality-specific augmentation; the epoch with the best val balanced
accuracy (multi-label: mean AUROC; ties → lower val loss) is kept. CUDA +
mixed precision when available, CPU otherwise.

With ``opaque.train: false`` the weights file is the final model: its head is
kept if it fits the classes, else re-fitted as a linear probe (:mod:`.probe`).
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.utils.data import DataLoader, RandomSampler, WeightedRandomSampler

from .. import runtime
from ..config import settings_from
from ..data.manifest import SPLITS, Manifest, read_manifest
from ..errors import ConfigError, InputError
from ..evaluate.classification import classification_metrics, primary_metric
from ..io import PathLike, remove_path, save_state_dict, write_history, write_json
from ..provenance import recorded_digest
from ..runtime import pick_device, progress, seed_everything
from ..viz.opaque import plot_learning_curve
from . import build_model_with_report
from .data import ImageCache, ManifestImages, eval_transform, preprocess_record, train_transform
from .probe import fit_head, penultimate_features, refit_head
from .resume import fingerprint, load_resume, restore_training, save_resume, training_state

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class OpaqueTrainParams:
    """The ``opaque`` config section plus the ``runtime`` keys training uses."""

    train: bool = True
    weights: str = "none"
    image_size: int = 64
    epochs: int = 12
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 1e-4
    balanced_sampling: bool = False
    augment: bool = True
    amp: bool = True
    probe_cs: list[float] = field(default_factory=lambda: [0.01, 0.1, 1.0, 10.0])
    device: str = "auto"
    num_workers: int = 0

    @classmethod
    def from_config(cls, opaque: dict, runtime: dict | None = None) -> OpaqueTrainParams:
        return settings_from(cls, runtime, opaque, section="opaque")


def _loader(dataset, batch_size: int, num_workers: int, device, sampler=None, generator=None):
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        shuffle=False,
        num_workers=num_workers,
        generator=generator,
        worker_init_fn=_seed_worker,
        drop_last=sampler is not None and len(dataset) > batch_size,  # no size-1 BatchNorm batch
        pin_memory=device.type == "cuda",
    )


def _seed_worker(_worker_id: int) -> None:
    # DataLoader seeds torch in each worker from the loader's generator; numpy/random follow it
    seed_everything(torch.initial_seed() % 2**32)


def balanced_sampler(labels: np.ndarray, multilabel: bool, generator) -> WeightedRandomSampler:
    """Draw rows with weight 1/frequency of their class (multi-label: of their rarest positive
    label; rows with no positive label count as one more class)."""
    if multilabel:
        onehot = np.concatenate([labels, (labels.sum(axis=1) == 0)[:, None]], axis=1)
    else:
        onehot = np.eye(int(labels.max()) + 1)[labels]
    inv = 1.0 / np.maximum(onehot.sum(axis=0), 1)
    weights = (onehot * inv).max(axis=1)
    return WeightedRandomSampler(torch.as_tensor(weights), len(labels), generator=generator)


def _loss_fn(multilabel: bool) -> nn.Module:
    return nn.BCEWithLogitsLoss() if multilabel else nn.CrossEntropyLoss()


def _autocast(device, amp: bool):
    return runtime.autocast(device, amp)


@torch.inference_mode()
def predict(model: nn.Module, loader, device, multilabel: bool, amp: bool = False, desc="predict"):
    """(probabilities (N, K) float64, mean loss) over ``loader`` in order."""
    model.eval()
    loss_fn, logits, total = _loss_fn(multilabel), [], 0.0
    for x, y in progress(loader, desc=desc, leave=False):
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        with _autocast(device, amp):
            out = model(x)
        total += float(loss_fn(out.float(), y)) * len(x)
        logits.append(out.float().cpu())
    z = torch.cat(logits).double()
    scores = torch.sigmoid(z) if multilabel else torch.softmax(z, dim=1)
    return scores.numpy(), total / max(len(z), 1)


def _rank(metrics: dict, key: str, val_loss: float) -> tuple[float, float]:
    """Higher is better: the val metric (rounded, so float noise is a tie), then lower val loss."""
    score = metrics[key]
    return (-math.inf if math.isnan(score) else round(score, 9), -val_loss)


def _cpu_copy(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}


@dataclass
class FitResult:
    best_state: dict[str, torch.Tensor]
    best_epoch: int
    history: list[dict[str, float]]
    resumed_from_epoch: int


def fit(
    model: nn.Module,
    train_ds,
    val_ds,
    *,
    params: OpaqueTrainParams,
    seed: int,
    device,
    multilabel: bool,
    resume_path: PathLike,
    job_fingerprint: str,
) -> FitResult:
    """Train for ``params.epochs``, checkpointing every epoch to ``resume_path``; resume from it."""
    generator = torch.Generator().manual_seed(seed)
    labels = train_ds.labels.numpy()
    sampler = (
        balanced_sampler(labels, multilabel, generator)
        if params.balanced_sampling
        else RandomSampler(train_ds, generator=generator)
    )
    train_loader = _loader(
        train_ds, params.batch_size, params.num_workers, device, sampler, generator
    )
    val_loader = _loader(val_ds, params.batch_size, params.num_workers, device)
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=params.lr, weight_decay=params.weight_decay
    )
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(
        optimizer, T_max=max(1, params.epochs * len(train_loader))
    )
    scaler = runtime.grad_scaler(device, params.amp)
    loss_fn, key = _loss_fn(multilabel), primary_metric(multilabel)
    start, history, best_state, best_epoch, best_rank = 0, [], None, 0, None

    saved = load_resume(resume_path, job_fingerprint)
    if saved is not None:
        start, history = restore_training(
            saved, generator, model=model, optimizer=optimizer, scheduler=scheduler, scaler=scaler
        )
        best_state, best_epoch = saved["best_state"], int(saved["best_epoch"])
        best_rank = tuple(saved["best_rank"])
        log.info("resuming from the checkpoint after epoch %d (%s)", start, resume_path)

    for epoch in range(start, params.epochs):
        model.train()
        # the loss sum stays on the device: one host sync per epoch, not per step
        t0, seen = time.perf_counter(), 0
        total = torch.zeros((), dtype=torch.float64, device=device)
        for x, y in progress(train_loader, desc=f"epoch {epoch + 1}/{params.epochs}", leave=False):
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            optimizer.zero_grad(set_to_none=True)
            with _autocast(device, params.amp):
                loss = loss_fn(model(x).float(), y)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
            total += loss.detach().double() * len(x)
            seen += len(x)
        scores, val_loss = predict(model, val_loader, device, multilabel, params.amp, "val")
        val = classification_metrics(val_ds.labels.numpy(), scores, multilabel)
        row = {
            "epoch": epoch + 1,
            "train_loss": float(total) / max(seen, 1),
            "val_loss": val_loss,
            **{f"val_{k}": v for k, v in val.items()},
            "lr": optimizer.param_groups[0]["lr"],
            "seconds": time.perf_counter() - t0,
        }
        history.append(row)
        rank = _rank(val, key, val_loss)
        if best_rank is None or rank > best_rank:
            best_state, best_epoch, best_rank = _cpu_copy(model), epoch + 1, rank
        log.info(
            "epoch %d/%d: train loss %.4f, val loss %.4f, val %s %.4f%s",
            epoch + 1,
            params.epochs,
            row["train_loss"],
            val_loss,
            key,
            val[key],
            " (best)" if best_epoch == epoch + 1 else "",
        )
        state = training_state(
            job_fingerprint,
            epoch + 1,
            generator,
            history,
            model=model,
            optimizer=optimizer,
            scheduler=scheduler,
            scaler=scaler,
        )
        state.update(best_state=best_state, best_epoch=best_epoch, best_rank=list(best_rank))
        save_resume(resume_path, state)
    return FitResult(best_state, best_epoch, history, start)


def _split_datasets(manifest: Manifest, params: OpaqueTrainParams, modality: str) -> dict[str, Any]:
    # workers would each fill (and, not being persistent, drop) their own copy
    cache = ImageCache(params.image_size) if params.num_workers == 0 else None
    evalt = eval_transform(params.image_size)
    out = {s: ManifestImages(manifest.split(s), evalt, cache) for s in SPLITS}
    augment = train_transform(modality, params.image_size, params.augment)
    out["train_augmented"] = ManifestImages(manifest.split("train"), augment, cache)
    return out


def _check_splits(manifest: Manifest, path: PathLike) -> None:
    sizes = {s: int((manifest.df["split"] == s).sum()) for s in SPLITS}
    empty = [s for s in ("train", "val") if sizes[s] < 2]
    if empty:
        raise InputError(f"{path}: splits {empty} need at least 2 images to train (have {sizes})")


def _probe_head(model, arch, data, manifest, params, device) -> dict[str, Any]:
    loaders = {
        s: _loader(data[s], params.batch_size, params.num_workers, device) for s in ("train", "val")
    }
    feats = {s: penultimate_features(model, arch, loaders[s], device) for s in loaders}
    labels = {s: data[s].labels.numpy() for s in loaders}
    W, b, grid = fit_head(
        feats["train"],
        labels["train"],
        feats["val"],
        labels["val"],
        len(manifest.classes),
        manifest.multilabel,
        list(params.probe_cs),
    )
    refit_head(model, arch, W, b)
    return {"probe_grid": grid}


def evaluate_splits(
    model, data, manifest: Manifest, params: OpaqueTrainParams, device
) -> dict[str, float]:
    """Flat ``{split}_{metric}`` for every non-empty split, scored with the eval transform."""
    out: dict[str, float] = {}
    for split in SPLITS:
        if not len(data[split]):
            log.warning("split %s is empty: no %s metrics", split, split)
            continue
        loader = _loader(data[split], params.batch_size, params.num_workers, device)
        scores, _ = predict(model, loader, device, manifest.multilabel, params.amp, split)
        metrics = classification_metrics(data[split].labels.numpy(), scores, manifest.multilabel)
        out.update({f"{split}_{k}": v for k, v in metrics.items()})
    return out


def history_frame(history: list[dict], multilabel: bool) -> pd.DataFrame:
    metrics = ["accuracy", "balanced_accuracy", "macro_f1"] + (["mean_auroc"] if multilabel else [])
    columns = ["epoch", "train_loss", "val_loss", *[f"val_{m}" for m in metrics], "lr", "seconds"]
    return pd.DataFrame(history, columns=columns)


def train_opaque(
    manifest_path: PathLike,
    model_out: PathLike,
    metrics_out: PathLike,
    history_out: PathLike,
    curve_out: PathLike | None,
    *,
    arch: str,
    seed: int,
    params: OpaqueTrainParams,
    resume_dir: PathLike | None = None,
    threads: int | None = None,
    dpi: int = 120,
    title: str = "",
) -> dict[str, Any]:
    """Rule entry point: writes model.pt, metrics.json, history.csv and the learning curve.

    ``resume_dir`` (default: ``.resume`` beside ``model_out``) holds the per-epoch
    checkpoint; keep it out of the rule's declared outputs. Returns what goes into
    the outputs' provenance (head origin, load report, preprocessing, resume point, device).
    """
    if threads:
        torch.set_num_threads(int(threads))
    manifest = read_manifest(manifest_path)
    _check_splits(manifest, manifest_path)
    if not params.train and params.weights == "none":
        raise ConfigError("opaque.train is false but opaque.weights is 'none': nothing to load")
    device = pick_device(params.device)
    seed_everything(seed)
    model, report = build_model_with_report(
        arch, len(manifest.classes), weights=params.weights, image_size=params.image_size
    )
    model.to(device)
    data = _split_datasets(manifest, params, manifest.meta.get("modality", "other"))
    summary: dict[str, Any] = {
        "arch": arch,
        "device": str(device),
        "preprocess": preprocess_record(params.image_size),
    }
    if report is not None:
        summary.update(report.as_record())
    resume_dir = Path(resume_dir or Path(model_out).parent / ".resume")
    history: list[dict] = []
    try:
        if params.train:
            # the resolved device too: a CPU-written checkpoint is not a CUDA run's past
            job = fingerprint(
                arch=arch,
                seed=seed,
                n_classes=len(manifest.classes),
                params=asdict(params),
                data=recorded_digest(manifest_path),
                device=str(device),
                amp=runtime.amp_enabled(device, params.amp),
            )
            result = fit(
                model,
                data["train_augmented"],
                data["val"],
                params=params,
                seed=seed,
                device=device,
                multilabel=manifest.multilabel,
                resume_path=resume_dir / "last.pt",
                job_fingerprint=job,
            )
            model.load_state_dict(result.best_state)
            history, best_epoch = result.history, result.best_epoch
            summary.update(head="trained", resumed_from_epoch=result.resumed_from_epoch)
        else:
            best_epoch = 0
            if report is not None and report.head_loaded:
                summary["head"] = "checkpoint"
            else:
                summary.update(
                    head="linear_probe", **_probe_head(model, arch, data, manifest, params, device)
                )
        metrics = evaluate_splits(model, data, manifest, params, device)
    except torch.OutOfMemoryError:
        raise ConfigError(
            f"out of GPU memory training {arch} at opaque.batch_size={params.batch_size} on "
            f"{device}; lower opaque.batch_size or opaque.image_size (nothing is retried "
            "automatically at a smaller batch)"
        ) from None
    metrics.update(
        best_epoch=best_epoch,
        epochs_trained=len(history),
        head_refit=int(summary["head"] == "linear_probe"),
        split="test",
    )
    save_state_dict(_cpu_copy(model), model_out)
    write_json(metrics, metrics_out)
    frame = history_frame(history, manifest.multilabel)
    summary["timing"] = write_history(frame, history_out)
    if curve_out is not None:
        plot_learning_curve(
            frame,
            curve_out,
            manifest.multilabel,
            best_epoch,
            metrics,
            probe_grid=summary.get("probe_grid"),
            title=title,
            dpi=dpi,
        )
    remove_path(resume_dir)
    log.info("test %s", {k: round(v, 4) for k, v in metrics.items() if k.startswith("test_")})
    return summary
