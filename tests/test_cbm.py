"""Stages `cbm` and `evaluate.cbm`: batched OMP against scikit-learn, lazy vs brute-force
greedy selection, the logistic-regression head, explanations and metrics on known
answers, bad input, and the rules in the tiny run."""

from __future__ import annotations

import json
import logging
import warnings

import numpy as np
import pandas as pd
import pytest
import torch

from neurodissect.activations.store import ActivationStore, StoreWriter
from neurodissect.cav import CAVs, write_cavs
from neurodissect.cbm.model import HEADS, CBMParams, build_cbm, fit_head, load_model, predict_proba
from neurodissect.cbm.omp import batched_omp
from neurodissect.cbm.selection import (
    SELECTED_COLUMNS,
    SelectParams,
    greedy_brute_force,
    lazy_greedy,
    marginal_gain,
    merge_duplicates,
    select,
    select_concepts,
    similarity,
)
from neurodissect.data.manifest import write_manifest
from neurodissect.errors import ConfigError, InputError
from neurodissect.evaluate.cbm import (
    EXPLANATION_COLUMNS,
    CBMEvalParams,
    evaluate_cbm,
    explanations,
    planted_hit_rate,
    spurious_top_rate,
)
from neurodissect.evaluate.groundtruth import class_causes
from neurodissect.evaluate.text import names_a_class
from neurodissect.io import save_state_dict, write_json


def _unit_rows(rng, k, c):
    d = rng.normal(size=(k, c))
    return d / np.linalg.norm(d, axis=1, keepdims=True)


# -- OMP ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("seed", "n_atoms", "n_features", "n_nonzero"),
    [(0, 12, 20, 1), (1, 30, 40, 5), (2, 50, 64, 20), (3, 40, 40, 40), (4, 60, 32, 32)],
)
def test_batched_omp_equals_sklearn_per_image(seed, n_atoms, n_features, n_nonzero):
    from sklearn.linear_model import orthogonal_mp

    rng = np.random.default_rng(seed)
    D = _unit_rows(rng, n_atoms, n_features)
    X = rng.normal(size=(40, n_features))
    X[:5] = 3.0 * D[:5] - 1.0 * D[5:10]  # exactly 2-sparse rows: sklearn stops early
    X[5] = 0.0  # nothing to explain: no atom at all
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # sklearn's "ended prematurely"
        ref = np.stack(
            [orthogonal_mp(D.T, x, n_nonzero_coefs=n_nonzero, precompute=False) for x in X]
        )
    got = batched_omp(X, D, n_nonzero)
    np.testing.assert_allclose(got, ref, atol=1e-6, rtol=0)
    assert ((got != 0).sum(1) <= n_nonzero).all()
    assert not got[5].any()
    # chunking over images (here one per chunk) changes nothing (beyond rounding noise on
    # the exactly sparse rows, whose residual is ~1e-16 after two atoms)
    np.testing.assert_allclose(batched_omp(X, D, n_nonzero, memory_mb=1e-3), got, atol=1e-6)


def test_torch_omp_path_equals_the_numpy_path():
    """The GPU path (torch, run here on the CPU) takes the same steps as the CPU path."""
    from neurodissect.cbm.omp import omp_from_gram, omp_from_gram_torch

    rng = np.random.default_rng(7)
    D = _unit_rows(rng, 40, 48)
    X = rng.normal(size=(30, 48))
    X[0] = 0.0
    corr, gram = X @ D.T, D @ D.T
    for t in (1, 7, 40):
        ref = omp_from_gram(corr, gram, t)
        got = omp_from_gram_torch(torch.from_numpy(corr), torch.from_numpy(gram), t).numpy()
        np.testing.assert_allclose(got, ref, atol=1e-10)


