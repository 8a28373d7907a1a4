"""Benchmark: the reports namer (sparse phrase indicators, one shared permutation
null per exemplar-set size, batched bootstrap) against the naive way (per latent,
a fresh null of dense sums, one permutation at a time). Both compute the same
max-statistic p-value; prints the speed ratio and how far the p-values agree.

Run: .venv/bin/python tests/benchmarks/bench_naming.py
"""

from __future__ import annotations

import time

import numpy as np
from scipy import sparse

from neurodissect.naming.documents import ReportCorpus
from neurodissect.naming.reports import LogOddsTransform, name_by_reports
from neurodissect.naming.run import NamingParams

N_DOCS, N_PHRASES, N_LATENTS, N_PERMUTATIONS = 2000, 500, 100, 200


def naive_pvalues(dense, sets, names, transform, n_permutations, rng):
    """Per latent: draw its own random sets, score them one by one, max-T p-value."""
    pvalues = np.empty(len(sets))
    cols = np.arange(dense.shape[1])
    for i, members in enumerate(sets):
        n = len(members)
        null = np.stack([
            transform(dense[rng.choice(len(dense), n, replace=False)].sum(axis=0)[None], np.array([n]), cols)[0]
            for _ in range(n_permutations)
        ])  # fmt: skip
        mean, sd = null.mean(axis=0), null.std(axis=0, ddof=1)
        ok = sd > 1e-12
        z_null = np.where(ok, (null - mean) / np.where(ok, sd, 1), 0).max(axis=1)
        observed = transform(dense[members].sum(axis=0)[None], np.array([n]), cols)[0]
        z_obs = (observed[names[i]] - mean[names[i]]) / sd[names[i]]
        pvalues[i] = (1 + np.sum(z_null >= z_obs - 1e-12)) / (1 + n_permutations)
    return pvalues


def main() -> None:
    rng = np.random.default_rng(0)
    freq = rng.uniform(0.005, 0.1, N_PHRASES)
    dense = (rng.random((N_DOCS, N_PHRASES)) < freq).astype(np.float64)
    ids = np.array([f"img{i}" for i in range(N_DOCS)])
    phrases = np.array([f"phrase {j}" for j in range(N_PHRASES)])
    corpus = ReportCorpus(ids, np.full(N_DOCS, "report"), phrases, sparse.csr_matrix(dense))
    sets = [
        np.sort(rng.choice(N_DOCS, rng.integers(20, 51), replace=False)) for _ in range(N_LATENTS)
    ]
    candidates = {u: list(ids[s]) for u, s in enumerate(sets)}
    params = NamingParams(n_permutations=N_PERMUTATIONS, n_bootstrap=1, min_support=1)

    start = time.perf_counter()
    rows, _ = name_by_reports(corpus, candidates, params)
    t_fast = time.perf_counter() - start

    names = [int(np.flatnonzero(phrases == r["name"])[0]) for r in rows]
    transform = LogOddsTransform(dense.sum(axis=0), N_DOCS, params.prior_strength)
    start = time.perf_counter()
    slow = naive_pvalues(dense, sets, names, transform, N_PERMUTATIONS, rng)
    t_naive = time.perf_counter() - start
    fast = np.array([r["p_value"] for r in rows])
    print(f"reports namer p-values: {N_LATENTS} latents, {N_PHRASES} phrases, "
          f"{N_DOCS} reports, {N_PERMUTATIONS} permutations")  # fmt: skip
    print(f"  namer (shared null, sparse): {t_fast:.2f} s; naive per-latent null: {t_naive:.2f} s")
    print(f"  mean |p_namer - p_naive| = {np.mean(np.abs(fast - slow)):.3f} (Monte-Carlo noise)")
    print(f"ratio = {t_naive / t_fast:.1f}")


if __name__ == "__main__":
    main()
