"""Batched orthogonal matching pursuit (OMP) over a small dictionary.

Concept scores are the OMP coefficients of each feature vector x (C,) over the
dictionary D (K, C) of selected CAVs (unit-norm rows): at most T = n_nonzero atoms
are picked greedily, each time the atom most correlated with the residual, and the
coefficients of the picked atoms are the least-squares fit on them.

Everything is computed from the Gram matrix G = D Dᵀ (K, K) and the correlations
c = X Dᵀ (N, K); neither the residual nor any C-dimensional vector is formed.
With L the Cholesky factor of G_SS on the active set S (G_SS = L Lᵀ), the active
atoms orthonormalised are Q = L⁻¹ D_S, and the algorithm keeps per image

    P = Q Dᵀ = L⁻¹ G_S,:   (t, K)   correlations of the orthonormal atoms with every atom
    z = Q x  = L⁻¹ c_S     (t,)     the image's coordinates on them
    α = D r  = c − Pᵀ z    (K,)     correlations of the residual with every atom

Adding atom λ: its new Cholesky row is w = L⁻¹ G_S,λ = P[:, λ] (a gather, no solve),
the pivot d = √(G_λλ − ‖w‖²), the new row of P is (G_λ,: − wᵀ P)/d, z_t = (c_λ − w·z)/d
and α −= z_t · (new row of P). So a step costs O(tK) per image (one batched
vector-matrix product) and the coefficients γ = L⁻ᵀ z are solved once, at the end
(one triangular solve). The CPU path (:func:`omp_from_gram`) runs these steps as one
compiled loop per image (numba), images in parallel over the cores; the GPU path
(:func:`omp_from_gram_torch`) advances all rows of a chunk together in torch, chunks
sized by ``memory_mb``.

The result equals scikit-learn's ``orthogonal_mp(D.T, x, n_nonzero_coefs=T,
precompute=False)`` per image, including its early stops: an image stops (keeping
its coefficients) when the best atom is already active, or its squared correlation
with x (sic: with x, not with the residual — sklearn's test) is below machine
epsilon, or the new atom is linearly dependent on the active ones (pivot² ≤ eps).
sklearn's dependence test is absolute and tiny: two near-duplicate CAVs (cosine
0.99999) pass it with pivot² ≈ 2e-5 and get coefficients of opposite sign ~1/pivot
that cancel. ``min_pivot`` (pivot² threshold, on unit-norm atoms the squared sine of the
new atom's angle to the active span) stops there instead; its default, machine
epsilon, is sklearn's test.
The compiled loop simply leaves a stopped image. In the batched torch path a stopped
image takes a dummy atom (index K: an extra unit atom orthogonal to all, with zero
correlation) on each later step, so all rows keep the same active-set length and the
dummy coefficients are exactly zero.
"""

from __future__ import annotations

import functools

import numpy as np

DEFAULT_MEMORY_MB = 16.0
# the GPU path: one chunk's state is advanced by ~T small kernels per step, so chunks
# must be large for the launches to pay (the CPU path wants cache-sized ones)
DEFAULT_GPU_MEMORY_MB = 2048.0
BACKENDS = ("auto", "numba", "torch")


