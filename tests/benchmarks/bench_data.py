"""Benchmark: synthetic data generation and prepare_dataset at the demo size.

1. ``generate`` 3,000 images at 64 px (synthderm and synthcxr; 1 and 2 worker
   processes) against a floor measured in the same run: writing 3,000 PNGs of
   random pixels with the same writer (no drawing). Target: the demo dataset in
   well under 30 s wall time.
2. ``prepare_dataset`` on the synthderm folder against a bare loop that reads,
   hashes and decodes the same images (what the checks cannot avoid).
   Target ratio <= 2.

Run: .venv/bin/python tests/benchmarks/bench_data.py
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("TQDM_DISABLE", "1")  # progress bars would bury the printed ratios

N, SIZE = 3000, 64


def timed(fn, *args, **kwargs) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process and its children)."""
    t0, c0 = time.perf_counter(), os.times()
    fn(*args, **kwargs)
    c1 = os.times()
    cpu = (c1.user + c1.system + c1.children_user + c1.children_system) - (
        c0.user + c0.system + c0.children_user + c0.children_system
    )
    return time.perf_counter() - t0, cpu


def png_floor(root: Path, n: int, size: int) -> None:
    from neurodissect.data.synth_layout import save_png

    rng = np.random.default_rng(0)
    root.mkdir()
    for i in range(n):
        save_png(rng.integers(0, 256, (size, size, 3), dtype=np.uint8), root / f"{i}.png")


def read_hash_decode(root: Path) -> None:
    from neurodissect.data.images import load_image

    for p in sorted((root / "images").glob("*.png")):
        hashlib.sha256(p.read_bytes()).hexdigest()
        load_image(p, 3)


def main() -> None:
    from neurodissect.data.prepare import prepare_dataset
    from neurodissect.data.synth import generate

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        floor, _ = timed(png_floor, tmp / "floor", N, SIZE)
        print(f"floor: {N} random {SIZE}px PNGs written in {floor:.1f} s")
        for kind in ("synthderm", "synthcxr"):
            for workers in (1, 2):
                out = tmp / f"{kind}-{workers}"
                wall, cpu = timed(generate, kind, out, n=N, size=SIZE, workers=workers)
                print(f"generate {kind} n={N} size={SIZE} workers={workers}: {wall:.1f} s wall, "
                      f"{cpu:.1f} s CPU; ratio = {wall / floor:.1f} x floor")  # fmt: skip
        raw = tmp / "synthderm-2"
        base, _ = timed(read_hash_decode, raw)
        wall, _ = timed(prepare_dataset, "synthderm", raw, tmp / "prepared", threads=2)
        print(f"prepare_dataset synthderm: {wall:.1f} s vs read+hash+decode loop {base:.1f} s; "
              f"ratio = {wall / base:.2f} (target <= 2)")  # fmt: skip


if __name__ == "__main__":
    main()
