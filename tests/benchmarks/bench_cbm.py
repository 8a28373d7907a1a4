"""Benchmark: batched OMP (neurodissect.cbm.omp.batched_omp) against scikit-learn's own
batched call ``orthogonal_mp(D.T, Y, n_nonzero_coefs=T, precompute=True)`` with a 2-D Y
(one Gram matrix and one D.Y product shared by every column) — the strongest fair baseline.

Equal threads on both sides:
- 1 vs 1: ours with numba and BLAS pinned to one thread; sklearn with BLAS pinned to one
  thread (threadpoolctl).
- all vs all: ours with numba on every core; sklearn's batched call split over the columns
  with joblib (one loky worker per core, each with BLAS pinned to one thread).

Data: N = 2,000 random feature vectors (C = 512), random unit-norm dictionaries of
K = 50..200 atoms, T = 20..160 non-zeros. Every coefficient must agree: max |diff| <= 1e-6.
Target: ours >= 10x sklearn at equal threads. Also, when CUDA is present, the GPU path.

Records: results/bench/cbm.json.
Run: .venv/bin/python tests/benchmarks/bench_cbm.py [--quick]
"""

from __future__ import annotations

import os
import sys
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import record  # noqa: E402

N, C = 2000, 512
SETTINGS = [(50, 20), (100, 20), (100, 50), (200, 20), (200, 80), (200, 160)]
if record.quick():
    N, SETTINGS = 400, [(100, 20), (200, 80)]
TARGET, TOLERANCE = 10.0, 1e-6
ALL = os.cpu_count() or 1


def sklearn_batched(X: np.ndarray, D: np.ndarray, t: int) -> np.ndarray:
    """scikit-learn's batched OMP of the rows of X: (N, K)."""
    from sklearn.linear_model import orthogonal_mp

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return orthogonal_mp(D.T, X.T, n_nonzero_coefs=t, precompute=True).T


def _pinned_block(X, D, t):
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):
        return sklearn_batched(X, D, t)


def sklearn_parallel(X: np.ndarray, D: np.ndarray, t: int, n_jobs: int) -> np.ndarray:
    from joblib import Parallel, delayed

    blocks = np.array_split(np.arange(len(X)), n_jobs)
    parts = Parallel(n_jobs=n_jobs, backend="loky")(
        delayed(_pinned_block)(X[b], D, t) for b in blocks
    )
    return np.concatenate(parts)


def main() -> int:
    import numba
    import torch
    from threadpoolctl import threadpool_limits

    from neurodissect.cbm.omp import batched_omp

    rng = np.random.default_rng(0)
    X = rng.normal(size=(N, C))
    records = []
    for k, t in SETTINGS:
        D = rng.normal(size=(k, C))
        D /= np.linalg.norm(D, axis=1, keepdims=True)
        sizes = {"n": N, "c": C, "k": k, "t": t, "dtype": "float64"}
        for threads in sorted({1, ALL}):
            numba.set_num_threads(threads)
            if threads == 1:

                def base(D=D, t=t):
                    with threadpool_limits(1):
                        return sklearn_batched(X, D, t)

                base_desc = "sklearn orthogonal_mp(precompute=True), BLAS 1 thread"
            else:

                def base(D=D, t=t, threads=threads):
                    return sklearn_parallel(X, D, t, threads)

                base_desc = f"sklearn orthogonal_mp(precompute=True), joblib {threads} workers x 1 BLAS thread"  # noqa: E501

            def ours(D=D, t=t, threads=threads):
                with threadpool_limits(threads):
                    return batched_omp(X, D, t)

            ours(), base()  # warm-up: numba compile/cache load, loky workers, BLAS set-up
            timing = record.interleaved({"ours": ours, "sklearn": base})
            diff = float(np.abs(timing["ours"]["out"] - timing["sklearn"]["out"]).max())
            fields = {
                **sizes,
                "threads_ours": threads,
                "threads_baseline": threads,
                "repeats": len(timing["ours"]["times_s"]),
                "max_abs_diff": diff,
                "ours": f"batched_omp numba {threads} thread(s)",
                "baseline": base_desc,
            }
            records.append(
                record.check(
                    f"OMP K={k} T={t} {threads}v{threads}: max|diff|",
                    diff <= TOLERANCE,
                    diff,
                    **fields,
                )
            )
            records.append(
                record.speed_record(
                    f"OMP K={k} T={t} {threads}v{threads} threads",
                    timing["ours"],
                    timing["sklearn"],
                    target=TARGET,
                    **fields,
                )
            )
        numba.set_num_threads(ALL)
        if torch.cuda.is_available():

            def gpu(D=D, t=t):
                out = batched_omp(X, D, t, device="cuda", memory_mb=2048)
                torch.cuda.synchronize()
                return out

            gpu()
            timing = record.interleaved(
                {"gpu": gpu, "sklearn": lambda D=D, t=t: sklearn_parallel(X, D, t, ALL)}
            )
            diff = float(np.abs(timing["gpu"]["out"] - timing["sklearn"]["out"]).max())
            records.append(
                record.check(
                    f"OMP K={k} T={t} cuda: max|diff|",
                    diff <= TOLERANCE,
                    diff,
                    **sizes,
                    device="cuda",
                )
            )
            records.append(
                record.speed_record(
                    f"OMP K={k} T={t} cuda vs sklearn all cores",
                    timing["gpu"],
                    timing["sklearn"],
                    target=TARGET,
                    **sizes,
                    device="cuda",
                    threads_baseline=ALL,
                    repeats=len(timing["gpu"]["times_s"]),
                )
            )
    record.write("cbm", records)
    return record.exit_code(records)


if __name__ == "__main__":
    sys.exit(main())
