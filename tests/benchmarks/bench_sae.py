"""Benchmark: SAE training throughput.

Data: 200,000 x 512 features with a known sparse dictionary (1,024 atoms,
~20 present per row), written to a Zarr activation store (~400 MB); the SAE
is the paper's relu_l1 at expansion 8 (4,096 latents), batch 4,096.

Every timed run starts from the same mid-training state — weights and Adam
moments after a short warm-up with our loop, so the code is as sparse as it
is for most of a real run — trains one epoch, and is scored on the same
10,000 held-out rows, so the samples/s are compared at the same final FVU / L0:

(a) ours (neurodissect.sae.train.fit, in-RAM rows) vs a plain, straightforward
    PyTorch loop: nn.Linear encoder/decoder, DataLoader over a TensorDataset,
    parallel-gradient removal and decoder renormalisation every step.
    Target ratio >= 2.
(b) ours streamed from the Zarr store (window buffer far smaller than the
    data) vs ours with the rows in RAM. Target ratio >= 0.8.

The three sides run interleaved, >= 5 repeats each, each repeat from the same start;
equal final FVU / L0 (within MAX_GAP) is a correctness check.

Records: results/bench/sae.json.
Run: .venv/bin/python tests/benchmarks/bench_sae.py [--quick]   (~10 minutes on 2 cores)
"""

from __future__ import annotations

import copy
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
import record  # noqa: E402

N_TRAIN, N_HELD_OUT, D, EXPANSION, BATCH = 200_000, 10_000, 512, 8, 4096
N_ATOMS, DENSITY = 1024, 0.02
L1, LR = 3e-3, 5e-4
WARMUP_ROWS, WARMUP_EPOCHS, WARMUP_BATCH, WARMUP_LR = 40_000, 3, 512, 3e-3
STREAM_BUFFER_MB = 64
if record.quick():
    N_TRAIN, WARMUP_ROWS, STREAM_BUFFER_MB = 30_000, 10_000, 16
MAX_GAP = 0.05  # relative FVU / L0 difference allowed between ours and the plain loop


class PlainSAE(nn.Module):
    """The same model written the obvious way."""

    def __init__(self, d: int, n: int) -> None:
        super().__init__()
        self.b_pre = nn.Parameter(torch.zeros(d))
        self.encoder = nn.Linear(d, n)
        self.decoder = nn.Linear(n, d, bias=False)  # columns = dictionary atoms

    def forward(self, x):
        z = F.relu(self.encoder(x - self.b_pre))
        return self.decoder(z) + self.b_pre, z


def plain_from(model) -> PlainSAE:
    plain = PlainSAE(model.d_in, model.n_latents)
    with torch.no_grad():
        plain.b_pre.copy_(model.b_pre)
        plain.encoder.weight.copy_(model.W_enc.t())
        plain.encoder.bias.copy_(model.b_enc)
        plain.decoder.weight.copy_(model.W_dec.t())
    return plain


def copy_plain_into(plain: PlainSAE, model) -> None:
    with torch.no_grad():
        model.b_pre.copy_(plain.b_pre)
        model.W_enc.copy_(plain.encoder.weight.t())
        model.b_enc.copy_(plain.encoder.bias)
        model.W_dec.copy_(plain.decoder.weight.t())


def plain_optimizer(plain: PlainSAE, ours_state: dict) -> torch.optim.Adam:
    """Adam over the plain model carrying our optimizer's moments (weights transposed)."""
    opt = torch.optim.Adam(plain.parameters(), lr=LR)
    state = copy.deepcopy(ours_state)
    # our parameter order: b_pre, W_enc (d, n), b_enc, W_dec (n, d); plain stores both transposed
    for index in (1, 3):
        for key in ("exp_avg", "exp_avg_sq"):
            state["state"][index][key] = state["state"][index][key].t().contiguous()
    opt.load_state_dict(state)
    return opt


def train_plain(plain: PlainSAE, opt: torch.optim.Adam, x: torch.Tensor, epochs: int) -> float:
    """Epochs of the straightforward loop on normalised rows; returns seconds."""
    from torch.utils.data import DataLoader, TensorDataset

    loader = DataLoader(TensorDataset(x), batch_size=BATCH, shuffle=True)
    start = time.perf_counter()
    for _ in range(epochs):
        for (xb,) in loader:
            x_hat, z = plain(xb)
            loss = F.mse_loss(x_hat, xb) + L1 * z.abs().sum(1).mean()
            opt.zero_grad()
            loss.backward()
            with torch.no_grad():
                w, g = plain.decoder.weight, plain.decoder.weight.grad
                g -= (g * w).sum(0, keepdim=True) * w
            opt.step()
            with torch.no_grad():
                w /= w.norm(dim=0, keepdim=True)
    return time.perf_counter() - start


