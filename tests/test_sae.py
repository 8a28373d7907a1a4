"""Stage `sae`: the SAE variants, training loop, streaming, resampling, resume,
metrics, latents store and evaluation — on features with a known sparse
dictionary (neurodissect.sae.synthetic), so recovery can be checked."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from neurodissect.activations.store import ActivationStore, StoreWriter
from neurodissect.data.manifest import write_manifest
from neurodissect.errors import ConfigError, InputError
from neurodissect.evaluate.groundtruth import (
    auroc_matrix,
    average_ranks,
    best_units,
    read_planted_concepts,
    store_auroc,
)
from neurodissect.io import load_state_dict, save_state_dict, write_json
from neurodissect.runtime import KILL_AFTER_EPOCH_ENV
from neurodissect.sae import sparse_ops
from neurodissect.sae.base import build_sae, get_variant, load_sae
from neurodissect.sae.encode import encode_latents
from neurodissect.sae.evaluate import SAEEvalParams, evaluate_sae
from neurodissect.sae.metrics import SAEMetrics, dead_fraction, evaluate_arrays, fvu, l0
from neurodissect.sae.stream import ArrayRows, StoreRows
from neurodissect.sae.synthetic import planted_features
from neurodissect.sae.train import (
    NORMALIZATIONS,
    RESUME_FILE,
    ResumeState,
    SAESettings,
    SAETrainParams,
    fit,
    geometric_median,
    input_statistics,
    prepare_model,
    resample_dead_latents,
    train_sae,
)

SPLITS = {"train": (0, 1600), "val": (1600, 2000), "test": (2000, 2400)}
D = 32
N_PLANTED = 8
# settings under which both variants recover the planted atoms of PLANTED (see tests below)
FAST = {
    "expansion": 4,
    "batch_size": 128,
    "epochs": 60,
    "lr": 3e-3,
    "resample_every": 5,
    "checkpoint_seconds": 0,
}
VARIANTS = {"relu_l1": {"l1_coefficient": 0.05}, "topk": {"k": 8}}


@pytest.fixture(scope="module")
def planted():
    return planted_features(2400, D, n_atoms=48, n_planted=N_PLANTED, density=0.06, seed=0)


def split_ids(split: str) -> list[str]:
    lo, hi = SPLITS[split]
    return [f"img{i:05d}" for i in range(lo, hi)]


def write_store(path: Path, features: np.ndarray, chunk_rows: int = 256, ids=split_ids) -> Path:
    with StoreWriter(
        path,
        n_units=features.shape[1],
        attrs={"kind": "activations", "layer": "penultimate"},
        chunk_rows=chunk_rows,
    ) as w:
        for split, (lo, hi) in SPLITS.items():
            w.begin_split(split, ids(split))
            w.append(split, features[lo:hi])
    return path


@pytest.fixture(scope="module")
def store(tmp_path_factory, planted) -> Path:
    return write_store(tmp_path_factory.mktemp("sae") / "penultimate.zarr", planted.features)


@pytest.fixture(scope="module")
def trained(tmp_path_factory, store) -> dict[str, Path]:
    """variant → folder with sae.pt, history.csv, curve.png, latents.zarr (trained once)."""
    out = {}
    for variant, extra in VARIANTS.items():
        folder = tmp_path_factory.mktemp(variant)
        train_sae(
            store,
            folder / "sae.pt",
            folder / "history.csv",
            folder / "curve.png",
            SAESettings.from_config({"variant": variant, **FAST, **extra}),
        )
        encode_latents(folder / "sae.pt", store, folder / "latents.zarr")
        out[variant] = folder
    return out


def test_metric_formulas_on_known_answers():
    x = np.array([[1.0, 0.0], [3.0, 0.0], [2.0, 2.0], [2.0, -2.0]])  # mean (2, 0), Σ‖x-x̄‖² = 10
    x_hat = x + np.array([[1.0, 0.0], [0.0, 0.0], [0.0, -1.0], [0.0, 0.0]])  # Σ err² = 2
    assert fvu(x, x_hat) == pytest.approx(0.2)
    z = np.array([[0.0, 1.0, 0.0], [0.5, 2.0, 0.0], [0.0, 0.0, 0.0], [0.0, 3.0, 0.0]])
    assert l0(z) == pytest.approx(4 / 4)
    assert dead_fraction(z) == pytest.approx(1 / 3)


def test_streaming_metrics_equal_direct_numpy(planted):
    rng = np.random.default_rng(1)
    x = planted.features[:500].astype(np.float64)
    x_hat = x + rng.normal(scale=0.3, size=x.shape)
    z = np.maximum(rng.normal(size=(500, 40)) - 1.5, 0)
    z[:, 7] = 0.0  # one latent never active
    acc = SAEMetrics(40)
    for lo in range(0, 500, 64):
        acc.update(x[lo : lo + 64], x_hat[lo : lo + 64], z[lo : lo + 64])
    got = acc.result()
    assert got["fvu"] == pytest.approx(((x - x_hat) ** 2).sum() / ((x - x.mean(0)) ** 2).sum())
    assert got["l0"] == pytest.approx(np.count_nonzero(z) / 500)
    assert got["dead_fraction"] == pytest.approx(np.mean(~(z > 0).any(0)))
    assert got["dead_fraction"] >= 1 / 40


def _reference_loss(m, x, dead):
    """The SAE losses written densely, as a plain PyTorch implementation would."""
    pre = (x - m.b_pre) @ m.W_enc + m.b_enc
    if m.variant == "relu_l1":
        z = F.relu(pre)
        x_hat = z @ m.W_dec + m.b_pre
        return ((x_hat - x) ** 2).mean() + m.config.l1_coefficient * z.sum(1).mean()
    val, idx = pre.topk(m.config.k, dim=1)
    z = torch.zeros_like(pre).scatter(1, idx, F.relu(val))
    x_hat = z @ m.W_dec + m.b_pre
    pre_dead = pre[:, dead]
    val, idx = pre_dead.topk(min(m.config.aux_k, pre_dead.shape[1]), dim=1)
    aux_hat = torch.zeros_like(pre_dead).scatter(1, idx, F.relu(val)) @ m.W_dec[dead]
    aux = ((aux_hat - (x - x_hat).detach()) ** 2).mean()
    return ((x_hat - x) ** 2).mean() + m.config.aux_coefficient * aux


@pytest.mark.parametrize("dense_above", [0.0, 1.0], ids=["dense-path", "sparse-path"])
@pytest.mark.parametrize("variant", ["relu_l1", "topk"])
def test_loss_and_gradients_match_dense_reference(variant, dense_above, monkeypatch):
    monkeypatch.setattr(sparse_ops, "DENSE_ABOVE", dense_above)
    torch.manual_seed(0)
    m = build_sae(variant, 16, {"expansion": 4, "l1_coefficient": 0.01, "k": 5, "aux_k": 4})
    m = m.double()
    with torch.no_grad():
        m.b_enc.normal_(-0.3, 0.3)
        m.b_pre.normal_()
        m.W_enc.add_(0.1 * torch.randn_like(m.W_enc))
    x = torch.randn(32, 16, dtype=torch.float64)
    dead = torch.zeros(64, dtype=torch.bool)
    dead[::3] = True
    loss, _, code = m.training_loss(x, dead)
    loss.backward()
    ours = [p.grad.clone() for p in (m.b_pre, m.W_enc, m.b_enc, m.W_dec)]
    m.zero_grad()
    ref = _reference_loss(m, x, dead)
    ref.backward()
    assert 0 < code.density < 1
    assert loss.item() == pytest.approx(ref.item(), rel=1e-12)
    for got, want in zip(
        ours, (m.b_pre.grad, m.W_enc.grad, m.b_enc.grad, m.W_dec.grad), strict=True
    ):
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)


def test_topk_aux_loss_trains_dead_latents_only_when_they_are_dead():
    torch.manual_seed(0)
    m = build_sae("topk", 16, {"expansion": 4, "k": 3})
    x = torch.randn(64, 16)
    dead = torch.zeros(64, dtype=torch.bool)
    dead[40:] = True
    with torch.no_grad():
        m.W_enc[:, 40:] *= 0.05  # small pre-activations: never among the top 3
    loss, stats, code = m.training_loss(x, None)
    loss.backward()
    assert (code.cols < 40).all() and stats["aux"] == 0
    assert m.W_enc.grad[:, 40:].abs().max() == 0
    m.zero_grad()
    loss, stats, _ = m.training_loss(x, dead)
    loss.backward()
    assert stats["aux"] > 0
    assert m.W_enc.grad[:, 40:].abs().sum(0).gt(0).all()
    assert m.W_dec.grad[40:].abs().sum(1).gt(0).all()


def test_decoder_rows_stay_unit_norm_and_gradient_is_orthogonal():
    torch.manual_seed(0)
    m = build_sae("relu_l1", 8, {"expansion": 2})
    opt = torch.optim.Adam(m.parameters(), lr=0.05)
    for _ in range(5):
        loss, _, _ = m.training_loss(torch.randn(16, 8) * 3)
        opt.zero_grad()
        loss.backward()
        m.remove_parallel_gradient_()
        parallel = (m.W_dec.grad * m.W_dec).sum(1)
        assert parallel.abs().max() < 1e-6
        opt.step()
        m.normalize_decoder_()
        torch.testing.assert_close(m.W_dec.norm(dim=1), torch.ones(16))


def test_amp_preactivations_round_the_centred_input(planted):
    """bf16 of x - b_pre, not of x: features far from zero (post-ReLU, offset) keep
    bf16 precision relative to their spread instead of to their magnitude."""
    torch.manual_seed(0)
    m = build_sae("relu_l1", D, {"expansion": 2})
    offset = 40.0
    x = torch.from_numpy(planted.features[:256]) + offset
    with torch.no_grad():
        m.b_pre.copy_(x.mean(0))
    exact = m.preactivations(x).clone()
    amp = m.preactivations(x, amp=True)
    err = (amp - exact).norm() / exact.norm()
    # rounding x itself (the former code) errs by ~offset · 2^-9 relative to the spread
    uncentred = (x.bfloat16() @ m.W_enc.bfloat16()).float() + (m.b_enc - m.b_pre @ m.W_enc)
    assert err < 0.01 < (uncentred - exact).norm() / exact.norm()


def test_amp_training_runs_on_cpu_and_inference_stays_float32(planted):
    """The trainer's bf16 branch (CUDA's) executed on the CPU: it trains to about the
    fp32 quality, and encode/reconstruct ignore the flag (latents do not depend on it)."""
    results = {}
    for amp in (False, True):
        torch.manual_seed(0)
        params = SAETrainParams(batch_size=128, epochs=15, lr=3e-3, resample=False)
        m = build_sae("topk", D, {"expansion": 4, "k": 8})
        m.amp = amp
        variance = prepare_model(m, [planted.features[:1600]], params)
        history = fit(m, ArrayRows(planted.features[:1600], 128), params, total_variance=variance)
        assert all(np.isfinite(row["train_fvu"]) for row in history)
        results[amp] = evaluate_arrays(m, planted.features[2000:])
        x = torch.from_numpy(planted.features[2000:2100])
        z_amp = m.encode(x)
        m.amp = not m.amp
        assert torch.equal(z_amp, m.encode(x))
    assert results[True]["fvu"] == pytest.approx(results[False]["fvu"], abs=0.05)


def test_out_of_memory_while_training_the_sae_is_a_clear_error(store, tmp_path):
    """A forward that raises torch.OutOfMemoryError → one message naming sae.batch_size."""
    from neurodissect.sae.base import register
    from neurodissect.sae.topk import TopKSAE

    @register("full_gpu_test")
    class FullGpu(TopKSAE):
        def select(self, pre):
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 8.00 GiB")

    with pytest.raises(
        ConfigError,
        match=r"out of GPU memory training the SAE .* at "
        r"sae.batch_size=64 on cpu; lower sae.batch_size",
    ) as info:
        train_sae(
            store,
            tmp_path / "sae.pt",
            tmp_path / "history.csv",
            None,
            SAESettings.from_config(
                {"variant": "full_gpu_test", "batch_size": 64, "epochs": 1, "k": 4}
            ),
        )
    assert info.value.__cause__ is None and not (tmp_path / "sae.pt").exists()


def test_unknown_variant_is_a_config_error():
    with pytest.raises(ConfigError, match="no_such_sae"):
        get_variant("no_such_sae")


# -- streaming ---------------------------------------------------------------
@pytest.mark.parametrize("buffer_mb", [0.02, 64], ids=["streamed", "in-memory"])
def test_store_rows_visit_every_row_once_per_epoch_in_a_seeded_order(store, buffer_mb):
    src = StoreRows(ActivationStore(store), "train", batch_size=100, seed=3, buffer_mb=buffer_mb)
    assert src.streamed == (buffer_mb < 1)
    rows = ActivationStore(store).read("train")
    epochs = [np.concatenate(list(src.epoch(e))) for e in (0, 1)]
    for seen in epochs:
        assert seen.shape == rows.shape
        # same multiset of rows: sort both by their first columns
        key = np.lexsort(seen.T[::-1])
        np.testing.assert_array_equal(seen[key], rows[np.lexsort(rows.T[::-1])])
    assert not np.array_equal(epochs[0], epochs[1])  # reshuffled
    np.testing.assert_array_equal(np.concatenate(list(src.epoch(1))), epochs[1])  # reproducible
    batch_sizes = [len(b) for b in src.epoch(0)]
    assert all(s == 100 for s in batch_sizes[:-1]) and sum(batch_sizes) == len(rows)
    sample = src.sample(300, np.random.default_rng(0))
    assert sample.shape == (300, D)
    assert len({r.tobytes() for r in sample} - {r.tobytes() for r in rows}) == 0


@pytest.fixture(scope="module")
def store_with_views(tmp_path_factory, planted) -> Path:
    """The store plus a train_aug split: 2 noisy copies of each train row (chunks of 96)."""
    path = tmp_path_factory.mktemp("sae_views") / "penultimate.zarr"
    rng = np.random.default_rng(5)
    train = planted.features[:1600]
    views = np.repeat(train, 2, axis=0) + rng.normal(0, 0.01, (3200, D)).astype(np.float32)
    with StoreWriter(path, n_units=D, attrs={"kind": "activations"}, chunk_rows=96) as w:
        for split, (lo, hi) in SPLITS.items():
            w.begin_split(split, split_ids(split))
            w.append(split, planted.features[lo:hi])
        w.begin_split("train_aug", np.repeat(split_ids("train"), 2), augmented=True)
        w.append("train_aug", views)
    return path


@pytest.mark.parametrize("buffer_mb", [0.02, 64], ids=["streamed", "in-memory"])
def test_store_rows_pool_several_splits(store_with_views, buffer_mb):
    st = ActivationStore(store_with_views)
    assert st.splits == ["train", "val", "test"] and st.augmented_splits == ["train_aug"]
    src = StoreRows(st, ["train", "train_aug"], batch_size=100, seed=1, buffer_mb=buffer_mb)
    assert src.streamed == (buffer_mb < 1) and src.n_rows == 1600 + 3200
    rows = np.concatenate([st.read("train"), st.read("train_aug")])
    seen = np.concatenate(list(src.epoch(0)))
    np.testing.assert_array_equal(seen[np.lexsort(seen.T[::-1])], rows[np.lexsort(rows.T[::-1])])
    np.testing.assert_array_equal(np.concatenate(list(src.epoch(0))), seen)  # reproducible
    assert (
        len(
            {r.tobytes() for r in src.sample(500, np.random.default_rng(0))}
            - {r.tobytes() for r in rows}
        )
        == 0
    )


def test_train_splits_choose_the_training_rows(tmp_path, store_with_views):
    settings = {"variant": "relu_l1", **FAST, "epochs": 2, **VARIANTS["relu_l1"]}
    one = train_sae(
        store_with_views,
        tmp_path / "a.pt",
        tmp_path / "a.csv",
        None,
        SAESettings.from_config(settings),
    )
    both = train_sae(
        store_with_views,
        tmp_path / "b.pt",
        tmp_path / "b.csv",
        None,
        SAESettings.from_config({**settings, "train_splits": ["train", "train_aug"]}),
    )
    assert (one["train_rows"], both["train_rows"]) == (1600, 4800)
    assert both["train_splits"] == ["train", "train_aug"]
    assert load_state_dict(tmp_path / "b.pt")["training"]["train_splits"] == ("train", "train_aug")


def test_train_splits_naming_absent_views_is_one_clear_error(tmp_path, store):
    with pytest.raises(InputError, match="no split 'train_aug'.*augment_views"):
        train_sae(
            store,
            tmp_path / "sae.pt",
            tmp_path / "h.csv",
            None,
            SAESettings.from_config({**FAST, "train_splits": ["train", "train_aug"]}),
        )


def test_streamed_training_matches_in_memory_quality(store, planted):
    """The same SAE trained from a streamed store and from RAM reaches the same FVU / L0."""
    results = []
    for source_kind in ("store", "ram"):
        torch.manual_seed(0)
        params = SAETrainParams(batch_size=128, epochs=15, lr=3e-3, resample=False)
        if source_kind == "store":
            source = StoreRows(ActivationStore(store), "train", 128, buffer_mb=0.02)
            assert source.streamed
        else:
            source = ArrayRows(planted.features[:1600], 128)
        m = build_sae("relu_l1", D, {"expansion": 4, "l1_coefficient": 0.1})
        variance = prepare_model(m, [planted.features[:1600]], params)
        fit(m, source, params, total_variance=variance)
        results.append(evaluate_arrays(m, planted.features[2000:]))
    assert results[0]["fvu"] == pytest.approx(results[1]["fvu"], abs=0.05)
    assert results[0]["l0"] == pytest.approx(results[1]["l0"], rel=0.2)


# -- resampling --------------------------------------------------------------
def test_resampling_revives_deliberately_killed_latents(planted, caplog):
    x_train, x_test = planted.features[:1600], planted.features[2000:]
    killed = torch.arange(0, 128, 2)  # half of the latents

    def run(resample: bool):
        torch.manual_seed(0)
        m = build_sae("relu_l1", D, {"expansion": 4, "l1_coefficient": 0.1})
        params = SAETrainParams(
            batch_size=128,
            epochs=12,
            lr=3e-3,
            resample=resample,
            resample_every=4,
            resample_until=0.5,
        )
        variance = prepare_model(m, [x_train], params)
        with torch.no_grad():
            m.b_enc[killed] = -1e4  # these latents can never fire
        hist = fit(m, ArrayRows(x_train, 128), params, total_variance=variance)
        z = m.encode(torch.from_numpy(x_test)).numpy()
        return hist, (z[:, killed.numpy()] > 0).any(0)

    caplog.set_level("INFO", logger="neurodissect.sae.train")
    hist, alive = run(resample=True)
    resampled = [h["n_resampled"] for h in hist]
    assert resampled[3] >= len(killed)  # the first round (after epoch 4) takes all killed ones
    assert sum(resampled[6:]) == 0  # none after resample_until
    assert alive.mean() > 0.9  # the killed latents fire again on held-out data
    assert f"resampled {resampled[3]} dead latents" in caplog.text
    hist, alive = run(resample=False)
    assert not alive.any() and all(h["n_resampled"] == 0 for h in hist)


def test_resample_targets_badly_reconstructed_inputs():
    torch.manual_seed(0)
    m = build_sae("relu_l1", 4, {"expansion": 2})
    opt = torch.optim.Adam(m.parameters())
    inputs = np.zeros((50, 4), np.float32)
    inputs[7] = [0.0, 0.0, 9.0, 0.0]  # the only row the SAE cannot reconstruct
    dead = torch.zeros(8, dtype=torch.bool)
    dead[[1, 5]] = True
    n = resample_dead_latents(m, opt, dead, inputs, np.random.default_rng(0))
    assert n == 2
    for i in (1, 5):
        torch.testing.assert_close(m.W_dec[i].abs(), torch.tensor([0.0, 0.0, 1.0, 0.0]))
        assert m.b_enc[i] == 0


def test_geometric_median_is_robust_to_an_outlier():
    pts = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [100.0, 100.0]])
    med = geometric_median(pts)
    assert np.linalg.norm(med - [0.5, 0.5]) < 0.5
    assert np.linalg.norm(pts.mean(0) - [0.5, 0.5]) > 20


# -- input normalisation ---------------------------------------------------------
def _normalised(model, x: np.ndarray) -> np.ndarray:
    return model.normalize_input(torch.from_numpy(x)).double().numpy()


@pytest.mark.parametrize("mode", NORMALIZATIONS)
def test_input_normalisation_holds_the_data_statistics_and_round_trips(planted, mode, tmp_path):
    x = planted.features[:1600].astype(np.float64)
    x[:, 3] *= 20.0  # one loud feature, one correlated pair: the modes must differ
    x[:, 5] += 3.0 * x[:, 4]
    x32 = x.astype(np.float32)
    p = SAETrainParams.from_config({"normalize": mode, "normalize_eps": 0.0})
    m = build_sae("relu_l1", D, {"expansion": 2})
    variance = prepare_model(m, [x32[:700], x32[700:]], p)  # moments accumulate over blocks
    xn = _normalised(m, x32)
    cov = np.cov(xn.T, bias=True)
    np.testing.assert_allclose(m.input_mean.numpy(), x.mean(0), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(m.b_pre.detach().double().numpy(), xn.mean(0), atol=1e-4)
    assert variance == pytest.approx(np.trace(cov), rel=1e-4)
    if mode == "none":
        np.testing.assert_allclose(xn, x32, rtol=1e-6)
    else:  # l1_coefficient means the same for every mode: total variance = features
        assert np.trace(cov) == pytest.approx(D, rel=1e-4)
    if mode == "standardize":
        np.testing.assert_allclose(np.diag(cov), 1.0, rtol=1e-3)
    if mode == "whiten":  # ZCA: identity covariance, and a symmetric transform
        np.testing.assert_allclose(cov, np.eye(D), atol=2e-3)
        np.testing.assert_allclose(m.input_transform, m.input_transform.T, atol=1e-5)
    # raw features in, raw features out: denormalise inverts normalise
    back = m.denormalize(m.normalize_input(torch.from_numpy(x32))).numpy()
    np.testing.assert_allclose(back, x32, rtol=1e-4, atol=1e-3)
    # the transform lives in the weights-only checkpoint and comes back with its size
    save_state_dict(m.to_checkpoint(), tmp_path / "sae.pt")
    again = load_sae(tmp_path / "sae.pt")
    assert again.has_transform == (mode in ("standardize", "whiten"))
    torch.testing.assert_close(again.encode(torch.from_numpy(x32)), m.encode(torch.from_numpy(x32)))


def test_shrinkage_keeps_near_constant_features_from_being_blown_up():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(500, 4)) * [1.0, 1.0, 1.0, 1e-4]  # feature 3 is (numerical) noise
    x = x.astype(np.float32)
    raw = input_statistics([x], "standardize", eps=0.0)
    shrunk = input_statistics([x], "standardize", eps=0.1)
    # without shrinkage the noise feature gets a quarter of the variance, with it ~none
    assert raw.transform[3, 3] ** 2 * x[:, 3].var() / raw.scale**2 == pytest.approx(1.0, rel=1e-3)
    assert shrunk.transform[3, 3] ** 2 * x[:, 3].var() / shrunk.scale**2 < 1e-5
    with pytest.raises(InputError, match="normalize_eps"):
        input_statistics([np.column_stack([x[:, :3], x[:, 0] + x[:, 1]])], "whiten", eps=0.0)


def test_former_boolean_normalize_and_unknown_values():
    assert SAETrainParams.from_config({"normalize": True}).normalize == "scalar"
    assert SAETrainParams.from_config({"normalize": False}).normalize == "none"
    with pytest.raises(ConfigError, match="sae.normalize"):
        SAETrainParams.from_config({"normalize": "zca"})


def test_checkpoint_from_before_the_transform_loads_as_scalar(planted, tmp_path):
    m = build_sae("relu_l1", D, {"expansion": 2})
    prepare_model(m, [planted.features[:1600]], SAETrainParams())
    ckpt = m.to_checkpoint()
    for key in ("input_transform", "input_inverse"):
        del ckpt["state"][key]
    save_state_dict(ckpt, tmp_path / "old.pt")
    old = load_sae(tmp_path / "old.pt")
    assert not old.has_transform
    x = torch.from_numpy(planted.features[2000:])
    torch.testing.assert_close(old.reconstruct(x)[0], m.reconstruct(x)[0])


def _loud_and_quiet(n: int, quiet: float, seed: int = 0):
    """32 features: a loud dense Gaussian part (8 directions, sd ~5) on features 0-15 and
    8 quiet sparse sources (magnitude ~``quiet``, density 0.1) on features 16-31."""
    rng = np.random.default_rng(seed)
    x = np.zeros((n, 32))
    x[:, :16] = 1.25 * rng.standard_normal((n, 8)) @ rng.standard_normal((8, 16))
    atoms = rng.standard_normal((8, 16))
    atoms /= np.linalg.norm(atoms, axis=1, keepdims=True)
    present = rng.random((n, 8)) < 0.1
    x[:, 16:] = quiet * (present * rng.uniform(0.5, 1.5, present.shape)) @ atoms
    x += 0.01 * rng.standard_normal(x.shape)
    return x.astype(np.float32), present


@pytest.mark.parametrize("mode", ["scalar", "standardize", "whiten"])
def test_per_feature_normalisation_recovers_quiet_sparse_sources_scalar_misses(mode):
    # one scale is set by the loud part, so at this λ the quiet sources cost more L1 than
    # the squared error they save and the SAE drops them; standardising or whitening
    # gives their features unit variance and every source gets its latent
    x, present = _loud_and_quiet(3000, quiet=0.3)
    torch.manual_seed(0)
    p = SAETrainParams.from_config(
        {
            "normalize": mode,
            "normalize_eps": 0.0,
            "lr": 3e-3,
            "batch_size": 128,
            "epochs": 30,
            "resample_every": 5,
        }
    )
    m = build_sae("relu_l1", 32, {"expansion": 4, "l1_coefficient": 0.05})
    variance = prepare_model(m, [x[:2400]], p)
    fit(m, ArrayRows(x[:2400], 128, 0), p, total_variance=variance)
    z = m.encode(torch.from_numpy(x[2400:])).numpy()
    _, best = best_units(auroc_matrix(z, present[2400:]))
    if mode == "scalar":
        assert (best < 0.75).all(), best
    else:
        assert (best >= 0.95).all(), best


# -- train_sae, checkpoints, latents -----------------------------------------
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_checkpoint_reloads_weights_only_and_reproduces_metrics(trained, store, planted, variant):
    folder = trained[variant]
    ckpt = torch.load(folder / "sae.pt", weights_only=True)
    assert ckpt["variant"] == variant and ckpt["d_in"] == D
    assert float(ckpt["state"]["input_scale"]) != 1.0  # normalisation lives in the checkpoint
    np.testing.assert_allclose(
        ckpt["state"]["input_mean"].numpy(), planted.features[:1600].mean(0), rtol=1e-5, atol=1e-6
    )
    m = load_sae(folder / "sae.pt")
    # recompute directly with numpy from the weights: normalise, encode, decode, de-normalise
    st = {k: v.double().numpy() for k, v in ckpt["state"].items()}
    x = ActivationStore(store).read("test").astype(np.float64)
    xn = x / st["input_scale"]
    pre = (xn - st["b_pre"]) @ st["W_enc"] + st["b_enc"]
    if variant == "relu_l1":
        z = np.maximum(pre, 0)
    else:
        kth = -np.sort(-pre, axis=1)[:, [VARIANTS["topk"]["k"] - 1]]
        z = np.where(pre >= kth, np.maximum(pre, 0), 0)
    x_hat = (z @ st["W_dec"] + st["b_pre"]) * st["input_scale"]
    got = evaluate_arrays(m, x.astype(np.float32))
    assert got["fvu"] == pytest.approx(fvu(x, x_hat), rel=1e-4)
    assert got["l0"] == pytest.approx(l0(z), rel=1e-4)
    assert got["dead_fraction"] == pytest.approx(dead_fraction(z))
    latents = ActivationStore(folder / "latents.zarr").read("test")
    np.testing.assert_allclose(latents, z, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_trained_sae_recovers_planted_atoms_on_held_out_data(trained, planted, variant):
    z = ActivationStore(trained[variant] / "latents.zarr").read("test")
    _, best = best_units(auroc_matrix(z, planted.present[2000:]))
    assert np.mean(best >= 0.9) >= 0.8
    m = evaluate_arrays(load_sae(trained[variant] / "sae.pt"), planted.features[2000:])
    assert m["fvu"] < 0.3 and m["dead_fraction"] < 0.5


def test_training_history_and_curve(trained):
    hist = pd.read_csv(trained["relu_l1"] / "history.csv")
    assert list(hist["epoch"]) == list(range(1, FAST["epochs"] + 1))
    columns = "train_fvu train_l0 train_l1 monitor_fvu monitor_l0 monitor_dead_fraction n_resampled"
    for col in columns.split():
        assert hist[col].notna().all(), col
    assert hist["train_fvu"].iloc[-1] < hist["train_fvu"].iloc[0]
    png = (trained["relu_l1"] / "curve.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    assert "train_aux" in pd.read_csv(trained["topk"] / "history.csv").columns
    assert not (trained["relu_l1"] / ".resume").exists()


def test_latents_store_layout(trained, store):
    lat = ActivationStore(trained["topk"] / "latents.zarr")
    src = ActivationStore(store)
    assert lat.attrs["kind"] == "sae_latents" and lat.n_units == 4 * D
    assert lat.splits == src.splits
    for split in src.splits:
        np.testing.assert_array_equal(lat.image_ids(split), src.image_ids(split))
    assert ((lat.read("all") > 0).sum(1) <= VARIANTS["topk"]["k"]).all()


def test_encode_rejects_features_of_another_layer(trained, tmp_path, planted):
    other = write_store(tmp_path / "layer4.zarr", planted.features[:, :16])
    with pytest.raises(InputError, match="16 units.*trained on 32"):
        encode_latents(trained["relu_l1"] / "sae.pt", other, tmp_path / "latents.zarr")
    assert not (tmp_path / "latents.zarr").exists()


# -- resume ------------------------------------------------------------------
TRAIN_SCRIPT = """
import sys, torch
torch.set_num_threads(1)
from neurodissect.sae.train import SAESettings, train_sae
train_sae(sys.argv[1], sys.argv[2] + "/sae.pt", sys.argv[2] + "/history.csv", None,
          SAESettings.from_config(
          {{"variant": "relu_l1", "expansion": 2, "l1_coefficient": 0.1, "batch_size": 400,
            "epochs": {epochs}, "lr": 3e-3, "resample_every": 10, "checkpoint_seconds": 0}}),
          resume_dir=sys.argv[2] + "/.resume")
