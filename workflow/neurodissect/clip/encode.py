"""Embedding texts and images with a CLIP: batched, L2-normalised, float32 numpy."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import torch


def model_device(model) -> torch.device:
    return next(model.parameters()).device


def l2_normalise(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (a zero row stays zero)."""
    norms = np.linalg.norm(x, axis=-1, keepdims=True)
    return (x / np.maximum(norms, 1e-12)).astype(np.float32)


def trim_padding(tokens: torch.Tensor) -> torch.Tensor:
    """Drop the padding columns after the batch's longest text (its EOT token is the
    largest id, so its position is the argmax)."""
    return tokens[:, : int(tokens.argmax(dim=1).max()) + 1]


def encode_text_trimmed(model, tokens: torch.Tensor) -> torch.Tensor:
    """``model.encode_text`` for a batch whose trailing padding was trimmed: the same
    features (the text tower is causal and pools at EOT), at the cost of the longest
    text instead of the full context — training texts are sampled sentences, far shorter
    than the context that must hold a whole report. For open_clip's CLIP text tower."""
    n = tokens.shape[1]
    cast = model.transformer.get_cast_dtype()
    x = model.token_embedding(tokens).to(cast) + model.positional_embedding[:n].to(cast)
    x = model.transformer(x, attn_mask=model.attn_mask[:n, :n])
    x = model.ln_final(x)
    x = x[torch.arange(len(x), device=x.device), tokens.argmax(dim=-1)]
    proj = model.text_projection
    return proj(x) if isinstance(proj, torch.nn.Linear) else x @ proj


def _encode_text(model, tokens: torch.Tensor) -> torch.Tensor:
    """Trimmed encoding for open_clip's own CLIP text tower, the model's own otherwise."""
    causal = getattr(model, "attn_mask", None) is not None  # padding after EOT is never seen
    if causal and getattr(model, "text_pool_type", None) == "argmax":
        return encode_text_trimmed(model, trim_padding(tokens))
    return model.encode_text(tokens)


@torch.inference_mode()
def encode_texts(model, tokenizer, texts: Sequence[str], batch_size: int = 256) -> np.ndarray:
    """(len(texts), D) float32 L2-normalised text embeddings, in order.

    Texts longer than the model's context are truncated by the tokenizer.
    """
    device = model_device(model)
    was_training = model.training
    model.eval()
    batches = [list(texts[s : s + batch_size]) for s in range(0, len(texts), batch_size)]
    try:
        # no texts: embed one empty string only to learn the embedding width
        out = [
            _encode_text(model, tokenizer(b).to(device)).float().cpu() for b in batches or [[""]]
        ]
    finally:
        model.train(was_training)
    return l2_normalise(torch.cat(out).numpy()[: len(texts)])


@torch.inference_mode()
def encode_image_batches(model, batches: Iterable[torch.Tensor]) -> Iterable[np.ndarray]:
    """L2-normalised image embeddings, one (b, D) float32 array per input batch."""
    device = model_device(model)
    was_training = model.training
    model.eval()
    try:
        for x in batches:
            feats = model.encode_image(x.to(device, non_blocking=True)).float().cpu().numpy()
            yield l2_normalise(feats)
    finally:
        model.train(was_training)
