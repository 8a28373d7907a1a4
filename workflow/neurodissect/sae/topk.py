"""``topk``: the k largest pre-activations per input stay active (then ReLU),
plus the auxiliary loss of Gao et al. (2024) that keeps latents alive: the
k_aux largest pre-activations among *dead* latents must reconstruct the
residual the live code leaves, so their encoder and decoder get gradient
even though they never win the top-k.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .base import SAEConfig, SparseAutoencoder, register
from .sparse_ops import crow_from_counts, decode


@dataclass(frozen=True)
class TopKConfig(SAEConfig):
    k: int = 32
    aux_k: int | None = None  # None: d_in / 2 rounded down to a power of two
    aux_coefficient: float = 1 / 32


def default_aux_k(d_in: int) -> int:
    return 2 ** int(math.log2(max(1, d_in // 2)))


def topk_positive(pre: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """CSR of the ≤ k largest entries per row that are also > 0, latent ids ascending."""
    k = min(k, pre.shape[1])
    values, idx = pre.topk(k, dim=1, sorted=False)
    keep = values > 0
    idx = torch.where(keep, idx, pre.shape[1])  # dropped entries sort to the end
    idx, _ = idx.sort(dim=1)
    counts = keep.sum(1)
    cols = idx[idx < pre.shape[1]]
    return crow_from_counts(counts), cols


@register("topk")
class TopKSAE(SparseAutoencoder):
    config_class = TopKConfig
    config: TopKConfig

    def encoder_init_scale(self) -> float:
        return 1.0  # only k latents fire: no overshoot to damp

    def select(self, pre: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return topk_positive(pre, self.config.k)

    def loss_terms(self, x, x_hat, code, pre, dead) -> dict[str, torch.Tensor]:
        zero = x.new_zeros(())
        if dead is None or not bool(dead.any()) or self.config.aux_coefficient == 0:
            return {"aux": zero}
        dead_ids = dead.nonzero().squeeze(1)
        aux_k = self.config.aux_k or default_aux_k(self.d_in)
        with torch.no_grad():
            crow, local = topk_positive(pre[:, dead_ids], aux_k)
            cols = dead_ids[local]
        if len(cols) == 0:
            return {"aux": zero}
        residual = (x - x_hat).detach()
        aux_hat = decode(self.code_from(x, pre, crow, cols), self.W_dec)
        aux = (aux_hat - residual).pow(2).mean()
        return {"aux": self.config.aux_coefficient * aux}
