"""train_clip: a small CLIP trained from scratch on the train-split image–report pairs.

Symmetric InfoNCE over the batch (the CLIP loss) with a learned temperature; AdamW
(no weight decay on gains, biases, embeddings and the temperature), linear warm-up
then cosine decay per step; CUDA + mixed precision when available, CPU otherwise.
Training texts are sentence subsets of the reports (:mod:`.data`). The weights
after the last epoch are kept; every epoch logs the train loss and the val
split's image→report recall@1/5 (history.csv, the training-curve figure).

Resumable: after every epoch the full state (model, optimizer, scheduler, grad
scaler, RNGs, history) goes to ``clip/.resume/last.pt`` — outside the rule's
outputs, which Snakemake deletes before a rerun — and a restarted job with the same
config, seed and data continues from it to the same final weights.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, RandomSampler

from .. import runtime
from ..config import settings_from
from ..data.manifest import Manifest, read_manifest
from ..errors import ConfigError, InputError
from ..io import PathLike, remove_path, write_history, write_json
from ..opaque.resume import (
    fingerprint,
    load_resume,
    restore_training,
    save_resume,
    training_state,
)
from ..provenance import recorded_digest
from ..runtime import pick_device, progress, seed_everything
from .corpus import corpus_training_split
from .data import ImageTextPairs, ManifestImageFiles
from .encode import encode_image_batches, encode_text_trimmed, encode_texts, trim_padding
from .metrics import (
    ZEROSHOT_TEMPLATE,
    class_prompt_embeddings,
    prompt_synonyms,
    recall_at_k,
    zeroshot_scores,
)
from .model import (
    Architecture,
    build_clip,
    model_config,
    preprocess_config,
    save_local_dir,
)

log = logging.getLogger(__name__)
HISTORY_COLUMNS = (
    "epoch",
    "train_loss",
    "val_recall_at_1",
    "val_recall_at_5",
    "logit_scale",
    "lr",
    "seconds",
)


@dataclass(frozen=True)
class ClipParams:
    """The ``clip`` config section plus the ``runtime`` keys training uses."""

    embed_dim: int = 128
    image_size: int = 64
    vision_tower: str = "resnet"
    vision_width: int = 16
    vision_layers: int = 1
    text_width: int = 128
    text_layers: int = 3
    context_length: int = 128
    epochs: int = 15
    batch_size: int = 128
    lr: float = 5e-4
    weight_decay: float = 0.1
    warmup_fraction: float = 0.05
    sentence_keep: float = 0.5
    augment: bool = True
    amp: bool = True
    seed: int = 0
    device: str = "auto"
    num_workers: int = 0

    @classmethod
    def from_config(cls, clip: dict, runtime: dict | None = None) -> ClipParams:
        return settings_from(cls, runtime, clip, section="clip")

    @property
    def architecture(self) -> Architecture:
        return Architecture.from_config(asdict(self))


# -- pure pieces -------------------------------------------------------------------------
def contrastive_loss(
    image_feats: torch.Tensor, text_feats: torch.Tensor, logit_scale
) -> torch.Tensor:
    """CLIP loss: mean of the image→text and text→image cross-entropies over the batch,
    where row i of each is the positive pair (features L2-normalised)."""
    logits = logit_scale * image_feats @ text_feats.T
    target = torch.arange(len(logits), device=logits.device)
    return (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2


def param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """Weight decay on matrices only: not on gains, biases, embeddings or the temperature."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        exempt = p.ndim < 2 or "embedding" in name or "logit_scale" in name or "ln" in name
        (no_decay if exempt else decay).append(p)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def warmup_cosine(step: int, warmup: int, total: int) -> float:
    """Learning-rate factor: linear warm-up over ``warmup`` steps, then cosine to 0."""
    if step < warmup:
        return (step + 1) / warmup
    progress_ = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1 + math.cos(math.pi * min(1.0, progress_)))


