"""Benchmark: batched OMP (neurodissect.cbm.omp.batched_omp) vs a per-image loop over
scikit-learn's ``orthogonal_mp(D.T, x, n_nonzero_coefs=T, precompute=False)``.

Data: N = 2,000 random feature vectors (C = 512) and random unit-norm dictionaries of
K = 50..200 atoms, T = n_nonzero 20..160. Ours codes all N images; the scikit-learn
loop codes the first N_REF of them (it is slow) and is compared per image. Printed per
setting: max |coef difference| on the shared images (must be ≤ 1e-6) and the speed
ratio (target ≥ 20), on the CPU and, when one is present, on a CUDA device.

Run: .venv/bin/python tests/benchmarks/bench_cbm.py   (under a minute on 2 cores)
"""

from __future__ import annotations

import sys
import time
import warnings

import numpy as np

N, C, N_REF = 2000, 512, 200
SETTINGS = [(50, 20), (100, 20), (100, 50), (200, 20), (200, 80), (200, 160)]
TARGET = 20.0


def sklearn_loop(X: np.ndarray, D: np.ndarray, t: int) -> np.ndarray:
    from sklearn.linear_model import orthogonal_mp

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.stack([orthogonal_mp(D.T, x, n_nonzero_coefs=t, precompute=False) for x in X])


def timed(fn, *args, **kwargs):
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - start


def main() -> int:
    import torch

    from neurodissect.cbm.omp import batched_omp

    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    rng = np.random.default_rng(0)
    X = rng.normal(size=(N, C))
    print(f"N = {N} images, C = {C} features; scikit-learn loop timed on {N_REF} images, "
          f"torch threads = {torch.get_num_threads()}")  # fmt: skip
    print(f"{'K':>4} {'T':>4} {'device':>6} {'ours ms/img':>12} {'sklearn ms/img':>15} "
          f"{'ratio':>7} {'max|diff|':>10}")  # fmt: skip
    worst_diff, ratios = 0.0, []
    for k, t in SETTINGS:
        D = rng.normal(size=(k, C))
        D /= np.linalg.norm(D, axis=1, keepdims=True)
        sklearn_loop(X[:2], D, t)  # warm-up (first-call imports and BLAS set-up)
        ref, t_ref = timed(sklearn_loop, X[:N_REF], D, t)
        per_ref = t_ref / N_REF
        for dev in devices:
            batched_omp(X[:64], D, t, device=dev)  # warm-up (CUDA context, allocator)
            if dev == "cuda":
                torch.cuda.synchronize()
            ours, t_ours = timed(batched_omp, X, D, t, device=dev, memory_mb=32 if
                                 dev == "cpu" else 2048)  # fmt: skip
            diff = float(np.abs(ours[:N_REF] - ref).max())
            worst_diff = max(worst_diff, diff)
            ratio = per_ref / (t_ours / N)
            ratios.append((dev, k, t, ratio))
            print(f"{k:>4} {t:>4} {dev:>6} {1e3 * t_ours / N:>12.3f} {1e3 * per_ref:>15.3f} "
                  f"{ratio:>6.1f}x {diff:>10.1e}", flush=True)  # fmt: skip
    cpu = [r for d, _, _, r in ratios if d == "cpu"]
    print(f"max |diff| {worst_diff:.1e} (target <= 1e-6); CPU speed-up {min(cpu):.1f}x .. "
          f"{max(cpu):.1f}x (target >= {TARGET:.0f}x; "
          f"{sum(r >= TARGET for r in cpu)}/{len(cpu)} settings reach it)")  # fmt: skip
    return 0 if worst_diff <= 1e-6 else 1


if __name__ == "__main__":
    sys.exit(main())
