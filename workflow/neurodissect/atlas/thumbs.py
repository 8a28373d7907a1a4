"""One small WebP thumbnail per shown image, shared by every page that shows it."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from pathlib import Path

from ..data.images import load_image
from ..data.manifest import Manifest
from ..errors import InputError

_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")


def thumb_name(image_id: str) -> str:
    """A file name for ``image_id``'s thumbnail: the id when it is file-safe, else the id
    made safe plus a short hash (so two ids never share a name)."""
    safe = _UNSAFE.sub("_", image_id)
    if safe != image_id or not safe:
        safe = f"{safe[:40]}-{hashlib.sha256(image_id.encode()).hexdigest()[:10]}"
    return f"{safe}.webp"


def write_thumbnails(
    manifest: Manifest, image_ids: Iterable[str], out_dir: Path, size: int, quality: int
) -> dict[str, tuple[str, int, int]]:
    """Write the thumbnails of ``image_ids`` (each once) into ``out_dir``.

    Returns image_id → (file name, original width, original height): pages scale boxes
    drawn in original pixel coordinates by the thumbnail's displayed size.
    """
    rows = manifest.df.set_index("image_id")["path"]
    wanted = sorted(set(map(str, image_ids)))
    unknown = [i for i in wanted if i not in rows.index]
    if unknown:
        raise InputError(
            f"{manifest.path}: {len(unknown)} image id(s) shown in the atlas are not in the "
            f"manifest (first: {unknown[:3]}); rebuild the run's exemplars from this manifest"
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    info = {}
    for image_id in wanted:
        path = manifest.root / rows[image_id]
        try:
            img = load_image(path, manifest.channels)
        except (OSError, ValueError) as exc:
            raise InputError(f"{path}: image {image_id!r} is not readable ({exc})") from None
        width, height = img.size
        img.thumbnail((size, size))
        name = thumb_name(image_id)
        # exact=True keeps the pixels of transparent areas: the same bytes on every build
        img.save(out_dir / name, format="WEBP", quality=quality, method=4, exact=True)
        info[image_id] = (name, width, height)
    return info
