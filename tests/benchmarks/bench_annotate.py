"""Benchmarks of the annotate stage.

1. Matching: the batched MAMMI matcher (sparse sum of exemplar embeddings, one blocked
   product with the debiased vocabulary, vectorised alpha-cut) against MAMMI written as a
   competent numpy user would: float32 (MAMMI computes in float32), at the run's
   vocabulary size (vocab.max_concepts = 2,000), ONE product of every stacked exemplar
   embedding with the vocabulary and the template, then a per-unit sum and the alpha-cut.
   Assignments must be identical. Also our time against the bare (units x D) @ (D x K)
   product (the limit). Targets: >= 10x the baseline, <= 1.5x the bare product.
2. Exemplar selection on a store 4x larger than annotate.memory_mb: peak RSS of a fresh
   process that only streams the store, against the budget.

Records: results/bench/annotate.json.
Run: .venv/bin/python tests/benchmarks/bench_annotate.py [--quick]
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import record  # noqa: E402

from neurodissect.annotate import confidence as conf  # noqa: E402
from neurodissect.annotate.matching import mammi_scorer, match_units  # noqa: E402

QUICK = record.quick()
N_POOL, DIM, N_CONCEPTS, N_UNITS, N_EXEMPLARS, ALPHA = 10_000, 512, 2000, 512, 30, 95.0
if QUICK:
    N_POOL, N_UNITS = 2000, 64
BUDGET_MB, STORE_UNITS = (256, 2048) if not QUICK else (32, 512)  # store = 4 x budget


def unit_rows(rng, n, d):
    x = rng.normal(size=(n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def alpha_cut(weight: np.ndarray, alpha: float) -> list[np.ndarray]:
    """Per unit: concepts within (1 - alpha/100) of the best weight, ranked."""
    out = []
    for w in weight:
        best = w.max()
        kept = np.flatnonzero(w >= best - (1 - alpha / 100) * abs(best))
        out.append(kept[np.lexsort((kept, -w[kept]))])
    return out


def vectorised_mammi(image_emb, text_emb, template_emb, exemplars, alpha):
    """MAMMI in float32, vectorised: one product over all stacked exemplar images
    (units*E x D) @ (D x K), minus each image's template cosine, summed per unit."""
    stacked = image_emb[exemplars.reshape(-1)]  # (U*E, D)
    sim = stacked @ text_emb.T - (stacked @ template_emb)[:, None]
    weight = sim.reshape(exemplars.shape[0], exemplars.shape[1], -1).sum(axis=1)
    return alpha_cut(weight, alpha)


def bench_matching() -> list[dict]:
    rng = np.random.default_rng(0)
    image_emb = unit_rows(rng, N_POOL, DIM)
    text_emb, template = unit_rows(rng, N_CONCEPTS, DIM), unit_rows(rng, 1, DIM)[0]
    exemplars = np.stack([rng.choice(N_POOL, N_EXEMPLARS, replace=False) for _ in range(N_UNITS)])
    members = conf.pad_sets(list(exemplars))
    scorer = mammi_scorer(image_emb, text_emb, template)
    rule = conf.AlphaCut(ALPHA)
    # the limit: only the product, its inputs ready in the layout the matcher uses
    sums, debiased = image_emb[members].sum(axis=1), scorer.per_image.right

    t = record.interleaved(
        {
            "ours": lambda: match_units(scorer, members, rule, memory_mb=1024)[0],
            "mammi": lambda: vectorised_mammi(image_emb, text_emb, template, exemplars, ALPHA),
            "bare": lambda: sums @ debiased.T,
        }
    )
    ours, base = t["ours"]["out"], t["mammi"]["out"]
    same = all(np.array_equal(a, b) for a, b in zip(ours, base, strict=True))
    sizes = {
        "n_units": N_UNITS,
        "n_exemplars": N_EXEMPLARS,
        "n_concepts": N_CONCEPTS,
        "dim": DIM,
        "n_pool": N_POOL,
        "dtype": "float32",
        "threads_ours": "all (BLAS)",
        "threads_baseline": "all (BLAS)",
        "repeats": len(t["ours"]["times_s"]),
    }
    return [
        record.check(
            "matching: assignments identical to float32 MAMMI",
            same,
            n_pairs=int(sum(len(a) for a in ours)),
            **sizes,
        ),
        record.speed_record(
            "matching vs vectorised float32 MAMMI",
            t["ours"],
            t["mammi"],
            target=10,
            ours="batched match_units",
            baseline="stacked-exemplar product + per-unit sum",
            **sizes,
        ),
        record.speed_record(
            "matching vs bare product (limit)",
            t["ours"],
            t["bare"],
            target=1.5,
            direction="<=",
            ours="batched match_units",
            baseline="(units x D) @ (D x K) only",
            **sizes,
        ),
    ]


_CHILD = """
import json, sys, time
from neurodissect.annotate.exemplars import ExemplarParams, select_exemplars

def high_water_mb():  # VmHWM: peak resident set of this process image (reset by exec)
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024

base = high_water_mb()
t = time.perf_counter()
select_exemplars(sys.argv[1], sys.argv[2], ExemplarParams(memory_mb=float(sys.argv[3])))
print(json.dumps({"peak_mb": high_water_mb(), "base_mb": base, "seconds": time.perf_counter() - t}))
"""


def bench_exemplar_memory() -> list[dict]:
    from neurodissect.activations.store import StoreWriter

    n_rows = 4 * BUDGET_MB * 2**20 // (4 * STORE_UNITS)
    with tempfile.TemporaryDirectory() as tmp:
        store = Path(tmp) / "acts.zarr"
        rng = np.random.default_rng(1)
        with StoreWriter(store, n_units=STORE_UNITS, compressors=None) as w:
            w.begin_split("test", [f"i{k}" for k in range(n_rows)])
            for start in range(0, n_rows, 4096):
                w.append(
                    "test", rng.random((min(4096, n_rows - start), STORE_UNITS), dtype=np.float32)
                )
        size_mb = sum(f.stat().st_size for f in store.rglob("*") if f.is_file()) / 2**20
        out = subprocess.run(
            [sys.executable, "-c", _CHILD, str(store), str(Path(tmp) / "e.pq"), str(BUDGET_MB)],
            capture_output=True,
            text=True,
            check=True,
        )
        r = json.loads(out.stdout.strip().splitlines()[-1])
    grown = r["peak_mb"] - r["base_mb"]
    return [
        record.check_ratio(
            "exemplar selection: (peak RSS - RSS before) / annotate.memory_mb",
            grown / BUDGET_MB,
            1.0,
            "<=",
            store_mb=size_mb,
            rows=n_rows,
            units=STORE_UNITS,
            budget_mb=BUDGET_MB,
            peak_mb=r["peak_mb"],
            base_mb=r["base_mb"],
            seconds=r["seconds"],
            dtype="float32",
            repeats=1,
            note="one fresh process (peak RSS is deterministic up to allocator noise)",
        )
    ]


def main() -> int:
    records = bench_exemplar_memory()  # first: a fresh child process, before the big arrays
    records += bench_matching()
    record.write("annotate", records)
    return record.exit_code(records)


if __name__ == "__main__":
    sys.exit(main())
