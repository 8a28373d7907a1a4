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

from ..data.synth.counterfactual import Pair, render_pair

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
        return render_pair(
            self.kind,
            concept,
            seed=self.seed,
            index=self.first_index + k,
            size=self.size,
            difficulty=self.difficulty,
            noise=self.noise,
        )

    def batches(
        self, concept: str, batch_size: int, start: int = 0, stop: int | None = None
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(with, without) uint8 image batches of ``concept``'s pairs ``start`` to ``stop``
        (default ``n_pairs``), in probe order."""
        stop = self.n_pairs if stop is None else stop
        for first in range(start, stop, batch_size):
            pairs = [self.pair(concept, k) for k in range(first, min(first + batch_size, stop))]
            yield np.stack([p.with_concept for p in pairs]), np.stack([p.without for p in pairs])


@dataclass(frozen=True)
class Extension:
    """More pairs for units the first ``n_pairs`` leave untestable.

    A sparse unit (an SAE latent silent on most images) is 0 with and without the concept
    on most pairs; the signed-rank test drops those ties, and with 3 informative pairs its
    smallest one-sided p-value is 1/8: such a name can never be confirmed, whatever the
    unit does. Pairs are therefore added, one batch at a time, until every ``watch`` unit
    has ``min_informative`` pairs whose responses differ, or ``max_pairs`` are rendered.
    Whether a difference is non-zero does not depend on its sign, so this stopping rule
    leaves the test's null distribution (symmetric signs) intact.
    """

    watch: np.ndarray  # unit indices (the units named after this concept)
    min_informative: int = 0  # 0: no extension (exactly n_pairs)
    max_pairs: int = 0

    def wants_more(self, informative: np.ndarray, n_rendered: int) -> bool:
        if self.min_informative <= 0 or n_rendered >= self.max_pairs or not len(self.watch):
            return False
        watch = self.watch[self.watch < len(informative)]  # out-of-range units: run.py's error
        return bool((informative[watch] < self.min_informative).any())


def responses(
    probes: ProbeSet,
    concept: str,
    respond: Responder,
    batch_size: int,
    extension: Extension | None = None,
):
    """((n, U) responses with the concept, (n, U) without) of every unit: the first
    ``probes.n_pairs`` pairs, then more batches while ``extension`` wants them."""
    with_parts, without_parts = [], []

    def run(batches) -> None:
        for with_batch, without_batch in batches:
            out = respond(np.concatenate([with_batch, without_batch]))
            with_parts.append(out[: len(with_batch)])
            without_parts.append(out[len(with_batch) :])

    run(probes.batches(concept, batch_size))
    n = probes.n_pairs
    informative = sum((a != b).sum(axis=0) for a, b in zip(with_parts, without_parts, strict=True))
    while extension is not None and extension.wants_more(informative, n):
        stop = min(n + batch_size, extension.max_pairs)
        run(probes.batches(concept, batch_size, start=n, stop=stop))
        informative = informative + (with_parts[-1] != without_parts[-1]).sum(axis=0)
        n = stop
    return np.concatenate(with_parts), np.concatenate(without_parts)


def as_model_input(images: np.ndarray, image_size: int) -> torch.Tensor:
    """uint8 (B, H, W[, C]) → the normalised (B, 3, S, S) input the model was evaluated on."""
    from ..opaque.data import eval_transform

    x = torch.from_numpy(np.ascontiguousarray(images))
    x = x.unsqueeze(1).expand(-1, 3, -1, -1) if x.ndim == 3 else x.permute(0, 3, 1, 2)
    return eval_transform(image_size)(x.contiguous())


@contextlib.contextmanager
def unit_responder(
    model_pt,
    arch: str,
    n_classes: int,
    layer: str,
    *,
    image_size: int,
    pooling: str = "mean",
    vit_tokens: str = "cls",
    sae_pt=None,
    device: str = "cpu",
) -> Iterator[Responder]:
    """A function images → (B, U) responses of ``layer``'s units (pooled as in
    extraction), or of the SAE latents on ``layer``'s features when ``sae_pt`` is given."""
    from ..activations.extract import LayerTaps, resolve_layers
    from ..opaque import load_opaque

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
