"""Stage annotate: adaptive exemplars, MAMMI / soft-WPMI matching, calibrated confidence,
evaluation against known truth, localization — on hand-made arrays with known answers,
on real stores and prepared synthetic data, and in the tiny DAG run."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
import zarr

from neurodissect.activations.store import ActivationStore, StoreWriter
from neurodissect.annotate import confidence as conf
from neurodissect.annotate import localization as loc
from neurodissect.annotate.exemplars import (
    ExemplarParams,
    adaptive_thresholds,
    read_exemplars,
    select_exemplars,
    select_from_array,
    stream_exemplars,
)
from neurodissect.annotate.matching import (
    MatchParams,
    SoftWPMIParams,
    SoftWPMIScorer,
    concept_table,
    mammi_scorer,
    match_concepts,
)
from neurodissect.errors import ConfigError, InputError
from neurodissect.evaluate.annotation import (
    AnnotationEvalParams,
    AnnotationInputs,
    Truth,
    annotation_metrics,
    evaluate_annotation,
    planted_truth,
    score_assignment,
    score_units,
    with_planted_causes,
)
from neurodissect.io import read_parquet_metadata, save_state_dict


# -- helpers ----------------------------------------------------------------------------------
def write_store(path, splits: dict, attrs=None, maps=None, chunk_rows=64):
    """splits: name -> (ids, acts (N, C)); maps: name -> (N, C, h, w)."""
    n_units = next(iter(splits.values()))[1].shape[1]
    shape = next(iter(maps.values())).shape[2:] if maps else None
    with StoreWriter(
        path, n_units=n_units, attrs=attrs or {}, chunk_rows=chunk_rows, spatial_shape=shape
    ) as w:
        for split, (ids, acts) in splits.items():
            w.begin_split(split, ids)
            w.append(split, acts, None if maps is None else maps[split])
    return path


def write_text_store(path, concepts, emb, template):
    g = zarr.open_group(str(path), mode="w", zarr_format=3)
    g.create_array("concepts", shape=(len(concepts),), dtype=str)[:] = np.asarray(concepts)
    g.create_array("emb", data=np.asarray(emb, np.float32))
    g.create_array("template_emb", data=np.asarray(template, np.float32))
    return path


def unit_vectors(rng, n, d):
    x = rng.normal(size=(n, d))
    return x / np.linalg.norm(x, axis=1, keepdims=True)


# -- exemplars -----------------------------------------------------------------------------------
def test_adaptive_threshold_and_exemplars_known_answer():
    acts = np.array([[0, 5, 1.0], [10, 5, 2], [9.5, 5, 3], [2, 5, 4]], dtype=np.float32)
    sets = select_from_array(acts, percentile=93, max_exemplars=10)
    # unit 0: t = 10 - 10*0.07 = 9.3 -> rows 1 (10) and 2 (9.5); unit 2: t = 4 - 3*0.07 = 3.79
    np.testing.assert_allclose(sets.thresholds, [9.3, 5.0, 3.79])
    assert [r.tolist() for r in sets.rows] == [[1, 2], [], [3]]
    assert sets.dead.tolist() == [False, True, False]  # constant unit: dead, no crash
    np.testing.assert_allclose(adaptive_thresholds([0], [100], 50), [50])
    capped = select_from_array(acts, percentile=1, max_exemplars=2)
    assert capped.rows[0].tolist() == [1, 2]  # the cap keeps the highest


def test_streaming_matches_in_memory_with_ties_in_row_order(tmp_path):
    rng = np.random.default_rng(0)
    acts = rng.normal(size=(1000, 24)).astype(np.float32)
    acts[[5, 700, 300], 4] = 9.0  # a three-way tie at the top: earlier rows first
    ids = [f"i{k}" for k in range(1000)]
    store = write_store(
        tmp_path / "a.zarr", {"val": (ids[:400], acts[:400]), "test": (ids[400:], acts[400:])}
    )
    # 1 MB holds ~1,000 rows of 24 units while merging: not the 5,000 kept exemplars
    with pytest.raises(InputError, match="annotate.memory_mb = 1 is too small"):
        too_small = ExemplarParams(memory_mb=1, max_exemplars=5000)
        select_exemplars(store, tmp_path / "ex.parquet", too_small)
    params = ExemplarParams(percentile=80, max_exemplars=7, probe_split="all")
    select_exemplars(store, tmp_path / "ex.parquet", params)
    streamed = stream_exemplars(ActivationStore(store), ["val", "test"], params, rows=13)
    df, meta = read_exemplars(tmp_path / "ex.parquet")
    ref = select_from_array(acts, 80, 7)
    for unit in range(24):
        assert streamed.rows[unit].tolist() == ref.rows[unit].tolist()  # 13 rows at a time
        got = df[df["unit"] == unit]
        assert got["image_id"].tolist() == [ids[r] for r in ref.rows[unit]]
        assert got["rank"].tolist() == list(range(len(got)))
    assert df[df["unit"] == 4]["image_id"].tolist()[:3] == ["i5", "i300", "i700"]
    assert set(df["split"]) == {"val", "test"} and meta["splits"] == ["val", "test"]
    assert meta["dead_units"] == [] and meta["n_images"] == 1000


def test_select_exemplars_lists_dead_units_and_rejects_bad_input(tmp_path):
    acts = np.random.default_rng(1).normal(size=(50, 3)).astype(np.float32)
    acts[:, 1] = 0.25
    ids = [f"i{k}" for k in range(50)]
    store = write_store(tmp_path / "a.zarr", {"test": (ids, acts)})
    select_exemplars(store, tmp_path / "ex.parquet", ExemplarParams())
    df = pd.read_parquet(tmp_path / "ex.parquet")
    assert list(df.columns) == ["unit", "rank", "image_id", "activation", "split", "threshold"]
    assert read_parquet_metadata(tmp_path / "ex.parquet")["dead_units"] == [1]
    assert 1 not in set(df["unit"])
    with pytest.raises(InputError, match="no split 'train'|needs split"):
        select_exemplars(store, tmp_path / "x.parquet", ExemplarParams(probe_split="train"))
    acts[7, 2] = np.nan
    bad = write_store(tmp_path / "bad.zarr", {"test": (ids, acts)})
    with pytest.raises(InputError, match=r"row 7 unit 2 is not finite"):
        select_exemplars(bad, tmp_path / "y.parquet", ExemplarParams())
    assert not (tmp_path / "y.parquet").exists()


# -- scores and assignment rules ---------------------------------------------------------------------
def test_mammi_score_is_the_summed_debiased_similarity():
    rng = np.random.default_rng(2)
    f, g, g0 = unit_vectors(rng, 30, 8), unit_vectors(rng, 12, 8), unit_vectors(rng, 1, 8)[0]
    sets = [[3, 1, 4], [15], [29, 0, 7, 8]]
    scores = conf.score_sets(mammi_scorer(f, g, g0), conf.pad_sets(sets))
    # per image s_i(c) = cos(f_i, g_c) - cos(f_i, g_0), summed over the exemplars
    expected = [sum(f[i] @ g.T - f[i] @ g0 for i in s) for s in sets]
    np.testing.assert_allclose(scores, expected, rtol=1e-5, atol=1e-5)


def test_standardized_mammi_score_is_the_summed_pool_z_score():
    """annotate.standardize: each concept's f_i·(g_c − g_0) z-scored over the pool, summed;
    a phrase that only spreads more across images no longer wins a set it separates less."""
    rng = np.random.default_rng(5)
    f, g, g0 = unit_vectors(rng, 40, 8), unit_vectors(rng, 6, 8), unit_vectors(rng, 1, 8)[0]
    sets = [[3, 1, 4], [15], [39, 0, 7, 8]]
    per_image = f @ (g - g0).T
    z = (per_image - per_image.mean(0)) / per_image.std(0)
    scores = conf.score_sets(mammi_scorer(f, g, g0, standardize=True), conf.pad_sets(sets))
    np.testing.assert_allclose(scores, [z[s].sum(0) for s in sets], rtol=1e-4, atol=1e-4)
    # known answer: the set is half the pool; "sharp" puts it at +1 (pool sd 1), "wide" at
    # 3 or 0 (pool sd 1.84): raw sums prefer wide (75 > 50), z-scores sharp (50 > 40.8)
    pool = np.zeros((100, 3), np.float32)
    pool[:, 2] = 1.0
    pool[:50, 0], pool[50:, 0] = 1.0, -1.0
    pool[:25, 1], pool[25:50, 1], pool[50:, 1] = 3.0, 0.0, -1.5
    text = np.array([[1.0, 0, 0], [0, 1.0, 0]], np.float32)
    members = conf.pad_sets([list(range(0, 50))])
    raw = conf.score_sets(mammi_scorer(pool, text, np.zeros(3)), members)[0]
    std = conf.score_sets(mammi_scorer(pool, text, np.zeros(3), standardize=True), members)[0]
    assert raw.argmax() == 1 and std.argmax() == 0
    # a concept constant over the pool scores 0, never inf or nan
    flat = conf.score_sets(
        mammi_scorer(pool, pool[:3] * 0 + [0, 0, 1.0], np.zeros(3), True), members
    )
    assert np.all(flat == 0)


def test_alpha_cut_and_topk_known_answers():
    scores = np.array([[10.0, 9.6, 9.4, 1.0], [-1.0, -1.04, -1.06, -3.0], [2.0, 2.0, 1.0, 0.0]])
    kept = conf.assign(scores, conf.AlphaCut(95))
    # floors: 9.5; -1.05 (sign-safe: within 5% of |best|); 1.9
    assert [k.tolist() for k in kept] == [[0, 1], [0, 1], [0, 1]]
    assert [k.tolist() for k in conf.assign(scores, conf.TopK(1))] == [[0], [0], [0, 1]]
    assert [k.tolist() for k in conf.assign(scores, conf.AlphaCut(100))] == [[0], [0], [0, 1]]
    mask = conf.kept_mask(scores, np.array([1, 2]), conf.AlphaCut(95))
    assert mask.tolist() == [[True, False], [True, False], [True, False]]


def test_column_blocks_give_the_same_scores_as_one_block():
    rng = np.random.default_rng(3)
    dense = rng.normal(size=(40, 500))
    members = conf.pad_sets([rng.choice(40, k, replace=False) for k in (3, 9, 1)])
    scorer = conf.SummedScorer(dense)
    whole = conf.score_sets(scorer, members, budget_mb=100)
    blocks = list(scorer.blocks(members, budget_mb=0.0001))  # one column per block
    assert len(blocks) == 500
    np.testing.assert_allclose(conf.score_sets(scorer, members, budget_mb=0.0001), whole)
    np.testing.assert_allclose(whole[1], dense[members[1]].sum(axis=0))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_exemplar_sums_have_the_bits_of_the_sparse_membership_product(dtype):
    # the compiled sums (sets without repeats) and the sparse product (bootstrap sets with
    # repeats) must give the scores the matcher always gave, to the last bit
    rng = np.random.default_rng(11)
    left = (rng.normal(size=(300, 70)) * 37).astype(dtype)
    distinct = [rng.choice(300, k, replace=False) for k in (30, 1, 0, 17, 30, 5)]
    with_repeats = [rng.integers(0, 300, 30) for _ in range(4)] + [np.array([7, 7, 7, 2])]
    for sets in (distinct, with_repeats):
        members = conf.pad_sets(sets, width=32)
        sums = conf.exemplar_sums(members, left, 300)
        reference = conf.membership(members, 300).astype(dtype) @ left
        assert sums.dtype == dtype and sums.tobytes() == np.asarray(reference).tobytes()
        assert np.allclose(sums[0], left[sets[0]].sum(axis=0), rtol=1e-4, atol=1e-3)
    assert not conf.exemplar_sums(conf.pad_sets(distinct), left, 300)[2].any()  # empty set


def test_soft_wpmi_matches_its_formula():
    rng = np.random.default_rng(4)
    f, g = unit_vectors(rng, 20, 6), unit_vectors(rng, 9, 6)
    p = SoftWPMIParams()
    sets = [[4, 2, 9], [1, 0], [7, 3, 5, 11, 19]]
    members = conf.pad_sets(sets)
    scorer = SoftWPMIScorer(f, g, p)
    scorer.fit_prior(members)
    logits = p.a * f @ g.T
    q = np.exp(logits - np.log(np.exp(logits).sum(axis=1, keepdims=True)))
    loglik = []
    for s in sets:
        w = p.p_start - np.arange(len(s)) / len(s) * (p.p_start - p.p_end)
        loglik.append(np.log(1 + w[:, None] * (q[s] - 1) + p.min_prob).sum(axis=0))
    loglik = np.array(loglik)
    prior = np.log(np.exp(loglik).mean(axis=0))
    np.testing.assert_allclose(
        conf.score_sets(scorer, members), loglik - p.lam * prior, rtol=1e-5, atol=1e-5
    )


# -- confidence ----------------------------------------------------------------------------------------
def planted_pool(seed=5, n=1500, d=24, k=200):
    rng = np.random.default_rng(seed)
    f, g = unit_vectors(rng, n, d), unit_vectors(rng, k, d)
    return f, g, conf.SummedScorer(conf.Factored(f, g))


def test_permutation_pvalues_are_calibrated_under_the_null_and_small_for_a_real_concept():
    f, g, scorer = planted_pool()
    rng = np.random.default_rng(6)
    random_sets = [rng.choice(len(f), rng.integers(5, 30), replace=False) for _ in range(150)]
    planted = np.argsort(-(f @ g[17]))[:25]  # the images most like concept 17
    members = conf.pad_sets(random_sets + [planted])
    assigned = conf.assign(conf.score_sets(scorer, members), conf.AlphaCut(95))
    p = conf.permutation_pvalues(scorer, members, assigned, n_permutations=400, seed=0)
    top_p = np.array([x[0] for x in p])
    assert assigned[-1][0] == 17 and top_p[-1] == pytest.approx(1 / 401)
    # random exemplar sets: the best of 200 concepts is significant about 5% of the time
    assert 0.0 < np.mean(top_p[:-1] <= 0.05) <= 0.12
    # ...whereas a per-concept null ignores that the best of 200 was picked
    marginal = conf.permutation_pvalues(
        scorer, members, assigned, n_permutations=400, seed=0, null="marginal"
    )
    assert np.mean([x[0] <= 0.05 for x in marginal[:-1]]) > 0.5
    again = conf.permutation_pvalues(scorer, members, assigned, n_permutations=400, seed=0)
    assert all(np.array_equal(a, b) for a, b in zip(p, again, strict=True))  # seeded


def test_bootstrap_stability_known_probability():
    # image 0 votes for concept 0, images 1 and 2 for concept 1: concept 1 stays on top when
    # at most one of the 3 draws is image 0: P = (2/3)^3 + 3 (1/3)(2/3)^2 = 20/27
    scorer = conf.SummedScorer(np.array([[1.0, 0.0], [0.0, 1.0], [0.0, 1.0], [5.0, 0.0]]))
    members = conf.pad_sets([[1, 2, 0], [3]])
    stab = conf.bootstrap_stability(
        scorer, members, [np.array([1]), np.array([0])], conf.TopK(1), n_bootstrap=4000, seed=0
    )
    assert stab[0][0] == pytest.approx(20 / 27, abs=0.03)
    assert stab[1][0] == 1.0  # one exemplar: every resample is the same set
    # keys make a unit's resamples independent of the batch it is in
    alone = conf.bootstrap_stability(
        scorer, members[:1], [np.array([1])], conf.TopK(1), n_bootstrap=4000, seed=0, keys=[0]
    )
    assert alone[0][0] == stab[0][0]


# -- matching on stores ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def planted_stores(tmp_path_factory):
    """10 concept-detector units, one random unit, one constant unit; images embed their concept."""
    root = tmp_path_factory.mktemp("match")
    rng = np.random.default_rng(7)
    n, d, k = 500, 32, 40
    concepts = [f"concept {c}" for c in range(k)]
    g, g0 = unit_vectors(rng, k, d), unit_vectors(rng, 1, d)[0]
    concept_of = rng.integers(0, k, n)
    f = g[concept_of] + 0.15 * rng.normal(size=(n, d))
    f /= np.linalg.norm(f, axis=1, keepdims=True)
    acts = rng.normal(scale=0.1, size=(n, 12))
    for u in range(10):
        acts[concept_of == u, u] += 3.0
    acts[:, 11] = 2.0
    ids = [f"img{i:04d}" for i in range(n)]
    paths = {
        "acts": write_store(root / "acts.zarr", {"test": (ids, acts)}),
        "image_emb": write_store(root / "img.zarr", {"test": (ids, f)}),
        "text_emb": write_text_store(root / "text.zarr", concepts, g, g0),
        "vocab": root / "vocab.parquet",
        "exemplars": root / "exemplars.parquet",
        "root": root,
    }
    pd.DataFrame({"concept": concepts, "doc_freq": 5, "kind": "noun"}).to_parquet(paths["vocab"])
    select_exemplars(paths["acts"], paths["exemplars"], ExemplarParams(max_exemplars=20))
    return paths


def run_match(paths, out, **params):
    return match_concepts(
        paths["exemplars"],
        paths["acts"],
        paths["image_emb"],
        paths["text_emb"],
        out,
        MatchParams(**params),
        vocabulary=paths["vocab"],
    )


@pytest.mark.parametrize("scorer", ["mammi", "soft_wpmi"])
def test_match_concepts_names_planted_units_and_flags_the_rest(planted_stores, tmp_path, scorer):
    out = tmp_path / "neuron_concepts.parquet"
    run_match(planted_stores, out, scorer=scorer, n_permutations=200, n_bootstrap=40)
    df = pd.read_parquet(out)
    columns = "unit rank concept score p_value stability uninterpretable q_value"
    assert list(df.columns) == columns.split()
    top = df[df["rank"] == 0].set_index("unit")
    assert sorted(top.index) == list(range(11))  # dead unit 11 has no row...
    assert read_parquet_metadata(out)["dead_units"] == [11]  # ...and is listed as dead
    for u in range(10):
        assert top.loc[u, "concept"] == f"concept {u}"
        assert top.loc[u, "p_value"] == pytest.approx(1 / 201)
        assert top.loc[u, "q_value"] == pytest.approx(11 / 10 / 201)  # BH over the 11 live units
        assert top.loc[u, "stability"] >= 0.9 and not top.loc[u, "uninterpretable"]
    assert top.loc[10, "uninterpretable"]  # a random unit is not given a confident name
    ranked = df.groupby("unit")["score"].apply(lambda s: s.is_monotonic_decreasing)
    assert ranked.all()


def test_alpha_keeps_more_concepts_when_lowered(planted_stores, tmp_path):
    run_match(planted_stores, tmp_path / "a95.parquet", n_permutations=20, n_bootstrap=5)
    run_match(planted_stores, tmp_path / "a50.parquet", alpha=50, n_permutations=20, n_bootstrap=5)
    n95 = len(pd.read_parquet(tmp_path / "a95.parquet"))
    n50 = len(pd.read_parquet(tmp_path / "a50.parquet"))
    assert n50 > n95 >= 11


def test_mismatched_image_ids_name_both_files(planted_stores, tmp_path):
    f = np.ones((3, 32), np.float32) / np.sqrt(32)
    other = write_store(tmp_path / "other.zarr", {"test": (["a", "b", "c"], f)})
    paths = dict(planted_stores, image_emb=other)
    with pytest.raises(InputError) as err:
        run_match(paths, tmp_path / "x.parquet")
    assert str(planted_stores["acts"]) in str(err.value) and str(other) in str(err.value)
    assert not (tmp_path / "x.parquet").exists()


def test_empty_vocabulary_after_filtering_is_an_input_error(planted_stores, tmp_path):
    vocab = tmp_path / "vocab.parquet"
    pd.DataFrame({"concept": ["unrelated"], "doc_freq": [5], "kind": ["noun"]}).to_parquet(vocab)
    with pytest.raises(InputError, match="empty vocabulary after filtering"):
        run_match(dict(planted_stores, vocab=vocab), tmp_path / "x.parquet")


# -- evaluation --------------------------------------------------------------------------------------------
def test_scores_of_one_unit_known_answers():
    truth = Truth(
        "concept",
        ["streaks", "vessels"],
        [["streaks", "radial streaming"], ["vessels", "blood vessel"]],
    )
    s = score_assignment(["radial streaming", "dots", "blood vessels"], truth)
    assert s == {
        "hit": 1.0,
        "top1": 1.0,
        "precision": pytest.approx(2 / 3),
        "recall": 1.0,
        "f1": pytest.approx(0.8),
    }
    s = score_assignment(["dots", "streaks"], truth)
    assert (s["hit"], s["top1"], s["precision"], s["recall"]) == (1.0, 0.0, 0.5, 0.5)
    assert score_assignment([], truth)["hit"] == 0.0


def test_planted_truth_and_metrics_count_dead_units_as_misses():
    auroc = np.array([[0.95, 0.5, 0.2], [0.91, 0.97, np.nan]])  # concepts x units
    truths = planted_truth(auroc, ["a", "b"], {"a": ["a", "alpha"]}, 0.9)
    assert {u: t.labels for u, t in truths.items()} == {0: ["a", "b"], 1: ["b"]}
    concepts = pd.DataFrame(
        {
            "unit": [0, 0],
            "rank": [0, 1],
            "concept": ["alpha", "zeta"],
            "score": [2.0, 1.9],
            "p_value": [0.01, 0.5],
            "stability": [1.0, 0.2],
            "uninterpretable": [False, False],
        }
    )
    units = score_units(concepts, truths, dead=[1])
    m = annotation_metrics(units)
    assert m["n_units_scored"] == 2 and m["n_dead_scored"] == 1
    assert m["hit_rate"] == 0.5 and m["top1_accuracy"] == 0.5
    assert m["precision"] == 0.25 and m["recall"] == 0.25  # unit 0: 1/2 and 1/2; unit 1: 0


def test_class_units_scored_again_against_their_planted_causes(tmp_path):
    """A class unit named after a planted cause of its class misses the class name but is
    a hit (and top-1) once the causes count; a cause of another class does not count."""
    info = {
        "nests": {"causes": ["bcc"], "synonyms": ["blue-grey ovoid nests"]},
        "veil": {"causes": ["mel"], "synonyms": ["blue-white veil"]},
        "hair": {"causes": [], "synonyms": ["hair"]},
    }
    gt_json = tmp_path / "concepts_gt.json"
    gt_json.write_text(json.dumps(info))
    truths = {
        0: Truth("class", ["bcc"], [["bcc", "basal cell carcinoma"]]),
        1: Truth("class", ["mel"], [["mel", "melanoma"]]),
    }
    widened = with_planted_causes(truths, gt_json)
    assert widened[0].labels == ["bcc", "nests"] and widened[1].labels == ["mel", "veil"]
    concepts = pd.DataFrame(
        {
            "unit": [0, 0, 1],
            "rank": [0, 1, 0],
            "concept": ["blue-grey ovoid nest", "basal cell carcinoma", "ovoid nest"],
            "score": [2.0, 1.95, 1.0],
            "p_value": [0.01, 0.01, 0.01],
            "stability": [1.0, 1.0, 1.0],
            "uninterpretable": [False, False, False],
        }
    )
    plain = score_units(concepts, truths, dead=[])
    assert plain["top1"].tolist() == [0.0, 0.0] and plain["hit"].tolist() == [1.0, 0.0]
    causes = score_units(concepts, widened, dead=[])
    assert causes["top1"].tolist() == [1.0, 0.0] and causes["hit"].tolist() == [1.0, 0.0]
    plain["hit_with_causes"], plain["top1_with_causes"] = causes["hit"], causes["top1"]
    m = annotation_metrics(plain)
    assert m["class_units_top1_accuracy"] == 0.0 and m["class_units_top1_with_causes"] == 0.5
    # no planted causes (a real dataset's empty file, or no file): nothing to widen
    (tmp_path / "none.json").write_text(json.dumps({"hair": info["hair"]}))
    assert with_planted_causes(truths, tmp_path / "none.json") == {}
    assert with_planted_causes(truths, tmp_path / "missing.json") == {}


@pytest.fixture(scope="module")
def cxr_annotation(synth_data, tmp_path_factory):
    """Prepared synthcxr data with hand-made unit stores: one unit per planted concept whose
    activation is the concept's presence and whose map is its box, and a class-logit store;
    CLIP-like embeddings that put each image near its concepts' texts."""
    data = synth_data("synthcxr", n=400, size=32)
    root = tmp_path_factory.mktemp("cxr")
    rng = np.random.default_rng(8)
    gt = pd.read_parquet(data / "concepts_gt.parquet")
    info = json.loads((data / "concepts_gt.json").read_text())
    manifest = pd.read_parquet(data / "manifest.parquet")
    test = manifest[manifest["split"] == "test"]
    ids = test["image_id"].astype(str).tolist()
    planted = [c for c in gt.columns if c != "image_id"]
    present = gt.set_index("image_id").loc[ids, planted].to_numpy(bool)
    acts = present + 0.01 * rng.normal(size=present.shape)
    boxes = pd.read_parquet(data / "boxes.parquet")
    maps = 0.01 * rng.random((len(ids), len(planted), 8, 8))
    for i, image_id in enumerate(ids):
        for j, concept in enumerate(planted):
            for x, y, w, h in boxes.loc[
                (boxes["image_id"] == image_id) & (boxes["concept"] == concept),
                ["x", "y", "w", "h"],
            ].to_numpy():
                full = loc.box_mask([(x, y, w, h)], 32, 32)
                maps[i, j] += full.reshape(8, 4, 8, 4).mean(axis=(1, 3))  # area-average
    layer = write_store(
        root / "layer4.zarr", {"test": (ids, acts)}, attrs={"layer": "layer4"}, maps={"test": maps}
    )
    # vocabulary: every synonym of every planted concept and class, plus distractors
    words = sorted(
        {s for c in planted for s in [c, *info[c]["synonyms"]]}
        | {"rib", "clavicle", "spine", "diaphragm"}
    )
    from neurodissect.data.manifest import read_manifest

    m = read_manifest(data / "manifest.parquet")
    words = sorted(set(words) | {s for syns in m.class_synonyms.values() for s in syns})
    g, g0 = unit_vectors(rng, len(words), 64), unit_vectors(rng, 1, 64)[0]
    first = {c: words.index(info[c]["synonyms"][0]) for c in planted}
    f = 0.3 * rng.normal(size=(len(ids), 64)) / 8
    for j, c in enumerate(planted):
        f += present[:, [j]] * g[first[c]]
    f /= np.linalg.norm(f, axis=1, keepdims=True)
    labels = test[[f"label:{c}" for c in m.classes]].to_numpy(float)
    fc = write_store(
        root / "fc.zarr",
        {"test": (ids, labels + 0.01 * rng.normal(size=labels.shape))},
        attrs={"layer": "fc", "class_units": True, "classes": m.classes},
    )
    # the head of a 'model' whose class logit k is the sum of its finding unit's map
    head = np.zeros((len(m.classes), len(planted)), np.float32)
    for c, info_c in info.items():
        if info_c.get("class") in m.classes:
            head[m.classes.index(info_c["class"]), planted.index(c)] = 1.0
    save_state_dict(
        {"fc.weight": torch.tensor(head), "fc.bias": torch.zeros(len(m.classes))}, root / "model.pt"
    )
    paths = {
        "data": data,
        "root": root,
        "layer4": layer,
        "fc": fc,
        "model": root / "model.pt",
        "image_emb": write_store(root / "img.zarr", {"test": (ids, f)}),
        "text_emb": write_text_store(root / "text.zarr", words, g, g0),
        "vocab": root / "vocab.parquet",
    }
    pd.DataFrame({"concept": words, "doc_freq": 5, "kind": "noun"}).to_parquet(paths["vocab"])
    return paths


