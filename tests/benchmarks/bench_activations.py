"""Benchmark: activation extraction against a bare forward loop, and memory
while writing a spatial-map store larger than 2 GB.

1. Throughput: extract_activations (hooks on layer4, fc and the penultimate
   features, layer4 maps kept, Zarr stores written) vs a bare
   ``torch.no_grad()`` loop over the same DataLoader (same images, transform,
   batch size), in one run; both timings include reading the manifest and
   loading the model. Target ratio >= 0.9.
2. Peak RSS: random inputs through a conv layer, its (N, 256, 16, 16) float16
   maps streamed through the real LayerTaps / StoreWriter path into a store of
   more than 2 GB (logical size), measured in a fresh process; repeated at a
   quarter of the rows to show the peak does not grow with N.

Records: results/bench/activations.json.
Run: .venv/bin/python tests/benchmarks/bench_activations.py [--quick]
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import record  # noqa: E402

os.environ.setdefault("TQDM_DISABLE", "1")  # progress bars would bury the printed ratios

N_IMAGES, IMAGE_SIZE, BATCH = 1536, 64, 128
BIG_ROWS, BIG_CHANNELS, BIG_GRID = 17_000, 256, 16
if record.quick():
    N_IMAGES, BIG_ROWS = 384, 4000


def write_images(root: Path, n: int, size: int) -> Path:
    """A manifest of random RGB PNGs (content is irrelevant to speed)."""
    import pandas as pd
    from PIL import Image

    from neurodissect.data.manifest import write_manifest

    rng = np.random.default_rng(0)
    (root / "img").mkdir(parents=True)
    rows = []
    for i in range(n):
        path = f"img/{i:05d}.png"
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(root / path)
        rows.append(
            {
                "image_id": f"b{i:05d}",
                "path": path,
                "split": ("train", "val", "test")[i % 3],
                "report": "",
                "sha256": hashlib.sha256((root / path).read_bytes()).hexdigest(),
                "label": i % 7,
            }
        )
    meta = {
        "task": "multiclass",
        "classes": [f"c{k}" for k in range(7)],
        "class_synonyms": {},
        "root": str(root),
        "format": "csv",
        "modality": "other",
        "channels": 3,
    }
    write_manifest(pd.DataFrame(rows), meta, root / "manifest.parquet")
    return root / "manifest.parquet"


def bare_loop(manifest_path: Path, model_pt: Path) -> float:
    import torch
    from torch.utils.data import DataLoader

    from neurodissect.data.manifest import SPLITS, read_manifest
    from neurodissect.opaque import load_opaque
    from neurodissect.opaque.data import ManifestImages, eval_transform

    start = time.perf_counter()  # the same setup as extraction: manifest and model
    manifest = read_manifest(manifest_path)
    model = load_opaque(model_pt, "resnet18", len(manifest.classes))
    with torch.no_grad():
        for split in SPLITS:
            loader = DataLoader(
                ManifestImages(manifest.split(split), eval_transform(IMAGE_SIZE)),
                batch_size=BATCH,
                shuffle=False,
            )
            for x, _ in loader:
                model(x)
    return time.perf_counter() - start


def extraction(manifest_path: Path, model_pt: Path, out: Path) -> float:
    from neurodissect.activations.extract import ExtractParams, extract_activations
    from neurodissect.io import remove_path

    layers = ["layer4", "fc", "penultimate"]
    paths = {name: out / f"{name}.zarr" for name in layers}
    params = ExtractParams(image_size=IMAGE_SIZE, batch_size=BATCH, spatial_maps=["layer4"])
    start = time.perf_counter()
    extract_activations(
        manifest_path, model_pt, paths, arch="resnet18", model_name="bench-s0", params=params
    )
    elapsed = time.perf_counter() - start
    for p in paths.values():
        remove_path(p)
    return elapsed


def throughput(tmp: Path) -> list[dict]:
    import torch

    from neurodissect.io import save_state_dict
    from neurodissect.opaque import build_model

    torch.set_num_threads(2)
    manifest_path = write_images(tmp / "data", N_IMAGES, IMAGE_SIZE)
    torch.manual_seed(0)
    save_state_dict(build_model("resnet18", 7).state_dict(), tmp / "model.pt")
    timing = record.interleaved(
        {
            "extract": lambda: extraction(manifest_path, tmp / "model.pt", tmp / "stores"),
            "bare": lambda: bare_loop(manifest_path, tmp / "model.pt"),
        }
    )
    # ratio of throughputs = bare time / extraction time
    return [
        record.speed_record(
            "extraction throughput vs bare forward pass (limit)",
            timing["extract"],
            timing["bare"],
            target=0.9,
            n_images=N_IMAGES,
            image_size=IMAGE_SIZE,
            batch=BATCH,
            arch="resnet18",
            layers="layer4 (+maps), fc, penultimate",
            dtype="float32",
            threads_ours=2,
            threads_baseline=2,
            repeats=len(timing["bare"]["times_s"]),
            ours="extract_activations (hooks, Zarr stores)",
            baseline="torch.no_grad() loop",
        )
    ]


def _big_store_child(path: str, rows: int, store: bool = True) -> None:
    """In a fresh process: stream random maps into a store (or, with ``store=False``, only run
    the forward passes, as the baseline); print peak RSS and sizes as JSON."""
    import resource

    import torch
    from torch import nn

    from neurodissect.activations.extract import LayerTaps, write_split
    from neurodissect.activations.store import StoreWriter
    from neurodissect.opaque.archs import LayerSpec

    torch.set_num_threads(2)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, BIG_CHANNELS, 3, padding=1)).eval()
    spec = LayerSpec("conv", "0")
    ids = [f"r{i}" for i in range(rows)]
    batches = (torch.randn(min(256, rows - s), 3, BIG_GRID, BIG_GRID) for s in range(0, rows, 256))
    start = time.perf_counter()
    if store:
        with (
            LayerTaps(model, [spec], spatial=["conv"]) as taps,
            StoreWriter(path, n_units=BIG_CHANNELS, spatial_shape=(BIG_GRID, BIG_GRID)) as writer,
        ):
            write_split(taps, {"conv": writer}, "train", ids, batches, torch.device("cpu"))
    else:
        with torch.no_grad():
            for x in batches:
                model(x)
    elapsed = time.perf_counter() - start
    disk = sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())
    print(
        json.dumps(
            {
                "peak_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
                "logical": rows * BIG_CHANNELS * BIG_GRID**2 * 2,
                "disk": disk,
                "seconds": elapsed,
            }
        )
    )


def peak_rss(tmp: Path, rows: int, store: bool = True) -> dict:
    code = (
        f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); "
        "import bench_activations as b; "
        f"b._big_store_child({str(tmp / f'big{rows}.zarr')!r}, {rows}, {store})"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    from neurodissect.io import remove_path

    remove_path(tmp / f"big{rows}.zarr")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="bench_activations_") as d:
        tmp = Path(d)
        records = throughput(tmp)
        big = peak_rss(tmp, BIG_ROWS)
        small = peak_rss(tmp, BIG_ROWS // 4)
        bare = peak_rss(tmp, BIG_ROWS, store=False)
    mib = 1 << 20
    extra = big["peak_rss"] - bare["peak_rss"]
    fields = {
        "rows": BIG_ROWS,
        "channels": BIG_CHANNELS,
        "grid": BIG_GRID,
        "dtype": "float16",
        "logical_bytes": big["logical"],
        "disk_bytes": big["disk"],
        "peak_rss_mib": big["peak_rss"] / mib,
        "peak_rss_quarter_rows_mib": small["peak_rss"] / mib,
        "peak_rss_forward_only_mib": bare["peak_rss"] / mib,
        "seconds": big["seconds"],
        "seconds_forward_only": bare["seconds"],
        "repeats": 1,
    }
    records += [
        record.check_ratio(
            "spatial-map store: RSS added by extraction / store size",
            extra / big["logical"],
            0.25,
            "<=",
            **fields,
        ),
        record.check_ratio(
            "spatial-map store: peak RSS at N / at N/4 (bounded)",
            big["peak_rss"] / small["peak_rss"],
            1.2,
            "<=",
            **fields,
        ),
    ]
    record.write("activations", records)
    return record.exit_code(records)


if __name__ == "__main__":
    sys.exit(main())