def test_batched_omp_torch_backend_equals_the_compiled_path_through_the_same_entry():
    """build_cbm's GPU branch (backend torch, as on device cuda) run on the CPU: same
    coefficients as the numba branch, in chunks of any size, from float32 features too."""
    from neurodissect.cbm.omp import omp_backend

    assert omp_backend("auto", "cuda:0") == "torch" and omp_backend("auto", "cpu") == "numba"
    with pytest.raises(ValueError, match="backend"):
        omp_backend("cupy", "cpu")
    rng = np.random.default_rng(11)
    D = _unit_rows(rng, 50, 64)
    X = rng.normal(size=(300, 64)).astype(np.float32)
    ref = batched_omp(X, D, 20)
    for gpu_mb in (2048.0, 0.05):  # one chunk; many chunks
        got = batched_omp(X, D, 20, backend="torch", gpu_memory_mb=gpu_mb)
        np.testing.assert_allclose(got, ref, atol=1e-9, rtol=0)


def test_torch_omp_computes_in_float64_whatever_the_input_dtype():
    """float32 correlations used to run the whole pursuit in float32 (other atoms picked)."""
    from neurodissect.cbm.omp import omp_from_gram, omp_from_gram_torch

    rng = np.random.default_rng(3)
    D = _unit_rows(rng, 60, 40)
    X = rng.normal(size=(50, 40))
    corr, gram = X @ D.T, D @ D.T
    ref = omp_from_gram(corr, gram, 30)
    got = omp_from_gram_torch(torch.from_numpy(corr).float(), torch.from_numpy(gram).float(), 30)
    assert got.dtype == torch.float64
    # same support for every image; values to float32 rounding of the inputs
    np.testing.assert_array_equal(got.numpy() != 0, ref != 0)
    np.testing.assert_allclose(got.numpy(), ref, atol=1e-4)


def test_min_pivot_stops_at_a_near_duplicate_atom_instead_of_exploding():
    rng = np.random.default_rng(4)
    D = _unit_rows(rng, 10, 32)
    twin = D[0] + 1e-3 * _unit_rows(rng, 1, 32)[0]
    D = np.vstack([D, twin / np.linalg.norm(twin)])  # atom 10 ≈ atom 0 (cosine ~0.9999995)
    X = 2.0 * D[0] + 0.5 * D[1] + 0.05 * rng.normal(size=(20, 32))
    loose = batched_omp(X, D, 11)  # machine epsilon: sklearn's test
    tight = batched_omp(X, D, 11, min_pivot=1e-6)
    assert np.abs(loose).max() > 50  # opposite, cancelling coefficients on the twins
    assert np.abs(tight).max() < 3
    assert (tight[:, 0] != 0).sum() + (tight[:, 10] != 0).sum() == len(X)  # one twin each
    for backend in ("numba", "torch"):
        np.testing.assert_allclose(
            batched_omp(X, D, 11, min_pivot=1e-6, backend=backend), tight, atol=1e-9
        )
    # the fit is as good as the loose one's up to the noise
    res_t = np.linalg.norm(X - tight @ D, axis=1)
    res_l = np.linalg.norm(X - loose @ D, axis=1)
    assert (res_t <= res_l + 0.05).all()


def test_omp_clamps_n_nonzero_to_the_dictionary():
    rng = np.random.default_rng(5)
    D = _unit_rows(rng, 6, 16)
    X = rng.normal(size=(8, 16))
    full = batched_omp(X, D, 100)  # more atoms than exist: all 6 = least squares on D
    lstsq = np.linalg.lstsq(D.T, X.T, rcond=None)[0].T
    np.testing.assert_allclose(full, lstsq, atol=1e-10)


