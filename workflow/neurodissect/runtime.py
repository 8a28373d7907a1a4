"""What every rule script shares: logging to the rule's log, progress bars,
provenance stamping of outputs, seeding and device choice.

A rule script is a thin adapter::

    from neurodissect.runtime import RunContext
    from neurodissect.sae import train_sae

    with RunContext.from_snakemake(snakemake) as ctx:
        train_sae(ctx.input.latents, ctx.output.model, **ctx.params.cfg)

On success every output gets a provenance sidecar; a NeurodissectError is
printed as one clear line (no traceback) and the job exits 1.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import traceback
from collections.abc import Iterable
from pathlib import Path
from typing import Any, TextIO

from .errors import ConfigError, NeurodissectError
from .provenance import SIDECAR_SUFFIX, build_record, now, sidecar_path, write_provenance

log = logging.getLogger("neurodissect")
_progress_stream: TextIO | None = None


def progress(iterable: Iterable | None = None, **kwargs: Any):
    """A tqdm bar that writes to the active rule log (stderr outside rules)."""
    from tqdm.auto import tqdm

    kwargs.setdefault("file", _progress_stream or sys.stderr)
    kwargs.setdefault("mininterval", 2.0)
    kwargs.setdefault("dynamic_ncols", False)
    kwargs.setdefault("ncols", 100)
    return tqdm(iterable, **kwargs)


def resolve_device(preference: str, cuda_available: bool, n_gpus: int) -> str:
    """The device string ``preference`` means on a host with ``n_gpus`` visible GPUs.

    ``auto`` → ``cuda`` when one is visible, else ``cpu``; ``cuda:N`` must name a visible
    GPU (under SLURM / CUDA_VISIBLE_DEVICES the visible ones are renumbered from 0), so
    a wrong ordinal is this one error instead of a raw "invalid device ordinal" later."""
    pref = str(preference).strip().lower()
    if pref == "auto":
        return "cuda" if cuda_available and n_gpus > 0 else "cpu"
    if pref == "cpu":
        return "cpu"
    kind, _, index = pref.partition(":")
    if kind != "cuda" or (index and not index.isdigit()):
        raise ConfigError(f"runtime.device: {preference!r} is not one of auto, cpu, cuda, cuda:N")
    if not cuda_available or n_gpus == 0:
        raise NeurodissectError(f"device '{preference}' requested but CUDA is not available")
    if index and int(index) >= n_gpus:
        raise ConfigError(
            f"runtime.device: {preference!r} but this job sees {n_gpus} GPU(s) "
            f"(cuda:0..cuda:{n_gpus - 1}; CUDA_VISIBLE_DEVICES="
            f"{os.environ.get('CUDA_VISIBLE_DEVICES', '<unset>')}); use cuda or auto"
        )
    return pref


def pick_device(preference: str = "auto"):
    """``auto`` → CUDA when available else CPU; ``cpu``/``cuda[:i]`` are honoured or a clear
    error (:func:`resolve_device`). A CUDA device also switches on deterministic algorithms
    (:func:`enable_determinism`) so resumed and repeated GPU runs agree exactly."""
    import torch

    available = torch.cuda.is_available()
    n_gpus = torch.cuda.device_count() if available else 0
    dev = torch.device(resolve_device(preference, available, n_gpus))
    if dev.type == "cuda":
        enable_determinism()
    return dev


def enable_determinism() -> None:
    """Deterministic CUDA kernels: cuDNN without autotuning / non-deterministic algorithms,
    deterministic index_add_/scatter/embedding backward, and a fixed cuBLAS workspace
    (needed by cuBLAS for reproducible matmuls; must be set before cuBLAS starts)."""
    import torch

    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = True
    # warn_only: an op without a deterministic CUDA kernel logs a warning naming it
    # instead of killing a long cluster job
    torch.use_deterministic_algorithms(True, warn_only=True)


# device types that train in mixed precision: float16 autocast + a GradScaler on CUDA.
# Tests add "cpu" (bfloat16 autocast there, same scaler logic) to execute the CUDA
# branch on a machine without a GPU.
AMP_DEVICE_TYPES: tuple[str, ...] = ("cuda",)


def amp_enabled(device, amp: bool) -> bool:
    return bool(amp) and device.type in AMP_DEVICE_TYPES


def autocast(device, amp: bool):
    """The autocast region of a training/inference step (a no-op where amp is off)."""
    import torch

    dtype = torch.float16 if device.type == "cuda" else torch.bfloat16
    return torch.autocast(device_type=device.type, dtype=dtype, enabled=amp_enabled(device, amp))


def grad_scaler(device, amp: bool):
    """A GradScaler for ``device``, enabled exactly when :func:`autocast` is."""
    import torch

    return torch.amp.GradScaler(device.type, enabled=amp_enabled(device, amp))


@contextlib.contextmanager
def out_of_memory_as_error(what: str, hint: str):
    """Turn ``torch.OutOfMemoryError`` inside the block into one clear error: ``what`` ran
    out of device memory, ``hint`` = which config value to lower. Nothing is retried."""
    import torch

    try:
        yield
    except torch.OutOfMemoryError:
        raise ConfigError(
            f"out of GPU memory {what}; {hint} (nothing is retried automatically)"
        ) from None


def seed_everything(seed: int) -> None:
    import random

    import numpy as np

    random.seed(seed)
    np.random.seed(seed % 2**32)
    if "torch" in sys.modules:
        import torch

        torch.manual_seed(seed)


# Deterministic interruption for the resume tests: a training loop calls
# checkpoint_written(epoch) once the epoch's resume checkpoint is on disk, and when this
# variable names that epoch the process kills itself with SIGKILL (as a scheduler's or the
# OOM killer's kill would), instead of a test racing a kill against a long training.
KILL_AFTER_EPOCH_ENV = "NEURODISSECT_KILL_AFTER_EPOCH"


def checkpoint_written(epoch: int) -> None:
    """Die by SIGKILL here when ``$NEURODISSECT_KILL_AFTER_EPOCH`` equals ``epoch``."""
    if os.environ.get(KILL_AFTER_EPOCH_ENV) == str(epoch):
        import signal

        os.kill(os.getpid(), signal.SIGKILL)


def set_threads(n: int) -> None:
    """Bound intra-op threads to the job's ``threads:`` so parallel jobs don't oversubscribe."""
    n = max(1, int(n))
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ.setdefault(var, str(n))
    if "torch" in sys.modules:
        import torch

        torch.set_num_threads(n)


def _plain(value: Any) -> Any:
    """Snakemake Namedlists/params → plain JSON-able Python objects."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