# -- evaluation --------------------------------------------------------------------------
def _image_loader(manifest: Manifest, transform, batch_size: int, num_workers: int):
    return DataLoader(
        ManifestImageFiles(manifest, transform),
        batch_size=batch_size,
        shuffle=False,
        num_workers=num_workers,
    )


def embed_split_images(
    model, manifest: Manifest, transform, batch_size: int, num_workers: int = 0, desc: str = "embed"
) -> np.ndarray:
    loader = _image_loader(manifest, transform, batch_size, num_workers)
    batches = encode_image_batches(model, progress(loader, desc=desc, leave=False))
    parts = list(batches)
    return np.concatenate(parts) if parts else np.zeros((0, 0), np.float32)


def with_reports(manifest: Manifest) -> Manifest:
    """Rows with a non-empty report."""
    has = manifest.df["report"].fillna("").astype(str).str.strip().str.len() > 0
    return Manifest(
        manifest.df[has.to_numpy()].reset_index(drop=True), manifest.meta, manifest.path
    )


def evaluate_alignment(
    model,
    preprocess,
    tokenizer,
    manifest: Manifest,
    split: str = "test",
    batch_size: int = 128,
    num_workers: int = 0,
    train_reports: list[str] | None = None,
) -> dict[str, Any]:
    """Image→report recall@1/5 on ``split`` (images with a report) and zero-shot
    classification of all its images with class-name prompts (the synonyms that
    ``train_reports``, by default the train split's, use)."""
    part = manifest.split(split)
    out: dict[str, Any] = {"split": split}
    if not len(part):
        log.warning("split %s is empty: no CLIP metrics", split)
        return {**out, "n_test": 0}
    image_emb = embed_split_images(model, part, preprocess, batch_size, num_workers, split)
    reported = with_reports(part).df["image_id"].astype(str)
    rows = np.flatnonzero(part.df["image_id"].astype(str).isin(set(reported)).to_numpy())
    texts = part.df["report"].iloc[rows].astype(str).tolist()
    out["n_test"] = len(rows)
    if len(rows):
        out.update(recall_at_k(image_emb[rows], encode_texts(model, tokenizer, texts, batch_size)))
    if train_reports is None:
        train_reports = manifest.split("train").df["report"].fillna("").tolist()
    synonyms = prompt_synonyms(manifest.class_synonyms, train_reports)
    per_class = [
        encode_texts(model, tokenizer, [ZEROSHOT_TEMPLATE.format(s) for s in synonyms[c]])
        for c in manifest.classes
    ]
    out.update(zeroshot_scores(image_emb, class_prompt_embeddings(per_class), part.labels()))
    return out


# -- training ----------------------------------------------------------------------------
def _autocast(device, amp: bool):
    return runtime.autocast(device, amp)


def _val_recall(model, tokenizer, val_images: np.ndarray, val_texts: list[str]) -> dict:
    if not len(val_texts):
        return {"val_recall_at_1": float("nan"), "val_recall_at_5": float("nan")}
    r = recall_at_k(val_images, encode_texts(model, tokenizer, val_texts))
    return {f"val_{k}": v for k, v in r.items()}


