"""Probe pairs and unit responses.

Probe image k is the generator's recipe at index ``first_index + k`` (far beyond any
dataset's images, so the opaque model never trained on it), with its own sampled case.
For each planted concept every probe is rendered with and without it; pairs are
rendered and passed through the model one batch at a time, so memory is bounded by a
batch whatever ``n_pairs`` is.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import torch

from ..data.synth_counterfactual import Pair, render_pair

Responder = Callable[[np.ndarray], np.ndarray]  # uint8 images (B, H, W[, C]) -> (B, U)


@dataclass(frozen=True)
class ProbeSet:
    """Which recipes are probed: the generator settings of the dataset, and the indices."""

    kind: str
    seed: int
    size: int
    difficulty: float
    noise: float
    n_pairs: int
    first_index: int

    def pair(self, concept: str, k: int) -> Pair:
        return render_pair(self.kind, concept, seed=self.seed, index=self.first_index + k,
                           size=self.size, difficulty=self.difficulty, noise=self.noise)  # fmt: skip

    def batches(self, concept: str, batch_size: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(with, without) uint8 image batches of ``concept``'s pairs, in probe order."""
        for start in range(0, self.n_pairs, batch_size):
            pairs = [
                self.pair(concept, k) for k in range(start, min(start + batch_size, self.n_pairs))
            ]
            yield np.stack([p.with_concept for p in pairs]), np.stack([p.without for p in pairs])


def responses(probes: ProbeSet, concept: str, respond: Responder, batch_size: int):
    """((n, U) responses with the concept, (n, U) without) of every unit."""
    with_parts, without_parts = [], []
    for with_batch, without_batch in probes.batches(concept, batch_size):
        out = respond(np.concatenate([with_batch, without_batch]))
        with_parts.append(out[: len(with_batch)])
        without_parts.append(out[len(with_batch) :])
    return np.concatenate(with_parts), np.concatenate(without_parts)


def as_model_input(images: np.ndarray, image_size: int) -> torch.Tensor:
    """uint8 (B, H, W[, C]) → the normalised (B, 3, S, S) input the model was evaluated on."""
    from ..models.data import eval_transform

    x = torch.from_numpy(np.ascontiguousarray(images))
    x = x.unsqueeze(1).expand(-1, 3, -1, -1) if x.ndim == 3 else x.permute(0, 3, 1, 2)
    return eval_transform(image_size)(x.contiguous())


@contextlib.contextmanager
def unit_responder(model_pt, arch: str, n_classes: int, layer: str, *, image_size: int,
                   pooling: str = "mean", vit_tokens: str = "cls", sae_pt=None,
                   device: str = "cpu") -> Iterator[Responder]:  # fmt: skip
    """A function images → (B, U) responses of ``layer``'s units (pooled as in
    extraction), or of the SAE latents on ``layer``'s features when ``sae_pt`` is given."""
    from ..activations.extract import LayerTaps, resolve_layers
    from ..models import load_opaque

    model = load_opaque(model_pt, arch, n_classes).to(device).eval()
    sae = None
    if sae_pt is not None:
        from ..sae.base import load_sae

        sae = load_sae(sae_pt, device)
    specs = resolve_layers(model, arch, [layer])
    with LayerTaps(model, specs, pooling=pooling, vit_tokens=vit_tokens) as taps:

        @torch.inference_mode()
        def respond(images: np.ndarray) -> np.ndarray:
            feats = taps(as_model_input(images, image_size).to(device))[specs[0].name][0]
            out = sae.encode(feats) if sae is not None else feats
            return out.float().cpu().numpy()

        yield respond