def rows_per_chunk(n_atoms: int, n_nonzero: int, memory_mb: float = DEFAULT_MEMORY_MB) -> int:
    """Images per chunk so the float64 state (P: T x K, L: T x T, a few K rows) fits."""
    per_row = 8 * (n_nonzero * (n_atoms + 1) + n_nonzero * n_nonzero + 8 * (n_atoms + 1))
    return max(1, int(memory_mb * 2**20 // per_row))


def omp_from_gram(
    corr: np.ndarray, gram: np.ndarray, n_nonzero: int, min_pivot: float | None = None
) -> np.ndarray:
    """OMP coefficients (n, K) for correlations ``corr`` (n, K) = X Dᵀ and ``gram`` (K, K)
    in float64 — the CPU path: one compiled loop per image (numba), images spread over
    the cores. An image's whole state (P: T x K) stays in its core's cache for all T
    steps, where a batched numpy version streams every image's P from memory each step.
    ``n_nonzero`` must be ≤ K."""
    coef = np.array(corr, dtype=np.float64, order="C")  # a copy: solved in place
    _omp_in_place(coef, gram, n_nonzero, min_pivot)
    return coef


def _omp_in_place(
    corr: np.ndarray, gram: np.ndarray, n_nonzero: int, min_pivot: float | None
) -> None:
    """Overwrite each row of ``corr`` (n, K), C-contiguous float64, with its coefficients."""
    import numba

    n, k = corr.shape
    t_max = int(n_nonzero)
    if not 1 <= t_max <= k:
        raise ValueError(f"n_nonzero must be in [1, {k}] (the number of atoms), got {n_nonzero}")
    gram = np.ascontiguousarray(gram, dtype=np.float64)
    eps = float(np.finfo(np.float64).eps)
    with numba.parallel_chunksize(1):  # one task at a time to whichever thread is free
        _omp_kernel()(corr, gram, t_max, eps, max(eps, float(min_pivot or 0.0)), _ROWS_PER_TASK)


# Images per parallel task: each task allocates its scratch (P: T x K, ...) once and reuses
# it for its images (an allocation per image of P, 256 kB at T=160, K=200, went through
# mmap/page faults on every image); tasks are handed out one at a time (dynamic schedule)
# so a core slowed by other work does not hold up the whole call.
_ROWS_PER_TASK = 16


@functools.cache
def _omp_kernel():
    """Compile (once per process; cached on disk by numba) the per-image OMP loop."""
    from numba import njit, prange

    @njit(parallel=True, cache=True, nogil=True)
    def kernel(coef, gram, t_max, eps, min_pivot, rows_per_task):  # pragma: no cover
        n, k = coef.shape
        n_tasks = (n + rows_per_task - 1) // rows_per_task
        for task in prange(n_tasks):
            c = np.empty(k)
            alpha = np.empty(k)
            P = np.empty((t_max, k))
            chol = np.zeros((t_max, t_max))
            z = np.zeros(t_max)
            active = np.empty(t_max, dtype=np.int64)
            for i in range(task * rows_per_task, min(n, (task + 1) * rows_per_task)):
                # the row holds the image's correlations on entry, its coefficients on exit
                for j in range(k):
                    c[j] = coef[i, j]
                    alpha[j] = c[j]
                    coef[i, j] = 0.0
                used = 0
                for t in range(t_max):
                    lam, best = 0, -1.0
                    for j in range(k):
                        if abs(alpha[j]) > best:
                            lam, best = j, abs(alpha[j])
                    stop = c[lam] ** 2 < eps
                    for s in range(t):
                        stop |= active[s] == lam
                    pivot = gram[lam, lam]
                    wz = 0.0
                    for s in range(t):  # the new Cholesky row w = P[:, λ]
                        w = P[s, lam]
                        chol[t, s] = w
                        pivot -= w * w
                        wz += w * z[s]
                    if stop or (t > 0 and pivot <= min_pivot):
                        break
                    d = np.sqrt(max(pivot, eps))
                    chol[t, t] = d
                    z_t = (c[lam] - wz) / d
                    row = P[t]
                    row[:] = gram[lam]
                    for s in range(t):
                        w = chol[t, s]
                        prev = P[s]
                        for j in range(k):
                            row[j] -= w * prev[j]
                    for j in range(k):
                        row[j] /= d
                        alpha[j] -= z_t * row[j]
                    z[t] = z_t
                    active[t] = lam
                    used = t + 1
                for s in range(used - 1, -1, -1):  # γ = L⁻ᵀ z
                    g = z[s]
                    for r in range(s + 1, used):
                        g -= chol[r, s] * z[r]
                    z[s] = g / chol[s, s]
                    coef[i, active[s]] = z[s]

    return kernel


def omp_from_gram_torch(corr, gram, n_nonzero: int, min_pivot: float | None = None):
    """:func:`omp_from_gram` on torch tensors (any device) — the GPU path of
    :func:`batched_omp`. Computed in float64 whatever the input dtype: in float32 the
    atom choices of many images change (near-ties of |α| and the pivot test)."""
    import torch
    from torch.linalg import solve_triangular

    corr, gram = corr.double(), gram.to(device=corr.device, dtype=torch.float64)
    n, k = corr.shape
    t_max = int(n_nonzero)
    if not 1 <= t_max <= k:
        raise ValueError(f"n_nonzero must be in [1, {k}] (the number of atoms), got {n_nonzero}")
    dtype, device = corr.dtype, corr.device
    eps = float(torch.finfo(dtype).eps)
    min_pivot = max(eps, float(min_pivot or 0.0))
    gram_ext = torch.zeros((k + 1, k + 1), dtype=dtype, device=device)
    gram_ext[:k, :k] = gram
    gram_ext[k, k] = 1.0  # the dummy atom
    corr_ext = torch.cat([corr, torch.zeros((n, 1), dtype=dtype, device=device)], dim=1)
    diag = gram_ext.diagonal()

    rows = torch.arange(n, device=device)
    P = torch.zeros((n, t_max, k + 1), dtype=dtype, device=device)
    # identity: steps never taken (all rows stopped early) act as dummy atoms
    chol = torch.eye(t_max, dtype=dtype, device=device).repeat(n, 1, 1)
    z = torch.zeros((n, t_max), dtype=dtype, device=device)
    active = torch.full((n, t_max), k, dtype=torch.long, device=device)
    done = torch.zeros(n, dtype=torch.bool, device=device)
    alpha = corr.clone()
    for t in range(t_max):
        lam = alpha.abs().argmax(dim=1)
        stop = (active[:, :t] == lam[:, None]).any(dim=1) | (corr[rows, lam] ** 2 < eps)
        if t:
            w = P[rows, :t, lam]  # the new Cholesky row L⁻¹ G_S,λ
            pivot = diag[lam] - (w * w).sum(dim=1)
            stop |= pivot <= min_pivot
        else:
            w = torch.zeros((n, 0), dtype=dtype, device=device)
            pivot = diag[lam]
        done |= stop
        # a host sync: only every 16 steps (steps after all rows stopped add zeros)
        if t % 16 == 15 and bool(done.all()):
            break
        lam = torch.where(done, k, lam)
        w = torch.where(done[:, None], 0.0, w)
        d = torch.where(done, 1.0, torch.sqrt(pivot.clamp_min(eps)))
        chol[:, t, :t] = w
        chol[:, t, t] = d
        active[:, t] = lam
        z_t = (corr_ext[rows, lam] - (w * z[:, :t]).sum(dim=1)) / d
        z[:, t] = z_t
        new = gram_ext[lam]
        if t:
            new = new - torch.einsum("nt,ntk->nk", w, P[:, :t, :])
        new = new / d[:, None]
        P[:, t, :] = new
        alpha -= z_t[:, None] * new[:, :k]
    gamma = solve_triangular(chol.mT, z.unsqueeze(-1), upper=True).squeeze(-1)
    coef = torch.zeros((n, k + 1), dtype=dtype, device=device)
    coef.scatter_(1, active, gamma)  # dummy entries (column K) are zero
    return coef[:, :k]


def omp_backend(backend: str, device: str) -> str:
    """``auto`` → torch on a CUDA device, numba (the compiled loop) on the CPU."""
    if backend not in BACKENDS:
        raise ValueError(f"OMP backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "auto":
        return "torch" if str(device).startswith("cuda") else "numba"
    return backend


def batched_omp(
    X: np.ndarray,
    D: np.ndarray,
    n_nonzero: int,
    *,
    memory_mb: float = DEFAULT_MEMORY_MB,
    device: str = "cpu",
    backend: str = "auto",
    gpu_memory_mb: float = DEFAULT_GPU_MEMORY_MB,
    min_pivot: float | None = None,
) -> np.ndarray:
    """OMP coefficients (N, K) of the rows of ``X`` (N, C) over the atoms ``D`` (K, C).

    ``n_nonzero`` is clamped to min(K, C): past C atoms the residual is zero up to
    rounding and further picks are numerical noise (scikit-learn's result there is
    arbitrary too). Computed in float64 in chunks of rows: numba on the CPU (chunks of
    ``memory_mb``), torch on ``device`` (chunks of ``gpu_memory_mb``); ``backend``
    ``torch`` also runs the torch path on the CPU (tests; both paths agree to rounding).
    ``X ≈ coef @ D``.
    """
    X = np.asarray(X)
    D = np.asarray(D, dtype=np.float64)
    k = D.shape[0]
    if X.ndim != 2 or D.ndim != 2 or X.shape[1] != D.shape[1]:
        raise ValueError(f"X {X.shape} and D {D.shape} must be (N, C) and (K, C)")
    out = np.zeros((len(X), k), dtype=np.float64)
    if not len(X) or not k:
        return out
    t_max = min(int(n_nonzero), k, D.shape[1])
    if omp_backend(backend, device) == "torch":
        import torch

        step = rows_per_chunk(k, t_max, gpu_memory_mb)
        d_t = torch.from_numpy(D).to(device)
        gram_t = d_t @ d_t.T
        for start in range(0, len(X), step):
            x = torch.from_numpy(np.asarray(X[start : start + step], np.float64)).to(device)
            coef = omp_from_gram_torch(x @ d_t.T, gram_t, t_max, min_pivot)
            out[start : start + len(x)] = coef.cpu().numpy()
        return out
    step = rows_per_chunk(k, t_max, memory_mb)
    gram = D @ D.T
    # Two phases, not alternating per chunk: every chunk's correlations (BLAS) into
    # ``out``, then one compiled call solves all rows in place (the chunks, and so the
    # products' bytes, are as before).
    for start in range(0, len(X), step):
        x = np.asarray(X[start : start + step], dtype=np.float64)
        np.matmul(x, D.T, out=out[start : start + len(x)])
    _omp_in_place(out, gram, t_max, min_pivot)
    return out
