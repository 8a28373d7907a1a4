"""Autograd functions for an SAE whose code is sparse: the encoder matmul is
the only dense product left.

A code is kept as a :class:`SparseCode` — CSR rows over the latents (row
pointers, latent ids, values) — and both the encoder gradient and the
decoder work only on the stored entries. A plain dense implementation
computes x̂ = z W_dec and backpropagates through the full B x n code three
times (decoder forward, decoder weight gradient, code gradient) plus a
gradient for the centred input nobody needs; with ~1 % of latents active
those products are almost all zeros.

The weight gradients are products with the code's transpose (latents x rows):
its CSR pattern (:class:`Transposed`, one stable sort of the latent ids) is
built once per step and serves both the encoder's and the decoder's; the
code's own gradient is a sampled product (SDDMM) at the active entries.

When a code is not sparse (early relu_l1 training, before the L1 penalty has
bitten) the same functions switch to dense products above
``DENSE_ABOVE`` density, so the result is identical either way.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch
import torch.nn.functional as F

# under a CUDA autocast region these Functions run in float32 (their sparse products have
# no half kernels everywhere) and the backward under the forward's autocast state
_custom_fwd = torch.amp.custom_fwd(device_type="cuda", cast_inputs=torch.float32)
_custom_bwd = torch.amp.custom_bwd(device_type="cuda")

# code density above which dense products beat gather/scatter (B=4096, d=512, n=4096, 2 CPU cores)
DENSE_ABOVE = 0.2


@dataclass
class SparseCode:
    """Active entries of a (B, n) code in CSR form; ``values`` carries the gradient."""

    crow: torch.Tensor  # (B + 1,) int64 row pointers
    cols: torch.Tensor  # (nnz,) int64 latent ids
    values: torch.Tensor  # (nnz,) activations
    n_latents: int
    transposed: Transposed | None = None  # set when gradients flow (training)

    @property
    def n_rows(self) -> int:
        return len(self.crow) - 1

    @property
    def density(self) -> float:
        return len(self.cols) / max(1, self.n_rows * self.n_latents)

    def rows(self) -> torch.Tensor:
        return row_ids(self.crow, len(self.cols))

    def to_dense(self) -> torch.Tensor:
        z = torch.zeros(
            self.n_rows, self.n_latents, device=self.values.device, dtype=self.values.dtype
        )
        z[self.rows(), self.cols] = self.values
        return z


@dataclass(frozen=True)
class Transposed:
    """CSR pattern of a code's transpose (n_latents x B): entry k of it is entry
    ``perm[k]`` of the code; ``rows`` are its column (image row) ids."""

    perm: torch.Tensor
    crow: torch.Tensor
    rows: torch.Tensor

    @classmethod
    def of(cls, rows: torch.Tensor, cols: torch.Tensor, n_latents: int) -> Transposed:
        """From the code's entries (row ids, latent ids) in CSR order."""
        # stable, so rows stay sorted within a latent; int32 keys sort about 3x faster
        perm = torch.argsort(cols.int() if n_latents < 2**31 else cols, stable=True)
        counts = torch.bincount(cols, minlength=n_latents)
        return cls(perm, crow_from_counts(counts), rows[perm])

    def times(self, values: torch.Tensor, dense: torch.Tensor) -> torch.Tensor:
        """(code with ``values``)ᵀ @ ``dense`` (B, d) → (n_latents, d)."""
        size = (len(self.crow) - 1, dense.shape[0])
        return torch.sparse.mm(_csr(self.crow, self.rows, values[self.perm], size), dense)


def _csr(crow, cols, values, size) -> torch.Tensor:
    # indices come from nonzero()/topk, valid by construction: skip the invariant checks
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
        return torch.sparse_csr_tensor(crow, cols, values, size=size, check_invariants=False)


def crow_from_counts(counts: torch.Tensor) -> torch.Tensor:
    crow = torch.zeros(len(counts) + 1, dtype=torch.int64, device=counts.device)
    torch.cumsum(counts, 0, out=crow[1:])
    return crow


