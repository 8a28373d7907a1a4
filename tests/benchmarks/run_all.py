"""`make bench`: run every tests/benchmarks/bench_*.py, then print one table of their
records (results/bench/<name>.json) and exit non-zero when a target is missed, a
correctness check fails, or a benchmark crashes.

Run: .venv/bin/python tests/benchmarks/run_all.py [--quick] [NAME ...]   (e.g. cbm naming)
     .venv/bin/python tests/benchmarks/run_all.py --table   (only print the table)
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import record  # noqa: E402


def benchmarks(names: list[str]) -> list[Path]:
    found = sorted(HERE.glob("bench_*.py"))
    if names:
        found = [p for p in found if p.stem.removeprefix("bench_") in names]
    return found


def load(name: str) -> list[dict]:
    path = record.OUT_DIR / f"{name}.json"
    if not path.exists():
        return []
    data = json.loads(path.read_text())
    return data if isinstance(data, list) else [data]


def fmt(value) -> str:
    if value is None:
        return "-"
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def table(records: list[dict]) -> str:
    rows = [("bench", "record", "ratio", "target", "ours median s", "base median s", "pass")]
    for r in records:
        goal = "-" if r.get("target") is None else f"{r['direction']} {r['target']:g}"
        rows.append(
            (
                r.get("bench", "?"),
                r["name"],
                fmt(r.get("ratio")),
                goal,
                fmt(r.get("ours_median_s")),
                fmt(r.get("baseline_median_s")),
                "yes" if r["pass"] else "NO",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    flags = [a for a in argv if a.startswith("--")]
    names = [a for a in argv if not a.startswith("--")]
    scripts = benchmarks(names)
    crashed = []
    if "--table" not in flags:
        for script in scripts:
            name = script.stem.removeprefix("bench_")
            (record.OUT_DIR / f"{name}.json").unlink(missing_ok=True)  # no stale record
            print(f"== {name} ==", flush=True)
            start = time.perf_counter()
            proc = subprocess.run([sys.executable, str(script), *flags], cwd=HERE.parents[1])
            took = time.perf_counter() - start
            print(f"-- {name}: exit {proc.returncode} in {took:.0f} s\n", flush=True)
            if proc.returncode and not load(name):
                crashed.append(name)  # no records: it died before writing them
    records = [r for s in scripts for r in load(s.stem.removeprefix("bench_"))]
    print(table(records))
    if any(r.get("quick") for r in records):
        print(
            "\nnote: some records come from --quick (smoke sizes): their ratios are not the claim"
        )
    failed = [r["name"] for r in records if not r["pass"]]
    missing = [s.stem for s in scripts if not load(s.stem.removeprefix("bench_"))]
    print(
        f"\n{len(records) - len(failed)}/{len(records)} records pass; records in {record.OUT_DIR}"
    )
    if failed or crashed or missing:
        print(f"FAILED: {failed + [f'{c} crashed' for c in crashed] + missing}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