"""


def _train_in_subprocess(store, out, epochs, kill_after_epoch=None):
    """Train in a child process; with ``kill_after_epoch`` the child SIGKILLs itself once
    that epoch's resume state is written (runtime.checkpoint_written)."""
    env = {**os.environ}
    if kill_after_epoch is not None:
        env[KILL_AFTER_EPOCH_ENV] = str(kill_after_epoch)
    script = textwrap.dedent(TRAIN_SCRIPT.format(epochs=epochs))
    proc = subprocess.run(
        [sys.executable, "-c", script, str(store), str(out)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        timeout=300,
    )
    expected = 0 if kill_after_epoch is None else -signal.SIGKILL
    assert proc.returncode == expected, proc.stderr[-3000:]


def test_killed_training_resumes_to_the_uninterrupted_result(tmp_path, store):
    # killed after the first dead-latent resampling (every 10 epochs), resumed across the next
    epochs = 24
    full, cut = tmp_path / "full", tmp_path / "cut"
    full.mkdir(), cut.mkdir()
    _train_in_subprocess(store, cut, epochs, kill_after_epoch=12)
    assert not (cut / "sae.pt").exists()
    assert load_state_dict(cut / ".resume" / RESUME_FILE)["epoch"] == 12
    _train_in_subprocess(store, cut, epochs)  # resumes
    _train_in_subprocess(store, full, epochs)
    a, b = load_state_dict(cut / "sae.pt")["state"], load_state_dict(full / "sae.pt")["state"]
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0)
    hist = pd.read_csv(cut / "history.csv")
    assert list(hist["epoch"]) == list(range(1, epochs + 1))
    assert not (cut / ".resume").exists()