# -- selection --------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", range(6))
def test_lazy_greedy_equals_brute_force(seed):
    rng = np.random.default_rng(seed)
    d = _unit_rows(rng, 25, 8)
    d[7] = d[3]  # duplicate directions → exact ties
    d[12] = -d[4]
    sim = similarity(d)
    weights = rng.uniform(0.1, 1.0, size=25) if seed % 2 else np.ones(25)
    for n in (1, 5, 25):
        lazy, lazy_gains, evaluations = lazy_greedy(sim, weights, n)
        brute, brute_gains = greedy_brute_force(sim, weights, n)
        assert lazy == brute
        np.testing.assert_allclose(lazy_gains, brute_gains, rtol=0, atol=0)
    assert evaluations < 25 * 25  # lazy: far fewer gain evaluations than brute force's 325
    # submodular greedy: gains never increase, and a gain shrinks as the set grows
    assert all(a >= b - 1e-12 for a, b in zip(lazy_gains, lazy_gains[1:], strict=False))
    small = np.max(sim[:, lazy[:2]], axis=1)
    large = np.max(sim[:, lazy[:6]], axis=1)
    for j in range(25):
        assert (
            marginal_gain(sim, weights, small, j) >= marginal_gain(sim, weights, large, j) - 1e-12
        )


def test_duplicates_merged_and_clamp_recorded(caplog):
    rng = np.random.default_rng(0)
    cands = pd.DataFrame(
        {
            "latent": [3, 5, 8, 9],
            "name": ["Blue-white veil", "blue white veils", "streaks", "vessels"],
            "heldout_accuracy": [0.7, 0.9, 0.8, np.nan],
        }
    )
    merged = merge_duplicates(cands)
    assert merged["latent"].tolist() == [5, 8, 9]  # the better veil CAV is kept
    assert merged.set_index("latent").loc[5, "merged_latents"] == "3"
    with caplog.at_level(logging.WARNING):
        sel = select(cands, _unit_rows(rng, 4, 6), n_concepts=10)
    assert "only 3 distinct" in caplog.text
    assert (sel.n_concepts_requested, sel.n_concepts_used, sel.n_merged) == (10, 3, 1)
    assert list(sel.table.columns) == list(SELECTED_COLUMNS)
    assert sorted(sel.table["latent"]) == [5, 8, 9] and sel.table["rank"].tolist() == [0, 1, 2]


def test_duplicates_represented_by_the_strongest_name_unless_asked_otherwise():
    # latent 4 is named "streak" most strongly; 2 and 7 have perfect (saturated) accuracy
    cands = pd.DataFrame(
        {
            "latent": [2, 4, 7, 9],
            "name": ["streak", "streaks", "Streak", "veil"],
            "heldout_accuracy": [1.0, 0.95, 1.0, 0.8],
            "name_score": [3.0, 9.0, 5.0, 1.0],
        }
    )
    merged = merge_duplicates(cands)
    assert merged["latent"].tolist() == [4, 9]
    assert merged.set_index("latent").loc[4, "merged_latents"] == "7,2"  # by score
    # held-out accuracy first: the tie at 1.0 is broken by the name score (7), not the index
    by_acc = merge_duplicates(cands, "heldout_accuracy")
    assert by_acc["latent"].tolist() == [7, 9]
    # dropping a weak duplicate (e.g. flagged by FDR) leaves the representative unchanged
    assert merge_duplicates(cands[cands["latent"] != 2])["latent"].tolist() == [4, 9]
    with pytest.raises(ValueError, match="merge_by"):
        merge_duplicates(cands, "latent")


def test_concepts_named_like_a_class_are_excluded():
    syns = {"mel": ["mel", "melanoma"], "bkl": ["bkl", "solar lentigo"]}
    assert names_a_class("Malignant melanoma", syns) and names_a_class("lentigo", syns)
    assert not names_a_class("blue-white veil", syns) and not names_a_class("melanin", syns)
    cands = pd.DataFrame(
        {"latent": [0, 1, 2], "name": ["melanoma", "lentigo", "streaks"], "heldout_accuracy": 0.9}
    )
    sel = select(cands, np.eye(3), n_concepts=3, class_synonyms=syns)
    assert sel.table["name"].tolist() == ["streaks"] and sel.n_class_names_excluded == 2
    assert sel.n_concepts_used == 1  # and the clamp says so