def annotate_layer(paths, layer, tmp_path, **inputs):
    ex, nc = tmp_path / f"{layer}_ex.parquet", tmp_path / f"{layer}_nc.parquet"
    select_exemplars(paths[layer], ex, ExemplarParams(max_exemplars=15))
    match_concepts(
        ex,
        paths[layer],
        paths["image_emb"],
        paths["text_emb"],
        nc,
        MatchParams(n_permutations=200, n_bootstrap=30),
        vocabulary=paths["vocab"],
    )
    data = paths["data"]
    evaluate_annotation(
        AnnotationInputs(
            concepts=nc,
            exemplars=ex,
            store=paths[layer],
            manifest=data / "manifest.parquet",
            text_emb=paths["text_emb"],
            gt_table=data / "concepts_gt.parquet",
            gt_synonyms=data / "concepts_gt.json",
            boxes=data / "boxes.parquet",
            **inputs,
        ),
        tmp_path / "metrics.json",
        tmp_path / "units.parquet",
        tmp_path / "figures",
        AnnotationEvalParams(alt_text_space="none"),
        arch="resnet18",
    )
    return json.loads((tmp_path / "metrics.json").read_text())


def test_planted_concept_units_are_named_and_localized(cxr_annotation, tmp_path):
    m = annotate_layer(cxr_annotation, "layer4", tmp_path)
    units = pd.read_parquet(tmp_path / "units.parquet")
    assert set(units["group"]) == {"concept"}
    assert m["n_units_scored"] == len(units) >= 8
    assert m["hit_rate"] == 1.0 and m["top1_accuracy"] >= 0.9
    assert m["mean_cosine"] >= 0.9 and "mean_cosine_alt" not in m
    # maps are the boxes, area-averaged into 4-pixel cells: the pointing game (the centre of
    # the highest cell) is won unless a box covers only that cell's edge (measured 0.875;
    # a random point hits < 0.2), and the top-q% mask overlaps the box
    assert m["pointing_hit"] >= 0.8 and m["iou"] > 0.2
    # those misses are boxes that hold no cell centre of the 8 x 8 grid (thin or small
    # findings): the ceiling is below 1 and these oracle maps reach it (measured 0.875 each)
    assert m["pointing_hit"] <= m["pointing_hit_ceiling"] < 1.0
    assert m["pointing_hit_of_ceiling"] == pytest.approx(
        m["pointing_hit"] / m["pointing_hit_ceiling"]
    )
    assert m["pointing_hit_of_ceiling"] >= 0.95
    assert m["split"] == "test"
    assert sorted(p.name for p in (tmp_path / "figures").iterdir()) == [
        "concepts.png",
        "exemplars.png",
        "localization.png",
    ]


