"""Stage `clip`: the open_clip local-dir round trip, the loss against open_clip's own,
retrieval and zero-shot metrics on known answers, training on a toy image-text task,
resume after a real SIGKILL, the embedding stores, the load_clip sources, and the
rules in a real run."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import open_clip
import pandas as pd
import pytest
import torch
from PIL import Image, ImageDraw

from conftest import (
    assert_resumed_equals_uninterrupted,
    clone_run,
    deep_update,
    job_names,
    planned_jobs,
    run_snakemake,
    write_config,
)
from neurodissect.activations.store import ActivationStore
from neurodissect.clip import encode_texts, l2_normalise, load_clip, model_info
from neurodissect.clip.data import sample_sentences, split_sentences
from neurodissect.clip.embed import (
    ImageEmbedParams,
    TextEmbedParams,
    bare_template,
    embed_images,
    embed_texts,
    read_text_embeddings,
)
from neurodissect.clip.encode import encode_text_trimmed, trim_padding
from neurodissect.clip.load import LoadSettings, obtain_clip
from neurodissect.clip.metrics import prompt_synonyms, recall_at_k, zeroshot_scores
from neurodissect.clip.model import (
    WEIGHTS_FILE,
    Architecture,
    build_clip,
    model_config,
    preprocess_config,
    save_local_dir,
)
from neurodissect.clip.train import ClipParams, contrastive_loss, train_clip
from neurodissect.data.manifest import read_manifest, write_manifest
from neurodissect.errors import ConfigError, InputError
from neurodissect.io import read_json, save_state_dict
from neurodissect.runtime import KILL_AFTER_EPOCH_ENV

TINY_ARCH = {
    "embed_dim": 32,
    "image_size": 32,
    "vision_width": 8,
    "text_width": 32,
    "text_layers": 1,
    "context_length": 32,
}
COLOURS = {"red": (220, 40, 40), "green": (40, 190, 40), "blue": (40, 40, 220)}
FILLERS = [
    "The image is sharp.",
    "Follow-up is advised.",
    "The background is grey.",
    "Image quality is adequate.",
]


def write_discs(root: Path, n: int = 90, size: int = 32, seed: int = 0) -> Path:
    """A manifest of one coloured disc per image (class = colour), each with a report
    naming the colour among filler sentences."""
    rng = np.random.default_rng(seed)
    (root / "img").mkdir(parents=True)
    names = list(COLOURS)
    rows = []
    for i in range(n):
        k = i % 3
        img = Image.new("RGB", (size, size), tuple(int(v) for v in rng.integers(100, 140, 3)))
        x, y = rng.integers(0, size // 2, 2)
        r = int(rng.integers(size // 3, size // 2))
        ImageDraw.Draw(img).ellipse([x, y, x + r, y + r], fill=COLOURS[names[k]])
        path = f"img/{i:03d}.png"
        img.save(root / path)
        body = [FILLERS[j] for j in rng.permutation(len(FILLERS))[:2]]
        report = " ".join([*body, f"There is a {names[k]} disc. Diagnosis: {names[k]} disc."])
        rows.append(
            {
                "image_id": f"d{i:03d}",
                "path": path,
                "split": ("train",) * 3 + ("val", "test"),
                "report": report,
                "sha256": hashlib.sha256((root / path).read_bytes()).hexdigest(),
                "label": k,
            }
        )
        rows[-1]["split"] = rows[-1]["split"][i % 5]
    meta = {
        "task": "multiclass",
        "classes": names,
        "class_synonyms": {c: [c] for c in names},
        "root": str(root),
        "format": "csv",
        "modality": "other",
        "channels": 3,
    }
    write_manifest(pd.DataFrame(rows), meta, root / "manifest.parquet")
    return root / "manifest.parquet"


@pytest.fixture(scope="module")
def discs(tmp_path_factory) -> Path:
    return write_discs(tmp_path_factory.mktemp("discs"))


def outputs(d: Path) -> dict[str, Path]:
    return {
        "model_out": d / "model",
        "metrics_out": d / "metrics.json",
        "history_out": d / "history.csv",
        "curve_out": d / "curve.png",
    }


def tiny_params(**changes) -> ClipParams:
    return ClipParams(**{**TINY_ARCH, "epochs": 3, "batch_size": 16, "lr": 2e-3, **changes})


@pytest.fixture(scope="module")
def trained(discs, tmp_path_factory) -> Path:
    """A tiny CLIP trained on the discs (the embedding tests use it)."""
    out = tmp_path_factory.mktemp("trained")
    train_clip(discs, **outputs(out), params=tiny_params(epochs=40), threads=2)
    return out


# -- the model folder ----------------------------------------------------------------------
def test_local_dir_loads_in_open_clip_with_the_same_outputs(tmp_path):
    arch = Architecture(**TINY_ARCH)
    torch.manual_seed(0)
    model = build_clip(model_config(arch)).eval()
    save_local_dir(
        model, model_config(arch), preprocess_config(32), tmp_path / "m", {"source": "train"}
    )
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == [
        "open_clip_config.json",
        WEIGHTS_FILE,
    ]
    # exactly what an open_clip user would call
    loaded, _, preprocess = open_clip.create_model_and_transforms(f"local-dir:{tmp_path / 'm'}")
    tokenizer = open_clip.get_tokenizer(f"local-dir:{tmp_path / 'm'}")
    loaded.eval()
    tokens = tokenizer(["an image showing a red disc", "x"])
    assert tokens.shape == (2, 32)
    image = preprocess(Image.new("RGB", (50, 40), (200, 30, 30)))[None]
    assert image.shape == (1, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(loaded.encode_text(tokens), model.encode_text(tokens))
        torch.testing.assert_close(loaded.encode_image(image), model.encode_image(image))
    ours, _, ours_tok = load_clip(tmp_path / "m")
    np.testing.assert_allclose(
        encode_texts(ours, ours_tok, ["a", "b c"]),
        torch.nn.functional.normalize(model.encode_text(tokenizer(["a", "b c"])), dim=-1).detach(),
        atol=1e-6,
    )


def test_broken_model_folders_are_clear_errors(tmp_path):
    with pytest.raises(InputError, match="not an open_clip local-dir"):
        load_clip(tmp_path)
    (tmp_path / "open_clip_config.json").write_text('{"model_cfg": {}}')
    with pytest.raises(InputError, match="without weights"):
        load_clip(tmp_path)


def test_resnet_tower_needs_a_multiple_of_32():
    with pytest.raises(ConfigError, match="multiple of 32"):
        model_config(Architecture(image_size=48))


def test_trimmed_text_encoding_equals_open_clip():
    torch.manual_seed(0)
    model = build_clip(model_config(Architecture(**TINY_ARCH))).eval()
    tokens = open_clip.tokenizer.SimpleTokenizer(context_length=32)(
        ["a b", "a much longer text here", ""]
    )
    trimmed = trim_padding(tokens)
    assert trimmed.shape == (3, 7)  # start + 5 words + end of the longest text
    with torch.no_grad():
        torch.testing.assert_close(encode_text_trimmed(model, trimmed), model.encode_text(tokens))


# -- loss and metrics ----------------------------------------------------------------------
def test_contrastive_loss_matches_open_clip_reference():
    g = torch.Generator().manual_seed(0)
    img = torch.nn.functional.normalize(torch.randn(8, 16, generator=g), dim=-1)
    txt = torch.nn.functional.normalize(torch.randn(8, 16, generator=g), dim=-1)
    scale = torch.tensor(14.3)
    reference = open_clip.loss.ClipLoss()(img, txt, scale)
    torch.testing.assert_close(contrastive_loss(img, txt, scale), reference)
    # aligned pairs at a sharp temperature cost almost nothing
    assert float(contrastive_loss(img, img, torch.tensor(100.0))) < 1e-3


def test_recall_at_k_known_answers_and_ties():
    eye = np.eye(4, dtype=np.float32)
    texts = eye[[0, 1, 3, 2]]  # images 2 and 3 have each other's text
    assert recall_at_k(eye, texts) == {"recall_at_1": 0.5, "recall_at_5": 1.0}
    assert recall_at_k(eye, texts, ks=(2,)) == {"recall_at_2": 1.0}
    # identical reports score alike: the own one is not pushed down by its twin
    twins = eye[[0, 0, 2, 3]]
    images = np.stack([eye[0], eye[0], eye[2], eye[3]])
    assert recall_at_k(images, twins)["recall_at_1"] == 1.0


def test_zeroshot_scores_known_answers():
    classes = np.eye(3, dtype=np.float32)
    images = classes[[0, 1, 2, 2, 1]]
    multi = zeroshot_scores(images, classes, np.array([0, 1, 2, 0, 1]))
    assert multi["zeroshot_accuracy"] == pytest.approx(0.8)
    assert multi["zeroshot_balanced_accuracy"] == pytest.approx((0.5 + 1 + 1) / 3)
    assert multi["zeroshot_chance_accuracy"] == pytest.approx(0.4)
    labels = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1], [0, 0, 1], [0, 1, 0]])
    assert zeroshot_scores(images, classes, labels)["zeroshot_mean_auroc"] == pytest.approx(1.0)


def test_prompt_synonyms_keep_names_the_reports_use():
    synonyms = {"mel": ["mel", "melanoma"], "df": ["df", "dermatofibroma"], "x": ["xx"]}
    reports = ["Diagnosis: melanoma.", "Dermatofibroma. Melanocytic."]
    assert prompt_synonyms(synonyms, reports) == {
        "mel": ["melanoma"],
        "df": ["dermatofibroma"],
        "x": ["xx"],
    }


def test_sentence_sampling_is_a_seeded_subset():
    sentences = split_sentences("One. Two!  Three? Four.")
    assert sentences == ["One.", "Two!", "Three?", "Four."]
    draws = [sample_sentences(sentences, 0.5, np.random.default_rng((0, 1, i))) for i in range(50)]
    assert draws == [
        sample_sentences(sentences, 0.5, np.random.default_rng((0, 1, i))) for i in range(50)
    ]
    assert all(d and set(split_sentences(d)) <= set(sentences) for d in draws)
    assert len({len(split_sentences(d)) for d in draws}) > 2  # subsets of varying size
    assert sample_sentences(sentences, 1.0, np.random.default_rng(0)) == "One. Two! Three? Four."


# -- training ------------------------------------------------------------------------------
def test_trained_clip_aligns_colours_with_their_names(trained, discs):
    metrics = read_json(trained / "metrics.json")
    assert metrics["split"] == "test" and metrics["n_test"] == 18
    assert {"recall_at_1", "recall_at_5", "train_loss", "epochs"} <= set(metrics)
    # each report names one of three colours: the own report's colour must rank first
    assert metrics["recall_at_5"] > 0.5
    # "an image showing red" finds the red discs (chance: 1/3)
    assert metrics["zeroshot_accuracy"] > 0.6
    history = pd.read_csv(trained / "history.csv")
    assert history["epoch"].tolist() == list(range(1, 41))
    assert history["train_loss"].iloc[-1] < history["train_loss"].iloc[0]
    assert (trained / "curve.png").stat().st_size > 10_000
    assert not (trained / ".resume").exists()
    info = json.loads((trained / "model" / "open_clip_config.json").read_text())["neurodissect"]
    assert info["source"] == "train" and info["n_train_pairs"] == 54


def test_training_without_reports_is_a_clear_error(tmp_path):
    manifest = write_discs(tmp_path / "d", n=15)
    m = read_manifest(manifest)
    m.df["report"] = ""
    write_manifest(m.df, m.meta, manifest)
    with pytest.raises(InputError, match="needs train-split images with reports"):
        train_clip(manifest, **outputs(tmp_path), params=tiny_params())


_TRAIN_CHILD = """
import json, sys
from neurodissect.clip.train import ClipParams, train_clip
out = sys.argv[2]
params = ClipParams(**json.loads(sys.argv[3]))
summary = train_clip(sys.argv[1], f"{out}/model", f"{out}/metrics.json", f"{out}/history.csv",
                     None, params=params, threads=1)
