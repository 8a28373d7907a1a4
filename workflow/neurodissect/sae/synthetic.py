"""Features with a known sparse dictionary, for tests and benchmarks.

x = mean + Σ_j a_j d_j + noise, where each of ``n_atoms`` unit directions d_j
is present in a row with probability ``density`` (magnitude a_j uniform in
[0.5, 1.5]). The first ``n_planted`` atoms are the "planted concepts" whose
presence is returned as labels, so recovery can be checked: a good SAE has,
for each planted atom, a latent that fires exactly when it is present.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np


@dataclass
class PlantedFeatures:
    features: np.ndarray  # (N, d) float32
    present: np.ndarray  # (N, n_planted) bool
    dictionary: np.ndarray  # (n_atoms, d) unit rows


@dataclass
class SparseDictionary:
    atoms: np.ndarray  # (n_atoms, d) unit rows
    mean: np.ndarray  # (d,)
    density: float
    noise: float

    @classmethod
    def random(cls, d: int, n_atoms: int, density=0.05, noise=0.05, seed=0) -> SparseDictionary:
        rng = np.random.default_rng(seed)
        atoms = rng.standard_normal((n_atoms, d))
        atoms /= np.linalg.norm(atoms, axis=1, keepdims=True)
        return cls(atoms, rng.uniform(0.0, 1.0, size=d), density, noise)

    def sample(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """(features (n, d) float32, atom presence (n, n_atoms) bool)."""
        present = rng.random((n, len(self.atoms))) < self.density
        codes = present * rng.uniform(0.5, 1.5, size=present.shape)
        noise = self.noise * rng.standard_normal((n, self.atoms.shape[1]))
        return (self.mean + codes @ self.atoms + noise).astype(np.float32), present

    def blocks(self, n: int, block: int = 8192, seed: int = 1) -> Iterator[np.ndarray]:
        """``n`` feature rows in blocks, without holding the codes of all rows at once."""
        rng = np.random.default_rng(seed)
        for start in range(0, n, block):
            yield self.sample(min(block, n - start), rng)[0]


def planted_features(
    n: int,
    d: int,
    n_atoms: int,
    n_planted: int,
    density: float = 0.05,
    noise: float = 0.05,
    seed: int = 0,
) -> PlantedFeatures:
    dictionary = SparseDictionary.random(d, n_atoms, density, noise, seed)
    x, present = dictionary.sample(n, np.random.default_rng([seed, 1]))
    return PlantedFeatures(x, present[:, :n_planted], dictionary.atoms)