def test_class_units_use_class_synonyms_and_cam_localization(cxr_annotation, tmp_path):
    m = annotate_layer(
        cxr_annotation,
        "fc",
        tmp_path,
        cam_store=cxr_annotation["layer4"],
        opaque=cxr_annotation["model"],
    )
    units = pd.read_parquet(tmp_path / "units.parquet")
    assert set(units["group"]) == {"class"} and m["n_class_units"] == 6
    assert m["class_units_hit_rate"] == m["hit_rate"] >= 5 / 6
    assert m["n_units_localized"] >= 5 and m["pointing_hit"] >= 0.8  # cell centres, as above
    assert m["pointing_hit"] <= m["pointing_hit_ceiling"] <= 1.0


def test_minilm_second_text_space_scores_synonyms_closer_than_unrelated_words():
    from neurodissect.evaluate.annotation import best_cosines, minilm_space

    truth = Truth("class", ["Effusion"], [["pleural effusion", "effusion"]])
    cos = best_cosines(["pleural fluid", "ruler marks"], [truth, truth], minilm_space())
    assert cos[0] > cos[1] + 0.2


# -- localization ---------------------------------------------------------------------------------------------
def test_localization_known_answers():
    np.testing.assert_allclose(loc.upsample(np.full((2, 2), 3.0), 8, 6), np.full((8, 6), 3.0))
    up = loc.upsample(np.array([[0.0, 1.0]]), 1, 4)  # half-pixel centres
    np.testing.assert_allclose(up, [[0.0, 0.25, 0.75, 1.0]])
    inside = loc.box_mask([(2, 1, 3, 2)], 6, 8)
    assert inside.sum() == 6 and inside[1:3, 2:5].all()
    heat = np.zeros((6, 8))
    heat[1:3, 2:5] = 1.0
    assert loc.iou(loc.top_mask(heat, 100 * 6 / 48), inside) == 1.0
    assert loc.pointing_hit(heat, inside)
    assert not loc.pointing_hit(heat, loc.box_mask([(6, 4, 2, 2)], 6, 8))


