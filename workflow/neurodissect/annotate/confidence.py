"""Calibrated confidence of concept assignments: permutation p-values and bootstrap stability.

Every namer that scores a unit (neuron, SAE latent) from its exemplar images has the
same shape: a pool of N probing images, K concepts, and a *set scorer* that turns an
exemplar set (pool rows in rank order) into K concept scores; an assignment rule then
keeps the best concepts (MAMMI's α-cut, or the top k). Two numbers make such a name
comparable across setups:

* **p-value** — how often random exemplar sets of the same size, drawn without
  replacement from the pool, score the concept at least as well. The default null is
  the *max-statistic* one (Westfall–Young single-step maxT): each concept's set score
  is standardised by its own null mean and standard deviation, and the unit's z for
  concept c is compared with the best z over *all* K concepts of each random set. The
  name was chosen among K concepts, so this is what keeps the best of K random concepts
  from looking significant; it controls the family-wise error over the vocabulary.
  ``null="marginal"`` compares with the same concept's null only (for a concept fixed
  in advance). p = (1 + #{null ≥ observed}) / (1 + n_permutations).
* **q-value** — the p-values of all units (one test per unit: its name) adjusted by
  Benjamini–Hochberg (:func:`benjamini_hochberg`), so flagging the units with q > level
  controls the false discovery rate over the units at that level.
* **stability** — the fraction of bootstrap resamples of the unit's exemplars (with
  replacement, rank order kept) in which the concept is still assigned by the rule.

Both are batched: null sets of one size are scored together, bootstrap resamples of many
units are stacked into one batch, and every scorer works in concept-column blocks, so
memory is bounded by ``budget_mb`` for any vocabulary. Random draws are seeded per set
size (null) and per unit key (bootstrap), so results do not depend on batching.

Set scorers implement :class:`SetScorer`. :class:`SummedScorer` covers every namer whose
unit score is ``transform(sum over exemplars of per-image scores, n_exemplars)``, with
per-image scores given as a dense array, a scipy sparse matrix (e.g. report-phrase
indicators), or :class:`Factored` ``left @ right.T`` (e.g. CLIP image embeddings times
debiased text embeddings: the N x K matrix is never formed).

Usage::

    from neurodissect.annotate.confidence import (
        AlphaCut, Factored, SummedScorer, assess, assign, pad_sets, score_sets)

    scorer = SummedScorer(Factored(image_emb, text_emb - template_emb))   # MAMMI
    members = pad_sets(exemplar_rows)              # list of pool-row arrays -> (U, m) with -1
    scores = score_sets(scorer, members)           # (U, K)
    assigned = assign(scores, AlphaCut(95))        # per unit: concept indices, best first
    conf = assess(scorer, members, assigned, AlphaCut(95),
                  n_permutations=1000, n_bootstrap=200, seed=0)
    conf.p_values[u], conf.stability[u]            # aligned with assigned[u]

A log-odds namer over report phrases uses the same calls with
``SummedScorer(doc_phrase_indicators, transform=log_odds)`` where
``log_odds(sums, n, cols)`` maps the (S, len(cols)) phrase counts of S sets of n
documents to scores, and ``TopK(1)`` as the rule.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

# (sums (S, k), set sizes (S,), concept indices (k,)) -> scores (S, k)
Transform = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]

DEFAULT_BUDGET_MB = 256.0
_COPIES = 4  # float64 arrays of one block alive at once (scores, z, scratch)


# -- exemplar sets -----------------------------------------------------------------
def pad_sets(sets: Sequence[Sequence[int]], width: int | None = None) -> np.ndarray:
    """Ragged exemplar sets (pool rows, rank order) → (S, width) int64, -1 in empty slots."""
    width = max([len(s) for s in sets] + [0]) if width is None else width
    out = np.full((len(sets), max(width, 0)), -1, dtype=np.int64)
    for i, rows in enumerate(sets):
        out[i, : len(rows)] = np.asarray(rows, dtype=np.int64)
    return out


def set_sizes(members: np.ndarray) -> np.ndarray:
    return (np.asarray(members) >= 0).sum(axis=1)


def membership(members: np.ndarray, n_images: int):
    """(S, N) sparse counts: entry (s, i) = how often pool row i is in set s."""
    from scipy import sparse

    members = np.asarray(members)
    rows, slots = np.nonzero(members >= 0)
    # duplicates (bootstrap draws) are summed by the constructor
    return sparse.csr_matrix(
        (np.ones(len(rows)), (rows, members[rows, slots])), shape=(len(members), n_images)
    )


# -- scorers -------------------------------------------------------------------------
class SetScorer(Protocol):
    """Scores of exemplar sets, in concept-column blocks."""

    n_images: int
    n_concepts: int

    def blocks(
        self, members: np.ndarray, concepts: np.ndarray | None = None, budget_mb: float = ...
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Yield (concept indices (k,), scores (S, k) float64) covering ``concepts`` (default
        all) for the sets ``members`` (S, m): pool rows in rank order, -1 = empty slot."""
        ...


