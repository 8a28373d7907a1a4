"""Stage `opaque`: architectures and layer names, foreign checkpoints, the
training loop (multi-class and multi-label), resume after a real SIGKILL,
pretrained models with a re-fitted head, and the shared classification metrics."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image, ImageDraw

from conftest import assert_resumed_equals_uninterrupted
from neurodissect.data.manifest import write_manifest
from neurodissect.errors import ConfigError, InputError
from neurodissect.evaluate.classification import classification_metrics
from neurodissect.io import load_state_dict, read_json, save_state_dict
from neurodissect.opaque import (
    ARCHITECTURES,
    build_model,
    build_model_with_report,
    head_weights,
    load_opaque,
    predict_from_penultimate,
    resolve_layer,
)
from neurodissect.opaque.train import OpaqueTrainParams, balanced_sampler, train_opaque
from neurodissect.runtime import KILL_AFTER_EPOCH_ENV

COLOURS = [(220, 40, 40), (40, 200, 40), (40, 40, 220)]
CLASSES = ["red", "green", "blue"]


def write_shapes(
    root: Path,
    n: int = 90,
    size: int = 32,
    multilabel: bool = False,
    channels: int = 3,
    seed: int = 0,
) -> Path:
    """A manifest of coloured discs on grey: class = colour (multi-label: which colours appear)."""
    rng = np.random.default_rng(seed)
    (root / "img").mkdir(parents=True)
    rows = []
    for i in range(n):
        img = Image.new("RGB", (size, size), tuple(int(v) for v in rng.integers(90, 140, 3)))
        draw = ImageDraw.Draw(img)
        present = rng.integers(0, 2, 3) if multilabel else np.eye(3, dtype=int)[i % 3]
        for k in np.flatnonzero(present):
            x, y = rng.integers(0, size // 2, 2)
            r = int(rng.integers(size // 5, size // 3))
            draw.ellipse([x, y, x + r, y + r], fill=COLOURS[k])
        path = f"img/{i:04d}.png"
        (img.convert("L") if channels == 1 else img).save(root / path)
        row = {
            "image_id": f"im{i:04d}",
            "path": path,
            "split": ("train",) * 3 + ("val", "test"),
            "report": "",
            "sha256": hashlib.sha256((root / path).read_bytes()).hexdigest(),
        }
        row["split"] = row["split"][i % 5]
        if multilabel:
            row.update({f"label:{c}": int(v) for c, v in zip(CLASSES, present, strict=True)})
        else:
            row["label"] = i % 3
        rows.append(row)
    meta = {
        "task": "multilabel" if multilabel else "multiclass",
        "classes": CLASSES,
        "class_synonyms": {},
        "root": str(root),
        "format": "csv",
        "modality": "chest_xray" if channels == 1 else "dermoscopy",
        "channels": channels,
    }
    write_manifest(pd.DataFrame(rows), meta, root / "manifest.parquet")
    return root / "manifest.parquet"


@pytest.fixture(scope="module")
def shapes(tmp_path_factory) -> Path:
    return write_shapes(tmp_path_factory.mktemp("shapes"))


@pytest.fixture(scope="module")
def few_shapes(tmp_path_factory) -> Path:
    """For tests about mechanics, not accuracy: 18 train, 6 val, 6 test images."""
    return write_shapes(tmp_path_factory.mktemp("few_shapes"), n=30)


def outputs(d: Path) -> dict[str, Path]:
    return {
        "model_out": d / "model.pt",
        "metrics_out": d / "metrics.json",
        "history_out": d / "history.csv",
        "curve_out": d / "curve.png",
    }


def train(manifest: Path, out: Path, arch: str = "resnet18", **params) -> dict:
    base = {"image_size": 32, "epochs": 2, "batch_size": 16}
    return train_opaque(
        manifest,
        **outputs(out),
        arch=arch,
        seed=0,
        params=OpaqueTrainParams(**{**base, **params}),
        threads=2,
    )


# -- architectures, layers, head --------------------------------------------------------


@pytest.mark.parametrize("arch", sorted(ARCHITECTURES))
def test_every_architecture_builds_with_a_head_per_class(arch):
    torch.manual_seed(0)
    model = build_model(arch, 5, image_size=32).eval()
    W, b = head_weights(model, arch)
    penultimate = resolve_layer(model, arch, "penultimate")
    logits = resolve_layer(model, arch, "logits")
    assert W.shape[0] == 5 and b.shape == (5,)
    assert logits.class_units and not penultimate.class_units
    with torch.no_grad():
        assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 5)


def test_unknown_architecture_lists_the_valid_ones():
    with pytest.raises(
        ConfigError, match=r"unknown architecture 'resnet19'.*densenet121.*vit_b_16"
    ):
        build_model("resnet19", 3)


def test_unknown_layer_lists_the_models_module_names():
    model = build_model("resnet18", 3)
    with pytest.raises(ConfigError) as err:
        resolve_layer(model, "resnet18", "layer5")
    msg = str(err.value)
    assert "'layer5'" in msg and "did you mean" in msg and "layer4" in msg
    assert "'layer1.0.conv1'" in msg and "penultimate" in msg


def test_layer_aliases_resolve_per_architecture():
    torch.manual_seed(0)
    model = build_model("convnext_tiny", 4).eval()
    pen = resolve_layer(model, "convnext_tiny", "penultimate")
    assert (pen.module, pen.capture) == ("classifier.2", "input")  # after the LayerNorm
    seen = []
    model.classifier[2].register_forward_pre_hook(lambda _m, a: seen.append(a[0]))
    with torch.no_grad():
        model(torch.randn(2, 3, 32, 32))
    assert seen[0].shape == (2, 768)
    assert resolve_layer(model, "convnext_tiny", "features.7").module == "features.7"
    dense = build_model("densenet121", 4)
    assert resolve_layer(dense, "densenet121", "classifier").class_units


def test_head_on_penultimate_features_reproduces_the_model():
    torch.manual_seed(0)
    model = build_model("resnet18", 4).eval()
    feats = []
    model.fc.register_forward_pre_hook(lambda _m, a: feats.append(a[0].numpy().copy()))
    x = torch.randn(6, 3, 32, 32)
    with torch.no_grad():
        direct = torch.softmax(model(x), dim=1).numpy()
        sigm = torch.sigmoid(model(x)).numpy()
    W, b = head_weights(model.state_dict(), "resnet18")
    assert W.shape == (4, 512)
    np.testing.assert_allclose(predict_from_penultimate(W, b, feats[0], False), direct, atol=1e-5)
    np.testing.assert_allclose(predict_from_penultimate(W, b, feats[0], True), sigm, atol=1e-5)


def test_one_channel_input_matches_the_rgb_model_on_a_replicated_grey_image():
    torch.manual_seed(0)
    rgb = build_model("resnet18", 3).eval()
    torch.manual_seed(0)
    grey = build_model("resnet18", 3, in_channels=1).eval()  # RGB kernel summed over channels
    assert grey.conv1.weight.shape == (64, 1, 7, 7)
    x = torch.rand(2, 1, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(grey(x), rgb(x.expand(-1, 3, -1, -1)), atol=1e-5, rtol=1e-4)


# -- foreign checkpoints ------------------------------------------------------------------


def _state(arch: str, n_classes: int, seed: int) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    return build_model(arch, n_classes).state_dict()


def _same_backbone(model, state, head: str) -> None:
    own = model.state_dict()
    for k, v in state.items():
        if not k.startswith(head + "."):
            assert torch.equal(own[k], v), k


def test_local_state_dict_loads_head_and_all(tmp_path):
    state = _state("resnet18", 3, seed=7)
    save_state_dict(state, tmp_path / "weights.pt")
    model, report = build_model_with_report("resnet18", 3, weights=str(tmp_path / "weights.pt"))
    assert report.head_loaded and report.prefix == ""
    for k, v in state.items():
        assert torch.equal(model.state_dict()[k], v), k


def test_moco_resnet50_checkpoint_nested_prefixed_with_mlp_head(tmp_path):
    """MoCo v2 layout: {'state_dict': {'module.encoder_q.*', 'module.encoder_k.*', queue}},
    an MLP projection head (fc.0, fc.2) instead of fc."""
    state = _state("resnet50", 1000, seed=3)
    backbone = {k: v for k, v in state.items() if not k.startswith("fc.")}
    mlp = {
        "fc.0.weight": torch.randn(2048, 2048),
        "fc.0.bias": torch.zeros(2048),
        "fc.2.weight": torch.randn(128, 2048),
        "fc.2.bias": torch.zeros(128),
    }
    nested = {f"module.encoder_q.{k}": v for k, v in {**backbone, **mlp}.items()}
    nested |= {f"module.encoder_k.{k}": v + 1 for k, v in backbone.items()}
    nested["module.queue"] = torch.randn(128, 64)
    save_state_dict({"epoch": 200, "arch": "resnet50", "state_dict": nested}, tmp_path / "moco.pth")
    model, report = build_model_with_report("resnet50", 14, weights=str(tmp_path / "moco.pth"))
    assert report.prefix == "module.encoder_q." and not report.head_loaded
    assert model.fc.out_features == 14
    _same_backbone(model, backbone, "fc")  # the query encoder, not the key encoder


def test_imagenet_densenet121_old_style_keys_under_model_with_backbone_prefix(tmp_path):
    """A 1000-class DenseNet121 saved as {'model': {'backbone.features...norm.1.weight'}} (the
    pre-0.3 torchvision names CheXNet-era checkpoints carry)."""
    import re

    state = _state("densenet121", 1000, seed=4)
    old = {
        re.sub(r"(denselayer\d+\.(?:norm|relu|conv))([12])", r"\1.\2", k): v
        for k, v in state.items()
    }
    assert any(".norm.1." in k for k in old)
    save_state_dict({"model": {f"backbone.{k}": v for k, v in old.items()}}, tmp_path / "d.pt")
    model, report = build_model_with_report("densenet121", 7, weights=str(tmp_path / "d.pt"))
    assert not report.head_loaded and model.classifier.out_features == 7
    _same_backbone(model, state, "classifier")


def test_vit_checkpoint_at_224_px_fits_a_smaller_image_size():
    """Position embeddings are interpolated to the model's patch grid (224 px: 14 x 14 -> 2 x 2)."""
    from neurodissect.opaque.checkpoints import load_weights

    state = _state("vit_b_16", 1000, seed=8)
    assert state["encoder.pos_embedding"].shape == (1, 197, 768)
    model = build_model("vit_b_16", 3, image_size=32)
    report = load_weights(model, "vit_b_16", state, "vit224.pth")
    assert not report.head_loaded and model.encoder.pos_embedding.shape == (1, 5, 768)
    # the class token's position embedding is kept as is
    torch.testing.assert_close(
        model.encoder.pos_embedding[0, 0], state["encoder.pos_embedding"][0, 0]
    )
    torch.testing.assert_close(model.conv_proj.weight, state["conv_proj.weight"])