def test_pointing_game_points_at_the_peak_cell_centre_of_a_coarse_map():
    # a 2 x 2 layer4 map of a 64-pixel image: each cell's peak points at its quadrant's
    # centre (16 or 48), never at the image corner its upsampled plateau reaches
    for r, c in [(0, 0), (0, 1), (1, 0), (1, 1)]:
        small = np.zeros((2, 2))
        small[r, c] = 1.0
        assert loc.peak_point(small, 64, 64) == (16 + 32 * r, 16 + 32 * c)
        centre_box = loc.box_mask([(32 * c + 8, 32 * r + 8, 16, 16)], 64, 64)
        corner_box = loc.box_mask([(32 * c, 32 * r, 6, 6)], 64, 64)  # not the quadrant centre
        assert loc.pointing_hit(small, centre_box)
        assert not loc.pointing_hit(small, corner_box)
    assert loc.localize(
        np.array([[0.0, 0.0], [0.0, 1.0]]), np.array([[40, 40, 16, 16]]), 64, 64, 20
    )[1:] == (True, True)


def test_pointing_ceiling_is_whether_any_cell_centre_of_the_grid_lies_in_a_box():
    # a 2 x 2 grid on a 64-pixel image points only at (16|48, 16|48): a box between the
    # centres is out of reach of any 2 x 2 map, a box around (16, 16) is not, and a 4 x 4
    # grid (centres 8, 24, 40, 56) reaches the first box
    between = loc.box_mask([(22, 22, 20, 20)], 64, 64)  # x, y in [22, 42]
    around = loc.box_mask([(10, 10, 12, 12)], 64, 64)
    assert not loc.pointing_ceiling((2, 2), between)
    assert loc.pointing_ceiling((2, 2), around)
    assert loc.pointing_ceiling((4, 4), between)
    assert loc.pointing_ceiling((2, 2), between | around)  # the union of the boxes
    # a map peaking inside the out-of-reach box still misses it: hit False, ceiling False
    heat = np.zeros((2, 2))
    heat[1, 1] = 1.0
    _, hit, ceiling = loc.localize(heat, np.array([[22, 22, 20, 20]]), 64, 64, 20)
    assert (hit, ceiling) == (False, False)