@dataclass(frozen=True)
class Factored:
    """Per-image scores ``left @ right.T`` (N x K) without forming them: left (N, D), right (K, D)."""

    left: np.ndarray
    right: np.ndarray

    @property
    def shape(self) -> tuple[int, int]:
        return (len(self.left), len(self.right))


def columns_per_block(n_rows: int, n_concepts: int, budget_mb: float) -> int:
    """Concept columns per block so that ``_COPIES`` float64 (n_rows, k) arrays fit the budget."""
    per_column = max(1, n_rows) * 8 * _COPIES
    return int(min(max(n_concepts, 1), max(1, budget_mb * 2**20 // per_column)))


def _column_blocks(concepts: np.ndarray, size: int) -> Iterator[np.ndarray]:
    for start in range(0, len(concepts), size):
        yield concepts[start : start + size]


class SummedScorer:
    """score(set) = transform(Σ over its exemplars of per-image score rows, set size).

    ``per_image``: (N, K) dense array, scipy sparse matrix, or :class:`Factored`.
    ``transform``: None (the sum itself, as MAMMI) or ``f(sums, sizes, cols)``.
    """

    def __init__(self, per_image, transform: Transform | None = None) -> None:
        self.per_image = per_image
        self.transform = transform
        self.n_images, self.n_concepts = per_image.shape

    def blocks(self, members, concepts=None, budget_mb=DEFAULT_BUDGET_MB):
        members = np.asarray(members)
        concepts = np.arange(self.n_concepts) if concepts is None else np.asarray(concepts)
        factored = isinstance(self.per_image, Factored)
        sizes = set_sizes(members)
        if factored:  # the exemplar sums of the left factor, shared by every column block
            left_sums = exemplar_sums(members, self.per_image.left, self.n_images)
        else:
            weights = membership(members, self.n_images)
        step = columns_per_block(len(members), len(concepts), budget_mb)
        for cols in _column_blocks(concepts, step):
            if factored:
                sums = left_sums @ self.per_image.right[_as_index(cols)].T
            else:
                sums = weights @ self.per_image[:, _as_index(cols)]
                sums = sums.toarray() if hasattr(sums, "toarray") else sums
            if self.transform is None:  # plain sums keep the embeddings' precision
                yield cols, np.asarray(sums)
            else:
                yield cols, self.transform(np.asarray(sums, dtype=np.float64), sizes, cols)


def exemplar_sums(members: np.ndarray, left: np.ndarray, n_images: int) -> np.ndarray:
    """(S, D) sums over each set's filled slots of the rows of ``left`` (N, D): the bits of
    ``membership(members, n_images).astype(left.dtype) @ left``.

    Sets without a repeated row (exemplar sets, null draws) are summed by a compiled loop
    on one thread: ~1 ms for 512 sets of 30 rows of 512 floats, where scipy's sparse
    product and its CSR build took 3-7 ms, a third to a half of the (S x D) @ (D x K)
    product that follows. (A parallel loop measured slower here: its idle OpenMP threads
    spin while BLAS runs that product on the same cores.) Each set adds its rows
    in ascending row order in ``left``'s precision, starting from zero, as scipy does, so
    the sums are equal to the last bit. Sets with repeats (bootstrap resamples, where scipy
    adds count x row once) keep the sparse product."""
    members = np.asarray(members)
    left = np.asarray(left)
    ordered = np.sort(members, axis=1)  # empty slots (-1) first, then ascending rows
    repeats = (ordered[:, 1:] == ordered[:, :-1]) & (ordered[:, 1:] >= 0)
    if (
        repeats.any()
        or left.dtype not in (np.float32, np.float64)
        or not left.flags.c_contiguous
        or (members >= n_images).any()
    ):
        return membership(members, n_images).astype(left.dtype) @ left
    out = np.zeros((len(members), left.shape[1]), dtype=left.dtype)
    if out.size and ordered.size:
        _sums_kernel()(ordered, left, out)
    return out


@functools.cache
def _sums_kernel():
    """Compile (once per process; cached on disk by numba) the per-set row sums."""
    from numba import njit

    @njit(cache=True, nogil=True)
    def kernel(ordered, left, out):  # pragma: no cover - compiled
        n_sets, width = ordered.shape
        dim = left.shape[1]
        for i in range(n_sets):
            acc = out[i]
            for s in range(width):
                r = ordered[i, s]
                if r < 0:
                    continue
                row = left[r]
                for k in range(dim):
                    acc[k] += row[k]

    return kernel


def _as_index(cols: np.ndarray) -> slice | np.ndarray:
    """A contiguous run of concept indices as a slice (a view instead of a copy)."""
    if len(cols) and cols[-1] - cols[0] + 1 == len(cols) and np.all(np.diff(cols) == 1):
        return slice(int(cols[0]), int(cols[-1]) + 1)
    return cols


def score_sets(
    scorer: SetScorer, members: np.ndarray, budget_mb: float = DEFAULT_BUDGET_MB
) -> np.ndarray:
    """(S, K) scores of every set for every concept (callers batch S to fit memory)."""
    blocks = scorer.blocks(members, budget_mb=budget_mb)
    cols, block = next(blocks)
    if len(cols) == scorer.n_concepts:  # a single block: no copy
        return block
    out = np.empty((len(members), scorer.n_concepts), dtype=block.dtype)
    out[:, _as_index(cols)] = block
    for cols, block in blocks:
        out[:, _as_index(cols)] = block
    return out


# -- assignment rules ------------------------------------------------------------------
@dataclass(frozen=True)
class AlphaCut:
    """Keep concepts scoring within (1 − alpha/100) of the best: s ≥ best − (1 − α/100)·|best|.

    For a positive best this is MAMMI's s ≥ (α/100)·best; the |best| form keeps the cut
    meaningful when every score is negative. The best concept is always kept.
    """

    alpha: float = 95.0

    def floor(self, scores: np.ndarray) -> np.ndarray:
        best = scores.max(axis=1)
        return best - (1.0 - self.alpha / 100.0) * np.abs(best)


@dataclass(frozen=True)
class TopK:
    """Keep the k best concepts (ties at the k-th score are kept)."""

    k: int = 1

    def floor(self, scores: np.ndarray) -> np.ndarray:
        k = min(self.k, scores.shape[1])
        return np.partition(scores, scores.shape[1] - k, axis=1)[:, scores.shape[1] - k]


Rule = AlphaCut | TopK


def assign(scores: np.ndarray, rule: Rule) -> list[np.ndarray]:
    """Per row of (S, K) scores: the kept concept indices, best first (ties by index)."""
    scores = np.asarray(scores)
    # flatnonzero: far faster than 2-D nonzero on a large, mostly False mask
    rows, cols = np.divmod(np.flatnonzero(scores >= rule.floor(scores)[:, None]), scores.shape[1])
    order = np.lexsort((cols, -scores[rows, cols], rows))
    bounds = np.searchsorted(rows[order], np.arange(1, len(scores)))
    return np.split(cols[order], bounds)


def kept_mask(scores: np.ndarray, candidates: np.ndarray, rule: Rule) -> np.ndarray:
    """(S, c) bool: is candidate concept ``candidates[j]`` still kept in row s?"""
    return scores[:, candidates] >= rule.floor(scores)[:, None]


# -- permutation p-values ----------------------------------------------------------------
def random_sets(n_images: int, size: int, n_sets: int, rng: np.random.Generator) -> np.ndarray:
    """(n_sets, size) pool rows, each row drawn without replacement."""
    if size > n_images:
        raise ValueError(f"cannot draw {size} distinct images from a pool of {n_images}")
    if size == 0:
        return np.zeros((n_sets, 0), dtype=np.int64)
    if 16 * size < n_images:  # small sets from a large pool: Floyd-style draws per row
        return np.stack([rng.choice(n_images, size, replace=False) for _ in range(n_sets)])
    # otherwise the first `size` of a random order, in row chunks of <= 4M keys
    chunk = max(1, (1 << 22) // n_images)
    parts = []
    for start in range(0, n_sets, chunk):
        keys = rng.random((min(chunk, n_sets - start), n_images))
        parts.append(np.argpartition(keys, size - 1, axis=1)[:, :size])
    return np.concatenate(parts).astype(np.int64)


def _standardise(x: np.ndarray, mean: np.ndarray, sd: np.ndarray) -> np.ndarray:
    # a concept whose set score does not vary under the null carries no evidence: z = 0
    ok = sd > 1e-12 * (1.0 + np.abs(mean))
    return np.where(ok, (x - mean) / np.where(ok, sd, 1.0), 0.0)


def permutation_pvalues(
    scorer: SetScorer,
    members: np.ndarray,
    assigned: Sequence[np.ndarray],
    *,
    n_permutations: int,
    seed: int,
    null: str = "max",
    observed: Sequence[np.ndarray] | None = None,
    budget_mb: float = DEFAULT_BUDGET_MB,
) -> list[np.ndarray]:
    """Per set: p-values of its ``assigned`` concepts against random sets of its size."""
    if null not in ("max", "marginal"):
        raise ValueError(f"null must be 'max' or 'marginal', not {null!r}")
    members = np.asarray(members)
    sizes = set_sizes(members)
    if observed is None:
        observed = _observed_scores(scorer, members, assigned, budget_mb)
    pvalues = [np.ones(len(a)) for a in assigned]
    for size in np.unique(sizes[[len(a) > 0 for a in assigned]] if len(assigned) else []):
        which = [i for i in np.flatnonzero(sizes == size) if len(assigned[i])]
        rng = np.random.default_rng([seed, 0, int(size)])
        draws = random_sets(scorer.n_images, int(size), n_permutations, rng)
        unit_of = np.concatenate([np.full(len(assigned[i]), i) for i in which])
        concept_of = np.concatenate([np.asarray(assigned[i]) for i in which])
        obs = np.concatenate([np.asarray(observed[i], dtype=np.float64) for i in which])
        if null == "max":
            p = _maxt_pvalues(scorer, draws, concept_of, obs, budget_mb)
        else:
            p = _marginal_pvalues(scorer, draws, concept_of, obs, budget_mb)
        for i in which:
            pvalues[i] = p[unit_of == i]
    return pvalues


def _maxt_pvalues(scorer, draws, concept_of, obs, budget_mb) -> np.ndarray:
    best_z = np.full(len(draws), -np.inf)
    mean = np.zeros(scorer.n_concepts)
    sd = np.zeros(scorer.n_concepts)
    for cols, null in scorer.blocks(draws, budget_mb=budget_mb):
        mean[cols] = null.mean(axis=0)
        sd[cols] = null.std(axis=0, ddof=1) if len(null) > 1 else 0.0
        z = _standardise(null, mean[cols], sd[cols])
        best_z = np.maximum(best_z, z.max(axis=1))
    z_obs = _standardise(obs, mean[concept_of], sd[concept_of])
    null_sorted = np.sort(best_z)
    at_least = len(null_sorted) - np.searchsorted(null_sorted, z_obs - 1e-12, side="left")
    return (1.0 + at_least) / (1.0 + len(draws))


def _marginal_pvalues(scorer, draws, concept_of, obs, budget_mb) -> np.ndarray:
    wanted = np.unique(concept_of)
    at_least = np.zeros(len(concept_of))
    for cols, null in scorer.blocks(draws, concepts=wanted, budget_mb=budget_mb):
        local = np.searchsorted(cols, concept_of)
        hit = (local < len(cols)) & (cols[np.minimum(local, len(cols) - 1)] == concept_of)
        idx = np.flatnonzero(hit)
        tol = 1e-12 * (1.0 + np.abs(obs[idx]))
        at_least[idx] = (null[:, local[idx]] >= obs[idx] - tol).sum(axis=0)
    return (1.0 + at_least) / (1.0 + len(draws))


def _observed_scores(scorer, members, assigned, budget_mb) -> list[np.ndarray]:
    wanted = np.unique(np.concatenate([np.asarray(a, np.int64) for a in assigned] or [[]]))
    table = np.zeros((len(members), scorer.n_concepts))
    if len(wanted):
        for cols, block in scorer.blocks(
            members, concepts=wanted.astype(np.int64), budget_mb=budget_mb
        ):
            table[:, cols] = block
    return [table[i, np.asarray(a, np.int64)] for i, a in enumerate(assigned)]


# -- bootstrap stability -------------------------------------------------------------------
def bootstrap_stability(
    scorer: SetScorer,
    members: np.ndarray,
    assigned: Sequence[np.ndarray],
    rule: Rule,
    *,
    n_bootstrap: int,
    seed: int,
    keys: Sequence[int] | None = None,
    budget_mb: float = DEFAULT_BUDGET_MB,
) -> list[np.ndarray]:
    """Per set: for each assigned concept, the fraction of bootstrap resamples of the set
    (with replacement, rank order kept) in which ``rule`` still assigns it.

    ``keys`` (default: the set's position) seed each set's resamples, so a unit gets the
    same resamples whichever other units are in the call.
    """
    members = np.asarray(members)
    keys = np.arange(len(members)) if keys is None else np.asarray(keys)
    stability = [np.zeros(len(a)) for a in assigned]
    todo = [i for i in range(len(members)) if len(assigned[i]) and (members[i] >= 0).any()]
    # full rows are needed (the rule looks at every concept): batch units to fit the budget
    rows_per_batch = max(
        n_bootstrap, int(budget_mb * 2**20 // (8 * _COPIES * max(1, scorer.n_concepts)))
    )
    units_per_batch = max(1, rows_per_batch // n_bootstrap)
    for start in range(0, len(todo), units_per_batch):
        batch = todo[start : start + units_per_batch]
        resampled = np.concatenate(
            [_resample(members[i], n_bootstrap, seed, int(keys[i])) for i in batch]
        )
        scores = score_sets(scorer, resampled, budget_mb)
        for j, i in enumerate(batch):
            rows = scores[j * n_bootstrap : (j + 1) * n_bootstrap]
            stability[i] = kept_mask(rows, np.asarray(assigned[i]), rule).mean(axis=0)
    return stability


def _resample(row: np.ndarray, n_bootstrap: int, seed: int, key: int) -> np.ndarray:
    """(n_bootstrap, len(row)) resamples of the set's filled slots, -1 padded like ``row``."""
    filled = row[row >= 0]
    rng = np.random.default_rng([seed, 1, key])
    picks = np.sort(rng.integers(0, len(filled), size=(n_bootstrap, len(filled))), axis=1)
    out = np.full((n_bootstrap, len(row)), -1, dtype=np.int64)
    out[:, : len(filled)] = filled[picks]  # sorted slot indices keep the rank order
    return out


# -- across units --------------------------------------------------------------------------
def benjamini_hochberg(p_values: Sequence[float] | np.ndarray) -> np.ndarray:
    """Benjamini–Hochberg adjusted p-values (q-values), aligned with ``p_values``.

    With m tests and p sorted ascending, q_(i) = min over j >= i of m·p_(j)/j, capped at 1;
    rejecting every test with q <= level keeps the expected share of false discoveries
    among the rejected at most ``level`` (independent or positively dependent tests).
    NaN p-values are not tests: they get NaN and do not count in m.
    """
    p = np.asarray(p_values, dtype=np.float64)
    q = np.full(p.shape, np.nan)
    tested = np.flatnonzero(~np.isnan(p))
    if not len(tested):
        return q
    order = tested[np.argsort(p[tested], kind="stable")]
    m = len(order)
    scaled = p[order] * m / np.arange(1, m + 1)
    q[order] = np.minimum(np.minimum.accumulate(scaled[::-1])[::-1], 1.0)
    return q


# -- both ----------------------------------------------------------------------------------
@dataclass
class Confidence:
    p_values: list[np.ndarray]  # per set, aligned with its assigned concepts
    stability: list[np.ndarray]


def assess(
    scorer: SetScorer,
    members: np.ndarray,
    assigned: Sequence[np.ndarray],
    rule: Rule,
    *,
    n_permutations: int,
    n_bootstrap: int,
    seed: int,
    null: str = "max",
    keys: Sequence[int] | None = None,
    observed: Sequence[np.ndarray] | None = None,
    budget_mb: float = DEFAULT_BUDGET_MB,
) -> Confidence:
    """Permutation p-values and bootstrap stability of every assigned concept."""
    return Confidence(
        p_values=permutation_pvalues(
            scorer,
            members,
            assigned,
            n_permutations=n_permutations,
            seed=seed,
            null=null,
            observed=observed,
            budget_mb=budget_mb,
        ),
        stability=bootstrap_stability(
            scorer,
            members,
            assigned,
            rule,
            n_bootstrap=n_bootstrap,
            seed=seed,
            keys=keys,
            budget_mb=budget_mb,
        ),
    )
