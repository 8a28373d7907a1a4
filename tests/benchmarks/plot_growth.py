"""Plot results/bench/growth.csv (written by bench_growth.py): seconds per 1,000 images and
peak RSS per stage against N, to results/bench/growth.png.

Run: .venv/bin/python tests/benchmarks/plot_growth.py
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import record  # noqa: E402


def main() -> int:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd

    table = pd.read_csv(record.OUT_DIR / "growth.csv")
    fig, (ax_t, ax_m) = plt.subplots(1, 2, figsize=(9, 3.5))
    for stage, rows in table.groupby("stage", sort=False):
        rows = rows.sort_values("n")
        ax_t.plot(rows.n, rows.s_per_1k, marker="o", label=stage)
        ax_m.plot(rows.n, rows.peak_mb, marker="o", label=stage)
    for ax, label in ((ax_t, "seconds per 1,000 images"), (ax_m, "peak RSS (MB)")):
        ax.set_xscale("log")
        sizes = sorted(table.n.unique())  # label the measured sizes only (no log minor ticks)
        ax.set_xticks(sizes, [f"{n:,}" for n in sizes])
        ax.minorticks_off()
        ax.set_xlabel("images N")
        ax.set_ylabel(label)
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
    ax_t.legend(fontsize=8)
    fig.suptitle("cost per image and memory as N grows (flat = scales linearly, bounded)")
    fig.tight_layout()
    out = record.OUT_DIR / "growth.png"
    fig.savefig(out, dpi=120)
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
