"""The SAE interface every variant implements, and the variant registry.

All variants share the parametrisation of the paper's SAE:

    x' = (x T) / input_scale                  (normalisation stored in the model; T, the
                                              optional linear input transform, is absent
                                              for the default scalar normalisation)
    pre = (x' - b_pre) W_enc + b_enc          (b_pre: learned pre-encoder bias)
    z   = activation(pre)                     (variant: ReLU, TopK, ...)
    x̂'  = z W_dec + b_pre                     (rows of W_dec kept unit-norm)
    x̂  = (x̂' · input_scale) T⁻¹               (back in raw feature units)

A variant is one module that subclasses :class:`SparseAutoencoder` with its own
config dataclass and decorates it with :func:`register`; it implements
``select`` (which pre-activations are active) and ``loss_terms`` (its
sparsity term). The variant name is also its module name, so ``get_variant``
imports it on first use: a new variant is one new file (plus its name in the
config schema's enum).

Checkpoints (``to_checkpoint``) hold tensors, numbers and strings only, so
they load with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import importlib
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from ..errors import ConfigError, InputError
from .sparse_ops import (
    SparseCode,
    Transposed,
    decode,
    gather_rows,
    row_ids,
    sparse_preactivations,
)

_REGISTRY: dict[str, type[SparseAutoencoder]] = {}
CHECKPOINT_FORMAT = "neurodissect-sae/1"


@dataclass(frozen=True)
class SAEConfig:
    """Settings every variant has; variants subclass this with their own."""

    expansion: int = 8

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> SAEConfig:
        """Pick this config's fields from a flat dict (e.g. the `sae` config section)."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in names})


def register(name: str):
    """Class decorator: make a variant available under ``name`` (= its module name)."""

    def wrap(cls: type[SparseAutoencoder]) -> type[SparseAutoencoder]:
        cls.variant = name
        _REGISTRY[name] = cls
        return cls

    return wrap


def get_variant(name: str) -> type[SparseAutoencoder]:
    module = f"{__package__}.{name}"
    if name not in _REGISTRY:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name != module:  # the variant exists but needs something missing
                raise
    if name not in _REGISTRY:
        raise ConfigError(f"sae.variant: unknown SAE variant {name!r} (no module sae/{name}.py)")
    return _REGISTRY[name]


def variant_names() -> list[str]:
    """Every variant: the modules beside this one that register an SAE (one file each)."""
    here = Path(__file__).parent
    return sorted(p.stem for p in here.glob("*.py") if "\n@register(" in p.read_text())


def variant_keys() -> set[str]:
    """The config keys any variant's settings class reads (expansion, k, l1_coefficient, ...)."""
    return {f.name for name in variant_names() for f in fields(get_variant(name).config_class)}


def build_sae(variant: str, d_in: int, settings: dict[str, Any]) -> SparseAutoencoder:
    """A fresh SAE of ``variant`` for ``d_in`` features; ``settings`` may hold extra keys."""
    cls = get_variant(variant)
    return cls(d_in, cls.config_class.from_dict(settings))


