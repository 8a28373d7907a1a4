"""Shuffled mini-batches of feature rows, in memory or streamed from a store.

Both sources yield float32 numpy batches and give the same guarantees: every
row once per epoch, an order that depends only on (seed, epoch) — so a
resumed run sees exactly the batches an uninterrupted one would — and
``sample`` for random rows (dead-latent resampling).

:class:`StoreRows` streams one or more splits of an activation store in bounded
memory: each epoch visits the store's row chunks in a seeded random order,
reads them a window at a time (one window in use while a background thread
decompresses the next) and shuffles rows within the window. A split that
fits in the buffer is read once and kept.
"""

from __future__ import annotations

import concurrent.futures
from collections.abc import Iterator, Sequence

import numpy as np

from ..activations.store import ActivationStore

BYTES_PER_VALUE = 4  # float32


def epoch_rng(seed: int, epoch: int, stream: int = 0) -> np.random.Generator:
    return np.random.default_rng([seed, epoch, stream])


class ArrayRows:
    """Shuffled batches of an in-memory (N, C) array."""

    def __init__(self, rows: np.ndarray, batch_size: int, seed: int = 0) -> None:
        self.rows = np.ascontiguousarray(rows, dtype=np.float32)
        self.batch_size = int(batch_size)
        self.seed = int(seed)

    @property
    def n_rows(self) -> int:
        return len(self.rows)

    @property
    def n_features(self) -> int:
        return self.rows.shape[1]

    def epoch(self, epoch: int) -> Iterator[np.ndarray]:
        order = epoch_rng(self.seed, epoch).permutation(self.n_rows)
        for start in range(0, self.n_rows, self.batch_size):
            yield self.rows[np.sort(order[start : start + self.batch_size])]

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        take = rng.choice(self.n_rows, size=min(n, self.n_rows), replace=False)
        return self.rows[np.sort(take)]


class StoreRows:
    """Shuffled batches of the rows of one or more splits of an activation store (e.g.
    ``["train", "train_aug"]``: the rows of all of them form one pool), in bounded memory."""

    def __init__(
        self,
        store: ActivationStore,
        split: str | Sequence[str],
        batch_size: int,
        seed: int = 0,
        buffer_mb: float = 256,
    ) -> None:
        splits = [split] if isinstance(split, str) else list(split)
        self.arrays = [store.acts_array(s) for s in splits]
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        # chunk c of the pool: (array, first row, last row); splits may differ in chunk size
        self._chunks = [
            (a, start, min(start + int(a.chunks[0]), a.shape[0]))
            for a in self.arrays
            for start in range(0, a.shape[0], int(a.chunks[0]))
        ]
        self.chunk_rows = max((int(a.chunks[0]) for a in self.arrays), default=1)
        row_bytes = self.n_features * BYTES_PER_VALUE
        buffer_bytes = float(buffer_mb) * 2**20
        self._in_memory: ArrayRows | None = None
        if self.n_rows * row_bytes <= buffer_bytes:
            self._in_memory = ArrayRows(
                self._read_chunks(np.arange(len(self._chunks))), batch_size, seed
            )
        # two windows are alive at once: the one being consumed and the one being read
        self.window_chunks = max(1, int(buffer_bytes // (2 * self.chunk_rows * row_bytes)))

    @property
    def n_rows(self) -> int:
        return sum(int(a.shape[0]) for a in self.arrays)

    @property
    def n_features(self) -> int:
        return int(self.arrays[0].shape[1])

    @property
    def streamed(self) -> bool:
        return self._in_memory is None

    def _read_chunks(self, chunk_ids: np.ndarray) -> np.ndarray:
        """The rows of the chunks, in chunk order, read straight into one float32 array
        (not a list of chunks then a concatenated copy: twice the rows at the peak)."""
        chunks = [self._chunks[c] for c in np.sort(chunk_ids)]
        out = np.empty(
            (sum(stop - start for _, start, stop in chunks), self.n_features), np.float32
        )
        at = 0
        for array, start, stop in chunks:
            out[at : at + stop - start] = array[start:stop]
            at += stop - start
        return out

    def epoch(self, epoch: int) -> Iterator[np.ndarray]:
        if self._in_memory is not None:
            yield from self._in_memory.epoch(epoch)
            return
        rng = epoch_rng(self.seed, epoch)
        n_chunks = len(self._chunks)
        order = rng.permutation(n_chunks)
        windows = [
            order[i : i + self.window_chunks] for i in range(0, n_chunks, self.window_chunks)
        ]
        carry = np.zeros((0, self.n_features), np.float32)
        with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="sae-read") as pool:
            pending = pool.submit(self._read_chunks, windows[0])
            for i in range(len(windows)):
                block = pending.result()
                if i + 1 < len(windows):
                    pending = pool.submit(self._read_chunks, windows[i + 1])
                block = np.concatenate([carry, block]) if len(carry) else block
                block = block[rng.permutation(len(block))]
                last = i + 1 == len(windows)
                n_full = len(block) if last else len(block) // self.batch_size * self.batch_size
                for start in range(0, n_full, self.batch_size):
                    yield block[start : min(start + self.batch_size, n_full)]
                carry = block[n_full:]

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        if self._in_memory is not None:
            return self._in_memory.sample(n, rng)
        n_chunks = len(self._chunks)
        need = min(n_chunks, -(-n // self.chunk_rows) + 1)
        rows = self._read_chunks(rng.choice(n_chunks, size=need, replace=False))
        take = rng.choice(len(rows), size=min(n, len(rows)), replace=False)
        return rows[np.sort(take)]


def feature_moments(blocks, full: bool = False) -> tuple[int, np.ndarray, np.ndarray]:
    """(n, mean, covariance) over row blocks, in float64: the (d, d) covariance with
    ``full``, else its diagonal (each feature's variance)."""
    n, total, total_sq = 0, None, None
    for block in blocks:
        b = np.asarray(block, dtype=np.float64)
        sq = b.T @ b if full else np.einsum("ij,ij->j", b, b)
        total = b.sum(0) if total is None else total + b.sum(0)
        total_sq = sq if total_sq is None else total_sq + sq
        n += len(b)
    if n == 0:
        raise ValueError("no rows")
    mean = total / n
    centred = total_sq / n - (np.outer(mean, mean) if full else mean * mean)
    return n, mean, centred