def test_resume_state_with_other_settings_is_ignored(tmp_path, store, caplog):
    first = ResumeState(tmp_path, "fingerprint-a")
    first.save({"epoch": 5})
    assert first.load()["epoch"] == 5
    caplog.set_level("INFO", logger="neurodissect.sae.train")
    assert ResumeState(tmp_path, "fingerprint-b").load() is None
    assert "other settings or inputs" in caplog.text


# -- ground truth helpers ----------------------------------------------------
def test_rank_auroc_matches_sklearn_with_ties():
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(0)
    scores = np.round(rng.random((300, 25)), 1)  # many ties
    scores[:, 3] = 0.0  # all tied
    labels = rng.random((300, 4)) < [0.1, 0.3, 0.5, 0.02]
    got = auroc_matrix(scores, labels)
    for k in range(4):
        for u in range(25):
            assert got[k, u] == pytest.approx(roc_auc_score(labels[:, k], scores[:, u]), abs=1e-12)
    ranks = average_ranks(np.array([[3.0], [1.0], [3.0], [2.0]]))
    np.testing.assert_array_equal(ranks[:, 0], [3.5, 1.0, 3.5, 2.0])
    assert np.isnan(auroc_matrix(scores[:, :2], np.zeros((300, 1), bool))).all()


def test_store_auroc_in_unit_blocks_equals_in_memory(store, planted):
    labels = planted.present[2000:]
    whole = auroc_matrix(ActivationStore(store).read("test"), labels)
    blocked = store_auroc(store, "test", labels, block_mb=0.05)  # a few units per block
    np.testing.assert_allclose(blocked, whole)


