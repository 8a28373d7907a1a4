"""`make bench`: run every tests/benchmarks/bench_*.py in turn and print its output.

Each benchmark is a script with a main() printing its ratio against a baseline
measured in the same run. A failing benchmark is reported and the others still
run; the exit status is non-zero if any failed.

Run: .venv/bin/python tests/benchmarks/run_all.py [NAME ...]   (e.g. activations)
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def benchmarks(names: list[str]) -> list[Path]:
    found = sorted(HERE.glob("bench_*.py"))
    if names:
        found = [p for p in found if p.stem.removeprefix("bench_") in names]
    return found


def main(argv: list[str]) -> int:
    failed = []
    for script in benchmarks(argv):
        print(f"== {script.stem} ==", flush=True)
        start = time.perf_counter()
        proc = subprocess.run([sys.executable, str(script)], cwd=HERE.parents[1])
        status = "ok" if proc.returncode == 0 else f"FAILED (exit {proc.returncode})"
        print(f"-- {script.stem}: {status} in {time.perf_counter() - start:.0f} s\n", flush=True)
        if proc.returncode:
            failed.append(script.stem)
    if failed:
        print(f"failed benchmarks: {failed}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