def main() -> int:
    from neurodissect.activations.store import ActivationStore, StoreWriter
    from neurodissect.sae.base import build_sae
    from neurodissect.sae.metrics import evaluate_arrays
    from neurodissect.sae.stream import ArrayRows, StoreRows
    from neurodissect.sae.synthetic import SparseDictionary
    from neurodissect.sae.train import SAETrainParams, fit, prepare_model

    torch.set_num_threads(2)
    torch.manual_seed(0)
    source_dict = SparseDictionary.random(D, N_ATOMS, density=DENSITY, noise=0.05, seed=0)
    tmp = Path(tempfile.mkdtemp(prefix="bench_sae-"))
    store_path = tmp / "penultimate.zarr"
    t = time.perf_counter()
    with StoreWriter(store_path, n_units=D, attrs={"kind": "activations"}) as w:
        w.begin_split("train", [f"r{i}" for i in range(N_TRAIN)])
        for block in source_dict.blocks(N_TRAIN, seed=1):
            w.append("train", block)
    held_out = np.concatenate(list(source_dict.blocks(N_HELD_OUT, seed=2)))
    store = ActivationStore(store_path)
    rows = store.read("train")
    print(f"data: {N_TRAIN} x {D} rows written to {store_path} in {time.perf_counter() - t:.1f}s")

    params = SAETrainParams(batch_size=BATCH, epochs=1, lr=LR, resample=False)
    model = build_sae("relu_l1", D, {"expansion": EXPANSION, "l1_coefficient": L1})
    total_variance = prepare_model(model, [rows], params)
    t = time.perf_counter()
    warm = SAETrainParams(
        batch_size=WARMUP_BATCH, epochs=WARMUP_EPOCHS, lr=WARMUP_LR, resample=False
    )
    opt = torch.optim.Adam(model.parameters(), lr=WARMUP_LR)
    fit(
        model,
        ArrayRows(rows[:WARMUP_ROWS], WARMUP_BATCH),
        warm,
        total_variance=total_variance,
        optimizer=opt,
    )
    for group in opt.param_groups:
        group["lr"] = LR
    start_state = copy.deepcopy(model.state_dict())
    start_opt = copy.deepcopy(opt.state_dict())
    start = evaluate_arrays(model, held_out)
    print(
        f"warm start ({time.perf_counter() - t:.0f}s): held-out FVU {start['fvu']:.3f}, "
        f"L0 {start['l0']:.1f} of {model.n_latents} latents"
    )

    def run_ours(source) -> tuple[float, dict]:
        model.load_state_dict(start_state)
        opt.load_state_dict(copy.deepcopy(start_opt))
        fit(model, source, params, total_variance=total_variance, optimizer=opt)
        return evaluate_arrays(model, held_out)

    def run_plain() -> dict:
        model.load_state_dict(start_state)
        plain = plain_from(model)
        train_plain(plain, plain_optimizer(plain, start_opt), x_norm, epochs=1)
        copy_plain_into(plain, model)
        return evaluate_arrays(model, held_out)

    x_norm = torch.from_numpy(rows) / model.input_scale
    streamed = StoreRows(store, "train", BATCH, buffer_mb=STREAM_BUFFER_MB)
    assert streamed.streamed
    timing = record.interleaved(
        {
            "ram": lambda: run_ours(ArrayRows(rows, BATCH)),
            "streamed": lambda: run_ours(streamed),
            "plain": run_plain,
        }
    )
    ram_m, stream_m, plain_m = (timing[k]["out"] for k in ("ram", "streamed", "plain"))
    fvu_gap = abs(ram_m["fvu"] - plain_m["fvu"]) / plain_m["fvu"]
    l0_gap = abs(ram_m["l0"] - plain_m["l0"]) / plain_m["l0"]
    # note: the timings include the held-out evaluation (same on every side, ~1% of an epoch)
    fields = {
        "n_train": N_TRAIN,
        "d": D,
        "n_latents": model.n_latents,
        "batch": BATCH,
        "dtype": "float32",
        "threads_ours": 2,
        "threads_baseline": 2,
        "repeats": len(timing["ram"]["times_s"]),
        "epochs": 1,
        "fvu_ours": ram_m["fvu"],
        "l0_ours": ram_m["l0"],
        "fvu_plain": plain_m["fvu"],
        "l0_plain": plain_m["l0"],
        "fvu_streamed": stream_m["fvu"],
        "l0_streamed": stream_m["l0"],
    }
    records = [
        record.check(
            "SAE: final FVU and L0 of ours equal the plain loop's (rel. gap)",
            fvu_gap <= MAX_GAP and l0_gap <= MAX_GAP,
            max(fvu_gap, l0_gap),
            **fields,
        ),
        record.speed_record(
            "SAE ours in RAM vs plain PyTorch loop",
            timing["ram"],
            timing["plain"],
            target=2.0,
            ours="neurodissect.sae.train.fit",
            baseline="nn.Linear + DataLoader loop",
            **fields,
        ),
        record.speed_record(
            "SAE streamed from Zarr vs in RAM",
            timing["streamed"],
            timing["ram"],
            target=0.8,
            ours="fit over StoreRows",
            baseline="fit over ArrayRows",
            buffer_mb=STREAM_BUFFER_MB,
            **fields,
        ),
    ]
    record.write("sae", records)
    return record.exit_code(records)


if __name__ == "__main__":
    sys.exit(main())
