"""The per-epoch resume checkpoint of train_opaque.

It lives outside the rule's declared outputs (Snakemake deletes those before
rerunning an incomplete job) and holds everything the next epoch depends on:
model, optimizer, scheduler and grad-scaler states, the best state so far,
the history, and every random number generator (torch, CUDA, numpy, python
and the sampler's generator). A killed job restarted with the same config
therefore ends with bit-identical weights. It is used only when its
fingerprint (config, seed, data and training code) matches the current job.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..io import PathLike, load_state_dict, save_state_dict
from ..runtime import checkpoint_written

log = logging.getLogger(__name__)


def code_digest() -> str:
    """Digest of the training code (this package folder): a checkpoint from other code is stale."""
    h = hashlib.sha256()
    for f in sorted(Path(__file__).parent.glob("*.py")):
        h.update(f.name.encode() + f.read_bytes())
    return h.hexdigest()


def fingerprint(**parts: Any) -> str:
    """Digest of everything that shapes training (config, architecture, seed, data, code)."""
    blob = json.dumps({**parts, "code": code_digest()}, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()


def rng_states(generator: torch.Generator) -> dict[str, Any]:
    """All RNG states as tensors / tuples (loadable with ``weights_only=True``)."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    states = {
        "torch": torch.get_rng_state(),
        "numpy": (kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached),
        "python": random.getstate(),
        "sampler": generator.get_state(),
    }
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def restore_rng_states(states: dict[str, Any], generator: torch.Generator) -> None:
    torch.set_rng_state(states["torch"])
    kind, keys, pos, has_gauss, cached = states["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    version, internal, gauss = states["python"]
    random.setstate((version, tuple(internal), gauss))
    generator.set_state(states["sampler"])
    if "cuda" in states and torch.cuda.is_available():
        restore_cuda_rng(states["cuda"], torch.cuda.device_count(), torch.cuda.set_rng_state)


def restore_cuda_rng(saved: list[torch.Tensor], n_visible: int, set_state) -> int:
    """Give the first min(saved, visible) GPUs their saved generator state; returns how many.

    ``torch.cuda.set_rng_state_all`` fails when the checkpoint was written where more GPUs
    were visible than now (a retry on another node); the job only draws on the GPUs it
    sees, which are the first ones of the saved list (both are numbered from 0)."""
    n = min(len(saved), n_visible)
    if n < len(saved):
        log.warning(
            "resume checkpoint holds %d GPU RNG states, %d GPU(s) visible: restoring the first %d",
            len(saved),
            n_visible,
            n,
        )
    for index in range(n):
        set_state(saved[index], index)
    return n


def load_scaler_state(scaler, saved: dict[str, Any]) -> None:
    """Restore a GradScaler unless the saved state is from a scaler of the other kind.

    A disabled scaler (CPU, or amp off) saves ``{}``; loading that into an enabled one
    raises, and an enabled scaler's state means nothing to a disabled one. Either way
    the scaler keeps its fresh state (the scale is re-learnt within a few steps)."""
    if bool(saved) != scaler.is_enabled():
        log.warning(
            "resume checkpoint's grad scaler was %s, this run's is %s: starting the scaler afresh",
            "enabled" if saved else "disabled",
            "enabled" if scaler.is_enabled() else "disabled",
        )
        return
    scaler.load_state_dict(saved)


def training_state(
    job_fingerprint: str, epoch: int, generator: torch.Generator, history: list, **stateful: Any
) -> dict[str, Any]:
    """A resume checkpoint after ``epoch``: the state dict of each ``stateful`` object (model,
    optimizer, scheduler, scaler) under its keyword, all RNG states and the history."""
    state = {name: obj.state_dict() for name, obj in stateful.items()}
    return {
        "fingerprint": job_fingerprint,
        "epoch": epoch,
        "rng": rng_states(generator),
        "history": history,
        **state,
    }


def restore_training(
    saved: dict[str, Any], generator: torch.Generator, **stateful: Any
) -> tuple[int, list]:
    """Load a :func:`training_state` back into the same objects; (epochs done, history)."""
    for name, obj in stateful.items():
        if isinstance(obj, torch.amp.GradScaler):
            load_scaler_state(obj, saved[name])
        else:
            obj.load_state_dict(saved[name])
    restore_rng_states(saved["rng"], generator)
    return int(saved["epoch"]), list(saved["history"])


def save_resume(path: PathLike, state: dict[str, Any]) -> None:
    """Write the checkpoint atomically: a kill mid-write leaves the previous epoch's."""
    save_state_dict(state, path)
    checkpoint_written(int(state["epoch"]))


def load_resume(path: PathLike, expected_fingerprint: str) -> dict[str, Any] | None:
    """The saved state if it exists, is readable and was written for the same job; else None."""
    path = Path(path)
    if not path.exists():
        return None
    try:
        state = load_state_dict(path)
    except ValueError as exc:
        log.warning("ignoring unreadable resume checkpoint %s (%s)", path, exc)
        return None
    if state.get("fingerprint") != expected_fingerprint:
        log.info("resume checkpoint %s is from another config/seed/data: starting afresh", path)
        return None
    return state