def test_localization_metrics_average_per_unit_and_leave_an_unreachable_ratio_empty():
    from neurodissect.evaluate.annotation import localization_metrics

    per_image = pd.DataFrame(
        {
            "unit": [0, 0, 0, 0, 1],
            "iou": [0.5] * 5,
            "pointing_hit": [True, False, False, False, False],
            "pointing_ceiling": [True, True, False, False, True],
        }
    )
    m = localization_metrics(per_image)
    # unit 0: hit 1/4, ceiling 2/4; unit 1: hit 0, ceiling 1 → means 1/8 and 3/4
    assert m["pointing_hit"] == 0.125 and m["pointing_hit_ceiling"] == 0.75
    assert m["pointing_hit_of_ceiling"] == pytest.approx(1 / 6)
    assert m["n_units_localized"] == 2
    unreachable = per_image.assign(pointing_hit=False, pointing_ceiling=False)
    assert localization_metrics(unreachable)["pointing_hit_of_ceiling"] is None


def test_cam_equals_grad_cam_for_a_linear_head_after_average_pooling():
    torch.manual_seed(0)
    conv = torch.nn.Sequential(torch.nn.Conv2d(3, 5, 3, padding=1), torch.nn.ReLU())
    head = torch.nn.Linear(5, 4)
    x = torch.randn(2, 3, 7, 7)
    maps = conv(x)
    maps.retain_grad()
    head(maps.mean(dim=(2, 3)))[:, 3].sum().backward()
    weights = maps.grad.mean(dim=(2, 3), keepdim=True)  # Grad-CAM channel weights
    grad_cam = (weights * maps).sum(dim=1).detach().numpy() * 49  # before the ReLU, times h*w
    cam = loc.class_activation_maps(maps.detach().numpy(), head.weight.detach().numpy())[:, 3]
    np.testing.assert_allclose(cam, grad_cam, rtol=1e-4, atol=1e-5)


