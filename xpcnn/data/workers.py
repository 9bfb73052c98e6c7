"""Reading samples into batches on the host, in the calling thread, in threads, or in processes.

A worker is given the sample indices of one batch and fills one reused host buffer with them (``fill``):
``dataset[i]`` for each index, a host-side ``sample_transform(sample, rng)`` with the generator of
``(seed, epoch, index)``, and a check for NaN and infinity. Threads are the default: Pillow and NumPy release
the GIL while they decode and resize. Processes serve datasets whose ``__getitem__`` holds the GIL; they are
started by ``forkserver`` (``spawn`` where there is none), never by a plain ``fork`` of a process that runs
threads, and each sends its batches back through a pipe.
"""

from __future__ import annotations

import concurrent.futures
import multiprocessing
import signal
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from .checks import refuse_non_finite
from .sampling import sample_generator

__all__ = ["BatchBuffer", "SampleError", "SkipSample", "fill", "start_workers"]


class SkipSample(Exception):
    """Raised by a dataset's ``__getitem__`` for a sample that cannot be read (a corrupt image): the loader
    leaves it out of its batch, counts it, and warns once per epoch naming the first five."""


class SampleError(RuntimeError):
    """A sample failed to load: the message names its index (and its file, for datasets with
    ``file_paths``); the original exception is the ``__cause__``."""


def describe(dataset: Any, index: int) -> str:
    paths = getattr(dataset, "file_paths", None)
    return f"sample {index}" + (f" ({paths[index]})" if paths is not None else "")


def fields_of(sample: Any) -> tuple[np.ndarray, ...]:
    """A sample ``x`` or ``(x, y)`` as a tuple of NumPy arrays."""
    parts = sample if isinstance(sample, tuple) else (sample,)
    return tuple(np.asarray(p) for p in parts)


Layout = list[tuple[tuple[int, ...], np.dtype]]  # (shape, dtype) of each part of a sample


class BatchBuffer:
    """The host arrays of one batch, one per part of a sample, made once and reused. With a ``layout`` they
    are made at once and every sample must match it; without, the first sample written sets it."""

    def __init__(self, capacity: int, empty: Callable[[tuple[int, ...], np.dtype], np.ndarray],
                 layout: Layout | None = None) -> None:
        self.capacity, self.empty = capacity, empty
        self.arrays: list[np.ndarray] | None = None if layout is None else self._make(layout)
        self.count = 0
        self.wait_free: Callable[[], None] = lambda: None  # until the last device copy from it has ended

    def _make(self, layout: Layout) -> list[np.ndarray]:
        return [self.empty((self.capacity, *shape), dtype) for shape, dtype in layout]

    def write(self, row: int, fields: Sequence[np.ndarray], what: str) -> None:
        if self.arrays is None:
            self.arrays = self._make([(f.shape, f.dtype) for f in fields])
        if len(fields) != len(self.arrays):
            raise ValueError(f"{what} has {len(fields)} parts, the loader's samples have {len(self.arrays)}")
        for k, (field, array) in enumerate(zip(fields, self.arrays)):
            if field.shape != array.shape[1:] or field.dtype != array.dtype:
                raise ValueError(f"{what}: part {k} is {field.dtype} {field.shape}, the loader's first sample's was "
                                 f"{array.dtype} {array.shape[1:]}; samples of one loader must share their shapes "
                                 "and dtypes")
            array[row] = field

    def write_rows(self, rows: Sequence[np.ndarray], what: str) -> None:
        """Fill the buffer with whole batches of rows (one array per part)."""
        count = len(rows[0]) if rows else 0
        if count:
            self.write(0, [r[0] for r in rows], what)  # checks the layout
            for r, array in zip(rows, self.arrays):
                array[:count] = r
        self.count = count

    def rows(self) -> list[np.ndarray]:
        return [a[: self.count] for a in (self.arrays or [])]


def fill(dataset: Any, indices: np.ndarray, buffer: BatchBuffer, seed: int, epoch: int,
         sample_transform: Callable[[Any, np.random.Generator], Any] | None,
         check_finite: bool) -> list[tuple[int, str]]:
    """Read the samples ``indices`` into ``buffer`` (``buffer.count`` of them); returns the skipped ones
    as ``(index, reason)``."""
    skipped, row = [], 0
    for index in (int(i) for i in indices):
        try:
            sample = dataset[index]
            if sample_transform is not None:
                sample = sample_transform(sample, sample_generator(seed, epoch, index))
            fields = fields_of(sample)
        except SkipSample as exc:
            skipped.append((index, str(exc)))
            continue
        except Exception as exc:
            raise SampleError(f"DataLoader: {describe(dataset, index)} failed: {type(exc).__name__}: {exc}") from exc
        if check_finite:
            for field in fields:
                refuse_non_finite(field, f"DataLoader: {describe(dataset, index)}", "DataLoader(..., check_finite=False)")
        buffer.write(row, fields, f"DataLoader: {describe(dataset, index)}")
        row += 1
    buffer.count = row
    return skipped


