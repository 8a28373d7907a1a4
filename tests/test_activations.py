"""Stage `activations`: stores read back the numbers of a direct forward pass,
pooling / token / spatial-map options, the in-place-ReLU hazard, bad layers,
NaN activations, and the rules on a real tiny DAG."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
from torch import nn

from conftest import run_snakemake, write_config
from neurodissect.activations.extract import (
    ExtractParams,
    LayerTaps,
    extract_activations,
    write_split,
)
from neurodissect.activations.store import ActivationStore, StoreWriter
from neurodissect.data.manifest import SPLITS, read_manifest
from neurodissect.errors import ConfigError, InputError
from neurodissect.io import read_json, save_state_dict
from neurodissect.opaque import build_model, load_opaque, resolve_layer
from neurodissect.opaque.archs import LayerSpec
from neurodissect.opaque.data import ManifestImages, eval_transform
from neurodissect.provenance import read_provenance

SIZE = 64


@pytest.fixture(scope="module")
def derm(synth_data):
    return synth_data("synthderm", n=48, size=SIZE) / "manifest.parquet"


@pytest.fixture(scope="module")
def resnet_pt(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("model") / "model.pt"
    save_state_dict(build_model("resnet18", 7).state_dict(), path)
    return path


def extract(manifest, model_pt, out, layers, **params):
    paths = {name: out / f"{name}.zarr" for name in layers}
    base = {"image_size": SIZE, "batch_size": 10, "chunk_rows": 16}
    extract_activations(
        manifest,
        model_pt,
        paths,
        arch="resnet18",
        model_name="resnet18-s0",
        params=ExtractParams(**{**base, **params}),
    )
    return {name: ActivationStore(p) for name, p in paths.items()}


def direct(model_pt, manifest_path, split):
    """layer3 / layer4 maps, head input and logits of one split by a plain forward pass."""
    manifest = read_manifest(manifest_path)
    model = load_opaque(model_pt, "resnet18", len(manifest.classes))
    seen = {}
    model.layer3.register_forward_hook(lambda _m, _a, o: seen.setdefault("layer3", []).append(o))
    model.layer4.register_forward_hook(lambda _m, _a, o: seen.setdefault("layer4", []).append(o))
    model.fc.register_forward_pre_hook(lambda _m, a: seen.setdefault("pen", []).append(a[0]))
    data = ManifestImages(manifest.split(split), eval_transform(SIZE))
    with torch.no_grad():
        seen["fc"] = [model(torch.stack([data[i][0] for i in range(len(data))]))]
    return {k: torch.cat(v).numpy() for k, v in seen.items()}, data.ids


def test_stores_read_back_a_direct_forward_pass(derm, resnet_pt, tmp_path):
    layers = ["layer3", "layer4", "fc", "penultimate"]
    stores = extract(derm, resnet_pt, tmp_path, layers, spatial_maps=["layer3", "layer4", "fc"])
    manifest = read_manifest(derm)
    for split in SPLITS:
        want, ids = direct(resnet_pt, derm, split)
        for store in stores.values():
            assert list(store.image_ids(split)) == ids == list(manifest.split(split).df["image_id"])
        for name in ("layer3", "layer4"):
            np.testing.assert_allclose(
                stores[name].read(split), want[name].mean(axis=(2, 3)), rtol=1e-5, atol=1e-5
            )
            maps = stores[name].maps_array(split)[:]
            assert maps.dtype == np.float16
            np.testing.assert_allclose(maps, want[name].astype(np.float16), rtol=2e-3, atol=2e-3)
        np.testing.assert_allclose(stores["fc"].read(split), want["fc"], rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(
            stores["penultimate"].read(split), want["pen"], rtol=1e-5, atol=1e-5
        )
    l4, fc, pen = stores["layer4"].attrs, stores["fc"].attrs, stores["penultimate"].attrs
    assert (l4["kind"], l4["layer"], l4["module"], l4["arch"], l4["model"]) == (
        "activations",
        "layer4",
        "layer4",
        "resnet18",
        "resnet18-s0",
    )
    assert l4["pooling"] == "mean" and l4["spatial_shape"] == [2, 2] and l4["n_units"] == 512
    assert l4["layer_shape"] == [512, 2, 2] and stores["layer3"].spatial_shape == (4, 4)
    assert fc["class_units"] is True and not l4["class_units"] and fc["n_units"] == 7
    assert fc["classes"] == manifest.classes and fc["spatial_shape"] is None  # no grid: skipped
    assert (pen["module"], pen["capture"], pen["n_units"]) == ("fc", "input", 512)
    assert not stores["fc"].has_maps("train") and stores["fc"].splits == list(SPLITS)


def test_max_pooling(derm, resnet_pt, tmp_path):
    stores = extract(derm, resnet_pt, tmp_path, ["layer4"], pooling="max")
    want, _ = direct(resnet_pt, derm, "val")
    np.testing.assert_allclose(
        stores["layer4"].read("val"), want["layer4"].max(axis=(2, 3)), rtol=1e-5, atol=1e-5
    )
    assert stores["layer4"].attrs["pooling"] == "max" and not stores["layer4"].has_maps("val")


def test_vit_token_pooling_and_patch_grid_maps():
    torch.manual_seed(0)
    model = build_model("vit_b_16", 3, image_size=32).eval()
    x = torch.randn(2, 3, 32, 32)
    tokens, head_in = [], []
    model.encoder.ln.register_forward_hook(lambda _m, _a, o: tokens.append(o))
    model.heads.head.register_forward_pre_hook(lambda _m, a: head_in.append(a[0]))
    specs = [resolve_layer(model, "vit_b_16", "penultimate"), LayerSpec("ln", "encoder.ln")]
    for mode in ("cls", "mean"):
        with LayerTaps(model, specs, vit_tokens=mode, spatial=["ln"]) as taps:
            shapes = taps.shapes(32)
            with torch.no_grad():
                out = taps(x)
        t = tokens[-1]
        if mode == "cls":  # the class token is exactly what the head sees
            torch.testing.assert_close(out["penultimate"][0], head_in[-1])
        else:
            torch.testing.assert_close(out["penultimate"][0], t[:, 1:].mean(dim=1))
        maps = out["ln"][1]
        assert maps.shape == (2, 768, 2, 2) and maps.dtype == torch.float16
        for i in range(2):
            for j in range(2):  # grid cell (i, j) is patch token 1 + 2 i + j
                torch.testing.assert_close(maps[:, :, i, j], t[:, 1 + 2 * i + j].half())
        assert shapes["ln"].grid == (2, 2) and shapes["ln"].layer_shape == (5, 768)
        assert shapes["ln"].pooling == ("cls" if mode == "cls" else "mean_patch_tokens")


def test_densenet_features_are_taken_before_the_inplace_relu():
    """DenseNet applies F.relu(inplace=True) to `features`' output: the hook must copy first."""
    torch.manual_seed(0)
    model = build_model("densenet121", 3).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        want = model.features(x).mean(dim=(2, 3))
    specs = [LayerSpec("features", "features"), resolve_layer(model, "densenet121", "penultimate")]
    with LayerTaps(model, specs) as taps, torch.no_grad():
        out = taps(x)
    assert (want < 0).any()  # pre-ReLU values exist...
    torch.testing.assert_close(out["features"][0], want)  # ...and are what was stored
    assert (out["penultimate"][0] >= 0).all()