# -- the tiny DAG run ------------------------------------------------------------------------------------------
def test_tiny_run_annotates_every_layer_and_the_sae_latents(tiny_run):
    run = tiny_run / "results" / "tiny" / "resnet18-s0"
    # the neurons' exemplars come from annotate.probe_split, the latents' from naming.probe_split
    for units, split in (("annotate/layer4", "test"), ("annotate/fc", "test"), ("sae", "train")):
        df, meta = read_exemplars(run / units / "exemplars.parquet")
        live = set(df["unit"])
        assert live and not live & set(meta["dead_units"])
        assert len(live) + len(meta["dead_units"]) == meta["n_units"]
        assert (df.groupby("unit")["activation"].apply(lambda a: a.is_monotonic_decreasing)).all()
        assert (df["activation"] > df["threshold"]).all() and set(df["split"]) == {split}
    for layer in ("layer4", "fc"):
        concepts = pd.read_parquet(run / "annotate" / layer / "neuron_concepts.parquet")
        live = pd.read_parquet(run / "annotate" / layer / "exemplars.parquet")["unit"]
        top = concepts.loc[concepts["rank"] == 0, "unit"]
        assert set(top) == set(live)  # every live unit has its top concept
        assert concepts["p_value"].between(0, 1).all() and concepts["stability"].between(0, 1).all()
        metrics = json.loads((run / "annotate" / layer / "metrics.json").read_text())
        keys = "hit_rate top1_accuracy precision recall f1 mean_cosine mean_cosine_alt"
        assert {*keys.split(), "n_units_scored", "split"} <= set(metrics)
        flags = concepts.groupby("unit")["uninterpretable"].first()
        assert metrics["n_significant"] == (~flags).sum() and metrics["n_units_named"] == len(flags)
        assert (concepts["q_value"] >= concepts.groupby("unit")["p_value"].transform("first")).all()
        figures = run / "figures" / f"annotate_{layer}"
        assert {"exemplars.png", "concepts.png"} <= {p.name for p in figures.iterdir()}
    fc = json.loads((run / "annotate" / "fc" / "metrics.json").read_text())
    assert fc["n_class_units"] == fc["n_units_scored"] == 7  # the seven HAM10000 classes


