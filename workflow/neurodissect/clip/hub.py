"""open_clip models published on the Hugging Face Hub (``clip.model_name: hf-hub:ORG/NAME``).

Such a repo carries ``open_clip_config.json`` and ``open_clip_model.safetensors`` or
``open_clip_pytorch_model.bin``, so no pretrained tag is needed. It is fetched once
(online, or from the Hugging Face cache with ``HF_HUB_OFFLINE=1``) and stored as the
usual local-dir. A text tower that is itself a Hugging Face model (BiomedCLIP's
PubMedBERT: ``text_cfg.hf_model_name``) would need the hub again at every load, so its
config goes to ``hf_text/config.json`` and its tokenizer files beside the weights
(where open_clip's local-dir tokenizer looks): later rules never touch the network.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from ..errors import ConfigError, InputError
from ..io import PathLike
from .model import TEXT_TOWER_DIR, has_hf_text_tower, save_local_dir

HUB_PREFIX = "hf-hub:"
HUB_WEIGHTS = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0] if text else ''}"


def _hub_error(model_name: str, what: str) -> ConfigError:
    from huggingface_hub import constants

    offline = os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0")
    where = (
        f"HF_HUB_OFFLINE is set, so it must be in the Hugging Face cache {constants.HF_HUB_CACHE}"
        " (fill it on a machine with internet: `hf download ORG/NAME`, then copy the cache)"
        if offline
        else "clip.source: open_clip needs internet access once, or a cached copy"
    )
    return ConfigError(f"cannot fetch clip.model_name={model_name!r}: {what}; {where}")


def fetch_hub(model_name: str, dest: PathLike) -> dict[str, Any]:
    """Fetch the open_clip hub repo ``model_name`` and store it as a local-dir at ``dest``."""
    import open_clip
    from huggingface_hub import hf_hub_download

    repo = model_name[len(HUB_PREFIX) :]
    if repo.count("/") != 1:
        raise ConfigError(f"clip.model_name={model_name!r}: expected hf-hub:ORG/NAME")
    try:
        config_path = Path(hf_hub_download(repo, "open_clip_config.json"))
    except Exception as exc:  # hub errors come in many types (offline, 404, auth)
        raise _hub_error(model_name, f"no open_clip_config.json ({_first_line(exc)})") from None
    hub_config = json.loads(config_path.read_text())
    if "model_cfg" not in hub_config:
        raise InputError(f"{config_path}: lacks the 'model_cfg' block of an open_clip repo")
    # open_clip only warns when the weights are missing and builds a random model: check
    weights = []
    for name in HUB_WEIGHTS:
        try:
            weights.append(hf_hub_download(repo, name))
        except Exception:  # noqa: PERF203 - absent under this name, try the other
            continue
    if not weights:
        raise _hub_error(model_name, f"the repo has neither {' nor '.join(HUB_WEIGHTS)}")
    try:
        model, _, _ = open_clip.create_model_and_transforms(model_name)
        tokenizer = open_clip.get_tokenizer(model_name)
    except Exception as exc:  # a text tower's own hub files, a corrupt checkpoint, ...
        raise _hub_error(model_name, f"open_clip could not build it ({_first_line(exc)})") from None
    model_cfg = hub_config["model_cfg"]

    def text_tower_files(folder: Path) -> None:
        if has_hf_text_tower(model_cfg):
            model.text.config.save_pretrained(folder / TEXT_TOWER_DIR)
            tokenizer.tokenizer.save_pretrained(folder)

    # the snapshot folder is named by the repo's commit: which revision was stored
    info = {"source": "open_clip", "model_name": model_name, "revision": config_path.parent.name}
    save_local_dir(
        model, model_cfg, hub_config.get("preprocess_cfg", {}), dest, info, extra=text_tower_files
    )
    return info
