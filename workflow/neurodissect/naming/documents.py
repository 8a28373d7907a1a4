"""The report corpus the reports and LLM namers read: one document per image
with a report, as a sparse image x phrase indicator matrix.

The phrases come from the vocabulary stage (``doc_phrases.parquet``: one row per
(image_id, concept) mentioned positively — negations already removed — in that
image's report), so naming never runs spaCy itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
import pandas as pd

from ..errors import InputError, collect
from ..io import PathLike, read_table

DOC_PHRASE_COLUMNS = ("image_id", "concept")
VOCAB_COLUMNS = ("concept",)


@dataclass(frozen=True)
class ReportCorpus:
    """Documents of the corpus (images with a non-empty report), in a fixed order.

    ``indicators`` is a CSR matrix (documents x phrases) of 0/1: does the
    report of document i mention phrase v.
    """

    image_ids: np.ndarray  # (D,) str
    reports: np.ndarray  # (D,) str, the raw report text
    phrases: np.ndarray  # (V,) str, the vocabulary in its order
    indicators: object  # scipy.sparse.csr_matrix (D, V) float64

    def __len__(self) -> int:
        return len(self.image_ids)

    @property
    def phrase_counts(self) -> np.ndarray:
        """(V,) documents mentioning each phrase."""
        return np.asarray(self.indicators.sum(axis=0)).ravel()

    @cached_property
    def _index(self) -> pd.Index:
        return pd.Index(self.image_ids)

    def rows_of(self, image_ids) -> np.ndarray:
        """Document row of each image id (-1 for an image outside the corpus)."""
        return self._index.get_indexer(np.asarray(image_ids, dtype=object))

    def with_phrases(self, keep: np.ndarray) -> ReportCorpus:
        """The same documents over the phrases where boolean ``keep`` is set."""
        keep = np.asarray(keep, dtype=bool)
        return ReportCorpus(
            self.image_ids,
            self.reports,
            self.phrases[keep],
            self.indicators[:, np.flatnonzero(keep)],
        )


def has_text(reports: pd.Series) -> np.ndarray:
    """True where a report holds more than whitespace (None / NaN count as missing)."""
    return reports.fillna("").astype(str).str.strip().str.len().to_numpy() > 0


def build_corpus(
    image_ids,
    reports,
    doc_phrases: pd.DataFrame,
    phrases,
    *,
    source: str = "doc_phrases",
) -> ReportCorpus:
    """Corpus over ``image_ids`` (those with a report) from (image_id, concept) rows.

    A concept outside the vocabulary ``phrases`` means the two vocabulary
    artifacts disagree: an InputError naming ``source`` and the concepts.
    Rows for images outside ``image_ids`` (other splits) are ignored.
    """
    from scipy import sparse

    image_ids = np.asarray(image_ids, dtype=str)
    reports = pd.Series(np.asarray(reports, dtype=object))
    phrases = np.asarray(phrases, dtype=str)
    keep = has_text(reports)
    doc_ids = image_ids[keep]
    doc_text = reports[keep].astype(str).to_numpy()

    phrase_index = pd.Index(phrases)
    col = phrase_index.get_indexer(doc_phrases["concept"].astype(str))
    unknown = sorted(set(doc_phrases["concept"].astype(str)[col < 0]))
    if unknown:
        raise InputError(
            collect(
                [repr(c) for c in unknown],
                f"{source}: concepts that are not in the vocabulary (vocabulary and "
                "doc_phrases come from different runs of build_vocabulary?)",
            )
        )
    row = pd.Index(doc_ids).get_indexer(doc_phrases["image_id"].astype(str))
    inside = row >= 0
    matrix = sparse.csr_matrix(
        (np.ones(int(inside.sum())), (row[inside], col[inside])),
        shape=(len(doc_ids), len(phrases)),
    )
    matrix.sum_duplicates()
    matrix.data[:] = 1.0  # a duplicated (image, concept) row still means "mentioned once"
    return ReportCorpus(doc_ids, doc_text, phrases, matrix)


def read_doc_phrases(path: PathLike) -> pd.DataFrame:
    return _read_table(path, DOC_PHRASE_COLUMNS, "run the build_vocabulary rule first")


def read_vocabulary(path: PathLike) -> np.ndarray:
    """The vocabulary's concepts in file order; duplicates are an InputError."""
    df = _read_table(path, VOCAB_COLUMNS, "run the build_vocabulary rule first")
    concepts = df["concept"].astype(str)
    dupes = sorted(set(concepts[concepts.duplicated()]))
    if dupes:
        raise InputError(collect([repr(c) for c in dupes], f"{path}: duplicated concepts"))
    return concepts.to_numpy()


def _read_table(path: PathLike, columns, hint: str) -> pd.DataFrame:
    df = read_table(path, f"not found ({hint})")
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise InputError(f"{path}: missing columns {missing} (has {list(df.columns)})")
    return df