# -- false discovery control across units ------------------------------------------------------


def test_benjamini_hochberg_matches_a_hand_computed_example():
    # m = 5; sorted p 0.005, 0.01, 0.03, 0.04, 0.2 → m·p/rank 0.025, 0.025, 0.05, 0.05, 0.2
    # (already non-decreasing, so these are the q-values), back in input order:
    q = conf.benjamini_hochberg([0.01, 0.04, 0.03, 0.005, 0.20])
    np.testing.assert_allclose(q, [0.025, 0.05, 0.05, 0.025, 0.2])
    # step-up: m·p/rank = 0.08, 0.042, 0.0293, 0.5 → running minimum from the right
    q = conf.benjamini_hochberg([0.02, 0.021, 0.022, 0.5])
    np.testing.assert_allclose(q, [0.022 * 4 / 3] * 3 + [0.5])
    # capped at 1; NaN is no test (m = 2 here)
    np.testing.assert_allclose(conf.benjamini_hochberg([1.0, np.nan, 0.6]), [1.0, np.nan, 1.0])
    assert conf.benjamini_hochberg([]).shape == (0,)


def test_concept_table_flags_units_beyond_the_fdr():
    # 4 units, top-concept p 0.001, 0.02, 0.03, 0.04 → m·p/rank 0.004, 0.04, 0.04, 0.04
    p_values = [np.array([0.001, 0.3]), np.array([0.02]), np.array([0.03]), np.array([0.04])]
    args = (
        [0, 1, 2, 3],
        np.array(["a", "b", "c"]),
        [np.array([0, 1]), *[np.array([2])] * 3],
        [np.array([1.0, 0.9]), *[np.array([1.0])] * 3],
        p_values,
        [np.array([1.0, 1.0]), *[np.array([1.0])] * 3],
        0.05,
    )
    off = concept_table(*args, fdr=None)
    assert not off["uninterpretable"].any()
    # the unit's q on each of its rows (unit 0 has two)
    np.testing.assert_allclose(off["q_value"], [0.004, 0.004, 0.04, 0.04, 0.04])
    assert concept_table(*args, fdr=0.05)["uninterpretable"].sum() == 0
    strict = concept_table(*args, fdr=0.03)
    assert strict.groupby("unit")["uninterpretable"].first().tolist() == [False, True, True, True]
    # p alone passes 0.03 for units 0-2: the FDR, not the significance, flags units 1 and 2
    assert concept_table(*args[:-1], 0.03, fdr=None)["uninterpretable"].sum() == 1


def test_debias_none_is_the_template_ablation():
    """annotate.debias: base subtracts the bare template's similarity, none keeps the raw one."""
    from neurodissect.annotate.matching import TextEmbeddings, build_scorer

    rng = np.random.default_rng(3)
    f, g, g0 = unit_vectors(rng, 20, 8), unit_vectors(rng, 5, 8), unit_vectors(rng, 1, 8)[0]
    text = TextEmbeddings(np.array([f"c{k}" for k in range(5)]), g, g0)
    sets = [[0, 3], [7, 8, 19]]
    pads = conf.pad_sets(sets)
    base = conf.score_sets(build_scorer(MatchParams(), f, text, None), pads)
    raw = conf.score_sets(build_scorer(MatchParams(debias="none"), f, text, None), pads)
    np.testing.assert_allclose(raw, [sum(f[i] @ g.T for i in s) for s in sets], atol=1e-5)
    shift = np.array([sum(f[i] @ g0 for i in s) for s in sets])[:, None]
    np.testing.assert_allclose(base, raw - shift, atol=1e-5)
    with pytest.raises(ConfigError, match="annotate.debias"):
        MatchParams.from_config({"debias": "template"})