def test_shared_module_is_an_error_not_a_silent_pick():
    model = build_model("resnet18", 3).eval()
    with (
        LayerTaps(model, [LayerSpec("r", "layer1.0.relu")]) as taps,
        pytest.raises(ConfigError, match="layer1.0.relu runs 2 times per forward pass"),
        torch.no_grad(),
    ):
        taps(torch.zeros(1, 3, 32, 32))


def test_unknown_layer_names_the_real_modules_and_writes_nothing(derm, resnet_pt, tmp_path):
    with pytest.raises(ConfigError) as err:
        extract(derm, resnet_pt, tmp_path, ["layer4", "layer9", "features.denseblock4"])
    msg = str(err.value)
    assert "unknown layer 'layer9'" in msg and "unknown layer 'features.denseblock4'" in msg
    assert "'layer4'" in msg and "'avgpool'" in msg
    assert not list(tmp_path.iterdir())


class _Log(nn.Module):
    def forward(self, x):
        return torch.log(x.flatten(1))


def test_nan_activation_names_the_image_and_leaves_no_store(tmp_path):
    model = nn.Sequential(_Log())
    x = torch.ones(4, 1, 2, 2)
    x[2, 0, 1, 1] = -1.0  # log(-1) = NaN for image 'c' only
    with (
        pytest.raises(
            InputError, match=r"NaN/Inf activation in layer 'log' for 1 train image\(s\): \['c'\]"
        ),
        LayerTaps(model, [LayerSpec("log", "0")]) as taps,
        StoreWriter(tmp_path / "log.zarr", n_units=4) as writer,
    ):
        write_split(taps, {"log": writer}, "train", ["a", "b", "c", "d"], [x[:2], x[2:]], "cpu")
    assert not (tmp_path / "log.zarr").exists()


