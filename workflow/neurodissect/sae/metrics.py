"""SAE quality metrics: the formulas on arrays, and a streaming accumulator.

- FVU (fraction of variance unexplained) = Σ‖x − x̂‖² / Σ‖x − x̄‖², x̄ the mean
  of the evaluated rows (not of the training data);
- L0 = mean number of active (> 0) latents per row;
- dead fraction = share of latents active on none of the evaluated rows.

:class:`SAEMetrics` accumulates the same quantities block by block (float64
sums), so a split of any size is evaluated in bounded memory.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import torch


def fvu(x: np.ndarray, x_hat: np.ndarray) -> float:
    x = np.asarray(x, np.float64)
    residual = ((x - np.asarray(x_hat, np.float64)) ** 2).sum()
    return float(residual / ((x - x.mean(0)) ** 2).sum())


def l0(latents: np.ndarray) -> float:
    return float((np.asarray(latents) > 0).sum(1).mean())


def dead_fraction(latents: np.ndarray) -> float:
    return float(1.0 - (np.asarray(latents) > 0).any(0).mean())


class SAEMetrics:
    """Streaming FVU / L0 / dead fraction over (x, x̂, z) blocks."""

    def __init__(self, n_latents: int) -> None:
        self.n = 0
        self.sq_err = 0.0
        self.sum_sq = 0.0
        self.sum_x: np.ndarray | None = None
        self.n_active = 0
        self.ever_active = np.zeros(n_latents, dtype=bool)

    def update(self, x: np.ndarray, x_hat: np.ndarray, z: np.ndarray) -> None:
        x = np.asarray(x, np.float64)
        diff = x - np.asarray(x_hat, np.float64)
        self.sq_err += float(np.einsum("ij,ij->", diff, diff))
        self.sum_sq += float(np.einsum("ij,ij->", x, x))
        self.sum_x = x.sum(0) if self.sum_x is None else self.sum_x + x.sum(0)
        active = np.asarray(z) > 0
        self.n_active += int(active.sum())
        self.ever_active |= active.any(0)
        self.n += len(x)

    def result(self) -> dict[str, float]:
        if self.n == 0:
            raise ValueError("no rows were evaluated")
        mean = self.sum_x / self.n
        total = self.sum_sq - self.n * float(mean @ mean)
        return {
            "fvu": self.sq_err / total if total > 0 else float("nan"),
            "l0": self.n_active / self.n,
            "dead_fraction": float(1.0 - self.ever_active.mean()),
        }


def reconstruct_blocks(model, blocks: Iterable[np.ndarray]):
    """Yield (x, x̂, z) numpy blocks for raw feature blocks (x̂ in raw units)."""
    device = model.W_dec.device
    for block in blocks:
        x = np.asarray(block, np.float32)
        x_hat, z = model.reconstruct(torch.from_numpy(x).to(device))
        yield x, x_hat.cpu().numpy(), z.cpu().numpy()


def evaluate_arrays(model, rows: np.ndarray, batch_rows: int = 4096) -> dict[str, float]:
    """FVU / L0 / dead fraction of ``model`` on in-memory raw feature rows."""
    acc = SAEMetrics(model.n_latents)
    blocks = (rows[i : i + batch_rows] for i in range(0, len(rows), batch_rows))
    for x, x_hat, z in reconstruct_blocks(model, blocks):
        acc.update(x, x_hat, z)
    return acc.result()