print(json.dumps(summary))
"""


def _train_child(manifest: Path, out: Path, params: ClipParams, kill_after_epoch=None):
    """Train in a child process (finished); with ``kill_after_epoch`` the child SIGKILLs
    itself once that epoch's resume checkpoint is written (runtime.checkpoint_written)."""
    from dataclasses import asdict

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    if kill_after_epoch is not None:
        env[KILL_AFTER_EPOCH_ENV] = str(kill_after_epoch)
    args = [sys.executable, "-c", _TRAIN_CHILD, str(manifest), str(out), json.dumps(asdict(params))]
    return subprocess.run(args, capture_output=True, text=True, env=env, timeout=600)


def _weights(model_dir: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(model_dir / WEIGHTS_FILE)


def test_training_killed_mid_run_resumes_to_identical_weights(discs, tmp_path):
    params = tiny_params(epochs=4)
    reference = _train_child(discs, tmp_path / "a", params)
    assert reference.returncode == 0, reference.stderr[-3000:]
    assert json.loads(reference.stdout.splitlines()[-1])["resumed_from_epoch"] == 0

    killed = _train_child(discs, tmp_path / "b", params, kill_after_epoch=2)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    assert not (tmp_path / "b" / "model").exists()  # really killed mid-training

    resumed = _train_child(discs, tmp_path / "b", params)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert json.loads(resumed.stdout.splitlines()[-1])["resumed_from_epoch"] == 2
    a, b = _weights(tmp_path / "a" / "model"), _weights(tmp_path / "b" / "model")
    assert_resumed_equals_uninterrupted(a, b, tmp_path / "a", tmp_path / "b")


def test_resume_checkpoint_of_another_config_is_not_used(discs, tmp_path):
    save_state_dict({"fingerprint": "another job", "epoch": 1}, tmp_path / ".resume" / "last.pt")
    summary = train_clip(discs, **outputs(tmp_path), params=tiny_params(epochs=1))
    assert summary["resumed_from_epoch"] == 0


# -- embeddings ----------------------------------------------------------------------------
def test_amp_branch_trains_the_clip_with_an_enabled_grad_scaler(discs, tmp_path, monkeypatch):
    """CUDA's autocast + GradScaler branch executed on the CPU (bfloat16 autocast there);
    its resume checkpoint holds the enabled scaler's state."""
    from neurodissect import runtime
    from neurodissect.clip.train import fit_clip

    monkeypatch.setattr(runtime, "AMP_DEVICE_TYPES", ("cuda", "cpu"))
    seen = {}
    original = fit_clip.__globals__["save_resume"]

    def keep(path, state):  # the checkpoint as written (it is removed once outputs exist)
        seen.update(state)
        original(path, state)

    monkeypatch.setitem(fit_clip.__globals__, "save_resume", keep)
    train_clip(discs, **outputs(tmp_path), params=tiny_params(epochs=1), threads=2)
    history = pd.read_csv(tmp_path / "history.csv")
    assert np.isfinite(history["train_loss"]).all()
    assert seen["scaler"]["scale"] > 0  # an enabled scaler was stepped and saved


def test_image_embeddings_use_the_activation_store_layout(trained, discs, tmp_path):
    summary = embed_images(
        trained / "model", discs, tmp_path / "image_emb.zarr", ImageEmbedParams(batch_size=7)
    )
    store = ActivationStore(tmp_path / "image_emb.zarr")
    manifest = read_manifest(discs)
    assert (
        store.splits == ["train", "val", "test"] and store.attrs["kind"] == "clip_image_embeddings"
    )
    assert summary["n_images"] == {"train": 54, "val": 18, "test": 18}
    for split in store.splits:
        np.testing.assert_array_equal(store.image_ids(split), manifest.split(split).df["image_id"])
    acts = store.read("all")
    assert acts.dtype == np.float32 and acts.shape == (90, 32)
    np.testing.assert_allclose(np.linalg.norm(acts, axis=1), 1.0, atol=1e-5)
    # row i is image i of the split, as the model embeds it on its own
    model, preprocess, _ = load_clip(trained / "model")
    test = manifest.split("test")
    with torch.no_grad():
        x = preprocess(Image.open(test.image_paths()[3]).convert("RGB"))[None]
        direct = torch.nn.functional.normalize(model.encode_image(x), dim=-1)[0].numpy()
    np.testing.assert_allclose(store.read("test")[3], direct, atol=1e-5)


def test_text_embeddings_follow_the_vocabulary_and_hold_the_bare_template(trained, tmp_path):
    concepts = ["red disc", "green disc", "blue disc", "grey background"]
    pd.DataFrame(
        {"concept": concepts, "doc_freq": [3, 2, 2, 1], "kind": ["noun phrase"] * 4}
    ).to_parquet(tmp_path / "concepts.parquet")
    embed_texts(
        trained / "model",
        tmp_path / "concepts.parquet",
        tmp_path / "text_emb.zarr",
        TextEmbedParams(template="an image showing {}"),
    )
    stored = read_text_embeddings(tmp_path / "text_emb.zarr")
    assert stored["concepts"].tolist() == concepts
    assert stored["attrs"]["template"] == "an image showing {}"
    assert stored["attrs"]["bare_template"] == "an image showing"
    assert stored["attrs"]["model"]["source"] == "train"
    model, _, tokenizer = load_clip(trained / "model")
    expected = encode_texts(model, tokenizer, [f"an image showing {c}" for c in concepts])
    np.testing.assert_allclose(stored["emb"], expected, atol=1e-6)
    np.testing.assert_allclose(
        stored["template_emb"], encode_texts(model, tokenizer, ["an image showing"])[0], atol=1e-6
    )
    np.testing.assert_allclose(np.linalg.norm(stored["emb"], axis=1), 1.0, atol=1e-5)


@pytest.mark.parametrize(
    ("template", "bare"),
    [
        ("an image showing {}", "an image showing"),
        ("a photo of {}.", "a photo of."),
        ("{} is visible", "is visible"),
        ("  there is  {} here ", "there is here"),
    ],
)
def test_bare_template(template, bare):
    assert bare_template(template) == bare


def test_embedding_settings_take_their_keys_and_reject_others():
    params = ImageEmbedParams.from_config({"batch_size": 7}, 3, {"device": "cpu", "num_workers": 1})
    assert (params.batch_size, params.shards, params.device, params.num_workers) == (7, 3, "cpu", 1)
    with pytest.raises(ConfigError, match=r"'clip'.*\['epochs'\]"):
        ImageEmbedParams.from_config({"epochs": 3})
    assert TextEmbedParams.from_config({"template": "a {}"}, {"device": "cpu"}).device == "cpu"
    with pytest.raises(ConfigError, match=r"'annotate'.*\['alpha'\]"):
        TextEmbedParams.from_config({"template": "{}", "alpha": 5})


def test_text_embedding_inputs_are_checked(trained, tmp_path):
    pd.DataFrame({"concept": []}, dtype=str).to_parquet(tmp_path / "empty.parquet")
    with pytest.raises(InputError, match="vocabulary is empty"):
        embed_texts(
            trained / "model",
            tmp_path / "empty.parquet",
            tmp_path / "t.zarr",
            TextEmbedParams("{}"),
        )
    pd.DataFrame({"concept": ["a"]}).to_parquet(tmp_path / "one.parquet")
    with pytest.raises(ConfigError, match="exactly one"):
        embed_texts(
            trained / "model",
            tmp_path / "one.parquet",
            tmp_path / "t.zarr",
            TextEmbedParams("{} {}"),
        )
    assert not (tmp_path / "t.zarr").exists()


# -- load_clip sources ---------------------------------------------------------------------
def test_local_source_copies_and_evaluates_the_model(trained, discs, tmp_path):
    summary = obtain_clip(
        discs,
        tmp_path / "model",
        tmp_path / "metrics.json",
        LoadSettings.from_config({"source": "local", "path": trained / "model"}),
    )
    assert summary["clip"]["source"] == "local" and summary["clip"]["origin"]["source"] == "train"
    assert _weights(tmp_path / "model").keys() == _weights(trained / "model").keys()
    # the same model evaluated the same way gives the trained run's scores
    ours, theirs = read_json(tmp_path / "metrics.json"), read_json(trained / "metrics.json")
    assert ours["recall_at_5"] == pytest.approx(theirs["recall_at_5"])
    with pytest.raises(InputError, match="not a folder"):
        obtain_clip(
            discs,
            tmp_path / "m2",
            tmp_path / "x.json",
            LoadSettings.from_config({"source": "local", "path": tmp_path / "nope"}),
        )
    assert not (tmp_path / "m2").exists()


def test_load_settings_hold_the_source_s_own_keys_and_reject_others():
    from neurodissect.clip.load import LocalSource

    settings = LoadSettings.from_config(
        {"source": "local", "batch_size": 7, "path": "x"}, {"device": "cpu", "num_workers": 2}
    )
    assert settings.shared.batch_size == 7 and settings.own == LocalSource(path="x")
    assert (settings.device, settings.num_workers) == ("cpu", 2)
    with pytest.raises(ConfigError, match=r"'clip'.*\['pretrained'\]"):
        LoadSettings.from_config({"source": "local", "pretrained": "openai"})
    with pytest.raises(ConfigError, match="load_clip handles open_clip"):
        LoadSettings.from_config({"source": "train"})


def test_open_clip_source_offline_is_a_clear_error(discs, tmp_path):
    assert os.environ.get("HF_HUB_OFFLINE") == "1"  # conftest: never touch the network
    with pytest.raises(ConfigError, match="needs internet access"):
        obtain_clip(
            discs,
            tmp_path / "model",
            tmp_path / "m.json",
            LoadSettings.from_config(
                {"source": "open_clip", "model_name": "ViT-B-32", "pretrained": "laion2b_s34b_b79k"}
            ),
        )
    with pytest.raises(ConfigError, match="not a tag of"):
        obtain_clip(
            discs,
            tmp_path / "model",
            tmp_path / "m.json",
            LoadSettings.from_config(
                {"source": "open_clip", "model_name": "ViT-B-32", "pretrained": "no-such-tag"}
            ),
        )
    assert not (tmp_path / "model").exists()


# -- the rules -----------------------------------------------------------------------------
def test_clip_rules_on_synthetic_data(tiny_run, tmp_path):
    """The session's tiny run trained the CLIP and embedded images and texts (read-only)."""
    targets = [
        f"results/tiny/clip/{f}" for f in ("image_emb.zarr", "text_emb.zarr", "training.png")
    ]
    assert all((tiny_run / t).exists() for t in targets)
    clip = tiny_run / "results/tiny/clip"
    metrics = read_json(clip / "metrics.json")
    assert {"recall_at_1", "recall_at_5", "n_test", "train_loss"} <= set(metrics)
    vocab = pd.read_parquet(tiny_run / "results/tiny/vocab/concepts.parquet")
    assert (
        read_text_embeddings(clip / "text_emb.zarr")["concepts"].tolist()
        == vocab["concept"].tolist()
    )
    manifest = read_manifest(tiny_run / "results/tiny/data/manifest.parquet")
    store = ActivationStore(clip / "image_emb.zarr")
    assert len(store.image_ids("all")) == len(manifest)
    assert read_json(clip / "image_emb.zarr.prov.json")["rule"] == "embed_images"
    # a new template re-embeds the texts only
    cfg2 = write_config(tmp_path / "config2.yaml", {"annotate": {"template": "a photo of {}"}})
    assert planned_jobs(tiny_run, cfg2, *targets) == {"embed_texts"}


# -- clip.corpus: the CLIP's own generated corpus --------------------------------------------
def test_corpus_is_the_generator_with_another_seed(tmp_path, synth_data):
    from neurodissect.clip.corpus import CorpusSettings, build_corpus, corpus_training_split
    from neurodissect.data.synth import SynthParams

    settings = CorpusSettings(n=40, seed=7)
    assert settings.synth({"size": 32}) == SynthParams(n=40, size=32, seed=7)
    manifest = build_corpus(
        "synthderm",
        tmp_path / "raw",
        tmp_path / "data",
        settings.synth({"size": 32, "noise": 0.1, "difficulty": 0.5}),
    )
    corpus = read_manifest(manifest)
    assert (
        len(corpus) == 40
        and corpus.classes == read_manifest(synth_data("synthderm") / "manifest.parquet").classes
    )
    # other images than the dataset's (seed 0), the same generator and report language
    dataset = read_manifest(synth_data("synthderm") / "manifest.parquet")
    assert not set(corpus.df["sha256"]) & set(dataset.df["sha256"])
    assert (
        corpus.df["report"].str.len().min() > 0 and corpus.class_synonyms == dataset.class_synonyms
    )
    # val monitors training; every other row is a training pair
    train = corpus_training_split(corpus)
    assert set(train.df["split"]) == {"train", "test"} and (corpus.df["split"] == "val").sum() > 0
    assert len(train) + (corpus.df["split"] == "val").sum() == 40
    again = build_corpus(
        "synthderm",
        tmp_path / "raw2",
        tmp_path / "data2",
        settings.synth({"size": 32, "noise": 0.1, "difficulty": 0.5}),
    )
    assert read_manifest(again).df.equals(corpus.df)


def test_corpus_seed_of_the_dataset_is_a_config_error():
    from neurodissect.clip.corpus import CorpusSettings, build_corpus, check_corpus_seed

    check_corpus_seed(CorpusSettings(n=10, seed=1), 0, "d")
    check_corpus_seed(CorpusSettings(n=0, seed=0), 0, "d")  # no corpus, nothing to clash
    with pytest.raises(ConfigError, match="clip.corpus.seed=3 equals datasets.d.synth.seed"):
        check_corpus_seed(CorpusSettings(n=10, seed=3), 3, "d")
    with pytest.raises(ConfigError, match="clip.corpus.n is 0"):
        build_corpus("synthderm", "r", "d", CorpusSettings().synth({"size": 32}))


def test_training_on_a_corpus_never_reads_the_dataset_pairs(discs, tmp_path):
    """The CLIP learns from the corpus only; metrics.json scores the dataset's test split."""
    corpus = write_discs(tmp_path / "corpus", n=60, seed=5)
    summary = train_clip(
        discs, **outputs(tmp_path / "out"), params=tiny_params(epochs=1), corpus_path=corpus
    )
    metrics = read_json(tmp_path / "out/metrics.json")
    corpus_val = (read_manifest(corpus).df["split"] == "val").sum()
    assert summary["n_train_pairs"] == metrics["n_train_pairs"] == 60 - corpus_val
    assert metrics["n_test"] == (read_manifest(discs).df["split"] == "test").sum()
    history = pd.read_csv(tmp_path / "out/history.csv")
    assert len(history) == 1  # monitored on the corpus' val split
    info = json.loads((tmp_path / "out/model/open_clip_config.json").read_text())["neurodissect"]
    assert info["corpus"] is True


def test_clip_corpus_rule_and_what_its_keys_rerun(tmp_path):
    corpus_cfg = {"clip": {"corpus": {"n": 60, "seed": 5}, "epochs": 1}}
    cfg = write_config(tmp_path / "config.yaml", corpus_cfg)
    run_snakemake(tmp_path, "results/tiny/clip/metrics.json", configfile=cfg)
    corpus = read_manifest(tmp_path / "results/tiny/clip/corpus/data/manifest.parquet")
    dataset = read_manifest(tmp_path / "results/tiny/data/manifest.parquet")
    assert len(corpus) == 60 and not set(corpus.df["sha256"]) & set(dataset.df["sha256"])
    prov = read_json(tmp_path / "results/tiny/clip/corpus/data/manifest.parquet.prov.json")
    assert prov["rule"] == "clip_corpus"
    metrics = read_json(tmp_path / "results/tiny/clip/metrics.json")
    assert metrics["n_train_pairs"] == (corpus.df["split"] != "val").sum()

    def dry(changes) -> set[str]:
        c = write_config(tmp_path / "c.yaml", deep_update(corpus_cfg, changes))
        return planned_jobs(tmp_path, c, "results/tiny/clip/metrics.json")

    assert dry({}) == set()
    assert dry({"clip": {"epochs": 2}}) == {"train_clip"}  # training keys leave the corpus be
    assert dry({"clip": {"corpus": {"n": 70}}}) == {"clip_corpus", "train_clip"}
    bad = write_config(
        tmp_path / "bad.yaml", deep_update(corpus_cfg, {"clip": {"corpus": {"seed": 0}}})
    )
    proc = run_snakemake(
        tmp_path, "results/tiny/clip/metrics.json", "-n", configfile=bad, check=False
    )
    assert proc.returncode != 0 and "clip.corpus.seed=0 equals" in proc.stdout + proc.stderr


# -- published model layouts: an open_clip hub repo, a transformers CLIP -------------------
@pytest.fixture
def hub_cache(tmp_path, monkeypatch) -> Path:
    """A Hugging Face hub cache holding the tiny BiomedCLIP-style repo, used offline both
    in this process and by snakemake subprocesses."""
    import huggingface_hub.constants

    from fixtures_hub import open_clip_hub_repo

    cache = tmp_path / "hf_cache"
    open_clip_hub_repo(cache)
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    return cache


def _probe(model, preprocess, tokenizer) -> tuple[np.ndarray, np.ndarray]:
    image = Image.new("RGB", (40, 40), (200, 30, 30))
    with torch.inference_mode():
        img = model.encode_image(preprocess(image)[None]).numpy()
    return img, encode_texts(model, tokenizer, ["a photo of a red lesion.", "of"])


def test_open_clip_hub_repo_with_an_hf_text_tower_is_stored_and_loads_offline(
    hub_cache, discs, tmp_path
):
    from fixtures_hub import HUB_REPO, HUB_REV

    assert os.environ.get("HF_HUB_OFFLINE") == "1"
    name = f"hf-hub:{HUB_REPO}"
    summary = obtain_clip(
        discs,
        tmp_path / "model",
        tmp_path / "m.json",
        LoadSettings.from_config(
            {"source": "open_clip", "model_name": name, "pretrained": "ignored-for-hub"}
        ),
    )
    assert summary["clip"] == {"source": "open_clip", "model_name": name, "revision": HUB_REV}
    assert {"recall_at_5", "zeroshot_accuracy"} <= set(read_json(tmp_path / "m.json"))
    # the hub's weights, not a fresh initialisation: open_clip's own load agrees
    ref, _, ref_pre = open_clip.create_model_and_transforms(name)
    expected = _probe(ref.eval(), ref_pre, open_clip.get_tokenizer(name))
    # the stored folder is self-contained: it loads with the cache gone
    import shutil

    shutil.rmtree(hub_cache)
    stored = load_clip(tmp_path / "model")
    assert (tmp_path / "model/hf_text/config.json").is_file()
    for ours, theirs in zip(_probe(*stored), expected, strict=True):
        np.testing.assert_allclose(l2_normalise(ours), l2_normalise(theirs), atol=1e-5)
    # the stored folder's provenance is what embeddings record
    assert model_info(tmp_path / "model")["revision"] == HUB_REV
    (tmp_path / "model/hf_text/config.json").unlink()
    with pytest.raises(InputError, match="hf_text/config.json is missing"):
        load_clip(tmp_path / "model")


def test_partial_or_missing_hub_repos_are_clear_errors(hub_cache, discs, tmp_path):
    from fixtures_hub import HUB_REPO, hub_snapshot

    (hub_snapshot(hub_cache, HUB_REPO, "2" * 40) / "open_clip_pytorch_model.bin").unlink()
    with pytest.raises(
        ConfigError,
        match=r"neither open_clip_model.safetensors nor "
        r"open_clip_pytorch_model.bin.*HF_HUB_OFFLINE",
    ):
        obtain_clip(
            discs,
            tmp_path / "model",
            tmp_path / "m.json",
            LoadSettings.from_config({"source": "open_clip", "model_name": f"hf-hub:{HUB_REPO}"}),
        )
    with pytest.raises(ConfigError, match="no open_clip_config.json.*Hugging Face cache"):
        obtain_clip(
            discs,
            tmp_path / "model",
            tmp_path / "m.json",
            LoadSettings.from_config(
                {"source": "open_clip", "model_name": "hf-hub:nobody/nothing"}
            ),
        )
    assert not (tmp_path / "model").exists()


def test_transformers_clip_folder_is_stored_and_evaluated(discs, tmp_path):
    from transformers import CLIPModel, CLIPProcessor

    from fixtures_hub import transformers_clip_folder

    src = transformers_clip_folder(tmp_path / "src")
    summary = obtain_clip(
        discs,
        tmp_path / "model",
        tmp_path / "m.json",
        LoadSettings.from_config({"source": "transformers", "model_name": "unused", "path": src}),
    )
    assert summary["clip"] == {"source": "transformers", "path": str(src)}
    assert model_info(tmp_path / "model") == summary["clip"]
    assert {"recall_at_5", "zeroshot_accuracy"} <= set(read_json(tmp_path / "m.json"))
    # the model's own processor and features, as transformers computes them
    ref, proc = CLIPModel.from_pretrained(src).eval(), CLIPProcessor.from_pretrained(src)
    image = Image.new("RGB", (40, 40), (200, 30, 30))
    texts = ["a photo of a red lesion.", "of"]
    with torch.inference_mode():
        img = ref.get_image_features(**proc(images=image, return_tensors="pt")).pooler_output
        txt = ref.get_text_features(**proc(text=texts, padding=True, return_tensors="pt"))
    ours = _probe(*load_clip(tmp_path / "model"))
    np.testing.assert_allclose(l2_normalise(ours[0]), l2_normalise(img.numpy()), atol=1e-5)
    np.testing.assert_allclose(ours[1], l2_normalise(txt.pooler_output.numpy()), atol=1e-5)
    # a partial folder names what it lacks; nothing is stored
    (src / "model.safetensors").unlink()
    with pytest.raises(InputError, match="missing model.safetensors or"):
        obtain_clip(
            discs,
            tmp_path / "m2",
            tmp_path / "x.json",
            LoadSettings.from_config({"source": "transformers", "path": src}),
        )
    for name in ("processor_config.json", "preprocessor_config.json"):
        (tmp_path / "model" / name).unlink(missing_ok=True)
    with pytest.raises(InputError, match="without its image processor config"):
        load_clip(tmp_path / "model")
    bad = transformers_clip_folder(tmp_path / "bad")
    (bad / "config.json").write_text("{not json")
    with pytest.raises(InputError, match="transformers cannot load"):
        obtain_clip(
            discs,
            tmp_path / "m2",
            tmp_path / "x.json",
            LoadSettings.from_config({"source": "transformers", "path": bad}),
        )
    with pytest.raises(ConfigError, match="HF_HUB_OFFLINE is set"):
        obtain_clip(
            discs,
            tmp_path / "m2",
            tmp_path / "x.json",
            LoadSettings.from_config({"source": "transformers", "model_name": "nobody/nothing"}),
        )
    assert not (tmp_path / "m2").exists()


def test_published_models_run_through_the_tiny_dag(hub_cache, tiny_run, tmp_path):
    """Each published layout runs load_clip → embed_images / embed_texts → match_concepts
    in a real run; switching models reruns that chain and nothing upstream of it."""
    from fixtures_hub import HUB_REPO, transformers_clip_folder

    run = clone_run(tiny_run, tmp_path / "run")  # everything upstream of the CLIP is built
    target = "results/tiny/resnet18-s0/annotate/layer4/neuron_concepts.parquet"
    sources = [
        {"source": "open_clip", "model_name": f"hf-hub:{HUB_REPO}"},
        {"source": "transformers", "path": str(transformers_clip_folder(tmp_path / "tclip"))},
    ]
    for i, clip in enumerate(sources):
        cfg = write_config(tmp_path / f"c{i}.yaml", {"clip": clip})
        out = run_snakemake(run, target, configfile=cfg)
        ran = job_names(out.stdout + out.stderr)
        assert {"load_clip", "embed_images", "embed_texts", "match_concepts"} <= ran, ran
        # only the CLIP chain reruns for another model
        assert not ran & {
            "train_clip",
            "train_opaque",
            "extract_activations",
            "build_vocabulary",
        }, ran
        clip_dir = run / "results/tiny/clip"
        assert model_info(clip_dir / "model")["source"] == clip["source"]
        assert ActivationStore(clip_dir / "image_emb.zarr").n_units == 16  # the tiny models' width
        assert read_text_embeddings(clip_dir / "text_emb.zarr")["emb"].shape[1] == 16
        assert len(pd.read_parquet(run / target))
