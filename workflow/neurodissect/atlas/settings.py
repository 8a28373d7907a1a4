"""Settings of the atlas rule (config section ``atlas``; defaults in config/schema.yaml)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..config import settings_from


@dataclass(frozen=True)
class AtlasParams:
    thumb_px: int = 96  # longest thumbnail side; smaller images keep their size
    thumb_quality: int = 80  # WebP quality
    max_exemplars: int = 12  # exemplars shown per unit page
    top_concepts: int = 5  # concepts listed per unit page
    max_snippets: int = 5  # report snippets per report-named latent
    class_images: int = 8  # test images per class page
    significance: float = 0.05  # "significant only" filter: q-value (else p-value) at most this
    seed: int = 0  # the class pages' image sample

    @classmethod
    def from_config(cls, cfg: dict[str, Any] | None) -> AtlasParams:
        return settings_from(cls, cfg, section="atlas")