def test_wrong_architecture_checkpoint_names_file_and_unmatched_keys(tmp_path):
    save_state_dict(_state("resnet18", 3, seed=0), tmp_path / "r18.pt")
    with pytest.raises(InputError) as err:
        build_model("resnet50", 3, weights=str(tmp_path / "r18.pt"))
    msg = str(err.value)
    assert "r18.pt" in msg and "does not fit resnet50" in msg
    assert "missing from the checkpoint: layer1.0.conv3.weight" in msg
    assert "shape mismatch: layer1.0.conv1.weight" in msg


def test_corrupt_checkpoint_is_a_clear_error_naming_the_file(tmp_path):
    bad = tmp_path / "broken.pt"
    bad.write_bytes(b"this is not a checkpoint")
    with pytest.raises(InputError, match="broken.pt"):
        build_model("resnet18", 3, weights=str(bad))
    with pytest.raises(InputError, match="broken.pt"):
        load_opaque(bad, "resnet18", 3)
    save_state_dict({"epoch": 3, "note": "no tensors"}, tmp_path / "empty.pt")
    with pytest.raises(InputError, match="empty.pt: no state dict of tensors"):
        build_model("resnet18", 3, weights=str(tmp_path / "empty.pt"))


def test_load_opaque_rejects_another_class_count_naming_the_file(tmp_path):
    save_state_dict(_state("resnet18", 3, seed=0), tmp_path / "model.pt")
    assert not load_opaque(tmp_path / "model.pt", "resnet18", 3).training
    with pytest.raises(
        InputError, match=r"model.pt: not a resnet18 state dict for 5 classes.*fc.weight"
    ):
        load_opaque(tmp_path / "model.pt", "resnet18", 5)


