"""Which samples make up each batch: a pure function of (seed, epoch, position), as Grain's index sampler.

Nothing here depends on the number of workers or on timing, so a loader with 0, 1 or 8 workers, threads or
processes, or one restored from its ``state_dict`` mid-epoch, yields the same batches.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["batch_count", "batch_span", "epoch_order", "sample_generator"]

_ORDER, _SAMPLE = 0, 1  # streams of one seed: the epochs' orders, and each sample's augmentation


def epoch_order(n: int, seed: int, epoch: int, shuffle: bool) -> np.ndarray:
    """The sample indices of epoch ``epoch`` in the order they are batched: a permutation drawn from
    ``(seed, epoch)`` alone, or ``0..n-1`` without ``shuffle``."""
    if not shuffle:
        return np.arange(n, dtype=np.int64)
    return np.random.default_rng([seed, _ORDER, epoch]).permutation(n)


def sample_generator(seed: int, epoch: int, index: int) -> np.random.Generator:
    """The random generator for augmenting sample ``index`` in epoch ``epoch`` (host-side, in a worker)."""
    return np.random.default_rng([seed, _SAMPLE, epoch, index])


def batch_count(n: int, batch_size: int, drop_last: bool) -> int:
    """Batches per epoch of ``n`` samples."""
    return n // batch_size if drop_last else math.ceil(n / batch_size)


def batch_span(batch: int, batch_size: int, n: int, shard: tuple[int, int] | None) -> tuple[int, int]:
    """The positions ``[start, stop)`` in the epoch's order of batch ``batch``: all of them, or with
    ``shard=(rank, ranks)`` this rank's contiguous part, the first ``size % ranks`` ranks one larger."""
    start, stop = batch * batch_size, min((batch + 1) * batch_size, n)
    if shard is None:
        return start, stop
    rank, ranks = shard
    base, extra = divmod(stop - start, ranks)
    first = start + rank * base + min(rank, extra)
    return first, first + base + (rank < extra)