class SparseAutoencoder(nn.Module):
    variant: ClassVar[str] = ""
    config_class: ClassVar[type[SAEConfig]] = SAEConfig

    def __init__(self, d_in: int, config: SAEConfig) -> None:
        super().__init__()
        self.d_in = int(d_in)
        self.config = config
        n = self.d_in * int(config.expansion)
        self.n_latents = n
        self.b_pre = nn.Parameter(torch.zeros(d_in))
        self.W_enc = nn.Parameter(torch.empty(d_in, n))
        self.b_enc = nn.Parameter(torch.zeros(n))
        self.W_dec = nn.Parameter(torch.empty(n, d_in))
        # input normalisation: x' = (x T) / input_scale; input_mean initialises b_pre.
        # T (input_transform, inverse input_inverse) is 0 x d_in when there is none (scalar
        # normalisation), d_in x d_in for per-feature standardisation or whitening
        self.register_buffer("input_scale", torch.ones(()))
        self.register_buffer("input_mean", torch.zeros(d_in))
        self.register_buffer("input_transform", torch.zeros(0, d_in))
        self.register_buffer("input_inverse", torch.zeros(0, d_in))
        # bfloat16 encoder matmul in training steps (set by the trainer); inference
        # (encode / reconstruct / metrics) is always float32, so a checkpoint's latents
        # do not depend on how it was trained
        self.amp = False
        self._pre_buffer: torch.Tensor | None = None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        with torch.no_grad():
            self.W_dec.normal_()
            self.normalize_decoder_()
            # encoder starts as the decoder's transpose: each latent first reads its own direction
            self.W_enc.copy_(self.W_dec.t() * self.encoder_init_scale())
            self.b_enc.zero_()
            self.b_pre.zero_()

    def encoder_init_scale(self) -> float:
        """W_enc = scale · W_decᵀ at start. With ReLU about half of the n latents fire
        on a random input, and n random unit rows sum to (n/d)·I, so d/n starts the
        reconstruction at about half the input instead of n/(2d) times it."""
        return self.d_in / self.n_latents

    # -- normalisation -----------------------------------------------------------
    def set_input_statistics(
        self, mean: torch.Tensor, scale: float, center=None, transform=None, inverse=None
    ) -> None:
        """Store the normalisation and start b_pre at ``center`` (default: the mean),
        normalised. ``transform`` / ``inverse``: a (d_in, d_in) linear map applied to raw
        rows before the scale, and its inverse (None: no transform)."""
        with torch.no_grad():
            self.input_mean.copy_(torch.as_tensor(mean, dtype=torch.float32))
            self.input_scale.fill_(float(scale))
            shape = (0, self.d_in) if transform is None else (self.d_in, self.d_in)
            for name, value in (("input_transform", transform), ("input_inverse", inverse)):
                if value is None:
                    setattr(self, name, torch.zeros(shape, device=self.b_pre.device))
                else:
                    value = torch.as_tensor(value, dtype=torch.float32).to(self.b_pre.device)
                    if value.shape != shape:
                        raise ValueError(f"{name}: shape {tuple(value.shape)}, expected {shape}")
                    setattr(self, name, value.clone())
            start = self.input_mean if center is None else torch.as_tensor(center)
            self.b_pre.copy_(self.normalize_input(start.to(self.b_pre)))

    @property
    def has_transform(self) -> bool:
        return self.input_transform.shape[0] > 0

    def normalize_input(self, x: torch.Tensor) -> torch.Tensor:
        if self.has_transform:
            x = x @ self.input_transform
        return x / self.input_scale

    def denormalize(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised rows back in raw feature units (inverse of :meth:`normalize_input`)."""
        x = x * self.input_scale
        return x @ self.input_inverse if self.has_transform else x

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # the transform buffers' size depends on the normalisation a checkpoint was trained
        # with; a checkpoint written before they existed had scalar normalisation (none)
        for name in ("input_transform", "input_inverse"):
            key = prefix + name
            if key not in state_dict:
                state_dict[key] = torch.zeros(0, self.d_in)
            setattr(self, name, torch.empty_like(state_dict[key], device=self.b_pre.device))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    # -- variant hooks -------------------------------------------------------------
    def select(self, pre: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """CSR (crow, cols) of the active latents given pre-activations (no grad)."""
        raise NotImplementedError

    def loss_terms(self, x, x_hat, code: SparseCode, pre, dead: torch.Tensor | None) -> dict:
        """The variant's terms added to the reconstruction MSE, as {name: scalar tensor}."""
        raise NotImplementedError

    # -- forward -------------------------------------------------------------------
    def preactivations(self, x: torch.Tensor, amp: bool = False) -> torch.Tensor:
        """(x - b_pre) W_enc + b_enc without grad, into a reused buffer (large, short-lived).
        ``amp``: the product in bfloat16, of the *centred* input (rounding x before
        subtracting b_pre would cost ~1 % relative error on post-ReLU features)."""
        with torch.no_grad():
            if amp:
                centred = (x - self.b_pre).bfloat16()
                return (centred @ self.W_enc.bfloat16()).float().add_(self.b_enc)
            bias = self.b_enc - self.b_pre @ self.W_enc
            buf = self._pre_buffer
            if (
                buf is None
                or buf.shape[0] < x.shape[0]
                or (buf.device, buf.dtype) != (x.device, x.dtype)
            ):
                buf = torch.empty(x.shape[0], self.n_latents, device=x.device, dtype=x.dtype)
                self._pre_buffer = buf
            return torch.addmm(bias, x, self.W_enc, out=buf[: x.shape[0]])

    def code_from(self, x: torch.Tensor, pre: torch.Tensor, crow, cols) -> SparseCode:
        """The selected entries of ``pre`` as a code whose values carry the encoder gradient."""
        if not torch.is_grad_enabled():
            return SparseCode(crow, cols, gather_rows(pre, crow, cols), self.n_latents)
        rows = row_ids(crow, len(cols))
        values = pre[rows, cols]
        transposed = Transposed.of(rows, cols, self.n_latents)
        values = sparse_preactivations(
            values, x, self.W_enc, self.b_enc, self.b_pre, crow, cols, transposed
        )
        return SparseCode(crow, cols, values, self.n_latents, transposed)

    def decode_code(self, code: SparseCode) -> torch.Tensor:
        return decode(code, self.W_dec) + self.b_pre

    def training_loss(self, x: torch.Tensor, dead: torch.Tensor | None = None):
        """Loss on a normalised batch → (loss, stats, code); stats are detached scalar
        tensors (summed on the device: no host sync per step)."""
        pre = self.preactivations(x, amp=self.amp)
        code = self.code_from(x, pre, *self.select(pre))
        x_hat = self.decode_code(code)
        mse = (x_hat - x).pow(2).mean()
        terms = self.loss_terms(x, x_hat, code, pre, dead)
        loss = mse + sum(terms.values())
        with torch.no_grad():
            sq_err = (x_hat - x).pow(2).sum()
        stats = {
            "loss": loss.detach(),
            "mse": mse.detach(),
            "sq_err": sq_err,
            **{k: torch.as_tensor(v).detach() for k, v in terms.items()},
        }
        return loss, stats, code

    @torch.no_grad()
    def encode(self, x_raw: torch.Tensor) -> torch.Tensor:
        """Dense (B, n_latents) latents of raw (un-normalised) features."""
        x = self.normalize_input(x_raw.float())
        pre = self.preactivations(x)
        crow, cols = self.select(pre)
        return SparseCode(crow, cols, gather_rows(pre, crow, cols), self.n_latents).to_dense()

    @torch.no_grad()
    def reconstruct(self, x_raw: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(reconstruction in raw feature units, dense latents) of raw features."""
        x = self.normalize_input(x_raw.float())
        pre = self.preactivations(x)
        code = self.code_from(x, pre, *self.select(pre))
        return self.denormalize(self.decode_code(code)), code.to_dense()

    # -- decoder constraint ------------------------------------------------------------
    @torch.no_grad()
    def normalize_decoder_(self) -> None:
        self.W_dec.div_(self.W_dec.norm(dim=1, keepdim=True).clamp_min(1e-8))

    @torch.no_grad()
    def remove_parallel_gradient_(self) -> None:
        """Project out the part of each decoder row's gradient along the row (it only rescales)."""
        g = self.W_dec.grad
        if g is not None:
            g.sub_((g * self.W_dec).sum(1, keepdim=True) * self.W_dec)

    # -- checkpoints -------------------------------------------------------------------
    def to_checkpoint(self) -> dict[str, Any]:
        return {
            "format": CHECKPOINT_FORMAT,
            "variant": self.variant,
            "config": asdict(self.config),
            "d_in": self.d_in,
            "state": {k: v.detach().cpu() for k, v in self.state_dict().items()},
        }

    @classmethod
    def from_checkpoint(cls, ckpt: dict[str, Any], where: str = "checkpoint") -> SparseAutoencoder:
        if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
            raise InputError(f"{where}: not a neurodissect SAE checkpoint ({CHECKPOINT_FORMAT})")
        variant = get_variant(ckpt["variant"])
        model = variant(int(ckpt["d_in"]), variant.config_class(**ckpt["config"]))
        model.load_state_dict(ckpt["state"])
        return model


def load_sae(path, device: str | torch.device = "cpu") -> SparseAutoencoder:
    """Load ``sae.pt`` (weights-only) into a model on ``device``, in eval mode."""
    from ..io import read_weights

    ckpt = read_weights(path, "SAE checkpoint not found (run the train_sae rule)")
    return SparseAutoencoder.from_checkpoint(ckpt, str(path)).to(device).eval()