# -- training -----------------------------------------------------------------------------


def test_train_opaque_writes_a_loadable_model_metrics_history_and_figure(shapes, tmp_path):
    summary = train(shapes, tmp_path, epochs=5, batch_size=8)
    metrics = read_json(tmp_path / "metrics.json")
    for split in ("train", "val", "test"):
        for key in ("accuracy", "balanced_accuracy", "macro_f1"):
            assert 0.0 <= metrics[f"{split}_{key}"] <= 1.0
    assert metrics["split"] == "test" and 1 <= metrics["best_epoch"] <= 5
    history = pd.read_csv(tmp_path / "history.csv")
    assert list(history["epoch"]) == [1, 2, 3, 4, 5]
    best = history.loc[history["epoch"] == metrics["best_epoch"], "val_balanced_accuracy"].item()
    assert best == pytest.approx(history["val_balanced_accuracy"].max())
    assert metrics["val_balanced_accuracy"] == pytest.approx(best)  # the kept epoch's weights
    assert (tmp_path / "curve.png").stat().st_size > 10_000
    assert not (tmp_path / ".resume").exists()  # removed once the outputs exist
    assert summary["head"] == "trained" and summary["preprocess"]["mean"][0] == 0.485
    state = torch.load(tmp_path / "model.pt", weights_only=True)
    assert state["fc.weight"].shape == (3, 512)
    # the colour classes are easy: clearly above chance (1/3) after 30 steps
    assert metrics["test_balanced_accuracy"] > 0.6


