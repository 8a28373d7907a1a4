"""``matryoshka``: nested dictionaries (Bussmann et al. 2025; Nabeshima 2024).

The latents are ordered; for prefix sizes m_1 < m_2 < ... < n the first m_i
latents must reconstruct the input on their own:

    loss = Σ_i ‖x − (z_{<m_i} W_dec[<m_i] + b_pre)‖² / d   (+ TopK's auxiliary loss)

where z_{<m} is the code with every latent ≥ m set to zero. The small
prefixes cannot afford to split a concept into many narrow latents (feature
splitting) nor to absorb one concept into another, so the early latents learn
the broad, frequent directions and later ones refine them. Selection is
BatchTopK's (batch top k·B while training, a learned threshold at inference).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..errors import ConfigError
from .base import register
from .batchtopk import BatchTopKConfig, BatchTopKSAE
from .sparse_ops import SparseCode, Transposed, crow_from_counts, decode


@dataclass(frozen=True)
class MatryoshkaConfig(BatchTopKConfig):
    # prefix sizes as fractions of the latents; the whole dictionary is always the last prefix
    prefix_fractions: tuple[float, ...] = (0.0625, 0.125, 0.25, 0.5)


def restrict(code: SparseCode, size: int) -> SparseCode:
    """The code with only latents < ``size`` (values keep their gradient)."""
    keep = code.cols < size
    rows = code.rows()[keep]
    cols = code.cols[keep]
    crow = crow_from_counts(torch.bincount(rows, minlength=code.n_rows))
    transposed = Transposed.of(rows, cols, code.n_latents) if code.transposed is not None else None
    return SparseCode(crow, cols, code.values[keep], code.n_latents, transposed)


@register("matryoshka")
class MatryoshkaSAE(BatchTopKSAE):
    config_class = MatryoshkaConfig
    config: MatryoshkaConfig

    def __init__(self, d_in: int, config: MatryoshkaConfig) -> None:
        fractions = list(config.prefix_fractions)
        if not all(0 < f < 1 for f in fractions) or fractions != sorted(set(fractions)):
            raise ConfigError(
                f"sae.prefix_fractions: expected increasing fractions in (0, 1), got {fractions}"
            )
        super().__init__(d_in, config)

    def prefix_sizes(self) -> list[int]:
        """Sizes of the nested dictionaries, the whole one last."""
        sizes = [max(1, round(f * self.n_latents)) for f in self.config.prefix_fractions]
        return sorted({*sizes, self.n_latents})

    def loss_terms(self, x, x_hat, code, pre, dead) -> dict[str, torch.Tensor]:
        terms = super().loss_terms(x, x_hat, code, pre, dead)
        prefix = x.new_zeros(())
        for size in self.prefix_sizes()[:-1]:  # the whole dictionary's MSE is the base loss
            x_prefix = decode(restrict(code, size), self.W_dec) + self.b_pre
            prefix = prefix + (x_prefix - x).pow(2).mean()
        return {**terms, "prefix_mse": prefix}

    @torch.no_grad()
    def reconstruct_prefix(self, x_raw: torch.Tensor, size: int) -> torch.Tensor:
        """Reconstruction (raw units) of raw features by the first ``size`` latents alone."""
        return reconstruct_with_prefix(self, x_raw, size)


@torch.no_grad()
def reconstruct_with_prefix(model, x_raw: torch.Tensor, size: int) -> torch.Tensor:
    """Any SAE's reconstruction of raw features from its first ``size`` latents only."""
    x = model.normalize_input(x_raw.float())
    pre = model.preactivations(x)
    code = model.code_from(x, pre, *model.select(pre))
    return model.denormalize(decode(restrict(code, size), model.W_dec) + model.b_pre)
