"""Shared helpers for the benchmarks: interleaved repeats and JSON records.

Every benchmark writes ``results/bench/<name>.json``: a list of flat records, each naming
what was compared (``ours``, ``baseline``), its sizes, dtype and the thread counts of both
sides, the median and spread (min, max) of >= 5 repeats per side, and the keys ``ratio``,
``target`` (with ``direction``: ``>=`` or ``<=``) and ``pass``. Correctness checks are
records too (``kind: "check"``) so ``make bench`` fails when one fails.

Repeats are interleaved (ours, baseline, ours, baseline, ...) so a burst of load from other
jobs on a shared machine hits both sides alike, and the ratio is taken between medians.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
OUT_DIR = ROOT / "results" / "bench"


def quick() -> bool:
    """``--quick`` on the command line (or BENCH_QUICK=1): small sizes, for smoke runs."""
    return "--quick" in sys.argv[1:] or os.environ.get("BENCH_QUICK") == "1"


def repeats() -> int:
    return int(os.environ.get("BENCH_REPEATS", "5"))


def interleaved(sides: dict[str, Callable[[], object]], n: int | None = None) -> dict[str, dict]:
    """Run each side ``n`` times (n >= 5 unless quick), interleaved; return per side
    ``{"median_s", "min_s", "max_s", "times_s", "out"}`` (``out``: the last return value)."""
    n = n or repeats()
    times: dict[str, list[float]] = {k: [] for k in sides}
    outs: dict[str, object] = {}
    for _ in range(n):
        for name, fn in sides.items():
            start = time.perf_counter()
            outs[name] = fn()
            times[name].append(time.perf_counter() - start)
    return {
        name: {
            "median_s": statistics.median(ts),
            "min_s": min(ts),
            "max_s": max(ts),
            "times_s": [round(t, 6) for t in ts],
            "out": outs[name],
        }
        for name, ts in times.items()
    }


def timing_fields(prefix: str, t: dict) -> dict:
    return {f"{prefix}_{k}": t[k] for k in ("median_s", "min_s", "max_s", "times_s")}


def speed_record(
    name: str,
    t_ours: dict,
    t_base: dict,
    /,
    *,
    target: float,
    direction: str = ">=",
    per_ours: float = 1.0,
    per_base: float = 1.0,
    **fields,
) -> dict:
    """A record whose ratio is baseline time / our time (speed-up; per-item normalised by
    ``per_*`` when the sides process different counts). ``direction="<="`` for limits
    where our time / baseline time must stay under the target: then ratio = ours / base.
    ``fields`` name what was compared (``ours=``, ``baseline=``), sizes, dtype, threads."""
    ours_s, base_s = t_ours["median_s"] / per_ours, t_base["median_s"] / per_base
    ratio = base_s / ours_s if direction == ">=" else ours_s / base_s
    return check_ratio(
        name,
        ratio,
        target,
        direction,
        **timing_fields("ours", t_ours),
        **timing_fields("baseline", t_base),
        **fields,
    )


def check_ratio(name: str, ratio: float, target: float, direction: str = ">=", **fields) -> dict:
    ok = ratio >= target if direction == ">=" else ratio <= target
    rec = {"name": name, "kind": "ratio", **fields}
    rec.update(
        {"ratio": float(ratio), "target": float(target), "direction": direction, "pass": bool(ok)}
    )
    return rec


def check(name: str, ok: bool, value: float | None = None, **fields) -> dict:
    """A correctness check (no speed target): ``ratio`` carries the measured value."""
    rec = {"name": name, "kind": "check", **fields}
    rec.update(
        {
            "ratio": None if value is None else float(value),
            "target": None,
            "direction": None,
            "pass": bool(ok),
        }
    )
    return rec


def machine() -> dict:
    import platform

    return {
        "cpu_count": os.cpu_count(),
        "machine": platform.machine(),
        "python": platform.python_version(),
        "quick": quick(),
    }


def write(bench: str, records: list[dict]) -> Path:
    """Write the records (plus machine info) to results/bench/<bench>.json atomically."""
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    info = machine()
    out = [{"bench": bench, **info, **r} for r in records]
    path = OUT_DIR / f"{bench}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(out, indent=1, default=float) + "\n")
    tmp.replace(path)
    for r in records:
        verdict = "pass" if r["pass"] else "FAIL"
        shown = "-" if r["ratio"] is None else f"{r['ratio']:.3g}"
        goal = "" if r["target"] is None else f" (target {r['direction']} {r['target']:g})"
        print(f"  [{verdict}] {r['name']}: {shown}{goal}", flush=True)
    return path


def exit_code(records: list[dict]) -> int:
    return 0 if all(r["pass"] for r in records) else 1