# --- the three ways of running ``fill`` ------------------------------------------------------------------

class _Workers:
    """Fill batches in the calling thread (no workers): ``submit`` reads the batch at once."""

    def __init__(self, dataset: Any, sample_transform: Any, check_finite: bool) -> None:
        self.dataset, self.sample_transform, self.check_finite = dataset, sample_transform, check_finite

    def _fill(self, indices: np.ndarray, buffer: BatchBuffer, seed: int, epoch: int) -> list[tuple[int, str]]:
        return fill(self.dataset, indices, buffer, seed, epoch, self.sample_transform, self.check_finite)

    def submit(self, indices: np.ndarray, buffer: BatchBuffer, seed: int, epoch: int) -> concurrent.futures.Future:
        future: concurrent.futures.Future = concurrent.futures.Future()
        try:
            future.set_result(self._fill(indices, buffer, seed, epoch))
        except Exception as exc:  # raised again by result(), in the batch's turn (Ctrl-C goes through at once)
            future.set_exception(exc)
        return future

    def result(self, future: concurrent.futures.Future, buffer: BatchBuffer) -> list[tuple[int, str]]:
        """The skipped samples of a submitted batch, once ``buffer`` holds it; a worker's error is raised."""
        return future.result()

    def close(self) -> None:
        pass


class _Threads(_Workers):
    """Threads that write straight into the reused buffers."""

    def __init__(self, num_workers: int, *args: Any) -> None:
        super().__init__(*args)
        self.pool = concurrent.futures.ThreadPoolExecutor(num_workers, thread_name_prefix="xpcnn-loader")

    def submit(self, indices: np.ndarray, buffer: BatchBuffer, seed: int, epoch: int) -> concurrent.futures.Future:
        return self.pool.submit(self._fill, indices, buffer, seed, epoch)

    def close(self) -> None:
        """Pending batches cancelled, running ones awaited: no thread outlives the loop."""
        self.pool.shutdown(wait=True, cancel_futures=True)


class _Processes(_Threads):
    """Processes, each with its own copy of the dataset and its own buffer; rows come back pickled."""

    def __init__(self, num_workers: int, *args: Any) -> None:
        _Workers.__init__(self, *args)
        if "forkserver" in multiprocessing.get_all_start_methods():
            context = multiprocessing.get_context("forkserver")
            # each worker forks from a server that imported us once, and ignores the job's SIGTERM (worker_process)
            context.set_forkserver_preload([f"{__package__}.worker_process"])
        else:
            context = multiprocessing.get_context("spawn")
        self.pool = concurrent.futures.ProcessPoolExecutor(num_workers, mp_context=context,
                                                           initializer=_process_init, initargs=args)

    def submit(self, indices: np.ndarray, buffer: BatchBuffer, seed: int, epoch: int) -> concurrent.futures.Future:
        layout = [(a.shape[1:], a.dtype) for a in buffer.arrays] if buffer.arrays is not None else None
        return self.pool.submit(_process_fill, indices, seed, epoch, layout, buffer.capacity)

    def result(self, future: concurrent.futures.Future, buffer: BatchBuffer) -> list[tuple[int, str]]:
        skipped, rows = future.result()
        buffer.write_rows(rows, "DataLoader: a worker process's batch")
        return skipped


_process_state: dict[str, Any] = {}


def _process_init(dataset: Any, sample_transform: Any, check_finite: bool) -> None:
    for number in (signal.SIGTERM, signal.SIGINT):  # the owner ends its workers (spawned ones too: worker_process)
        signal.signal(number, signal.SIG_IGN)
    _process_state.update(workers=_Workers(dataset, sample_transform, check_finite), buffer=None)


def _process_fill(indices: np.ndarray, seed: int, epoch: int, layout: Layout | None,
                  capacity: int) -> tuple[list[tuple[int, str]], list[np.ndarray]]:
    """``fill`` in a worker process, into that process's own buffer (one batch, made once, checked against the
    loader's sample layout); the filled rows go back pickled."""
    if _process_state["buffer"] is None:
        _process_state["buffer"] = BatchBuffer(capacity, np.empty, layout)
    buffer = _process_state["buffer"]
    skipped = _process_state["workers"]._fill(indices, buffer, seed, epoch)
    return skipped, buffer.rows()


def start_workers(num_workers: int, use_multiprocessing: bool, dataset: Any, sample_transform: Any,
                  check_finite: bool) -> _Workers:
    """The workers one epoch's batches are read by; ``close()`` them when the epoch's loop ends."""
    args = (dataset, sample_transform, check_finite)
    if num_workers == 0:
        return _Workers(*args)
    return (_Processes if use_multiprocessing else _Threads)(num_workers, *args)
