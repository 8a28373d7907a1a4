"""Benchmark: synthetic data generation and prepare_dataset at the demo size.

1. ``generate`` 3,000 images at 64 px (synthderm and synthcxr; 1 and 2 worker
   processes) against a floor measured in the same run: writing 3,000 PNGs of
   random pixels with the same writer (no drawing). Target: the demo dataset in
   well under 30 s wall time.
2. ``prepare_dataset`` on the synthderm folder against a bare loop that reads,
   hashes and decodes the same images (what the checks cannot avoid).
   Target ratio <= 2 (medians of interleaved repeats).

Records: results/bench/data.json.
Run: .venv/bin/python tests/benchmarks/bench_data.py [--quick]
"""

from __future__ import annotations

import hashlib
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import record  # noqa: E402

os.environ.setdefault("TQDM_DISABLE", "1")  # progress bars would bury the printed ratios

N, SIZE = 3000, 64
if record.quick():
    N = 300
DEMO_SECONDS = 30.0  # the demo dataset must be generated in well under this


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
    from neurodissect.data.synth.layout import save_png

    rng = np.random.default_rng(0)
    root.mkdir()
    for i in range(n):
        save_png(rng.integers(0, 256, (size, size, 3), dtype=np.uint8), root / f"{i}.png")


def read_hash_decode(root: Path) -> None:
    from neurodissect.data.images import load_image

    for p in sorted((root / "images").glob("*.png")):
        hashlib.sha256(p.read_bytes()).hexdigest()
        load_image(p, 3)


def main() -> int:
    from neurodissect.data.prepare import prepare_dataset
    from neurodissect.data.synth import generate

    records = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        floor, _ = timed(png_floor, tmp / "floor", N, SIZE)
        for kind in ("synthderm", "synthcxr"):
            for workers in (1, 2):
                out = tmp / f"{kind}-{workers}"
                wall, cpu = timed(generate, kind, out, n=N, size=SIZE, workers=workers)
                records.append(
                    record.check_ratio(
                        f"generate {kind} workers={workers}: wall seconds",
                        wall,
                        DEMO_SECONDS,
                        "<=",
                        n=N,
                        size=SIZE,
                        workers=workers,
                        cpu_s=cpu,
                        floor_s=floor,
                        x_floor=wall / floor,
                        repeats=1,
                        dtype="uint8",
                        note="floor: writing N random PNGs with the same writer",
                    )
                )
        raw = tmp / "synthderm-2"
        runs = iter(range(1_000_000))
        timing = record.interleaved(
            {
                "prepare": lambda: prepare_dataset(
                    "synthderm", raw, tmp / f"prepared{next(runs)}", threads=2
                ),
                "bare": lambda: read_hash_decode(raw),
            }
        )
        records.append(
            record.speed_record(
                "prepare_dataset vs read+hash+decode loop",
                timing["prepare"],
                timing["bare"],
                target=2.0,
                direction="<=",
                n=N,
                size=SIZE,
                dtype="uint8",
                threads_ours=2,
                threads_baseline=1,
                repeats=len(timing["prepare"]["times_s"]),
                ours="prepare_dataset(threads=2)",
                baseline="sequential read + sha256 + decode",
            )
        )
    record.write("data", records)
    return record.exit_code(records)


if __name__ == "__main__":
    sys.exit(main())