def test_class_relevance_prefers_concepts_the_head_uses():
    d = np.eye(4)  # orthogonal CAVs: without weights every concept gains the same
    head = np.array([[0.0, 0.0, 5.0, 0.0], [0.0, 0.1, 0.0, 0.0]])
    cands = pd.DataFrame({"latent": range(4), "name": list("abcd"), "heldout_accuracy": 0.9})
    sel = select(cands, d, n_concepts=2, head_w=head)
    assert sel.table["latent"].tolist() == [2, 1]
    assert sel.table["relevance"].iloc[0] == pytest.approx(1.0)


# -- linear head and explanations ---------------------------------------------------------------
def test_fit_head_folds_standardisation_into_the_weights():
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 300)
    x = rng.normal(size=(300, 5)) * [1, 10, 0.1, 1, 3] + np.eye(3, 5)[y] * 2 + 7
    head = fit_head(x[:200], y[:200], x[200:], y[200:], 3, False, c_grid=(0.1, 1.0))
    mean, sd = x[:200].mean(0), x[:200].std(0)
    ref = LogisticRegression(C=head.C, max_iter=2000).fit((x[:200] - mean) / sd, y[:200])
    np.testing.assert_allclose(
        predict_proba(x[200:], head.W, head.b, False),
        ref.predict_proba((x[200:] - mean) / sd),
        atol=1e-6,
    )
    assert set(head.grid) == {0.1, 1.0} and head.val_score == max(head.grid.values())
    assert head.val_score > 0.8


def test_fit_head_multilabel_one_vs_rest():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(400, 4))
    y = np.stack([x[:, 0] > 0, x[:, 1] + x[:, 2] > 0.5, np.zeros(400, bool)], 1).astype(float)
    head = fit_head(x[:300], y[:300], x[300:], y[300:], 3, True, c_grid=(1.0,))
    p = predict_proba(x[300:], head.W, head.b, True)
    assert ((p[:, 0] > 0.5) == (y[300:, 0] > 0.5)).mean() > 0.9
    assert np.allclose(head.W[2], 0) and (p[:, 2] < 0.01).all()  # constant label: its prior


def test_explanations_contributions_sum_to_the_logit():
    rng = np.random.default_rng(2)
    scores = rng.normal(size=(6, 5))
    W, b = rng.normal(size=(3, 5)), rng.normal(size=3)
    cls = (scores @ W.T + b).argmax(1)
    concepts = [f"c{i}" for i in range(5)]
    full = explanations(
        [f"i{j}" for j in range(6)],
        scores,
        W,
        b,
        cls,
        concepts,
        np.arange(5),
        ["x", "y", "z"],
        top_k=5,
    )
    assert list(full.columns) == list(EXPLANATION_COLUMNS)
    for image_id, g in full.groupby("image_id"):
        j = int(image_id[1:])
        assert g["contribution"].sum() + g["bias"].iloc[0] == pytest.approx(g["logit"].iloc[0])
        assert g["logit"].iloc[0] == pytest.approx((scores[j] @ W.T + b).max())
        assert g["rank"].tolist() == [1, 2, 3, 4, 5]
        shown = (g["score"] > 0).to_numpy()
        assert not (~shown[:-1] & shown[1:]).any()  # concepts the image shows come first
        for part in (g[shown], g[~shown]):  # each part by contribution
            assert part["contribution"].is_monotonic_decreasing
    top2 = explanations(["a"], scores[:1], W, b, cls[:1], concepts, np.arange(5), list("xyz"), 2)
    assert len(top2) == 2 and top2["contribution"].iloc[0] == full["contribution"].iloc[0]


