"""The CLIP's own image–report corpus (``clip.corpus``), apart from the probing images.

A real medical CLIP (MedCLIP, BiomedCLIP, MONET) is trained on a corpus far larger
than, and disjoint from, the images a dissection probes. On a synthetic dataset the
same generator gives such a corpus: same kind, image size, label noise and
difficulty, another seed, so the same planted concepts and report language on
other images. ``results/{dataset}/clip/corpus/`` holds it::

    raw/                   the generated raw folder (as ``neurodissect synth`` writes it)
    data/manifest.parquet  its manifest (+ the other prepare_data outputs)

The CLIP trains on every corpus image outside its val split (which only monitors
training), so the dataset's own images (train, val and test) stay unseen and the
annotation may probe all of them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..config import settings_from
from ..data.manifest import Manifest
from ..errors import ConfigError
from ..io import PathLike

if TYPE_CHECKING:  # the generator (numpy, PIL) loads only when a corpus is built
    from ..data.synth import SynthParams

# the corpus' splits: val monitors training; the rest is all training pairs
VAL_FRACTION = 0.1
TEST_FRACTION = 0.05  # prepare_data needs a non-empty test share; it is trained on too


@dataclass(frozen=True)
class CorpusSettings:
    """``clip.corpus``: how many images and which generator seed (0 images = no corpus)."""

    n: int = 0
    seed: int = 1000

    @classmethod
    def from_config(cls, corpus: dict | None) -> CorpusSettings:
        return settings_from(cls, corpus, section="clip.corpus")

    def synth(self, look: dict[str, Any]) -> SynthParams:
        """The corpus' generator settings: its own n and seed, the dataset's ``look`` (its
        synth size, noise and difficulty)."""
        from ..data.synth import SynthParams

        return SynthParams.from_config({**look, "n": self.n, "seed": self.seed})


def check_corpus_seed(corpus: CorpusSettings, dataset_seed: int, dataset: str) -> None:
    """The corpus must not be the dataset itself: another seed draws other images."""
    if corpus.n and corpus.seed == dataset_seed:
        raise ConfigError(
            f"clip.corpus.seed={corpus.seed} equals datasets.{dataset}.synth.seed: the CLIP "
            "would train on the very images it later embeds for annotation; choose another seed"
        )


def build_corpus(
    kind: str, raw_out: PathLike, data_out: PathLike, synth: SynthParams, workers: int = 1
) -> Path:
    """Generate the corpus' raw folder ``raw_out`` (``synth``: :meth:`CorpusSettings.synth`)
    and prepare it into ``data_out``; returns its manifest.

    Each half is written atomically by its own stage (a failed job leaves no manifest).
    The manifest's root is ``raw_out`` as given, like a dataset's (a relative path stays
    relative), so the same arguments give the same bytes wherever the run lives.
    """
    from ..data.prepare import PrepareParams, prepare_dataset
    from ..data.synth import generate
    from ..storage import to_logical

    if synth.n < 1:
        raise ConfigError("clip.corpus.n is 0: there is no corpus to build")
    generate(kind, raw_out, synth, workers=workers)
    # the manifest names the logical folder (a stored run's job writes a local copy)
    splits = PrepareParams(VAL_FRACTION, TEST_FRACTION, split_seed=synth.seed)
    prepare_dataset(kind, to_logical(raw_out), data_out, splits, threads=workers)
    return Path(data_out) / "manifest.parquet"


def corpus_training_split(manifest: Manifest) -> Manifest:
    """Every corpus row outside the val split (the training pairs)."""
    keep = (manifest.df["split"] != "val").to_numpy()
    return Manifest(manifest.df[keep].reset_index(drop=True), manifest.meta, manifest.path)
