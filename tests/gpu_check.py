"""`make gpu-check`: what only a CUDA machine can check, in one run with one summary.

1. the tiny DAG (tests/conftest.py TINY_CONFIG) with ``runtime.device: cuda``: every rule
   runs, the GPU rules record a CUDA device, build_cbm's scores come from the torch OMP;
2. the kill-and-resume tests (opaque, SAE, CLIP) on the GPU: `pick_device` switches on
   deterministic algorithms, so a resumed run must equal an uninterrupted one exactly;
3. the GPU benchmarks: `make bench`'s cbm benchmark (torch OMP on CUDA vs scikit-learn)
   and the speed cost of deterministic mode (resnet18 and SAE training steps per second
   with and without it).

Exit status 0 when every step passes; 2 (with the reason) on a machine without CUDA.
Run: .venv/bin/python tests/gpu_check.py [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent

_COST = """
import json, sys, time, torch
from neurodissect.runtime import enable_determinism
deterministic = sys.argv[1] == "1"
if deterministic:
    enable_determinism()
else:
    torch.backends.cudnn.benchmark = True
import torchvision
from neurodissect.sae.base import build_sae
dev = torch.device("cuda")
torch.manual_seed(0)
out = {}
model = torchvision.models.resnet18(num_classes=7).to(dev)
opt = torch.optim.AdamW(model.parameters(), 1e-3)
scaler = torch.amp.GradScaler("cuda")
x, y = torch.randn(128, 3, 64, 64, device=dev), torch.randint(0, 7, (128,), device=dev)
def opaque_step():
    opt.zero_grad(set_to_none=True)
    with torch.autocast("cuda", dtype=torch.float16):
        loss = torch.nn.functional.cross_entropy(model(x).float(), y)
    scaler.scale(loss).backward(); scaler.step(opt); scaler.update()
sae = build_sae("topk", 512, {"expansion": 8, "k": 32}).to(dev)
sae.amp = True
sopt = torch.optim.Adam(sae.parameters(), 5e-4)
feats = torch.randn(4096, 512, device=dev)
def sae_step():
    loss, _, _ = sae.training_loss(feats)
    sopt.zero_grad(set_to_none=True); loss.backward(); sopt.step()
for name, step, n in (("opaque_resnet18_steps_per_s", opaque_step, 40),
                      ("sae_topk_steps_per_s", sae_step, 100)):
    for _ in range(5):
        step()
    torch.cuda.synchronize(); t0 = time.perf_counter()
    for _ in range(n):
        step()
    torch.cuda.synchronize(); out[name] = n / (time.perf_counter() - t0)