def test_evidence_by_absence_never_outranks_a_concept_the_image_shows():
    scores = np.array([[0.5, -3.0, 0.2]])  # concept 1 absent, with a large negative weight
    W = np.array([[1.0, -2.0, 1.0]])  # contributions 0.5, 6.0, 0.2
    expl = explanations(
        ["a"], scores, W, np.zeros(1), np.array([0]), ["x", "y", "z"], np.arange(3), ["k"], top_k=3
    )
    assert expl["concept"].tolist() == ["x", "z", "y"]
    causes, syn = {0: ["x"]}, {"x": ["x"], "y": ["y"]}
    rate, _ = planted_hit_rate(
        scores, W, [(0, 0)], np.ones((1, 2), bool), ["x", "y"], syn, causes, ["x", "y", "z"]
    )
    assert rate == 1.0


def test_planted_hit_rate_on_hand_made_cases():
    concepts = ["dark blue veil", "streaks", "hair"]
    W = np.array([[1.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    scores = np.array(
        [
            [2.0, 1.0, 0.0],  # class 0, shows veil → top veil: hit
            [0.5, 1.0, 3.0],  # class 0, shows veil → top streaks: miss
            [1.0, 0.0, 0.0],  # class 0, shows no cause → not scored
            [0.0, 0.0, 1.0],  # class 1: no known cause → not scored
        ]
    )
    present = np.array([[1, 0], [1, 0], [0, 0], [0, 1]], bool)  # columns: veil, ruler
    info = {
        "blue_white_veil": {"synonyms": ["blue-white veil", "blue veil"], "causes": ["mel"]},
        "ruler": {"synonyms": ["ruler"], "spurious_for": ["mel"]},
    }
    causes = class_causes(info, ["mel", "nv"])
    assert causes == {"mel": ["blue_white_veil"], "nv": []}
    synonyms = {
        "blue_white_veil": ["blue_white_veil", "blue-white veil", "blue veil"],
        "ruler": ["ruler"],
    }
    rate, n = planted_hit_rate(
        scores,
        W,
        [(0, 0), (1, 0), (2, 0), (3, 1)],
        present,
        ["blue_white_veil", "ruler"],
        synonyms,
        {0: causes["mel"]},
        concepts,
    )
    assert (rate, n) == (0.5, 2)
    top2 = planted_hit_rate(
        scores,
        W,
        [(0, 0), (1, 0)],
        present,
        ["blue_white_veil", "ruler"],
        synonyms,
        {0: causes["mel"]},
        concepts,
        top_k=2,
    )
    assert top2 == (1.0, 2)  # image 1: streaks first, the veil second
    spurious = class_causes(info, ["mel", "nv"], "spurious_for")
    assert spurious == {"mel": ["ruler"], "nv": []}
    rate, n = spurious_top_rate(
        np.array([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0]]),
        np.array([[0.0, 0.0, 1.0]]),
        [(0, 0), (1, 0)],
        {0: ["ruler"]},
        synonyms,
        ["blue veil", "streaks", "ruler marks"],
    )
    assert (rate, n) == (0.5, 2)


# -- build_cbm / evaluate_cbm on a planted world ----------------------------------------------
SPLITS = {"train": (0, 600), "val": (600, 800), "test": (800, 1000)}
CLASSES = ["akiec", "bcc", "mel"]
CAUSES = {"akiec": ["erythema", "scale"], "bcc": ["vessels", "nests"], "mel": ["veil", "streaks"]}
CONCEPTS = ["erythema", "scale", "vessels", "nests", "veil", "streaks", "hair"]
# what evaluate_cbm's metrics.json always holds (opaque vs CBM on the test split)
METRIC_KEYS = [
    "opaque_accuracy",
    "cbm_accuracy",
    "opaque_balanced_accuracy",
    "cbm_balanced_accuracy",
    "opaque_macro_f1",
    "cbm_macro_f1",
    "cbm_reconstruction_accuracy",
    "n_concepts_requested",
    "n_concepts_used",
    "explanation_planted_hit_rate",
]


def _ids(split):
    lo, hi = SPLITS[split]
    return [f"img{i:04d}" for i in range(lo, hi)]


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    """Features = Σ planted concept directions + noise; class causes as in synthderm; CAVs
    = the true directions (plus one noisy duplicate name); a head fitted on the features."""
    from sklearn.linear_model import LogisticRegression

    root = tmp_path_factory.mktemp("cbm")
    rng = np.random.default_rng(0)
    n, c = SPLITS["test"][1], 32
    y = rng.integers(0, 3, n)
    prob = np.full((n, len(CONCEPTS)), 0.1)
    for k, cls in enumerate(CLASSES):
        for name in CAUSES[cls]:
            prob[y == k, CONCEPTS.index(name)] = 0.85
    prob[:, CONCEPTS.index("hair")] = 0.3
    present = rng.random(prob.shape) < prob
    u = _unit_rows(rng, len(CONCEPTS), c)
    x = present @ (2.0 * u) + 0.4 * rng.normal(size=(n, c)) + 1.0
    with StoreWriter(root / "feats.zarr", n_units=c, attrs={"kind": "activations"}) as w:
        for s, (lo, hi) in SPLITS.items():
            w.begin_split(s, _ids(s))
            w.append(s, x[lo:hi])
    ids = [i for s in SPLITS for i in _ids(s)]
    df = pd.DataFrame(
        {
            "image_id": ids,
            "path": [f"{i}.png" for i in ids],
            "split": [s for s, (lo, hi) in SPLITS.items() for _ in range(hi - lo)],
            "report": "",
            "sha256": "0" * 64,
            "label": y,
        }
    )
    meta = {
        "task": "multiclass",
        "classes": CLASSES,
        "class_synonyms": {},
        "root": str(root),
        "format": "csv",
        "modality": "other",
        "channels": 3,
    }
    write_manifest(df, meta, root / "manifest.parquet")
    opaque = LogisticRegression(max_iter=2000).fit(x[:600], y[:600])
    save_state_dict(
        {
            "fc.weight": torch.tensor(opaque.coef_, dtype=torch.float32),
            "fc.bias": torch.tensor(opaque.intercept_, dtype=torch.float32),
        },
        root / "model.pt",
    )
    write_json({"test_accuracy": 0.5}, root / "opaque_metrics.json")
    gt = pd.DataFrame(present, columns=CONCEPTS)
    gt.insert(0, "image_id", ids)
    gt.to_parquet(root / "gt.parquet")
    info = {
        k: {"synonyms": [k], "causes": [c for c in CLASSES if k in CAUSES[c]]} for k in CONCEPTS
    }
    write_json(info, root / "gt.json")
    noisy = u[4] + 0.3 * rng.normal(size=c)
    cavs = np.vstack([u, noisy / np.linalg.norm(noisy)])
    names = [f"pink {k}" if k == "erythema" else k for k in CONCEPTS] + ["veil"]
    write_cavs(
        CAVs(cavs.astype(np.float32), np.zeros(len(cavs), np.float32), np.arange(len(cavs)), names),
        root / "cavs.zarr",
    )
    pd.DataFrame(
        {
            "latent": np.arange(len(cavs)),
            "name": names,
            "heldout_accuracy": [0.9] * len(CONCEPTS) + [0.6],
        }
    ).to_parquet(root / "cav_accuracy.parquet")
    return root


def test_build_and_evaluate_cbm_on_planted_concepts(planted, tmp_path):
    r = planted
    summary = select_concepts(
        r / "cavs.zarr",
        r / "cav_accuracy.parquet",
        tmp_path / "sel.parquet",
        SelectParams(n_concepts=20, class_relevance=True),
        opaque_path=r / "model.pt",
        arch="resnet18",
    )
    sel = pd.read_parquet(tmp_path / "sel.parquet")
    assert summary["n_concepts_used"] == 7 and summary["n_merged"] == 1  # noisy "veil" merged
    assert 7 not in sel["latent"].tolist()
    build_cbm(
        r / "feats.zarr",
        r / "cavs.zarr",
        tmp_path / "sel.parquet",
        r / "manifest.parquet",
        tmp_path / "scores.zarr",
        tmp_path / "model.npz",
        CBMParams.from_config({"n_nonzero": 4, "c_grid": [0.1, 1.0, 10.0]}),
    )
    model = load_model(tmp_path / "model.npz")  # allow_pickle=False inside
    assert model["W"].shape == (3, 7) and int(model["n_nonzero"]) == 4
    assert model.concepts == sel["name"].tolist()
    for head in HEADS:
        assert f"{head}_W" in model.arrays and float(model[f"{head}_C"]) in (0.1, 1.0, 10.0)
    scores = ActivationStore(tmp_path / "scores.zarr")
    assert scores.splits == ["train", "val", "test"] and scores.n_units == 7
    assert scores.attrs["kind"] == "cbm_scores"
    assert ((scores.read("test") != 0).sum(1) <= 4).all()

    result = evaluate_cbm(
        tmp_path / "model.npz",
        tmp_path / "scores.zarr",
        r / "feats.zarr",
        r / "manifest.parquet",
        r / "model.pt",
        r / "opaque_metrics.json",
        "resnet18",
        tmp_path / "metrics.json",
        tmp_path / "expl.parquet",
        CBMEvalParams(explain_top_k=3),
        gt_table=r / "gt.parquet",
        gt_synonyms=r / "gt.json",
    )
    saved = json.loads((tmp_path / "metrics.json").read_text())
    keys = {*METRIC_KEYS, "cbm_coefficients_accuracy"}
    assert keys <= set(saved), keys - set(saved)
    assert saved["split"] == "test" and saved["n_concepts_requested"] == 20
    assert saved["n_concepts_used"] == 7
    # the opaque numbers are the head on the test features, not the stored file's 0.5
    assert saved["opaque_accuracy"] > 0.8
    assert saved["cbm_accuracy"] > saved["opaque_accuracy"] - 0.05
    assert saved["explanation_planted_hit_rate"] > 0.8 and saved["n_hit_rate_images"] > 100
    assert result.metrics["cbm_accuracy"] == saved["cbm_accuracy"]
    expl = pd.read_parquet(tmp_path / "expl.parquet")
    assert list(expl.columns) == list(EXPLANATION_COLUMNS) and len(expl) == 200 * 3

    # the figures render from the result
    from neurodissect.data.manifest import read_manifest
    from neurodissect.viz.cbm import class_concept_table, plot_class_concepts, plot_concept_strip

    arr = result.arrays
    table = class_concept_table(arr["scores"], arr["W"], arr["labels"], CLASSES, model.concepts)
    top = table[table["rank"] == 1].set_index("class")["concept"]
    assert all(top[c].removeprefix("pink ") in CAUSES[c] for c in CLASSES)
    plot_class_concepts(tmp_path / "bars.png", table)
    plot_concept_strip(
        tmp_path / "strip.png", arr["scores"], arr["labels"], CLASSES, model.concepts
    )
    assert (tmp_path / "bars.png").stat().st_size > 5000
    assert read_manifest(r / "manifest.parquet").classes == CLASSES


def test_build_cbm_rejects_mismatched_image_ids(planted, tmp_path):
    r = planted
    x = ActivationStore(r / "feats.zarr")
    with StoreWriter(tmp_path / "feats.zarr", n_units=x.n_units, attrs={"kind": "a"}) as w:
        for s in SPLITS:
            w.begin_split(s, [f"x{i}" for i in _ids(s)])
            w.append(s, x.read(s))
    select_concepts(
        r / "cavs.zarr",
        r / "cav_accuracy.parquet",
        tmp_path / "sel.parquet",
        SelectParams(n_concepts=3, class_relevance=False),
    )
    with pytest.raises(InputError) as err:
        build_cbm(
            tmp_path / "feats.zarr",
            r / "cavs.zarr",
            tmp_path / "sel.parquet",
            r / "manifest.parquet",
            tmp_path / "s.zarr",
            tmp_path / "m.npz",
            CBMParams(),
        )
    assert "feats.zarr" in str(err.value) and "manifest.parquet" in str(err.value)
    assert not (tmp_path / "m.npz").exists()


def test_select_concepts_rejects_an_unknown_merge_rule():
    # checked where the rule's settings are built, before select_concepts writes anything
    with pytest.raises(ConfigError, match="cbm.merge_by"):
        SelectParams.from_config({"n_concepts": 3, "class_relevance": False, "merge_by": "index"})


# -- the rules in the tiny run ----------------------------------------------------------------
def test_cbm_rules_in_the_tiny_run(tiny_run):
    run = tiny_run / "results" / "tiny" / "resnet18-s0"
    metrics = json.loads((run / "cbm" / "metrics.json").read_text())
    assert metrics["split"] == "test"
    assert set(METRIC_KEYS) <= set(metrics), set(METRIC_KEYS) - set(metrics)
    for key in ("opaque_accuracy", "cbm_accuracy", "cbm_balanced_accuracy", "cbm_macro_f1"):
        assert 0 <= metrics[key] <= 1, key
    assert metrics["n_concepts_requested"] == 8  # TINY_CONFIG
    assert 1 <= metrics["n_concepts_used"] <= 8
    rate = metrics["explanation_planted_hit_rate"]
    assert rate is None or 0 <= rate <= 1
    sae = json.loads((run / "sae" / "metrics.json").read_text())
    assert metrics["opaque_accuracy"] == pytest.approx(sae["opaque_accuracy"], abs=1e-6)

    acc = pd.read_parquet(run / "cbm" / "cav_accuracy.parquet")
    assert {"latent", "name", "heldout_accuracy", "n_pos", "n_neg"} <= set(acc.columns)
    sel = pd.read_parquet(run / "cbm" / "selected.parquet")
    assert list(sel.columns) == list(SELECTED_COLUMNS)
    assert len(sel) == metrics["n_concepts_used"]
    model = load_model(run / "cbm" / "model.npz")
    assert model["W"].shape == (7, len(sel))  # synthderm: 7 classes
    scores = ActivationStore(run / "cbm" / "scores.zarr")
    assert scores.n_units == len(sel) and scores.splits == ["train", "val", "test"]
    expl = pd.read_parquet(run / "cbm" / "explanations.parquet")
    assert list(expl.columns) == list(EXPLANATION_COLUMNS)
    assert expl["image_id"].nunique() == scores.n_rows("test")
    for fig in ("cbm_class_concepts", "cbm_explanations", "cbm_concept_scores"):
        assert (run / "figures" / f"{fig}.png").stat().st_size > 5000, fig
    prov = json.loads((run / "cbm" / "model.npz.prov.json").read_text())
    assert prov["rule"] == "build_cbm"


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"cbm": {"n_nonzero": 3}}, {"build_cbm", "evaluate_cbm"}),
        ({"cbm": {"n_concepts": 5}}, {"select_concepts", "build_cbm", "evaluate_cbm"}),
        ({"cbm": {"explain_top_k": 2}}, {"evaluate_cbm"}),
    ],
)
def test_cbm_config_changes_rerun_only_their_rules(tiny_run, tmp_path, changes, expected):
    from conftest import config_with, planned_jobs

    jobs = planned_jobs(tiny_run, config_with(tiny_run, changes, tmp_path / "config.yaml"))
    assert jobs - {"summary_figure", "atlas", "compare", "audit", "all"} == expected, jobs
