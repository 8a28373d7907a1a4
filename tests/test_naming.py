"""naming: log-odds namer on hand-made reports with a known answer, calibrated
confidence, skipped latents, input errors, and the LLM namer against a real
local HTTP server (started here on 127.0.0.1)."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from neurodissect.activations.store import StoreWriter
from neurodissect.annotate.exemplars import ExemplarParams, select_exemplars
from neurodissect.data.manifest import write_manifest
from neurodissect.errors import ConfigError, InputError
from neurodissect.evaluate.text import matches
from neurodissect.naming import llm as llm_mod
from neurodissect.naming.logodds import log_odds_z
from neurodissect.naming.run import NamingParams, name_concepts
from neurodissect.naming.table import read_concepts

# -- a hand-made corpus with a known answer -------------------------------------
BACKGROUND = {  # phrase → share of reports that mention it
    "lesion": 0.95,
    "border": 0.5,
    "pigment network": 0.3,
    "dots": 0.25,
    "globules": 0.2,
    "hair": 0.2,
    "ruler": 0.1,
    "blue-white veil": 0.1,
    "vessels": 0.1,
    "streaks": 0.05,
}
# varied phrasings of streaks: each yields the noun "streaks" plus its own chunk
STREAK_PHRASINGS = [
    ("radial streaks at the periphery", ["streaks", "radial streaks"]),
    ("irregular streaks are seen", ["streaks", "irregular streaks"]),
    ("a few streaks", ["streaks"]),
    ("peripheral streaks and pseudopods", ["streaks", "pseudopods"]),
]
VOCAB = [*BACKGROUND, "radial streaks", "irregular streaks", "pseudopods"]
N_IMAGES, N_STREAK, N_EXEMPLARS = 300, 24, 20
# latent roles in the store below
STREAK, RANDOM, DEAD, NO_EXEMPLARS, NO_REPORTS, N_LATENTS = 0, 1, 2, 3, 4, 6


def _corpus(rng):
    """image ids, report texts and (image_id, concept) rows; the first N_STREAK
    images mention streaks (varied phrasings), the rest only by chance."""
    ids = [f"img{i:03d}" for i in range(N_IMAGES)]
    reports, rows = [], []
    for i, image_id in enumerate(ids):
        found = [c for c, p in BACKGROUND.items() if c != "streaks" and rng.random() < p]
        text = ". ".join(f"{c} present" for c in found)
        if i < N_STREAK or rng.random() < BACKGROUND["streaks"]:
            phrase, concepts = STREAK_PHRASINGS[i % len(STREAK_PHRASINGS)]
            text += f". {phrase}"
            found += concepts
        text += ". no blue-white veil" if "blue-white veil" not in found else ""
        reports.append(text)
        rows += [(image_id, c) for c in found]
    return ids, reports, pd.DataFrame(rows, columns=["image_id", "concept"])


def _write_inputs(
    root: Path, *, with_reports: bool = True, seed: int = 0, class_synonyms=None
) -> dict[str, Path]:
    rng = np.random.default_rng(seed)
    ids, reports, doc_phrases = _corpus(rng)
    no_report = ids[-N_EXEMPLARS:]  # the NO_REPORTS latent's exemplars
    keep = [with_reports and i not in no_report for i in ids]
    reports = [r if k else "" for r, k in zip(reports, keep, strict=True)]
    manifest = pd.DataFrame(
        {
            "image_id": ids,
            "path": [f"{i}.png" for i in ids],
            "split": "test",
            "report": reports,
            "sha256": "0" * 64,
            "label": 0,
        }
    )
    meta = {
        "task": "multiclass",
        "classes": ["nv"],
        "class_synonyms": class_synonyms or {},
        "root": str(root),
        "format": "csv",
        "modality": "dermoscopy",
        "channels": 3,
    }
    paths = {k: root / f"{k}.parquet" for k in ("manifest", "doc_phrases", "vocabulary")}
    write_manifest(manifest, meta, paths["manifest"])
    doc_phrases = (
        doc_phrases[~doc_phrases["image_id"].isin(no_report)]
        if with_reports
        else (doc_phrases.iloc[:0])
    )
    doc_phrases.to_parquet(paths["doc_phrases"])
    pd.DataFrame({"concept": VOCAB, "doc_freq": 1, "kind": "noun"}).to_parquet(paths["vocabulary"])

    # latent activations whose top images (annotate's adaptive exemplars) are known
    acts = rng.uniform(0.0, 0.5, (N_IMAGES, N_LATENTS)).astype(np.float32)
    top = {
        STREAK: np.arange(N_EXEMPLARS),  # streak images
        RANDOM: rng.choice(np.arange(N_STREAK, N_IMAGES - N_EXEMPLARS), N_EXEMPLARS, False),
        NO_REPORTS: np.arange(N_IMAGES - N_EXEMPLARS, N_IMAGES),
        5: rng.choice(np.arange(N_STREAK, N_IMAGES - N_EXEMPLARS), N_EXEMPLARS, False),
    }
    for latent, rows in top.items():
        acts[rows, latent] = rng.uniform(0.97, 1.0, len(rows))
    acts[:, DEAD] = 0.0
    acts[:, NO_EXEMPLARS] = 0.5  # active everywhere, constant: the adaptive threshold keeps none
    paths["latents"] = root / "latents.zarr"
    with StoreWriter(paths["latents"], n_units=N_LATENTS, attrs={"kind": "sae_latents"}) as w:
        w.begin_split("test", ids)
        w.append("test", acts)
    paths["exemplars"] = root / "exemplars.parquet"
    select_exemplars(paths["latents"], paths["exemplars"], ExemplarParams(probe_split="test"))
    return paths


def _run(paths, root: Path, **params):
    params = NamingParams(**{"n_permutations": 300, "n_bootstrap": 100, **params})
    out = {"concepts_out": root / "concepts.parquet", "skipped_out": root / "skipped.parquet"}
    inputs = {k: paths[k] for k in ("manifest", "doc_phrases", "vocabulary")}
    summary = name_concepts(paths["exemplars"], paths["latents"], **out, params=params, **inputs)
    return read_concepts(out["concepts_out"]), pd.read_parquet(out["skipped_out"]), summary


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("naming_inputs")
    return root, _write_inputs(root)


# -- log-odds -------------------------------------------------------------------
def test_log_odds_matches_the_formula_by_hand():
    # 10 of 40 documents are the group. Phrase 0: in 4 of them and 4 of the other 30
    # (corpus rate 0.2, so with a0 = 10 the prior is a = 2, b = 8); phrase 1: in 1 and 11
    # (rate 0.3: a = 3, b = 7); phrase 2: in no document; phrase 3: in every document.
    group, corpus = np.array([4.0, 1.0, 0.0, 10.0]), np.array([8.0, 12.0, 0.0, 40.0])
    z = log_odds_z(group, 10, corpus, 40, prior_strength=10)
    expected = [
        (np.log(6 / 14) - np.log(6 / 34)) / np.sqrt(1 / 6 + 1 / 14 + 1 / 6 + 1 / 34),
        (np.log(4 / 16) - np.log(14 / 26)) / np.sqrt(1 / 4 + 1 / 16 + 1 / 14 + 1 / 26),
    ]
    np.testing.assert_allclose(z[:2], expected, rtol=1e-5)
    assert z[0] > 0 > z[1]  # over- and under-represented
    assert z[2] == z[3] == 0.0  # in no / every document: no evidence either way
    # vectorised over leading axes (several groups of different sizes)
    both = log_odds_z(np.stack([group, group]), np.array([10, 10]), corpus, 40, 10)
    np.testing.assert_allclose(both[1, :2], z[:2])


def test_prior_keeps_a_rare_phrase_from_beating_a_shared_one():
    # 20 exemplars of 400 documents. Phrase 0: in all of them and 20 others; phrase 1: in
    # 2 documents, both exemplars; phrase 2: in every report but one
    group, corpus = np.array([20.0, 2.0, 20.0]), np.array([40.0, 2.0, 399.0])
    z = log_odds_z(group, 20, corpus, 400, prior_strength=10)
    assert z.argmax() == 0 and z[1] < z[0] / 2 and abs(z[2]) < 1


# -- the reports namer on a known answer ------------------------------------------
def test_reports_namer_names_streaks_and_flags_random_latents(inputs, tmp_path):
    root, paths = inputs
    concepts, skipped, summary = _run(paths, tmp_path)

    streak = concepts.set_index("latent").loc[STREAK]
    assert matches(streak["name"], ["streak"]), streak["name"]
    assert streak["method"] == "reports"
    assert streak["p_value"] <= 1 / 301 + 1e-12  # beats every random set
    assert streak["stability"] >= 0.9
    assert not streak["uninterpretable"]
    assert streak["support"] == N_EXEMPLARS
    assert "streaks" in streak["description"] and streak["description"].startswith("Images whose")

    random_latent = concepts.set_index("latent").loc[RANDOM]
    assert random_latent["uninterpretable"] and random_latent["p_value"] > 0.05

    reasons = dict(zip(skipped["latent"], skipped["reason"], strict=True))
    assert reasons == {DEAD: "dead", NO_EXEMPLARS: "no_exemplars", NO_REPORTS: "no_reports"}
    assert set(concepts["latent"]) | set(reasons) == set(range(N_LATENTS))
    assert summary["n_latents"] == N_LATENTS and summary["n_dead"] == 1
    assert list(concepts.columns)[:6] == [
        "latent",
        "name",
        "description",
        "method",
        "score",
        "support",
    ]


def test_names_are_flagged_beyond_the_false_discovery_rate(inputs, tmp_path):
    from neurodissect.annotate.confidence import benjamini_hochberg
    from neurodissect.io import read_parquet_metadata

    _, paths = inputs
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    concepts, _, summary = _run(paths, tmp_path / "a")  # naming.fdr 0.05
    np.testing.assert_allclose(concepts["q_value"], benjamini_hochberg(concepts["p_value"]))
    assert not concepts.set_index("latent").loc[STREAK, "uninterpretable"]
    assert summary["n_significant"] == (concepts["q_value"] <= 0.05).sum() >= 1
    meta = read_parquet_metadata(tmp_path / "a" / "concepts.parquet")
    assert (meta["fdr"], meta["n_significant"]) == (0.05, summary["n_significant"])
    # below the smallest q a 300-permutation test can reach (1/301): nothing survives
    strict, _, summary = _run(paths, tmp_path / "b", fdr=0.002)
    assert strict["uninterpretable"].all() and summary["n_significant"] == 0
    np.testing.assert_array_equal(strict["p_value"], concepts["p_value"])


def test_a_generic_top_phrase_is_refined_to_a_specific_one_that_scores_nearly_as_well():
    from neurodissect.naming.reports import refine

    phrases = ["patch", "white patch", "scar-like patch", "red dot"]
    scores = np.array(
        [
            [5.0, 4.5, 3.0, 0.0],  # "white patch" within 20 %: refined
            [5.0, 3.0, 3.9, 0.0],  # none within 20 %: stays "patch"
            [1.0, 0.0, 0.0, 4.0],
        ]
    )
    best = scores.argmax(axis=1)
    assert refine(scores, best, phrases, 0.2).tolist() == [1, 0, 3]
    assert refine(scores, best, phrases, 0.0).tolist() == [0, 0, 3]
    assert refine(scores, best, phrases, 0.25).tolist() == [1, 2, 3]


def test_class_names_are_not_concept_names(tmp_path):
    """A class whose synonym is 'streaks': its phrases are no candidates (a bottleneck
    concept must not be the label), unless naming.exclude_class_names is off."""
    paths = _write_inputs(tmp_path, class_synonyms={"nv": ["nevus", "streaks"]})
    excluded = _run(paths, tmp_path / "a")[0].set_index("latent")
    assert not excluded["name"].str.contains("streaks").any()
    assert excluded.loc[STREAK, "name"] == "pseudopods"  # the streak images' next phrase
    kept = _run(paths, tmp_path / "b", exclude_class_names=False)[0].set_index("latent")
    assert matches(kept.loc[STREAK, "name"], ["streaks"])


def test_naming_is_deterministic(inputs, tmp_path):
    _, paths = inputs
    a = _run(paths, tmp_path / "a")[0]
    b = _run(paths, tmp_path / "b")[0]
    pd.testing.assert_frame_equal(a, b)


def test_pvalues_of_random_latents_are_calibrated():
    # exemplar sets drawn at random: the top name's p-value is about uniform, so about
    # `significance` of such latents pass, and few are named confidently
    from neurodissect.naming.documents import build_corpus
    from neurodissect.naming.reports import name_by_reports

    rng = np.random.default_rng(3)
    ids, reports, doc_phrases = _corpus(rng)
    corpus = build_corpus(ids, reports, doc_phrases, VOCAB)
    sets = {u: list(rng.choice(ids, 15, replace=False)) for u in range(200)}
    params = NamingParams(n_permutations=200, n_bootstrap=10)
    rows, skipped = name_by_reports(corpus, sets, params)
    p = np.array([r["p_value"] for r in rows])
    assert len(rows) == 200 and not skipped
    assert 0.01 <= np.mean(p <= 0.1) <= 0.2
    assert 0.3 <= np.mean(p <= 0.5) <= 0.7


# -- the CLIP namer ----------------------------------------------------------------
def _write_clip_stores(root: Path, paths: dict, seed: int = 0) -> dict[str, Path]:
    """Image embeddings where the streak images lie near the text embedding of
    "an image showing streaks", every other image at random; a text store of VOCAB."""
    import zarr

    rng = np.random.default_rng(seed)
    dim = 16
    text = rng.normal(size=(len(VOCAB), dim))
    text /= np.linalg.norm(text, axis=1, keepdims=True)
    template = rng.normal(size=dim)
    template /= np.linalg.norm(template)
    images = rng.normal(size=(N_IMAGES, dim))
    images[:N_STREAK] = 3 * text[VOCAB.index("streaks")] + rng.normal(size=(N_STREAK, dim))
    images /= np.linalg.norm(images, axis=1, keepdims=True)
    ids = [f"img{i:03d}" for i in range(N_IMAGES)]
    out = dict(paths, image_emb=root / "image_emb.zarr", text_emb=root / "text_emb.zarr")
    with StoreWriter(out["image_emb"], n_units=dim, attrs={"kind": "clip_images"}) as w:
        w.begin_split("test", ids)
        w.append("test", images.astype(np.float32))
    g = zarr.open_group(str(out["text_emb"]), mode="w", zarr_format=3)
    g.create_array("concepts", shape=(len(VOCAB),), dtype=str)[:] = np.asarray(VOCAB)
    g.create_array("emb", data=text.astype(np.float32))
    g.create_array("template_emb", data=template.astype(np.float32))
    return out


def test_clip_namer_names_streaks_without_reports(tmp_path):
    paths = _write_inputs(tmp_path, with_reports=False)  # clip needs no report
    paths = _write_clip_stores(tmp_path, paths)
    params = NamingParams(method="clip", n_permutations=300, n_bootstrap=100)
    out = {"concepts_out": tmp_path / "concepts.parquet", "skipped_out": tmp_path / "sk.parquet"}
    name_concepts(
        paths["exemplars"],
        paths["latents"],
        **out,
        params=params,
        vocabulary=paths["vocabulary"],
        image_emb=paths["image_emb"],
        text_emb=paths["text_emb"],
    )
    concepts = read_concepts(out["concepts_out"]).set_index("latent")
    streak = concepts.loc[STREAK]
    assert streak["name"] == "streaks" and streak["method"] == "clip"
    assert streak["p_value"] <= 1 / 301 + 1e-12 and streak["stability"] >= 0.9
    assert streak["support"] >= N_EXEMPLARS - 2  # nearly every exemplar ranks it in its top 5
    assert streak["description"].startswith("Exemplar images look most like 'streaks'")
    assert concepts.loc[RANDOM, "uninterpretable"]
    # images without reports are still images: that latent is named too
    assert NO_REPORTS in concepts.index
    skipped = pd.read_parquet(out["skipped_out"])
    assert dict(zip(skipped["latent"], skipped["reason"], strict=True)) == {
        DEAD: "dead",
        NO_EXEMPLARS: "no_exemplars",
    }


# -- input errors ----------------------------------------------------------------
def test_dataset_without_reports_is_a_clear_error(tmp_path):
    paths = _write_inputs(tmp_path, with_reports=False)
    with pytest.raises(InputError, match="has no reports") as err:
        _run(paths, tmp_path)
    assert "naming.method: clip" in str(err.value) and str(paths["manifest"]) in str(err.value)
    assert not (tmp_path / "concepts.parquet").exists()


def test_exemplars_from_another_run_are_rejected(inputs, tmp_path):
    from neurodissect.io import read_parquet_metadata, write_parquet

    _, paths = inputs
    stale = pd.read_parquet(paths["exemplars"])
    meta = read_parquet_metadata(paths["exemplars"])
    stale.loc[0, "image_id"] = "not_an_image"
    bad = dict(paths, exemplars=tmp_path / "exemplars.parquet")
    write_parquet(stale, bad["exemplars"], metadata=meta)
    with pytest.raises(InputError, match="not probing images") as err:
        _run(bad, tmp_path)
    assert "not_an_image" in str(err.value) and "rerun select_exemplars" in str(err.value)
    write_parquet(stale.iloc[1:], bad["exemplars"], metadata={**meta, "n_units": 9})
    with pytest.raises(InputError, match="9 units but .* has 6 latents"):
        _run(bad, tmp_path)


def test_phrases_outside_the_vocabulary_are_rejected(inputs, tmp_path):
    _, paths = inputs
    rows = pd.read_parquet(paths["doc_phrases"])
    rows.loc[0, "concept"] = "zebra stripes"
    bad = dict(paths, doc_phrases=tmp_path / "doc_phrases.parquet")
    rows.to_parquet(bad["doc_phrases"])
    with pytest.raises(InputError, match="zebra stripes"):
        _run(bad, tmp_path)


def test_llm_needs_url_and_model(inputs, tmp_path):
    _, paths = inputs
    with pytest.raises(ConfigError, match="naming.llm.url"):
        _run(paths, tmp_path, method="llm", llm=_llm_cfg(tmp_path, url=None))


# -- the LLM namer against a local HTTP server -------------------------------------
class FakeChatServer:
    """An OpenAI-compatible endpoint on 127.0.0.1: replies from a script, counts hits."""

    def __init__(self, replies):
        self.replies = list(replies)  # (status, body) per request; the last one repeats
        self.requests: list[dict] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server's name)
                length = int(self.headers.get("Content-Length", 0))
                server.requests.append(
                    {
                        "path": self.path,
                        "auth": self.headers.get("Authorization"),
                        "body": json.loads(self.rfile.read(length)),
                    }
                )
                status, body = server.replies[min(len(server.requests), len(server.replies)) - 1]
                payload = body.encode() if isinstance(body, str) else json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def hits(self) -> int:
        return len(self.requests)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


def _chat_reply(content: str) -> dict:
    return {"choices": [{"index": 0, "message": {"role": "assistant", "content": content}}]}


def _answer(name="streaks", description="Radial streaks at the lesion edge."):
    return (200, _chat_reply(json.dumps({"name": name, "description": description})))


def _llm_cfg(tmp_path, **changes):
    cfg = {
        "url": None,
        "model": "tiny-test-model",
        "api_key_env": "NEURODISSECT_TEST_LLM_KEY",
        "cache_dir": str(tmp_path / "llm_cache"),
        "timeout_s": 5,
        "max_retries": 2,
        "retry_backoff_s": 0.01,
        "max_reports": 5,
        "max_report_chars": 60,
    }
    return {**cfg, **changes}


def _namer(tmp_path, url):
    return llm_mod.CachedNamer(llm_mod.LLMSettings.from_config(_llm_cfg(tmp_path, url=url)))


def _cache_files(tmp_path):
    return (
        sorted((tmp_path / "llm_cache").glob("*.json")) if (tmp_path / "llm_cache").exists() else []
    )


REPORTS = ["radial streaks at the periphery of a brown lesion " * 3, "irregular streaks"]


def test_llm_answer_is_cached_and_a_rerun_makes_no_call(tmp_path, monkeypatch):
    monkeypatch.setenv("NEURODISSECT_TEST_LLM_KEY", "sk-test-123")
    with FakeChatServer([_answer()]) as server:
        first = _namer(tmp_path, server.url).name(REPORTS)
        again = _namer(tmp_path, server.url).name(REPORTS)  # a new process would do the same
        assert server.hits == 1
    assert first == again == llm_mod.LLMName("streaks", "Radial streaks at the lesion edge.")
    request = server.requests[0]
    assert request["path"] == "/v1/chat/completions"
    assert request["auth"] == "Bearer sk-test-123"  # the key comes from the environment only
    assert request["body"]["model"] == "tiny-test-model"
    prompt = request["body"]["messages"][-1]["content"]
    assert "1. radial streaks" in prompt and "2. irregular streaks" in prompt
    assert len(prompt.split("\n")[1]) <= len("1. ") + 60  # reports are truncated
    [entry] = _cache_files(tmp_path)
    assert entry.stem == llm_mod.cache_key("tiny-test-model", request["body"]["messages"])


def test_llm_server_error_retries_then_fails_clearly_and_caches_nothing(tmp_path):
    with FakeChatServer([(500, {"error": "overloaded"})]) as server:
        with pytest.raises(InputError, match="no answer after 3 attempts") as err:
            _namer(tmp_path, server.url).name(REPORTS)
        assert server.hits == 3  # first try + max_retries, then stop
    assert f"{server.url}/chat/completions" in str(err.value) and "HTTP 500" in str(err.value)
    assert _cache_files(tmp_path) == []


def test_llm_recovers_from_a_transient_server_error(tmp_path):
    with FakeChatServer([(503, "busy"), _answer("pseudopods")]) as server:
        assert _namer(tmp_path, server.url).name(REPORTS).name == "pseudopods"
        assert server.hits == 2


@pytest.mark.parametrize(
    "reply, message",
    [
        ((200, "this is not json"), "malformed reply"),
        ((200, {"id": "x", "object": "chat.completion"}), "malformed reply"),
        ((200, _chat_reply("Streaks, I think.")), "not a JSON object with string 'name'"),
        ((200, _chat_reply('{"name": "streaks"}')), "not a JSON object with string 'name'"),
    ],
)
def test_llm_malformed_reply_is_a_clear_error_and_not_cached(tmp_path, reply, message):
    with FakeChatServer([reply]) as server:
        with pytest.raises(InputError, match=message) as err:
            _namer(tmp_path, server.url).name(REPORTS)
        assert server.hits == 1  # a malformed reply is not retried
    assert f"{server.url}/chat/completions" in str(err.value)
    assert _cache_files(tmp_path) == []


def test_llm_fenced_json_answer_is_accepted(tmp_path):
    fenced = '```json\n{"name": "blue-white veil", "description": "A veil."}\n```'
    with FakeChatServer([(200, _chat_reply(fenced))]) as server:
        assert _namer(tmp_path, server.url).name(REPORTS).name == "blue-white veil"


def test_llm_unauthorised_names_the_key_variable_without_retrying(tmp_path):
    with FakeChatServer([(401, {"error": "bad key"})]) as server:
        with pytest.raises(InputError, match="NEURODISSECT_TEST_LLM_KEY"):
            _namer(tmp_path, server.url).name(REPORTS)
        assert server.hits == 1


def test_llm_unreachable_endpoint_is_a_clear_error(tmp_path):
    with FakeChatServer([_answer()]) as server:
        url = server.url
    # the server is closed now: connection refused on every attempt
    with pytest.raises(InputError, match="no answer after 3 attempts"):
        _namer(tmp_path, url).name(REPORTS)


def test_llm_method_end_to_end_and_rerun_from_cache(inputs, tmp_path):
    _, paths = inputs
    with FakeChatServer([_answer("radial streaks")]) as server:
        cfg = _llm_cfg(tmp_path, url=server.url)
        concepts, skipped, summary = _run(paths, tmp_path / "a", method="llm", llm=cfg)
        named = len(concepts)
        assert server.hits == named == summary["llm_calls"]
        rerun, _, summary2 = _run(paths, tmp_path / "b", method="llm", llm=cfg)
        assert server.hits == named  # every answer came from the cache
    assert summary2["llm_calls"] == 0 and summary2["llm_cache_hits"] == named
    pd.testing.assert_frame_equal(concepts, rerun)
    by_latent = concepts.set_index("latent")
    assert (concepts["method"] == "llm").all()
    assert by_latent.loc[STREAK, "name"] == "radial streaks"
    assert by_latent.loc[STREAK, "description"] == "Radial streaks at the lesion edge."
    # the same name for random exemplars is not backed by their reports
    assert by_latent.loc[RANDOM, "uninterpretable"]
    assert set(skipped["reason"]) == {"dead", "no_exemplars", "no_reports"}


# -- figure ----------------------------------------------------------------------
def test_named_concepts_figure(inputs, tmp_path):
    from PIL import Image

    from neurodissect.viz.naming import plot_named_concepts

    _, paths = inputs
    _run(paths, tmp_path)
    plot_named_concepts(tmp_path / "concepts.parquet", tmp_path / "named.png", 0.05, dpi=60)
    empty = tmp_path / "empty.parquet"
    read_concepts(tmp_path / "concepts.parquet").iloc[:0].to_parquet(empty)
    plot_named_concepts(empty, tmp_path / "empty.png", 0.05, dpi=60)
    for png in ("named.png", "empty.png"):
        with Image.open(tmp_path / png) as image:
            assert image.format == "PNG" and image.size[0] > 300


# -- the rule in the real workflow ---------------------------------------------------
def test_name_concepts_rule_writes_the_contract(tiny_run):
    from neurodissect.activations.store import ActivationStore

    sae = tiny_run / "results" / "tiny" / "resnet18-s0" / "sae"
    concepts = read_concepts(sae / "concepts.parquet")
    skipped = pd.read_parquet(sae / "skipped_latents.parquet")
    n_latents = ActivationStore(sae / "latents.zarr").n_units
    columns = "latent name description method score support p_value stability uninterpretable"
    assert list(concepts.columns) == [*columns.split(), "q_value"]
    assert (concepts["method"] == "reports").all()  # the default namer
    # every latent is either named or listed with a reason, never both
    assert set(concepts["latent"]).isdisjoint(skipped["latent"])
    assert set(concepts["latent"]) | set(skipped["latent"]) == set(range(n_latents))
    assert set(skipped["reason"]) <= {"dead", "no_exemplars", "no_reports", "no_phrase"}
    assert concepts["p_value"].between(0, 1).all() and concepts["stability"].between(0, 1).all()
    assert (concepts["support"] >= 2).all()  # naming.min_support
    assert (sae / "concepts.parquet.prov.json").exists()
    assert (tiny_run / "results/tiny/resnet18-s0/figures/named_concepts.png").exists()


def test_llm_settings_do_not_rerun_the_offline_namer(tiny_run, tmp_path):
    from conftest import config_with, planned_jobs

    target = "results/tiny/resnet18-s0/sae/concepts.parquet"

    def planned(changes):
        return planned_jobs(tiny_run, config_with(tiny_run, changes, tmp_path / "c.yaml"), target)

    assert planned({"naming": {"llm": {"model": "another-model"}}}) == set()
    assert planned({"naming": {"significance": 0.01}}) == {"name_concepts"}