print(json.dumps(out))
"""


def run(cmd: list[str], log: Path, timeout: int, env: dict | None = None) -> tuple[bool, float]:
    start = time.perf_counter()
    with open(log, "w") as fh:
        try:
            proc = subprocess.run(
                cmd,
                cwd=REPO,
                stdout=fh,
                stderr=subprocess.STDOUT,
                timeout=timeout,
                env={**os.environ, **(env or {})},
            )
            ok = proc.returncode == 0
        except subprocess.TimeoutExpired:
            fh.write(f"\n[gpu-check] timed out after {timeout} s\n")
            ok = False
    return ok, time.perf_counter() - start


def tiny_dag(work: Path) -> tuple[bool, str]:
    sys.path.insert(0, str(HERE))
    from conftest import snakemake_command, write_config

    cfg = write_config(work / "config.yaml", {"runtime": {"device": "cuda"}})
    cmd = snakemake_command(work, cfg, cores=4)
    ok, seconds = run(cmd, work / "snakemake.log", 1800)
    if not ok:
        return False, f"snakemake failed after {seconds:.0f} s (see {work / 'snakemake.log'})"
    run_dir = work / "results" / "tiny" / "resnet18-s0"
    devices = {}
    for name, artifact in (
        ("train_opaque", "opaque/model.pt"),
        ("train_sae", "sae/sae.pt"),
        ("encode_latents", "sae/latents.zarr"),
        ("build_cbm", "cbm/scores.zarr"),
    ):
        prov = json.loads((run_dir / f"{artifact}.prov.json").read_text())
        devices[name] = (prov.get("device"), prov.get("omp_backend"))
    off = [n for n, (d, _) in devices.items() if not str(d).startswith("cuda")]
    omp = devices["build_cbm"][1]
    ok = not off and omp == "torch"
    return ok, (
        f"{seconds:.0f} s; devices {{{', '.join(f'{n}: {d}' for n, (d, _) in devices.items())}}}"
        f"; OMP backend {omp}" + (f"; NOT ON CUDA: {off}" if off else "")
    )


def resume_tests(work: Path) -> tuple[bool, str]:
    cmd = [
        sys.executable,
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        "tests/test_opaque.py",
        "tests/test_sae.py",
        "tests/test_clip.py",
        "-k",
        "killed or resume",
    ]
    ok, seconds = run(cmd, work / "resume.log", 1800, {"PYTHONPATH": str(REPO / "workflow")})
    tail = (work / "resume.log").read_text().strip().splitlines()[-1:]
    return ok, f"{seconds:.0f} s; {tail[0] if tail else ''}"


def benchmarks(work: Path) -> tuple[bool, str]:
    ok, seconds = run(
        [sys.executable, "tests/benchmarks/run_all.py", "cbm"], work / "bench_cbm.log", 1800
    )
    lines = [ln for ln in (work / "bench_cbm.log").read_text().splitlines() if "cuda" in ln]
    cost = {}
    for flag in ("0", "1"):
        proc = subprocess.run(
            [sys.executable, "-c", _COST, flag],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=900,
            env={**os.environ, "PYTHONPATH": str(REPO / "workflow")},
        )
        if proc.returncode:
            (work / f"cost_{flag}.log").write_text(proc.stdout + proc.stderr)
            return False, f"determinism cost run failed (see {work / f'cost_{flag}.log'})"
        cost[flag] = json.loads(proc.stdout.strip().splitlines()[-1])
    ratios = ", ".join(
        f"{k}: {cost['0'][k]:.1f} -> {cost['1'][k]:.1f} ({cost['1'][k] / cost['0'][k]:.2f}x)"
        for k in cost["0"]
    )
    detail = f"cbm bench {seconds:.0f} s ({len(lines)} CUDA rows); deterministic mode: {ratios}"
    (work / "bench_summary.json").write_text(json.dumps({"omp_cuda_rows": lines, "cost": cost}))
    return ok, detail


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", type=Path, help="work folder to keep (default: a temp one)")
    parser.add_argument("--only", choices=["dag", "resume", "bench"], action="append")
    args = parser.parse_args(argv)
    import torch

    if not torch.cuda.is_available():
        print(
            f"gpu-check needs a CUDA GPU: torch {torch.__version__} (CUDA build "
            f"{torch.version.cuda}) sees none here. Nothing was checked."
        )
        return 2
    work = args.keep or Path(tempfile.mkdtemp(prefix="gpu-check-"))
    work.mkdir(parents=True, exist_ok=True)
    print(
        f"gpu-check on {torch.cuda.get_device_name(0)} (torch {torch.__version__}, CUDA "
        f"{torch.version.cuda}); logs in {work}",
        flush=True,
    )
    steps = {"dag": tiny_dag, "resume": resume_tests, "bench": benchmarks}
    results = {}
    for name in args.only or steps:
        folder = work / name
        folder.mkdir(exist_ok=True)
        print(f"== {name} ...", flush=True)
        try:
            results[name] = steps[name](folder)
        except Exception as exc:  # a summary line, not a traceback, per step
            results[name] = (False, f"{type(exc).__name__}: {exc}")
        print(f"   {'ok' if results[name][0] else 'FAILED'}: {results[name][1]}", flush=True)
    print("\n== gpu-check summary")
    for name, (ok, detail) in results.items():
        print(f"{name:>7}  {'PASS' if ok else 'FAIL'}  {detail}")
    return 0 if all(ok for ok, _ in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
