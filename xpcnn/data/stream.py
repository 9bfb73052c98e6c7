"""One epoch of a map-style dataset as device batches: workers read ahead, copies to the device overlap.

An epoch checks out ``max(1, num_workers) + prefetch`` host buffers (each one batch, laid out from the
dataset's first sample) from a pool and returns them when its loop ends, so buffers are made once and reused
every epoch, and two loops running at once never share one. A buffer is handed to a worker only once the
device copy from it has ended. The batches come out in order, whatever finishes first. The next batch's copy
to the device is started before the current batch is handed to the step, so on a GPU the copy runs while
the step computes.
"""

from __future__ import annotations

import collections
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from ..backend import Backend, get_backend
from .device import HostToDevice, scale_images
from .sampling import batch_count, batch_span, epoch_order
from .workers import BatchBuffer, Layout, describe, fill, start_workers

__all__ = ["StreamBatches", "warn_unreadable"]

_NAMED_IN_WARNING = 5


class StreamBatches:
    """The batches of ``dataset`` for the ``DataLoader``: ``batches(seed, epoch, first, shard)`` yields
    ``(index, arrays)`` on the device, from batch ``first`` of the epoch on; ``skipped`` then lists the
    samples the epoch left out."""

    def __init__(self, dataset: Any, batch_size: int, shuffle: bool, drop_last: bool, num_workers: int,
                 prefetch: int, use_multiprocessing: bool, sample_transform: Callable[..., Any] | None,
                 check_finite: bool) -> None:
        self.dataset, self.batch_size, self.shuffle, self.drop_last = dataset, batch_size, shuffle, drop_last
        self.num_workers, self.prefetch, self.use_multiprocessing = num_workers, prefetch, use_multiprocessing
        self.sample_transform, self.check_finite = sample_transform, check_finite
        self._pool: tuple[Backend, HostToDevice, list[BatchBuffer]] | None = None  # free buffers of a backend
        self._layout: Layout | None = None  # the parts of a sample: (shape, dtype) each
        self.skipped: list[tuple[int, str]] = []  # (index, reason) of the samples the last epoch left out

    @property
    def num_samples(self) -> int:
        return len(self.dataset)

    def _first_sample(self) -> list[np.ndarray]:
        """The first readable sample, as host arrays with a leading axis of one; it fixes the layout."""
        buffer = BatchBuffer(1, np.empty)
        for index in range(self.num_samples):
            fill(self.dataset, np.asarray([index]), buffer, 0, 0, None, self.check_finite)
            if buffer.count:
                self._layout = [(a.shape[1:], a.dtype) for a in buffer.arrays]
                return buffer.rows()
        raise ValueError(f"DataLoader: none of the {self.num_samples} samples of {type(self.dataset).__name__} "
                         "could be read")

    def peek(self) -> list[Any]:
        """The first readable sample as a batch of one on the device, read here (no worker, no state)."""
        transfer = HostToDevice(get_backend())
        return _model_dtypes([transfer.put(rows)[0] for rows in self._first_sample()], transfer.backend)

    def _check_out(self, count: int) -> tuple[HostToDevice, list[BatchBuffer]]:
        backend = get_backend()
        if self._pool is None or self._pool[0] != backend:
            self._pool = (backend, HostToDevice(backend), [])
        if self._layout is None:
            self._first_sample()
        _, transfer, free = self._pool
        return transfer, [free.pop() if free else BatchBuffer(self.batch_size, transfer.empty, self._layout)
                          for _ in range(count)]

    def _check_in(self, transfer: HostToDevice, buffers: list[BatchBuffer]) -> None:
        if self._pool is not None and self._pool[1] is transfer:
            self._pool[2].extend(buffers)

    def batches(self, seed: int, epoch: int, first: int,
                shard: tuple[int, int] | None) -> Iterator[tuple[int, list[Any]]]:
        n = self.num_samples
        order = epoch_order(n, seed, epoch, self.shuffle)
        todo = iter(range(first, batch_count(n, self.batch_size, self.drop_last)))
        transfer, buffers = self._check_out(max(1, self.num_workers) + self.prefetch)
        free = collections.deque(buffers)
        pending: collections.deque[tuple[int, Any, BatchBuffer]] = collections.deque()
        workers = start_workers(self.num_workers, self.use_multiprocessing, self.dataset, self.sample_transform,
                                self.check_finite)
        skipped: list[tuple[int, str]] = []

        def hand_out() -> None:
            while free:
                batch = next(todo, None)
                if batch is None:
                    return
                buffer = free.popleft()
                buffer.wait_free()
                start, stop = batch_span(batch, self.batch_size, n, shard)
                pending.append((batch, workers.submit(order[start:stop], buffer, seed, epoch), buffer))

        ahead = None
        try:
            hand_out()
            while pending:
                batch, future, buffer = pending.popleft()
                try:
                    skipped += workers.result(future, buffer)
                except Exception:
                    if ahead is not None:  # the batch before the failing one is still delivered
                        yield ahead
                    raise
                copied = [transfer.put(rows) for rows in buffer.rows()]
                buffer.wait_free = _all_of([wait for _, wait in copied])
                free.append(buffer)
                if ahead is not None:
                    yield ahead
                # a batch left empty by unreadable samples is dropped; a rank's empty share is kept (every
                # rank takes part in every step of a data-parallel fit)
                keep = buffer.count or shard is not None
                ahead = (batch, _model_dtypes([a for a, _ in copied], transfer.backend)) if keep else None
                hand_out()
            if ahead is not None:
                yield ahead
        finally:
            workers.close()
            for buffer in buffers:
                buffer.wait_free()
            self._check_in(transfer, buffers)
        self.skipped = skipped


def _all_of(waits: list[Callable[[], None]]) -> Callable[[], None]:
    def wait() -> None:
        for one in waits:
            one()
    return wait


def warn_unreadable(what: str, failures: list[tuple[str, str]], stacklevel: int = 3) -> None:
    """One warning for the unreadable samples or files of a pass, naming the first five with the reason."""
    named = "; ".join(f"{name} ({why})" for name, why in failures[:_NAMED_IN_WARNING])
    more = f" and {len(failures) - _NAMED_IN_WARNING} more" if len(failures) > _NAMED_IN_WARNING else ""
    warnings.warn(f"{what}: {named}{more}", UserWarning, stacklevel=stacklevel + 1)


def warn_skipped(dataset: Any, skipped: list[tuple[int, str]], epoch: int) -> None:
    warn_unreadable(f"DataLoader: left out {len(skipped)} samples in epoch {epoch} that could not be read (their "
                    "batches are smaller)", [(describe(dataset, i), why) for i, why in skipped], stacklevel=4)


def _model_dtypes(arrays: list[Any], backend: Backend) -> list[Any]:
    """The first part (inputs) as floats, uint8 images scaled to [0, 1]; floating parts in the backend's
    dtype; integer labels as they are."""
    xp = backend.xp
    out = []
    for k, a in enumerate(arrays):
        if k == 0:
            a = scale_images(a, backend)
        if xp.isdtype(a.dtype, "real floating") and a.dtype != backend.dtype:
            a = xp.astype(a, backend.dtype)
        out.append(a)
    return out