# -- evaluate_sae ------------------------------------------------------------
@pytest.fixture(scope="module")
def eval_inputs(tmp_path_factory, planted, trained):
    """Manifest, opaque head and planted-concept truth around the planted features."""
    root = tmp_path_factory.mktemp("eval")
    rng = np.random.default_rng(0)
    W = rng.normal(size=(3, D)).astype(np.float32)
    b = np.zeros(3, np.float32)
    save_state_dict(
        {"fc.weight": torch.from_numpy(W), "fc.bias": torch.from_numpy(b)}, root / "model.pt"
    )
    ids = [i for s in SPLITS for i in split_ids(s)]
    df = pd.DataFrame(
        {
            "image_id": ids,
            "path": [f"{i}.png" for i in ids],
            "split": [s for s, (lo, hi) in SPLITS.items() for _ in range(hi - lo)],
            "report": "",
            "sha256": "0" * 64,
            # labels = what the head predicts on the original features: opaque accuracy 1
            "label": (planted.features @ W.T + b).argmax(1),
        }
    )
    meta = {
        "task": "multiclass",
        "classes": ["a", "b", "c"],
        "class_synonyms": {},
        "root": str(root),
        "format": "csv",
        "modality": "other",
        "channels": 3,
    }
    write_manifest(df, meta, root / "manifest.parquet")
    concepts = [f"planted {c}" for c in "abcdefgh"]
    gt = pd.DataFrame(planted.present, columns=concepts)
    gt.insert(0, "image_id", ids)
    gt.to_parquet(root / "concepts_gt.parquet")
    write_json({c: {"synonyms": [f"synonym of {c}"]} for c in concepts}, root / "concepts_gt.json")
    return root