def test_nan_from_a_checkpoint_is_reported_with_image_ids(derm, tmp_path):
    torch.manual_seed(0)
    state = build_model("resnet18", 7).state_dict()
    state["fc.bias"][3] = float("nan")
    save_state_dict(state, tmp_path / "model.pt")
    with pytest.raises(InputError, match=r"layer 'fc' for \d+ train image\(s\): \['SD_"):
        extract(derm, tmp_path / "model.pt", tmp_path / "out", ["layer4", "fc"])
    assert not (tmp_path / "out" / "fc.zarr").exists()


def test_spatial_maps_of_a_vector_layer_are_skipped_with_a_log_line(
    derm, resnet_pt, tmp_path, caplog
):
    with caplog.at_level(logging.INFO):
        stores = extract(
            derm, resnet_pt, tmp_path, ["penultimate"], spatial_maps=["penultimate", "layer2"]
        )
    assert "no spatial maps for layer penultimate" in caplog.text
    assert "spatial_maps names layer2, which is not extracted" in caplog.text
    assert not stores["penultimate"].has_maps("test")


# -- the rules on a real tiny DAG -----------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_extract(tmp_path_factory):
    """train_opaque + extract_activations (and the data rules before them) on TINY_CONFIG."""
    workdir = tmp_path_factory.mktemp("tiny_extract")
    cfg = write_config(workdir / "config.yaml")
    run_snakemake(workdir, "results/tiny/resnet18-s0/activations/penultimate.zarr", configfile=cfg)
    return workdir


def test_rules_write_model_metrics_curve_and_every_layer_store(tiny_extract):
    run = tiny_extract / "results" / "tiny" / "resnet18-s0"
    metrics = read_json(run / "opaque" / "metrics.json")
    assert {"test_accuracy", "test_balanced_accuracy", "test_macro_f1", "best_epoch"} <= set(
        metrics
    )
    assert (run / "figures" / "learning_curve.png").exists()
    assert not (run / "opaque" / ".resume").exists()
    manifest = read_manifest(tiny_extract / "results" / "tiny" / "data" / "manifest.parquet")
    for layer in ("layer4", "fc", "penultimate"):  # layers + sae.layer, from one job
        store = ActivationStore(run / "activations" / f"{layer}.zarr")
        assert store.attrs["model"] == "resnet18-s0" and store.attrs["layer"] == layer
        assert sum(store.n_rows(s) for s in store.splits) == len(manifest)
        assert store.attrs["provenance"]["rule"] == "extract_activations"
    prov = read_provenance(run / "opaque" / "model.pt")
    assert prov["head"] == "trained" and prov["params"]["arch"] == "resnet18"
    assert ActivationStore(run / "activations" / "fc.zarr").attrs["class_units"] is True