def fit_clip(
    model,
    tokenizer,
    train_ds: ImageTextPairs,
    val: tuple[Manifest, Any],
    *,
    params: ClipParams,
    device,
    resume_path: PathLike,
    job_fingerprint: str,
) -> dict:
    """Train for ``params.epochs``, checkpointing each epoch to ``resume_path``; resume from it.

    Returns {"history": [...], "resumed_from_epoch": int}.
    """
    generator = torch.Generator().manual_seed(params.seed)
    loader = DataLoader(
        train_ds,
        batch_size=params.batch_size,
        sampler=RandomSampler(train_ds, generator=generator),
        num_workers=params.num_workers,
        generator=generator,
        pin_memory=device.type == "cuda",
        drop_last=len(train_ds) > params.batch_size,  # a batch of 1 has no negatives
    )
    steps = params.epochs * len(loader)
    optimizer = torch.optim.AdamW(param_groups(model, params.weight_decay), lr=params.lr)
    warmup = int(params.warmup_fraction * steps)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: warmup_cosine(s, warmup, steps)
    )
    scaler = runtime.grad_scaler(device, params.amp)
    val_manifest, val_transform = val
    start, history = 0, []

    saved = load_resume(resume_path, job_fingerprint)
    if saved is not None:
        start, history = restore_training(
            saved, generator, model=model, optimizer=optimizer, scheduler=scheduler, scaler=scaler
        )
        log.info("resuming from the checkpoint after epoch %d (%s)", start, resume_path)

    for epoch in range(start, params.epochs):
        model.train()
        train_ds.set_epoch(epoch)
        # the loss sum stays on the device: one host sync per epoch, not per step
        t0, seen = time.perf_counter(), 0
        total = torch.zeros((), dtype=torch.float64, device=device)
        for images, texts in progress(
            loader, desc=f"epoch {epoch + 1}/{params.epochs}", leave=False
        ):
            images = images.to(device, non_blocking=True)
            tokens = trim_padding(tokenizer(list(texts))).to(device, non_blocking=True)
            optimizer.zero_grad(set_to_none=True)
            with _autocast(device, params.amp):
                img = F.normalize(model.encode_image(images).float(), dim=-1)
                txt = F.normalize(encode_text_trimmed(model, tokens).float(), dim=-1)
                loss = contrastive_loss(img, txt, model.logit_scale.exp())
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
            with torch.no_grad():  # CLIP's clamp: the temperature may not fall below 1/100
                model.logit_scale.clamp_(0, math.log(100))
            total += loss.detach().double() * len(images)
            seen += len(images)
        val_images = embed_split_images(
            model, val_manifest, val_transform, params.batch_size, params.num_workers, "val"
        )
        row = {
            "epoch": epoch + 1,
            "train_loss": float(total) / max(seen, 1),
            **_val_recall(
                model, tokenizer, val_images, val_manifest.df["report"].astype(str).tolist()
            ),
            "logit_scale": float(model.logit_scale.detach().exp()),
            "lr": optimizer.param_groups[0]["lr"],
            "seconds": time.perf_counter() - t0,
        }
        history.append(row)
        log.info(
            "epoch %d/%d: train loss %.4f, val recall@1 %.3f, @5 %.3f (%.1f s)",
            epoch + 1,
            params.epochs,
            row["train_loss"],
            row["val_recall_at_1"],
            row["val_recall_at_5"],
            row["seconds"],
        )
        save_resume(
            resume_path,
            training_state(
                job_fingerprint,
                epoch + 1,
                generator,
                history,
                model=model,
                optimizer=optimizer,
                scheduler=scheduler,
                scaler=scaler,
            ),
        )
    return {"history": history, "resumed_from_epoch": start}


def _check_pairs(manifest: Manifest, path: PathLike, corpus: bool = False) -> Manifest:
    train = with_reports(corpus_training_split(manifest) if corpus else manifest.split("train"))
    if len(train) < 2:
        raise InputError(
            f"{path}: clip.source: train needs train-split images with reports (found "
            f"{len(train)}); for a dataset without reports use clip.source: open_clip or local"
        )
    return train


