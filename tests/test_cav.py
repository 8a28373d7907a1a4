"""Stage `cav`: CAVs recover planted directions, are vectorised across concepts, list
latents without positives, and check image ids against the manifest."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from neurodissect.activations.store import StoreWriter
from neurodissect.cav import (
    ACCURACY_COLUMNS,
    CAVParams,
    fit_cavs,
    heldout_scores,
    read_cavs,
    sample_negatives,
    top_thresholds,
    train_cavs,
)
from neurodissect.data.manifest import write_manifest
from neurodissect.errors import InputError
from neurodissect.naming.table import concepts_frame

SPLITS = {"train": (0, 3000), "val": (3000, 4000), "test": (4000, 4500)}
C, K = 24, 4


@pytest.fixture(scope="module")
def world():
    """Anisotropic Gaussian features; latent k = x·u_k (+ noise), so its top images lie
    along Σu_k in feature space and the right CAV is u_k (not the mean difference)."""
    rng = np.random.default_rng(0)
    n = SPLITS["test"][1]
    scales = np.geomspace(0.5, 2.0, C)
    basis, _ = np.linalg.qr(rng.normal(size=(C, C)))
    x = (rng.normal(size=(n, C)) * scales) @ basis.T + 5.0  # correlated, offset features
    u = rng.normal(size=(K, C))
    u /= np.linalg.norm(u, axis=1, keepdims=True)
    latents = np.maximum((x - 5.0) @ u.T + 0.05 * rng.normal(size=(n, K)), 0)
    latents = np.concatenate([latents, np.zeros((n, 1))], axis=1)  # latent 4 never fires
    return {"x": x.astype(np.float32), "u": u, "latents": latents.astype(np.float32)}


def _blocks(x, size=700):
    return (x[i : i + size] for i in range(0, len(x), size))


def test_cavs_recover_planted_directions_with_heldout_accuracy(world):
    x, u, lat = world["x"], world["u"], world["latents"][:, :K]
    tr, va = slice(*SPLITS["train"]), slice(*SPLITS["val"])
    p = CAVParams(top_fraction=0.1, negative_ratio=3, shrinkage=0.01)
    cavs, bias, n_pos, n_neg, thr = fit_cavs(_blocks(x[tr]), lat[tr], np.arange(K), p)
    assert np.allclose(np.linalg.norm(cavs, axis=1), 1.0)
    cos = np.abs(np.sum(cavs * u, axis=1))
    assert (cos > 0.9).all(), cos
    assert (np.sum(cavs * u, axis=1) > 0).all()  # pointing towards the concept
    assert (n_pos == 300).all() and (n_neg == 900).all()  # ⌈0.1·3000⌉ and 3 per positive
    held = heldout_scores(_blocks(x[va]), lat[va], thr, cavs, bias, np.arange(K), p)
    assert (held["accuracy"] > 0.9).all(), held["accuracy"]
    assert (held["balanced_accuracy"] > 0.85).all()
    # the mean difference alone is a worse direction on these correlated features
    pos = lat[tr] >= thr
    naive = np.stack([x[tr][pos[:, k]].mean(0) - x[tr][~pos[:, k]].mean(0) for k in range(K)])
    naive /= np.linalg.norm(naive, axis=1, keepdims=True)
    assert np.abs(np.sum(naive * u, axis=1)).mean() < cos.mean()


def test_vectorised_fit_equals_one_concept_at_a_time(world):
    x, lat = world["x"][:3000], world["latents"][:3000, :K]
    p = CAVParams()
    all_k = fit_cavs(_blocks(x), lat, np.arange(K), p)
    for k in range(K):
        one = fit_cavs(_blocks(x), lat[:, [k]], np.array([k]), p)
        np.testing.assert_allclose(one[0][0], all_k[0][k], atol=1e-10)
        np.testing.assert_allclose(one[1][0], all_k[1][k], atol=1e-10)


def test_thresholds_and_seeded_negatives():
    acts = np.array([[0.0, 5.0], [1.0, 0.0], [3.0, 0.0], [2.0, 0.0], [0.0, 0.0]])
    thr = top_thresholds(acts, 0.4)  # ⌈0.4·5⌉ = 2 largest
    np.testing.assert_allclose(thr, [2.0, 0.0])
    pos = (acts >= thr) & (acts > 0)
    assert pos[:, 0].tolist() == [False, False, True, True, False]
    assert pos[:, 1].tolist() == [True, False, False, False, False]  # zeros are never positive
    neg = sample_negatives(pos, 1.0, seed=3, latents=[10, 11])
    assert neg.sum(0).tolist() == [2, 1] and not (neg & pos).any()
    again = sample_negatives(pos[:, [1]], 1.0, seed=3, latents=[11])
    assert (again[:, 0] == neg[:, 1]).all()  # a latent's sample does not depend on the others


def _ids(split):
    lo, hi = SPLITS[split]
    return [f"img{i:05d}" for i in range(lo, hi)]


def _store(path: Path, values: np.ndarray, ids=_ids) -> Path:
    with StoreWriter(
        path, n_units=values.shape[1], attrs={"kind": "activations"}, chunk_rows=512
    ) as w:
        for split, (lo, hi) in SPLITS.items():
            w.begin_split(split, ids(split))
            w.append(split, values[lo:hi])
    return path


def _manifest(root: Path) -> Path:
    ids = [i for s in SPLITS for i in _ids(s)]
    df = pd.DataFrame(
        {
            "image_id": ids,
            "path": [f"{i}.png" for i in ids],
            "split": [s for s, (lo, hi) in SPLITS.items() for _ in range(hi - lo)],
            "report": "",
            "sha256": "0" * 64,
            "label": 0,
        }
    )
    meta = {
        "task": "multiclass",
        "classes": ["a", "b"],
        "class_synonyms": {},
        "root": str(root),
        "format": "csv",
        "modality": "other",
        "channels": 3,
    }
    write_manifest(df, meta, root / "manifest.parquet")
    return root / "manifest.parquet"


def _names(root: Path, uninterpretable_latent: int | None = None) -> Path:
    rows = [
        {
            "latent": k,
            "name": f"concept {k}",
            "description": "",
            "method": "reports",
            "score": 1.0,
            "support": 5,
            "p_value": 0.01,
            "stability": 1.0,
            "uninterpretable": k == uninterpretable_latent,
        }
        for k in range(K + 1)
    ]
    path = root / "concepts.parquet"
    concepts_frame(rows).to_parquet(path)
    return path


def test_train_cavs_rule_function(world, tmp_path):
    feats = _store(tmp_path / "penultimate.zarr", world["x"])
    lat = _store(tmp_path / "latents.zarr", world["latents"])
    out = {"cavs": tmp_path / "cavs.zarr", "acc": tmp_path / "acc.parquet"}
    summary = train_cavs(
        feats,
        lat,
        _names(tmp_path, uninterpretable_latent=3),
        _manifest(tmp_path),
        out["cavs"],
        out["acc"],
        CAVParams(top_fraction=0.05, seed=0),
    )
    table = pd.read_parquet(out["acc"])
    assert list(table.columns) == list(ACCURACY_COLUMNS)
    # latent 3 is flagged uninterpretable: not trained; latent 4 never fires: listed
    assert table["latent"].tolist() == [0, 1, 2, 4]
    dead = table.set_index("latent").loc[4]
    assert dead["status"] == "no_positives" and dead["n_pos"] == 0
    assert np.isnan(dead["heldout_accuracy"])
    assert (table.loc[table["status"] == "ok", "heldout_accuracy"] > 0.9).all()
    cavs = read_cavs(out["cavs"])
    assert cavs.latents.tolist() == [0, 1, 2] and cavs.names == [
        "concept 0",
        "concept 1",
        "concept 2",
    ]
    assert cavs.cavs.shape == (3, C) and cavs.cavs.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(cavs.cavs, axis=1), 1.0, rtol=1e-6)
    assert summary["n_cavs"] == 3 and summary["n_named"] == 4


def test_train_cavs_rejects_mismatched_image_ids(world, tmp_path):
    feats = _store(tmp_path / "penultimate.zarr", world["x"])
    lat = _store(
        tmp_path / "latents.zarr", world["latents"], ids=lambda s: [f"other{i}" for i in _ids(s)]
    )
    with pytest.raises(InputError) as err:
        train_cavs(
            feats,
            lat,
            _names(tmp_path),
            _manifest(tmp_path),
            tmp_path / "c.zarr",
            tmp_path / "a.parquet",
            CAVParams(),
        )
    assert "latents.zarr" in str(err.value) and "manifest.parquet" in str(err.value)
    assert not (tmp_path / "c.zarr").exists()