def test_changing_pooling_reruns_extraction_only(tiny_extract):
    cfg = write_config(tiny_extract / "pooling.yaml", {"activations": {"pooling": "max"}})
    proc = run_snakemake(
        tiny_extract, "-n", "results/tiny/resnet18-s0/activations/fc.zarr", configfile=cfg
    )
    assert "extract_activations" in proc.stdout and "train_opaque" not in proc.stdout


def test_missing_weights_file_is_named_before_anything_runs(tiny_extract):
    changes = {"opaque": {"train": False, "weights": "checkpoints/absent.pth"}}
    cfg = write_config(tiny_extract / "pretrained.yaml", changes)
    proc = run_snakemake(
        tiny_extract,
        "-n",
        "results/tiny/resnet18-s0/opaque/metrics.json",
        configfile=cfg,
        check=False,
    )
    assert proc.returncode != 0
    assert "checkpoints/absent.pth" in proc.stdout + proc.stderr


# -- augmented views of the train images ------------------------------------------------------


def test_augmented_views_are_n_train_times_v_rows_of_seeded_views(derm, resnet_pt, tmp_path):
    from neurodissect.activations.views import AugmentedViews

    views = 3
    stores = extract(
        derm,
        resnet_pt,
        tmp_path / "a",
        ["layer4", "penultimate"],
        spatial_maps=["layer4"],
        augment_views=views,
    )
    pen, l4 = stores["penultimate"], stores["layer4"]
    train_ids = list(read_manifest(derm).split("train").df["image_id"])
    # image splits as before; the views are a split of their own, listed apart
    assert pen.splits == list(SPLITS) and pen.augmented_splits == ["train_aug"]
    assert pen.n_rows("train_aug") == len(train_ids) * views
    assert list(pen.image_ids("train_aug")) == [i for i in train_ids for _ in range(views)]
    assert l4.has_maps("train") and not l4.has_maps("train_aug")
    aug = pen.read("train_aug")
    # known answer: row 3i+v is the model's head input on view v of train image i
    model = load_opaque(resnet_pt, "resnet18", len(read_manifest(derm).classes))
    seen = []
    model.fc.register_forward_pre_hook(lambda _m, a: seen.append(a[0]))
    data = AugmentedViews(read_manifest(derm).split("train"), SIZE, views)
    with torch.no_grad():
        model(torch.stack([data[i][0] for i in (0, 1, 2, 7)]))
    np.testing.assert_allclose(aug[[0, 1, 2, 7]], seen[0].numpy(), rtol=1e-5, atol=1e-5)
    # the views differ from the plain image and from each other
    plain = pen.read("train")
    assert not np.allclose(aug[0], plain[0], atol=1e-3)
    assert not np.allclose(aug[0], aug[1], atol=1e-3)
    # same settings → same bytes; another augment_seed → other views
    again = extract(derm, resnet_pt, tmp_path / "b", ["penultimate"], augment_views=views)
    assert np.array_equal(again["penultimate"].read("train_aug"), aug)
    other = extract(
        derm, resnet_pt, tmp_path / "c", ["penultimate"], augment_views=views, augment_seed=1
    )
    assert not np.allclose(other["penultimate"].read("train_aug"), aug, atol=1e-3)
    np.testing.assert_array_equal(other["penultimate"].read("train"), plain)


def test_a_view_depends_on_its_image_and_index_only(derm):
    from neurodissect.activations.views import AugmentedViews

    train = read_manifest(derm).split("train")
    four = AugmentedViews(train, SIZE, 4)
    two = AugmentedViews(train, SIZE, 2)
    torch.manual_seed(123)  # the global generator plays no part
    assert torch.equal(four[4 * 5 + 1][0], two[2 * 5 + 1][0])
    assert four[4 * 5 + 1][1] == train.df["image_id"].iloc[5]


def test_no_views_no_augmented_split(derm, resnet_pt, tmp_path):
    store = extract(derm, resnet_pt, tmp_path, ["penultimate"])["penultimate"]
    assert store.augmented_splits == [] and "augmented_splits" not in store.attrs
    with pytest.raises(InputError, match="augment_views"):
        store.acts_array("train_aug")