def _names_for(root: Path, latents: Path, planted, right: bool) -> Path:
    """A naming table giving each planted concept's best latent a right or wrong name."""
    z = ActivationStore(latents).read("test")
    best, _ = best_units(auroc_matrix(z, planted.present[2000:]))
    names = [f"synonym of planted {c}" if right else "ruler marks" for c in "abcdefgh"]
    rows = pd.DataFrame({"latent": best, "name": names}).drop_duplicates("latent")
    rows = rows.assign(
        description="",
        method="reports",
        score=1.0,
        support=5,
        p_value=0.01,
        stability=1.0,
        uninterpretable=False,
    )
    path = root / f"concepts_{right}.parquet"
    rows.to_parquet(path)
    return path


def run_evaluate_sae(folder, store, eval_inputs, out, params, latents=None, **files):
    """evaluate_sae of the SAE in ``folder`` on the shared evaluation inputs, writing
    out/metrics.json and out/gt.parquet; ``files``: its optional inputs (gt_table, ...)."""
    return evaluate_sae(
        folder / "sae.pt",
        store,
        latents or folder / "latents.zarr",
        eval_inputs / "manifest.parquet",
        eval_inputs / "model.pt",
        "resnet18",
        out / "metrics.json",
        out / "gt.parquet",
        params,
        **files,
    )


def planted_truth(eval_inputs):
    return {
        "gt_table": eval_inputs / "concepts_gt.parquet",
        "gt_synonyms": eval_inputs / "concepts_gt.json",
    }