def positive_entries(pre: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """CSR (crow, cols) of the entries of ``pre`` that are > 0 (ReLU's active set)."""
    rows, cols = (pre > 0).nonzero(as_tuple=True)
    counts = torch.bincount(rows, minlength=pre.shape[0])
    return crow_from_counts(counts), cols


def row_ids(crow: torch.Tensor, nnz: int | None = None) -> torch.Tensor:
    """The row id of every entry of a CSR pattern; ``nnz`` (= len(cols), known on the
    host) spares the device→host sync repeat_interleave needs to size its output."""
    counts = crow[1:] - crow[:-1]
    rows = torch.arange(len(crow) - 1, device=crow.device)
    return torch.repeat_interleave(rows, counts, output_size=nnz)


def gather_rows(pre: torch.Tensor, crow: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    return pre[row_ids(crow, len(cols)), cols]


class _GatheredAffine(torch.autograd.Function):
    """values = ((x - b_pre) @ W_enc + b_enc)[rows, cols], with sparse gradients.

    The forward receives the values already computed (no grad) from a shared
    pre-activation buffer; the backward builds the gradient of W_enc as
    x^T G for the sparse matrix G of incoming gradients, never the dense
    B x n gradient nor a gradient for x.
    """

    @staticmethod
    @_custom_fwd
    def forward(ctx, values, x, W_enc, b_enc, b_pre, crow, cols, transposed):
        ctx.save_for_backward(x, W_enc, b_pre, crow, cols)
        ctx.transposed = transposed
        return values.clone()

    @staticmethod
    @_custom_bwd
    def backward(ctx, grad_values):
        x, W_enc, b_pre, crow, cols = ctx.saved_tensors
        n = W_enc.shape[1]
        grad_values = grad_values.to(x.dtype)
        if len(cols) > DENSE_ABOVE * x.shape[0] * n:
            grad_W = x.t() @ _csr(crow, cols, grad_values, (x.shape[0], n)).to_dense()
        else:
            grad_W = ctx.transposed.times(grad_values, x).t()
        colsum = torch.zeros(n, device=x.device, dtype=x.dtype).index_add_(0, cols, grad_values)
        # pre = x W + (b_enc - b_pre W): the bias term's share of each gradient
        grad_W.sub_(torch.outer(b_pre, colsum))
        return None, None, grad_W, colsum, -(W_enc @ colsum), None, None, None


def sparse_preactivations(
    values: torch.Tensor,
    x: torch.Tensor,
    W_enc: torch.Tensor,
    b_enc: torch.Tensor,
    b_pre: torch.Tensor,
    crow: torch.Tensor,
    cols: torch.Tensor,
    transposed: Transposed,
) -> torch.Tensor:
    """Attach the encoder's gradient to pre-activation ``values`` gathered at (rows, cols)."""
    return _GatheredAffine.apply(values, x, W_enc, b_enc, b_pre, crow, cols, transposed)


class _SparseDecode(torch.autograd.Function):
    """x̂ = Z W_dec for a sparse CSR code Z: a gather-sum forward; backward = the
    sampled product (grad_out W_decᵀ) at Z's entries and Zᵀ grad_out."""

    @staticmethod
    @_custom_fwd
    def forward(ctx, values, W_dec, crow, cols, transposed):
        ctx.save_for_backward(values, W_dec, crow, cols)
        ctx.transposed = transposed
        return F.embedding_bag(cols, W_dec, crow[:-1], mode="sum", per_sample_weights=values)

    @staticmethod
    @_custom_bwd
    def backward(ctx, grad_out):
        values, W_dec, crow, cols = ctx.saved_tensors
        grad_out = grad_out.contiguous()
        pattern = _csr(crow, cols, torch.zeros_like(values), (len(crow) - 1, W_dec.shape[0]))
        grad_values = torch.sparse.sampled_addmm(pattern, grad_out, W_dec.t(), beta=0.0)
        grad_W = ctx.transposed.times(values, grad_out)
        return grad_values.values(), grad_W, None, None, None


class _DenseDecode(torch.autograd.Function):
    """x̂ = Z W_dec for a CSR code Z that is too dense for gather/scatter."""

    @staticmethod
    @_custom_fwd
    def forward(ctx, values, W_dec, crow, cols):
        n = W_dec.shape[0]
        z = _csr(crow, cols, values.detach(), (len(crow) - 1, n))
        z = z.to_dense()
        ctx.save_for_backward(z, W_dec, crow, cols)
        return z @ W_dec

    @staticmethod
    @_custom_bwd
    def backward(ctx, grad_out):
        z, W_dec, crow, cols = ctx.saved_tensors
        grad_W = z.t() @ grad_out
        grad_values = gather_rows(grad_out @ W_dec.t(), crow, cols)
        return grad_values, grad_W, None, None


def decode(code: SparseCode, W_dec: torch.Tensor) -> torch.Tensor:
    """Σ_i z_i W_dec[i] per row (no bias), by gather when the code is sparse."""
    values = code.values.to(W_dec.dtype)
    if code.density > DENSE_ABOVE:
        return _DenseDecode.apply(values, W_dec, code.crow, code.cols)
    if code.transposed is not None and torch.is_grad_enabled():
        return _SparseDecode.apply(values, W_dec, code.crow, code.cols, code.transposed)
    return F.embedding_bag(code.cols, W_dec, code.crow[:-1], mode="sum", per_sample_weights=values)