def _named(namedlist: Any) -> dict[str, Any]:
    """Named entries of a Snakemake Namedlist (unnamed ones under their index)."""
    names = dict(namedlist.items()) if hasattr(namedlist, "items") else {}
    if not names:
        return {str(i): v for i, v in enumerate(namedlist)}
    return names


def _flatten_paths(namedlist: Any) -> list[str]:
    out: list[str] = []
    for item in namedlist:
        if isinstance(item, (list, tuple)):
            out.extend(os.fspath(x) for x in item)
        else:
            out.append(os.fspath(item))
    return out


def _artifacts(output: Any) -> list[str]:
    """The outputs that get provenance: not the sidecars themselves, which a run on
    object storage declares as outputs so that Snakemake uploads them."""
    return [p for p in _flatten_paths(output) if not p.endswith(SIDECAR_SUFFIX)]


class RunContext:
    """One rule job: its inputs/outputs/params, log file, and provenance on exit."""

    def __init__(
        self,
        *,
        rule: str,
        input: Any,
        output: Any,
        params: Any,
        log_path: str | None = None,
        wildcards: dict[str, str] | None = None,
        threads: int = 1,
        seed: int | None = None,
    ) -> None:
        self.rule = rule
        self.input = input
        self.output = output
        self.params = params
        self.log_path = log_path
        self.wildcards = wildcards or {}
        self.threads = threads
        self.seed = seed
        self.extra: dict[str, Any] = {}
        self._started = now()
        self._log_fh: TextIO | None = None
        self._handlers: list[logging.Handler] = []

    @classmethod
    def from_snakemake(cls, smk: Any, seed: int | None = None) -> RunContext:
        return cls(
            rule=smk.rule,
            input=smk.input,
            output=smk.output,
            params=smk.params,
            log_path=smk.log[0] if len(smk.log) else None,
            wildcards=dict(smk.wildcards.items()),
            threads=smk.threads,
            seed=seed,
        )

    # -- context manager -------------------------------------------------
    def __enter__(self) -> RunContext:
        global _progress_stream
        set_threads(self.threads)
        fmt = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S")
        handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
        if self.log_path:
            Path(self.log_path).parent.mkdir(parents=True, exist_ok=True)
            self._log_fh = open(self.log_path, "a", buffering=1)  # noqa: SIM115
            handlers.append(logging.StreamHandler(self._log_fh))
            _progress_stream = self._log_fh
        root = logging.getLogger()
        root.setLevel(logging.INFO)
        for h in handlers:
            h.setFormatter(fmt)
            root.addHandler(h)
        self._handlers = handlers
        logging.captureWarnings(True)
        # outputs are about to be rebuilt: provenance left from an earlier run is stale
        for out in _artifacts(self.output):
            sidecar_path(out).unlink(missing_ok=True)
        log.info("rule %s %s started", self.rule, self.wildcards)
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        global _progress_stream
        try:
            if exc is None:
                self.stamp_outputs()
                log.info("rule %s finished", self.rule)
            elif isinstance(exc, NeurodissectError):
                log.error("%s", exc)
            else:
                log.error("".join(traceback.format_exception(exc_type, exc, tb)))
        finally:
            root = logging.getLogger()
            for h in self._handlers:
                root.removeHandler(h)
            if self._log_fh:
                self._log_fh.close()
            _progress_stream = None
        if isinstance(exc, NeurodissectError):
            raise SystemExit(1)  # the message is already printed: no traceback
        return False

    # -- provenance --------------------------------------------------------
    def record(self, **extra: Any) -> None:
        """Add fields to the provenance of this job's outputs (e.g. n_skipped, device)."""
        self.extra.update(extra)

    def stamp_outputs(self) -> None:
        params = {k: _plain(v) for k, v in _named(self.params).items()}
        record = build_record(
            rule=self.rule,
            params={"wildcards": self.wildcards, **params},
            inputs=_flatten_paths(self.input),
            seed=self.seed,
            started=self._started,
            extra=self.extra,
        )
        for out in _artifacts(self.output):
            if Path(out).exists():
                write_provenance(out, record)