@pytest.mark.parametrize("right_names", [True, False])
def test_evaluate_sae_writes_held_out_metrics(
    tmp_path, eval_inputs, trained, store, planted, right_names
):
    folder = trained["relu_l1"]
    names = _names_for(tmp_path, folder / "latents.zarr", planted, right_names)
    params = SAEEvalParams(eval_split="test", recovery_auroc=0.9)
    files = {"concepts_path": names, **planted_truth(eval_inputs)}
    metrics = run_evaluate_sae(folder, store, eval_inputs, tmp_path, params, **files)
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved == pytest.approx(metrics) and saved["split"] == "test"
    direct = evaluate_arrays(load_sae(folder / "sae.pt"), planted.features[2000:])
    for key in ("fvu", "l0", "dead_fraction"):
        assert saved[key] == pytest.approx(direct[key], rel=1e-6)
    assert saved["opaque_accuracy"] == 1.0
    assert 0.5 < saved["fidelity_accuracy"] <= 1.0
    assert saved["fidelity_agreement"] == pytest.approx(saved["fidelity_accuracy"])
    assert saved["planted_recovered_fraction"] >= 0.8
    table = pd.read_parquet(tmp_path / "gt.parquet")
    assert len(table) == N_PLANTED
    assert saved["planted_recovered_fraction"] == pytest.approx(table["recovered"].mean())
    assert saved["named_correct_fraction"] == (1.0 if right_names else 0.0)


def test_a_latent_named_after_a_co_occurring_concept_it_detects_counts_unless_strict(tmp_path):
    """x and y always occur together, so one latent detects both: naming it y is right for
    x too (no namer could tell), but not strictly; a name of nothing it detects is wrong."""
    from neurodissect.evaluate.groundtruth import PlantedConcepts
    from neurodissect.sae.evaluate import planted_concept_metrics

    rng = np.random.default_rng(0)
    n = 300
    xy, z = rng.random(n) < 0.4, rng.random(n) < 0.3
    latents = np.stack([xy + 0.1 * rng.random(n), z + 0.1 * rng.random(n)], axis=1)
    ids = [f"im{i}" for i in range(n)]
    with StoreWriter(tmp_path / "latents.zarr", n_units=2, attrs={}, chunk_rows=64) as w:
        w.begin_split("test", ids)
        w.append("test", latents.astype(np.float32))
    truth = PlantedConcepts(
        np.array(ids),
        ["x", "y", "z"],
        np.stack([xy, xy, z], axis=1),
        {"x": ["x", "ex"], "y": ["y", "why"], "z": ["z", "zed"]},
    )
    names = pd.DataFrame({"latent": [0, 1], "name": ["why", "ex"]})
    metrics, table = planted_concept_metrics(tmp_path / "latents.zarr", "test", truth, names, 0.9)
    table = table.set_index("concept")
    assert table["recovered"].all() and table["best_latent"].tolist() == [0, 0, 1]
    assert list(table.loc["x", "latent_detects"]) == ["x", "y"]
    assert table["name_correct"].tolist() == [True, True, False]
    assert table["name_correct_strict"].tolist() == [False, True, False]
    assert metrics["named_correct_fraction"] == pytest.approx(2 / 3)
    assert metrics["named_correct_strict_fraction"] == pytest.approx(1 / 3)


def test_evaluate_sae_without_planted_concepts_leaves_them_null(
    tmp_path, eval_inputs, trained, store
):
    """A real dataset: prepare_data writes an empty truth table (image_id only) and {}."""
    folder = trained["topk"]
    pd.DataFrame({"image_id": pd.Series(dtype=str)}).to_parquet(tmp_path / "empty.parquet")
    write_json({}, tmp_path / "empty.json")
    empty = {"gt_table": tmp_path / "empty.parquet", "gt_synonyms": tmp_path / "empty.json"}
    metrics = run_evaluate_sae(
        folder, store, eval_inputs, tmp_path, SAEEvalParams(eval_split="val"), **empty
    )
    assert metrics["split"] == "val"
    assert metrics["planted_recovered_fraction"] is None
    assert metrics["named_correct_fraction"] is None
    assert len(pd.read_parquet(tmp_path / "gt.parquet")) == 0


def test_latent_store_with_foreign_image_ids_names_both_files(
    tmp_path, eval_inputs, trained, store, planted
):
    def shifted(split):
        return [i.replace("img", "other") for i in split_ids(split)]

    bad = write_store(
        tmp_path / "latents.zarr",
        ActivationStore(trained["relu_l1"] / "latents.zarr").read("all"),
        ids=shifted,
    )
    with pytest.raises(InputError) as err:
        run_evaluate_sae(
            trained["relu_l1"], store, eval_inputs, tmp_path, SAEEvalParams(eval_split="test"), bad
        )
    assert str(bad) in str(err.value) and "manifest.parquet" in str(err.value)
    assert not (tmp_path / "metrics.json").exists()


def test_planted_concepts_reader_rejects_non_boolean_columns(tmp_path):
    pd.DataFrame({"image_id": ["a", "b"], "hair": [0, 2]}).to_parquet(tmp_path / "gt.parquet")
    with pytest.raises(InputError, match="hair"):
        read_planted_concepts(tmp_path / "gt.parquet")


# -- the rules, in a real snakemake run of the tiny config ---------------------
def test_sae_rules_in_the_tiny_run(tiny_run):
    run = tiny_run / "results" / "tiny" / "resnet18-s0"
    metrics = json.loads((run / "sae" / "metrics.json").read_text())
    assert metrics["split"] == "test"
    keys = "fvu l0 dead_fraction opaque_accuracy fidelity_accuracy planted_recovered_fraction"
    assert {*keys.split(), "named_correct_fraction"} <= set(metrics)
    assert metrics["fvu"] >= 0 and 0 <= metrics["dead_fraction"] <= 1
    named = pd.read_parquet(run / "sae" / "concepts.parquet")
    assert metrics["n_named"] == len(named) and 0 <= metrics["n_significant"] <= len(named)
    assert metrics["n_interpretable"] == (~named["uninterpretable"]).sum()
    # the checkpoint alone reproduces the held-out numbers
    acts = ActivationStore(run / "activations" / "penultimate.zarr")
    again = evaluate_arrays(load_sae(run / "sae" / "sae.pt"), acts.read("test"))
    for key in ("fvu", "l0", "dead_fraction"):
        assert again[key] == pytest.approx(metrics[key], rel=1e-5), key
    opaque = json.loads((run / "opaque" / "metrics.json").read_text())
    assert metrics["opaque_accuracy"] == pytest.approx(opaque["test_accuracy"], abs=1e-6)
    latents = ActivationStore(run / "sae" / "latents.zarr")
    assert latents.attrs["kind"] == "sae_latents" and latents.splits == acts.splits
    assert latents.n_units == 2 * acts.n_units  # TINY_CONFIG: expansion 2
    assert (run / "figures" / "sae_training.png").stat().st_size > 10_000
    assert len(pd.read_csv(run / "sae" / "history.csv")) == 5  # TINY_CONFIG: 5 epochs
    prov = json.loads((run / "sae" / "sae.pt.prov.json").read_text())
    assert prov["rule"] == "train_sae"
    # TINY_CONFIG: the train images and 2 augmented views of each
    assert acts.n_rows("train_aug") == 2 * acts.n_rows("train")
    assert json.dumps(prov).count(f'"train_rows": {3 * acts.n_rows("train")}') == 1
    for key in ("encoded_fraction", "planted_recovered_of_encoded", "mcc"):
        assert key in metrics, key
    baselines = pd.read_parquet(run / "sae" / "baselines.parquet").set_index("method")
    assert list(baselines.index) == ["sae", "identity", "pca", "ica", "nmf"]
    assert baselines.loc["sae", "fvu"] == pytest.approx(metrics["fvu"], rel=1e-5)
    assert (run / "figures" / "sae_baselines.png").exists()


