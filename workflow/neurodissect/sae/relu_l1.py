"""``relu_l1``: the paper's SAE — ReLU latents, loss = MSE + λ·‖z‖₁.

With unit-norm decoder rows the L1 of the code is the L1 of each latent's
contribution, so λ trades reconstruction against the number and size of
active latents. Paper defaults: expansion 8, λ = 3e-5 (on raw features),
Adam lr 5e-4, batch 4096; dead latents are resampled by the trainer.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .base import SAEConfig, SparseAutoencoder, register
from .sparse_ops import positive_entries


@dataclass(frozen=True)
class ReluL1Config(SAEConfig):
    l1_coefficient: float = 3e-5


@register("relu_l1")
class ReluL1SAE(SparseAutoencoder):
    config_class = ReluL1Config
    config: ReluL1Config

    def select(self, pre: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return positive_entries(pre)

    def loss_terms(self, x, x_hat, code, pre, dead) -> dict[str, torch.Tensor]:
        # mean over the batch of Σ_i |z_i| (values are > 0 by construction)
        l1 = code.values.sum() / code.n_rows
        return {"l1": self.config.l1_coefficient * l1}