def test_multilabel_grey_images_train_with_sigmoid_heads(tmp_path):
    manifest = write_shapes(tmp_path / "data", n=30, multilabel=True, channels=1)
    train(manifest, tmp_path / "out", balanced_sampling=True)
    metrics = read_json(tmp_path / "out" / "metrics.json")
    assert {"test_mean_auroc", "val_mean_auroc", "train_macro_f1"} <= set(metrics)
    assert "val_mean_auroc" in pd.read_csv(tmp_path / "out" / "history.csv")


def test_balanced_sampler_weights_are_inverse_class_frequencies():
    gen = torch.Generator().manual_seed(0)
    sampler = balanced_sampler(np.array([0, 0, 0, 1]), False, gen)
    np.testing.assert_allclose(sampler.weights.numpy(), [1 / 3, 1 / 3, 1 / 3, 1.0])
    multi = np.array([[1, 0], [1, 0], [1, 1], [0, 0]], dtype=np.float32)
    # rarest positive label decides; the all-negative row counts as its own class
    np.testing.assert_allclose(
        balanced_sampler(multi, True, gen).weights.numpy(), [1 / 3, 1 / 3, 1, 1]
    )


_TRAIN_CHILD = """
import json, sys
from neurodissect.opaque.train import OpaqueTrainParams, train_opaque
out = sys.argv[2]
summary = train_opaque(sys.argv[1], f"{out}/model.pt", f"{out}/metrics.json", f"{out}/history.csv",
                       None, arch="resnet18", seed=0, threads=1,
                       params=OpaqueTrainParams(image_size=32, epochs=4, batch_size=4))
print(json.dumps(summary))
"""