# -- batchtopk and matryoshka ------------------------------------------------
NEW_VARIANTS = {"batchtopk": {"k": 4}, "matryoshka": {"k": 4}}
NEW_FAST = {**FAST, "epochs": 40}


@pytest.fixture(scope="module")
def trained_new(tmp_path_factory, store) -> dict[str, Path]:
    """batchtopk / matryoshka → folder with sae.pt, history.csv (trained once)."""
    out = {}
    for variant, extra in NEW_VARIANTS.items():
        folder = tmp_path_factory.mktemp(f"new-{variant}")
        train_sae(
            store,
            folder / "sae.pt",
            folder / "history.csv",
            None,
            SAESettings.from_config({"variant": variant, **NEW_FAST, **extra}),
        )
        out[variant] = folder
    return out


def _dense_batchtopk(pre: torch.Tensor, k: int) -> torch.Tensor:
    """Reference: keep the k·B largest entries of the whole batch (and > 0)."""
    flat = pre.flatten()
    keep = torch.zeros_like(flat, dtype=torch.bool)
    keep[flat.topk(k * len(pre)).indices] = True
    return torch.where(keep.view_as(pre) & (pre > 0), pre, 0.0)


def test_batchtopk_keeps_k_per_row_on_average_over_the_batch_not_per_row():
    torch.manual_seed(0)
    m = build_sae("batchtopk", 16, {"expansion": 4, "k": 5}).train()
    pre = torch.randn(32, 64) + torch.linspace(-1, 2, 32)[:, None]  # rows differ in level
    crow, cols = m.select(pre)
    counts = (crow[1:] - crow[:-1]).float()
    assert counts.mean() == 5.0 and counts.min() < 5 < counts.max()
    code = sparse_ops.SparseCode(crow, cols, sparse_ops.gather_rows(pre, crow, cols), 64)
    torch.testing.assert_close(code.to_dense(), _dense_batchtopk(pre, 5))
    with torch.no_grad():  # outside training: the (still zero) threshold = ReLU
        crow, _ = m.select(pre)
    assert crow[-1] == (pre > 0).sum()


def test_batchtopk_loss_and_gradients_match_dense_reference():
    torch.manual_seed(0)
    m = build_sae("batchtopk", 16, {"expansion": 4, "k": 5}).double().train()
    with torch.no_grad():
        m.b_enc.normal_(-0.3, 0.3)
        m.W_enc.add_(0.1 * torch.randn_like(m.W_enc))
    x = torch.randn(32, 16, dtype=torch.float64)
    loss, _, code = m.training_loss(x, None)
    loss.backward()
    ours = [p.grad.clone() for p in (m.b_pre, m.W_enc, m.b_enc, m.W_dec)]
    m.zero_grad()
    z = _dense_batchtopk((x - m.b_pre) @ m.W_enc + m.b_enc, 5)
    ref = ((z @ m.W_dec + m.b_pre - x) ** 2).mean()
    ref.backward()
    assert loss.item() == pytest.approx(ref.item(), rel=1e-12)
    for got, want in zip(
        ours, (m.b_pre.grad, m.W_enc.grad, m.b_enc.grad, m.W_dec.grad), strict=True
    ):
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)
    # the first batch sets the threshold to its smallest kept pre-activation
    assert float(m.threshold) == pytest.approx(float(code.values.detach().min()))


def test_matryoshka_loss_adds_each_prefix_reconstruction():
    torch.manual_seed(0)
    m = build_sae("matryoshka", 8, {"expansion": 4, "k": 6, "prefix_fractions": [0.25, 0.5]})
    m = m.double().train()
    assert m.prefix_sizes() == [8, 16, 32]
    x = torch.randn(16, 8, dtype=torch.float64)
    loss, stats, _ = m.training_loss(x, None)
    z = _dense_batchtopk((x - m.b_pre) @ m.W_enc + m.b_enc, 6).detach()
    want = sum(((z[:, :s] @ m.W_dec[:s] + m.b_pre - x) ** 2).mean() for s in (8, 16, 32))
    assert loss.item() == pytest.approx(want.item(), rel=1e-10)
    assert stats["prefix_mse"] > 0
    with pytest.raises(ConfigError, match="prefix_fractions"):
        build_sae("matryoshka", 8, {"prefix_fractions": [0.5, 0.25]})


def test_batchtopk_trains_at_k_and_its_threshold_gives_about_k_on_held_out_rows(
    trained_new, planted
):
    hist = pd.read_csv(trained_new["batchtopk"] / "history.csv")
    assert (hist["train_l0"] == NEW_VARIANTS["batchtopk"]["k"]).all()  # k·B per batch, exactly
    m = load_sae(trained_new["batchtopk"] / "sae.pt")
    threshold = float(m.threshold)
    assert threshold > 0
    held_out = evaluate_arrays(m, planted.features[2000:])
    assert held_out["l0"] == pytest.approx(NEW_VARIANTS["batchtopk"]["k"], rel=0.25)
    # inference is a plain threshold: recompute from the checkpoint's weights with numpy
    st = {
        k: v.double().numpy()
        for k, v in torch.load(trained_new["batchtopk"] / "sae.pt", weights_only=True)[
            "state"
        ].items()
    }
    xn = planted.features[2000:].astype(np.float64) / st["input_scale"]
    pre = (xn - st["b_pre"]) @ st["W_enc"] + st["b_enc"]
    z = np.where(pre > threshold, pre, 0.0)
    np.testing.assert_allclose(
        m.encode(torch.from_numpy(planted.features[2000:])).numpy(), z, rtol=1e-4, atol=1e-4
    )
    assert st["threshold"] == pytest.approx(threshold)


@pytest.mark.parametrize("variant", list(NEW_VARIANTS))
def test_new_variants_recover_planted_atoms_and_reload(trained_new, planted, variant, tmp_path):
    m = load_sae(trained_new[variant] / "sae.pt")
    assert m.variant == variant
    z = m.encode(torch.from_numpy(planted.features[2000:])).numpy()
    _, best = best_units(auroc_matrix(z, planted.present[2000:]))
    # independent atoms have no hierarchy for nesting to exploit: matryoshka's small
    # prefixes learn mixtures of them instead (3 of 8 recovered at these settings)
    assert np.mean(best >= 0.9) >= (0.8 if variant == "batchtopk" else 0.25)
    got = evaluate_arrays(m, planted.features[2000:])
    assert got["fvu"] < 0.35 and got["dead_fraction"] < 0.5
    save_state_dict(m.to_checkpoint(), tmp_path / "again.pt")  # round trip
    assert evaluate_arrays(load_sae(tmp_path / "again.pt"), planted.features[2000:]) == got


def test_matryoshka_first_prefix_reconstructs_on_its_own(trained_new, trained, planted):
    """The first 1/16 of the dictionary explains much of the data alone; the same
    prefix of a TopK or BatchTopK SAE (no nesting) explains almost nothing."""
    from neurodissect.sae.matryoshka import reconstruct_with_prefix

    x = planted.features[2000:]
    first = load_sae(trained_new["matryoshka"] / "sae.pt").prefix_sizes()[0]
    folders = {**trained_new, "topk": trained["topk"]}
    prefix_fvu = {
        v: fvu(
            x,
            reconstruct_with_prefix(
                load_sae(folders[v] / "sae.pt"), torch.from_numpy(x), first
            ).numpy(),
        )
        for v in ("matryoshka", "batchtopk", "topk")
    }
    assert prefix_fvu["matryoshka"] < 0.85
    assert prefix_fvu["matryoshka"] < prefix_fvu["batchtopk"] - 0.1
    assert prefix_fvu["matryoshka"] < prefix_fvu["topk"] - 0.1


