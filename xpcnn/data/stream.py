"""One epoch of a map-style dataset as device batches: workers read ahead, copies to the device overlap.

At most ``num_workers + prefetch`` host buffers exist (each one batch), made once and reused every epoch;
a buffer is handed to a worker only once the device copy from it has ended. The batches come out in order,
whatever finishes first. The next batch's copy to the device is started before the current batch is
handed to the step, so on a GPU the copy runs while the step computes.
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
from .workers import BatchBuffer, describe, fill, start_workers

__all__ = ["StreamBatches"]

_NAMED_IN_WARNING = 5


class StreamBatches:
    """The batches of ``dataset`` for the ``DataLoader``: ``batches(seed, epoch, first, shard)`` yields
    ``(index, arrays)`` on the device, from batch ``first`` of the epoch on; ``skipped`` then lists the
    samples it left out."""

    def __init__(self, dataset: Any, batch_size: int, shuffle: bool, drop_last: bool, num_workers: int,
                 prefetch: int, use_multiprocessing: bool, sample_transform: Callable[..., Any] | None,
                 check_finite: bool) -> None:
        self.dataset, self.batch_size, self.shuffle, self.drop_last = dataset, batch_size, shuffle, drop_last
        self.num_workers, self.prefetch, self.use_multiprocessing = num_workers, prefetch, use_multiprocessing
        self.sample_transform, self.check_finite = sample_transform, check_finite
        self._buffers: tuple[Backend, HostToDevice, list[BatchBuffer]] | None = None
        self.skipped: list[tuple[int, str]] = []  # (index, reason) of the samples the last epoch left out

    @property
    def num_samples(self) -> int:
        return len(self.dataset)

    def _host_buffers(self) -> tuple[HostToDevice, list[BatchBuffer]]:
        backend = get_backend()
        if self._buffers is None or self._buffers[0] != backend:
            transfer = HostToDevice(backend)
            count = max(1, self.num_workers) + self.prefetch
            self._buffers = (backend, transfer, [BatchBuffer(self.batch_size, transfer.empty) for _ in range(count)])
        return self._buffers[1], self._buffers[2]

    def peek(self) -> list[Any]:
        """The first readable sample as a batch of one on the device, read here (no worker, no state)."""
        transfer = HostToDevice(get_backend())
        buffer = BatchBuffer(1, transfer.empty)
        for index in range(self.num_samples):
            fill(self.dataset, np.asarray([index]), buffer, 0, 0, None, self.check_finite)
            if buffer.count:
                return _model_dtypes([transfer.put(rows)[0] for rows in buffer.rows()], transfer.backend)
        raise ValueError(f"DataLoader: none of the {self.num_samples} samples of {type(self.dataset).__name__} "
                         "could be read")

    def batches(self, seed: int, epoch: int, first: int,
                shard: tuple[int, int] | None) -> Iterator[tuple[int, list[Any]]]:
        n = self.num_samples
        order = epoch_order(n, seed, epoch, self.shuffle)
        todo = iter(range(first, batch_count(n, self.batch_size, self.drop_last)))
        transfer, buffers = self._host_buffers()
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

        try:
            hand_out()
            ahead = None
            while pending:
                batch, future, buffer = pending.popleft()
                skipped += workers.result(future, buffer)
                copied = [transfer.put(rows) for rows in buffer.rows()]
                buffer.wait_free = _all_of([wait for _, wait in copied])
                free.append(buffer)
                if ahead is not None:
                    yield ahead
                ahead = (batch, _model_dtypes([a for a, _ in copied], transfer.backend)) if buffer.count else None
                hand_out()
            if ahead is not None:
                yield ahead
        finally:
            workers.close()
        self.skipped = skipped


def _all_of(waits: list[Callable[[], None]]) -> Callable[[], None]:
    def wait() -> None:
        for one in waits:
            one()
    return wait


def warn_skipped(dataset: Any, skipped: list[tuple[int, str]], epoch: int) -> None:
    """One warning for the samples left out in an epoch, naming the first five."""
    named = "; ".join(f"{describe(dataset, i)}: {why}" for i, why in skipped[:_NAMED_IN_WARNING])
    more = f" and {len(skipped) - _NAMED_IN_WARNING} more" if len(skipped) > _NAMED_IN_WARNING else ""
    warnings.warn(f"DataLoader: left out {len(skipped)} samples in epoch {epoch} that could not be read "
                  f"(their batches are smaller): {named}{more}", UserWarning, stacklevel=3)


def _model_dtypes(arrays: list[Any], backend: Backend) -> list[Any]:
    """The first field (inputs) as floats, uint8 images scaled to [0, 1]; floating fields in the backend's
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