def train_clip(
    manifest_path: PathLike,
    model_out: PathLike,
    metrics_out: PathLike,
    history_out: PathLike,
    curve_out: PathLike | None,
    *,
    params: ClipParams,
    resume_dir: PathLike | None = None,
    threads: int | None = None,
    dpi: int = 120,
    title: str = "",
    corpus_path: PathLike | None = None,
) -> dict[str, Any]:
    """Rule entry point: train, then write the local-dir, metrics.json, history.csv and the
    training curve. Returns what goes into the outputs' provenance.

    With ``corpus_path`` (a clip.corpus manifest, :mod:`.corpus`) the CLIP trains on that
    corpus (val split: monitoring) and never sees the dataset's images; metrics.json
    still scores the dataset's test split.
    """
    import open_clip
    from open_clip.transform import image_transform

    if threads:
        torch.set_num_threads(int(threads))
    manifest = read_manifest(manifest_path)
    source = read_manifest(corpus_path) if corpus_path is not None else manifest
    train_pairs = _check_pairs(source, corpus_path or manifest_path, corpus_path is not None)
    device = pick_device(params.device)
    seed_everything(params.seed)
    model_cfg = model_config(params.architecture)
    preprocess_cfg = preprocess_config(params.image_size)
    model = build_clip(model_cfg).to(device)
    tokenizer = open_clip.tokenizer.SimpleTokenizer(context_length=params.context_length)
    transform_kwargs = {
        "mean": preprocess_cfg["mean"],
        "std": preprocess_cfg["std"],
        "interpolation": preprocess_cfg["interpolation"],
        "resize_mode": preprocess_cfg["resize_mode"],
    }
    eval_transform = image_transform(params.image_size, is_train=False, **transform_kwargs)
    train_transform = image_transform(
        params.image_size,
        is_train=params.augment,
        aug_cfg={"scale": (0.8, 1.0)},
        **transform_kwargs,
    )
    train_ds = ImageTextPairs(
        train_pairs, train_transform, seed=params.seed, sentence_keep=params.sentence_keep
    )
    val = (with_reports(source.split("val")), eval_transform)
    resume_dir = Path(resume_dir or Path(model_out).parent / ".resume")
    job = fingerprint(
        params={k: v for k, v in asdict(params).items() if k not in ("device", "num_workers")},
        data=[recorded_digest(p) for p in (manifest_path, corpus_path) if p],
        kind="clip",
        device=str(device),
        amp=runtime.amp_enabled(device, params.amp),
    )
    try:
        result = fit_clip(
            model,
            tokenizer,
            train_ds,
            val,
            params=params,
            device=device,
            resume_path=resume_dir / "last.pt",
            job_fingerprint=job,
        )
        metrics = evaluate_alignment(
            model,
            eval_transform,
            tokenizer,
            manifest,
            "test",
            params.batch_size,
            params.num_workers,
            train_pairs.df["report"].fillna("").tolist(),
        )
    except torch.OutOfMemoryError:
        raise ConfigError(
            f"out of GPU memory training the CLIP at clip.batch_size={params.batch_size} on "
            f"{device}; lower clip.batch_size or clip.image_size"
        ) from None
    history = pd.DataFrame(result["history"], columns=list(HISTORY_COLUMNS))
    metrics.update(
        train_loss=float(history["train_loss"].iloc[-1]),
        epochs=params.epochs,
        n_train_pairs=len(train_pairs),
    )
    info = {
        "source": "train",
        "epochs": params.epochs,
        "seed": params.seed,
        "n_train_pairs": len(train_pairs),
        "corpus": corpus_path is not None,
    }
    save_local_dir(model, model_cfg, preprocess_cfg, model_out, info)
    write_json(metrics, metrics_out)
    timing = write_history(history, history_out)
    if curve_out is not None:
        from ..viz.clip import plot_clip_training

        plot_clip_training(history, metrics, curve_out, n_val=len(val[0]), title=title, dpi=dpi)
    remove_path(resume_dir)
    log.info(
        "test recall@1 %.3f, @5 %.3f over %d images",
        metrics.get("recall_at_1", float("nan")),
        metrics.get("recall_at_5", float("nan")),
        metrics["n_test"],
    )
    return {
        "device": str(device),
        "resumed_from_epoch": result["resumed_from_epoch"],
        "n_train_pairs": len(train_pairs),
        "timing": timing,
    }