def _train_child(manifest: Path, out: Path, kill_after_epoch: int | None = None):
    """Train in a child process (finished); with ``kill_after_epoch`` the child SIGKILLs
    itself once that epoch's resume checkpoint is written (runtime.checkpoint_written)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    if kill_after_epoch is not None:
        env[KILL_AFTER_EPOCH_ENV] = str(kill_after_epoch)
    return subprocess.run(
        [sys.executable, "-c", _TRAIN_CHILD, str(manifest), str(out)],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )


def test_training_killed_mid_run_resumes_to_bit_identical_weights(few_shapes, tmp_path):
    reference = _train_child(few_shapes, tmp_path / "a")
    assert reference.returncode == 0, reference.stderr[-3000:]
    assert json.loads(reference.stdout.splitlines()[-1])["resumed_from_epoch"] == 0

    killed = _train_child(few_shapes, tmp_path / "b", kill_after_epoch=2)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    assert not (tmp_path / "b" / "model.pt").exists()  # really killed mid-training
    assert load_state_dict(tmp_path / "b" / ".resume" / "last.pt")["epoch"] == 2

    resumed = _train_child(few_shapes, tmp_path / "b")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert json.loads(resumed.stdout.splitlines()[-1])["resumed_from_epoch"] == 2
    a = torch.load(tmp_path / "a" / "model.pt", weights_only=True)
    b = torch.load(tmp_path / "b" / "model.pt", weights_only=True)
    assert_resumed_equals_uninterrupted(a, b, tmp_path / "a", tmp_path / "b")


def test_resume_checkpoint_of_another_config_is_not_used(few_shapes, tmp_path):
    # a stale checkpoint from a different seed/config sits where the job will look
    fake = {"fingerprint": "something else", "epoch": 1}
    save_state_dict(fake, tmp_path / ".resume" / "last.pt")
    summary = train(few_shapes, tmp_path, epochs=1)
    assert summary["resumed_from_epoch"] == 0


# -- pretrained target models (opaque.train: false) ---------------------------------------


def test_pretrained_checkpoint_with_other_head_gets_a_linear_probe(shapes, tmp_path):
    backbone = _state("resnet18", 1000, seed=5)
    save_state_dict(
        {"state_dict": {f"module.{k}": v for k, v in backbone.items()}}, tmp_path / "imagenet.pth"
    )
    summary = train(shapes, tmp_path / "out", train=False, weights=str(tmp_path / "imagenet.pth"))
    assert summary["head"] == "linear_probe" and not summary["head_loaded"]
    assert [g["C"] for g in summary["probe_grid"]] == [0.01, 0.1, 1.0, 10.0]
    metrics = read_json(tmp_path / "out" / "metrics.json")
    assert metrics["head_refit"] == 1 and metrics["epochs_trained"] == 0
    model = load_opaque(tmp_path / "out" / "model.pt", "resnet18", 3)
    _same_backbone(model, backbone, "fc")  # backbone untouched, only the head re-fitted
    assert metrics["train_balanced_accuracy"] > 0.5  # colour is linearly readable
    assert pd.read_csv(tmp_path / "out" / "history.csv").empty


def test_pretrained_checkpoint_with_fitting_head_is_used_as_is(shapes, tmp_path):
    state = _state("resnet18", 3, seed=6)
    save_state_dict(state, tmp_path / "fitted.pt")
    summary = train(shapes, tmp_path / "out", train=False, weights=str(tmp_path / "fitted.pt"))
    assert summary["head"] == "checkpoint"
    saved = torch.load(tmp_path / "out" / "model.pt", weights_only=True)
    for k, v in state.items():
        assert torch.equal(saved[k], v), k


def test_no_training_without_weights_is_a_config_error(shapes, tmp_path):
    with pytest.raises(ConfigError, match="opaque.train is false but opaque.weights is 'none'"):
        train(shapes, tmp_path, train=False)


# -- shared metrics -----------------------------------------------------------------------


def test_classification_metrics_match_sklearn():
    from sklearn import metrics as skm

    rng = np.random.default_rng(0)
    y = rng.integers(0, 4, 200)
    scores = rng.random((200, 4)) + np.eye(4)[y] * 0.5
    got = classification_metrics(y, scores, multilabel=False)
    pred = scores.argmax(axis=1)
    assert got["accuracy"] == pytest.approx(skm.accuracy_score(y, pred))
    assert got["balanced_accuracy"] == pytest.approx(skm.balanced_accuracy_score(y, pred))
    assert got["macro_f1"] == pytest.approx(skm.f1_score(y, pred, average="macro"))

    Y = rng.integers(0, 2, (200, 3))
    P = np.clip(rng.random((200, 3)) * 0.7 + Y * 0.3, 0, 1)
    P[:, 1] = np.round(P[:, 1], 1)  # ties
    got = classification_metrics(Y, P, multilabel=True)
    assert got["mean_auroc"] == pytest.approx(skm.roc_auc_score(Y, P, average="macro"))
    assert got["macro_f1"] == pytest.approx(skm.f1_score(Y, P >= 0.5, average="macro"))


def test_mean_auroc_skips_labels_with_one_outcome():
    Y = np.array([[1, 0], [0, 0], [1, 0]])
    P = np.array([[0.9, 0.1], [0.2, 0.3], [0.8, 0.2]])
    assert classification_metrics(Y, P, multilabel=True)["mean_auroc"] == 1.0


# -- the GPU branches, executed on the CPU ------------------------------------------------


def test_amp_branch_trains_with_an_enabled_grad_scaler_and_resumes_it(
    few_shapes, tmp_path, monkeypatch
):
    """CUDA's autocast + GradScaler path (bfloat16 autocast on the CPU): training, the
    checkpoint of an enabled scaler, and resuming from it."""
    from neurodissect import runtime
    from neurodissect.data.manifest import read_manifest
    from neurodissect.opaque import build_model_with_report
    from neurodissect.opaque.train import _split_datasets, fit

    monkeypatch.setattr(runtime, "AMP_DEVICE_TYPES", ("cuda", "cpu"))
    summary = train(few_shapes, tmp_path / "full", epochs=1, batch_size=8)
    metrics = read_json(tmp_path / "full" / "metrics.json")
    assert summary["head"] == "trained" and np.isfinite(metrics["test_accuracy"])

    manifest = read_manifest(few_shapes)
    device = torch.device("cpu")

    def run(epochs: int):
        params = OpaqueTrainParams(image_size=32, epochs=epochs, batch_size=8)
        torch.manual_seed(0)
        model, _ = build_model_with_report("resnet18", len(manifest.classes), image_size=32)
        data = _split_datasets(manifest, params, "other")
        return fit(
            model,
            data["train_augmented"],
            data["val"],
            params=params,
            seed=0,
            device=device,
            multilabel=False,
            resume_path=tmp_path / "last.pt",
            job_fingerprint="amp-job",
        )

    first = run(1)
    saved = load_state_dict(tmp_path / "last.pt")
    assert first.resumed_from_epoch == 0 and saved["scaler"]["scale"] > 0  # an enabled scaler
    resumed = run(2)  # loads the enabled scaler's state into an enabled scaler
    assert resumed.resumed_from_epoch == 1 and len(resumed.history) == 2
    assert np.isfinite(resumed.history[-1]["train_loss"])


def test_a_disabled_scalers_checkpoint_restores_into_an_enabled_scaler(caplog):
    """A CPU-written checkpoint ({} scaler state) met by a CUDA run: no crash, fresh scaler."""
    from neurodissect.opaque.resume import restore_training, training_state

    gen = torch.Generator().manual_seed(0)
    model = torch.nn.Linear(2, 1)
    cpu_state = training_state(
        "job", 1, gen, [], model=model, scaler=torch.amp.GradScaler("cpu", enabled=False)
    )
    assert cpu_state["scaler"] == {}
    enabled = torch.amp.GradScaler("cpu", enabled=True, init_scale=1024.0)
    caplog.set_level("WARNING", logger="neurodissect.opaque.resume")
    epoch, _ = restore_training(cpu_state, gen, model=model, scaler=enabled)
    assert epoch == 1 and enabled.get_scale() == 1024.0
    assert "grad scaler was disabled, this run's is enabled" in caplog.text
    # an enabled scaler's state is restored exactly
    enabled.scale(torch.ones(()))  # the scale tensor exists from the first scaled loss
    enabled.update(new_scale=64.0)
    state = training_state("job", 2, gen, [], model=model, scaler=enabled)
    again = torch.amp.GradScaler("cpu", enabled=True)
    restore_training(state, gen, model=model, scaler=again)
    assert again.get_scale() == 64.0
    # and the reverse (a GPU checkpoint resumed on a CPU) keeps the disabled scaler
    disabled = torch.amp.GradScaler("cpu", enabled=False)
    restore_training(state, gen, model=model, scaler=disabled)
    assert not disabled.is_enabled()


def test_cuda_rng_states_restore_onto_fewer_visible_gpus(caplog):
    """A checkpoint written where 4 GPUs were visible, resumed where 1 is (fake states)."""
    from neurodissect.opaque.resume import restore_cuda_rng

    saved = [torch.full((16,), i, dtype=torch.uint8) for i in range(4)]
    calls = []
    caplog.set_level("WARNING", logger="neurodissect.opaque.resume")
    assert restore_cuda_rng(saved, 1, lambda state, index: calls.append((index, state))) == 1
    assert [i for i, _ in calls] == [0] and torch.equal(calls[0][1], saved[0])
    assert "4 GPU RNG states, 1 GPU(s) visible" in caplog.text
    calls.clear()
    assert restore_cuda_rng(saved[:2], 8, lambda state, index: calls.append((index, state))) == 2
    assert [i for i, _ in calls] == [0, 1] and torch.equal(calls[1][1], saved[1])


def test_out_of_memory_in_the_forward_is_a_clear_config_error(few_shapes, tmp_path):
    """A forward that raises torch.OutOfMemoryError (as a full GPU does) → one message
    naming the batch size to lower; no traceback chained."""

    def full_gpu(module, args, output):
        if isinstance(module, torch.nn.Conv2d):
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    handle = torch.nn.modules.module.register_module_forward_hook(full_gpu)
    try:
        with pytest.raises(
            ConfigError,
            match=r"out of GPU memory training resnet18 at "
            r"opaque.batch_size=8.*lower opaque.batch_size",
        ) as info:
            train(few_shapes, tmp_path, epochs=1, batch_size=8)
    finally:
        handle.remove()
    assert info.value.__cause__ is None
    assert not (tmp_path / "model.pt").exists()