@pytest.mark.parametrize("variant", list(NEW_VARIANTS))
def test_new_variants_resume_from_the_store_to_the_uninterrupted_result(
    tmp_path, store, variant, monkeypatch
):
    from neurodissect.sae import train as train_module

    # streamed from the Zarr store in small windows, as a large train split would be
    params = SAESettings.from_config(
        {
            "variant": variant,
            **NEW_FAST,
            "epochs": 6,
            "resample_every": 2,
            "k": 4,
            "buffer_mb": 0.05,
        }
    )
    full, cut = tmp_path / "full", tmp_path / "cut"
    train_sae(store, full / "sae.pt", full / "h.csv", None, params)

    real_epoch = train_module.StoreRows.epoch

    def dies_at_epoch_4(self, epoch):
        if epoch == 4:
            raise KeyboardInterrupt("killed")
        return real_epoch(self, epoch)

    monkeypatch.setattr(train_module.StoreRows, "epoch", dies_at_epoch_4)
    with pytest.raises(KeyboardInterrupt):
        train_sae(store, cut / "sae.pt", cut / "h.csv", None, params, resume_dir=cut / ".r")
    assert load_state_dict(cut / ".r" / "state.pt")["epoch"] == 4
    monkeypatch.setattr(train_module.StoreRows, "epoch", real_epoch)
    train_sae(store, cut / "sae.pt", cut / "h.csv", None, params, resume_dir=cut / ".r")
    a, b = load_state_dict(cut / "sae.pt")["state"], load_state_dict(full / "sae.pt")["state"]
    assert "threshold" in a
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0)


# -- ground-truth metrics and dictionary baselines -----------------------------
def test_correlation_matching_and_f1_on_a_hand_built_case():
    from neurodissect.evaluate.groundtruth import (
        correlation_matrix,
        firing_f1,
        matched_correlation,
    )

    y = np.array([[1, 0], [1, 0], [0, 1], [0, 1], [0, 0], [1, 1]], dtype=bool)
    units = np.stack([y[:, 0] * 2.0, -1.0 * y[:, 1], np.ones(6)], axis=1)  # copy, negation, const
    corr = correlation_matrix(units, y)
    np.testing.assert_allclose(corr[0, 0], 1.0)
    np.testing.assert_allclose(corr[1, 1], 1.0)  # |r|: a negated copy matches too
    np.testing.assert_allclose(corr[:, 2], 0.0)  # a constant unit correlates with nothing
    # greedy would give concept 0 its best unit (0.9) and leave 0.1 for concept 1;
    # the one-to-one optimum is 0.8 + 0.85
    mcc, unit = matched_correlation(np.array([[0.9, 0.8], [0.85, 0.1]]))
    assert mcc == pytest.approx(0.825) and unit.tolist() == [1, 0]
    mcc, unit = matched_correlation(np.array([[0.5], [0.7]]))  # one unit, two concepts
    assert mcc == pytest.approx(0.35) and unit.tolist() == [-1, 0]
    active = np.array([1, 1, 0, 0, 1], dtype=bool)
    present = np.array([1, 0, 0, 1, 1], dtype=bool)
    assert firing_f1(active, present)[0] == pytest.approx(2 * 2 / (3 + 3))
    assert np.isnan(firing_f1(np.zeros(3, bool), np.zeros(3, bool))[0])


def test_probe_auroc_finds_linearly_encoded_concepts_only(planted):
    from neurodissect.evaluate.groundtruth import probe_auroc

    rng = np.random.default_rng(0)
    labels = np.column_stack([planted.present[:, :2], rng.random(2400) < 0.3])  # last: noise
    auc = probe_auroc(
        planted.features[:1600], labels[:1600], planted.features[2000:], labels[2000:]
    )
    assert (auc[:2] > 0.95).all() and abs(auc[2] - 0.5) < 0.1


def test_evaluate_sae_reports_encoding_mcc_and_f1(tmp_path, eval_inputs, trained, store):
    folder = trained["topk"]
    params = SAEEvalParams(eval_split="test", recovery_auroc=0.9)
    metrics = run_evaluate_sae(
        folder, store, eval_inputs, tmp_path, params, **planted_truth(eval_inputs)
    )
    table = pd.read_parquet(tmp_path / "gt.parquet")
    assert metrics["encoded_fraction"] == 1.0  # planted atoms are linear in the features
    assert table["encoded"].all() and (table["probe_auroc"] > 0.9).all()
    assert metrics["planted_recovered_of_encoded"] == pytest.approx(table["recovered"].mean())
    assert metrics["mcc"] == pytest.approx(table["mcc_correlation"].mean())
    assert 0.5 < metrics["mcc"] <= 1 and table["mcc_latent"].is_unique
    assert metrics["mean_best_latent_f1"] == pytest.approx(table["f1"].mean())
    assert (table["f1"] > 0.5).mean() >= 0.75


def test_baselines_table_scores_every_method_like_the_sae(
    tmp_path, eval_inputs, trained, store, planted
):
    from neurodissect.sae.baselines import BaselineParams, sae_baselines

    folder = trained["topk"]
    gt_table = eval_inputs / "concepts_gt.parquet"
    run_evaluate_sae(
        folder, store, eval_inputs, tmp_path, SAEEvalParams(eval_split="test"), gt_table=gt_table
    )
    args = (store, folder / "sae.pt", folder / "latents.zarr")
    cfg = BaselineParams(eval_split="test", seed=0, baseline_max_iter=200)
    table = sae_baselines(
        *args,
        tmp_path / "b.parquet",
        cfg,
        gt_table=eval_inputs / "concepts_gt.parquet",
        figure_out=tmp_path / "b.png",
    )
    again = sae_baselines(
        *args, tmp_path / "b2.parquet", cfg, gt_table=eval_inputs / "concepts_gt.parquet"
    )
    assert (tmp_path / "b.parquet").read_bytes() == (tmp_path / "b2.parquet").read_bytes()
    pd.testing.assert_frame_equal(table, again)
    rows = table.set_index("method")
    assert list(rows.index) == ["sae", "identity", "pca", "ica", "nmf"]
    sae = json.loads((tmp_path / "metrics.json").read_text())
    for key in ("mcc", "fvu", "l0", "planted_recovered_fraction"):  # scored alike
        assert rows.loc["sae", key] == pytest.approx(sae[key], rel=1e-6), key
    assert rows.loc["sae", "n_components"] == round((1 - sae["dead_fraction"]) * 4 * D)
    assert rows.loc["identity", "fvu"] == 0 and rows.loc["identity", "l0"] == D
    # as many components as the SAE's live latents, capped at the 32 features
    assert (rows.loc[["pca", "ica", "nmf"], "n_components"] == D).all()
    assert rows.loc["pca", "fvu"] < 1e-6  # 32 components span 32 features
    assert rows[["planted_recovered_fraction", "mcc"]].notna().all().all()
    # 48 atoms superposed in 32 dimensions: the sparse dictionary isolates them, PCA cannot
    assert rows.loc["sae", "mcc"] > rows.loc["pca", "mcc"]
    assert (tmp_path / "b.png").stat().st_size > 5_000


def test_signed_baselines_count_a_negated_component_as_recovering():
    from neurodissect.sae.baselines import dictionary_scores

    present = np.array([[1], [1], [0], [0], [0]], dtype=bool)
    codes = -present.astype(float) + 0.01 * np.arange(5)[:, None]
    assert dictionary_scores(codes, present, signed=True)["planted_recovered_fraction"] == 1.0
    assert dictionary_scores(codes, present, signed=False)["planted_recovered_fraction"] == 0.0
    assert dictionary_scores(codes, None, signed=True)["mcc"] is None
