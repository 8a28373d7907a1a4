"""``batchtopk``: the k·B largest pre-activations of a batch of B rows stay
active (Bussmann et al. 2024), so a row may use more or fewer than k latents
while the batch averages exactly k (when at least k·B pre-activations are > 0).

Batch selection needs a batch; at inference each row is encoded alone, so a
single threshold θ replaces it: a latent is active when its pre-activation
exceeds θ. θ is estimated during training as a running mean (exponential,
``threshold_momentum``) of each batch's smallest kept pre-activation, and is
stored as a buffer, so it travels in the checkpoint and the resume state.
Dead latents get TopK's auxiliary loss.

Which rule selects: batch top-k while the model trains with gradients on
(``training_loss``); the threshold everywhere else (``encode``,
``reconstruct``, the trainer's monitor and resampling), so what the trainer
monitors is what inference will do.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .base import register
from .sparse_ops import crow_from_counts, positive_entries
from .topk import TopKConfig, TopKSAE


@dataclass(frozen=True)
class BatchTopKConfig(TopKConfig):
    threshold_momentum: float = 0.1


def batch_topk_positive(pre: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """CSR of the ≤ k·B largest entries of the whole (B, n) ``pre`` that are > 0."""
    n_rows, n = pre.shape
    flat = pre.reshape(-1)
    values, idx = flat.topk(min(k * n_rows, flat.numel()), sorted=False)
    idx, _ = idx[values > 0].sort()  # row-major order = CSR order, latent ids ascending
    counts = torch.bincount(idx // n, minlength=n_rows)
    return crow_from_counts(counts), idx % n


def above_threshold(pre: torch.Tensor, threshold: float) -> tuple[torch.Tensor, torch.Tensor]:
    """CSR of the entries of ``pre`` above ``threshold`` (and > 0)."""
    return positive_entries(pre - max(threshold, 0.0))


@register("batchtopk")
class BatchTopKSAE(TopKSAE):
    config_class = BatchTopKConfig
    config: BatchTopKConfig

    def __init__(self, d_in: int, config: BatchTopKConfig) -> None:
        super().__init__(d_in, config)
        self.register_buffer("threshold", torch.zeros(()))
        self.register_buffer("threshold_updates", torch.zeros((), dtype=torch.int64))

    def select(self, pre: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.training and torch.is_grad_enabled():
            return batch_topk_positive(pre, self.config.k)
        return above_threshold(pre, float(self.threshold))

    @torch.no_grad()
    def update_threshold(self, kept: torch.Tensor) -> None:
        """Fold this batch's smallest kept pre-activation into the running θ."""
        if len(kept) == 0:
            return
        low = kept.min().float()
        if int(self.threshold_updates) == 0:
            self.threshold.copy_(low)
        else:
            self.threshold.lerp_(low, self.config.threshold_momentum)
        self.threshold_updates += 1

    def training_loss(self, x: torch.Tensor, dead: torch.Tensor | None = None):
        loss, stats, code = super().training_loss(x, dead)
        if self.training and torch.is_grad_enabled():
            self.update_threshold(code.values.detach())
        return loss, stats, code
