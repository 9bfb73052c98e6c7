"""``DataLoader``: mini-batches on the device from arrays in memory or from a map-style dataset.

Arrays are moved to the device once and every batch is a gather there. A dataset (``len`` and
``__getitem__(i)`` returning ``x`` or ``(x, y)`` as NumPy arrays, as in PyTorch) is read batch by batch by
workers into reused host buffers and copied to the device ahead of use (``xpcnn.data.stream``). Both take
each epoch's order from ``(seed, epoch)`` (``xpcnn.data.sampling``), and both save and restore their position
(``state_dict``), so a run that stops mid-epoch can go on with exactly the batches it had not yet seen.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any

import array_api_compat
import numpy as np

from .. import random
from .._checks import check_flag, check_int
from ..backend import asarray, get_backend
from .device import scale_images
from .sampling import batch_count, batch_span, epoch_order
from .checks import check_finite as check_finite_array
from .stream import StreamBatches, warn_skipped

__all__ = ["DataLoader", "is_dataset"]

_DEFAULT_WORKERS = 4


def is_dataset(value: Any) -> bool:
    """A map-style dataset: ``len()`` and ``[i]``, and neither an array nor a list or tuple of them."""
    return (hasattr(value, "__len__") and hasattr(value, "__getitem__")
            and not isinstance(value, (list, tuple, dict, str, bytes)) and not array_api_compat.is_array_api_obj(value))


def _shape(a: Any, name: str) -> tuple[int, ...]:
    shape = tuple(a.shape)
    if len(shape) == 0:
        raise ValueError(f"{name} must have a leading sample axis, got a 0-d array")
    return shape


def _parts(value: Any) -> tuple[list[Any], bool]:
    """A list or tuple of arrays is several arrays (a model's several inputs or outputs); anything else is
    one array (lists of numbers become NumPy arrays)."""
    if isinstance(value, (list, tuple)) and value and all(array_api_compat.is_array_api_obj(a) for a in value):
        return list(value), True
    return [value if array_api_compat.is_array_api_obj(value) else np.asarray(value)], False


class _ArrayBatches:
    """Arrays moved to the device once (again only if the backend changes); a batch is a gather there."""

    def __init__(self, x: Any, y: Any, batch_size: int, drop_last: bool, shuffle: bool, check_finite: bool) -> None:
        xs, self.several_x = _parts(x)
        ys, self.several_y = ([], False) if y is None else _parts(y)
        shapes = {f"x[{i}]" if self.several_x else "x": _shape(a, "x") for i, a in enumerate(xs)}
        shapes.update({f"y[{i}]" if self.several_y else "y": _shape(a, "y") for i, a in enumerate(ys)})
        if len({shape[0] for shape in shapes.values()}) > 1:
            raise ValueError("x and y must hold the same number of samples, got shapes "
                             + ", ".join(f"{k}.shape={v}" for k, v in shapes.items()))
        if check_finite:
            for name, a in zip(shapes, [*xs, *ys]):
                check_finite_array(a, f"DataLoader: {name}")
        self.xs, self.ys = xs, (None if y is None else ys)
        self.num_samples = int(next(iter(shapes.values()))[0])
        self.batch_size, self.drop_last, self.shuffle = batch_size, drop_last, shuffle
        self._cache: tuple[Any, Any, Any] | None = None  # (backend, x on device, y on device)

    def _on_device(self) -> tuple[list[Any], list[Any] | None]:
        backend = get_backend()
        if self._cache is None or self._cache[0] != backend:
            ys = None if self.ys is None else [asarray(a) for a in self.ys]
            self._cache = (backend, [asarray(a) for a in self.xs], ys)
        return self._cache[1], self._cache[2]

    def batches(self, seed: int, epoch: int, first: int,
                shard: tuple[int, int] | None) -> Iterator[tuple[int, Any]]:
        xs, ys = self._on_device()
        backend = get_backend()
        xp, n = backend.xp, self.num_samples
        order = asarray(epoch_order(n, seed, epoch, True)) if self.shuffle else None  # one small copy an epoch
        for b in range(first, batch_count(n, self.batch_size, self.drop_last)):
            start, stop = batch_span(b, self.batch_size, n, shard)
            if order is None:
                take = lambda a: a[start:stop, ...]  # noqa: E731
            else:
                idx = order[start:stop]
                take = lambda a: xp.take(a, idx, axis=0)  # noqa: E731
            xb = [scale_images(take(a), backend) for a in xs]
            xb = xb if self.several_x else xb[0]
            if ys is None:
                yield b, [xb]
            else:
                yb = [take(a) for a in ys]
                yield b, [xb, yb if self.several_y else yb[0]]


class DataLoader:
    """Iterate over ``(xb, yb)`` mini-batches (or ``xb`` alone) on the current backend's device.

    Each ``for`` loop is one epoch. Inputs come out in the backend's float dtype; uint8 images stay uint8
    until they are on the device and become floats in [0, 1] there. Integer labels keep their integer dtype.
    ``state_dict()``/``load_state_dict()`` hold the seed, the epoch and the next batch, so that a loader made
    anew and restored yields exactly the batches the first had not yet yielded. Without a restore, each
    ``for`` loop starts the next epoch from its first batch, as PyTorch's loader does.

    Parameters
    ----------
    data : array, list of arrays, or dataset
        Arrays (``DataLoader(x, y)``: NumPy, lists, or any backend's arrays; a list or tuple of arrays for a
        model's several inputs or outputs), or a map-style dataset (``DataLoader(dataset)``: ``len()`` and
        ``dataset[i]`` returning ``x`` or ``(x, y)`` as NumPy arrays of fixed shapes, e.g.
        ``xpcnn.data.ArrayDataset`` or ``xpcnn.datasets.ImageFolder``).
    y : array or list of arrays, optional
        The targets of array ``data``; None for a dataset (it yields its own).
    batch_size : int, default 32
    shuffle : bool, default True
        Each epoch in an order drawn from ``(seed, epoch)``.
    drop_last : bool, default False
        Leave out the last, smaller batch.
    transform : callable, optional
        Applied on the device to each batch's inputs (``xpcnn.transforms``).
    shard : (int, int), optional
        ``(rank, ranks)`` yields only that rank's contiguous share of each batch (data-parallel training:
        every rank draws the same order, and a rank reads only its share).
    seed : int, optional
        The order's seed; None draws each epoch's seed from xpcnn's random stream, so ``xpcnn.manual_seed``
        makes runs repeat.
    num_workers : int, optional
        Datasets only: reading threads (default ``min(4, cores)``; 0 reads in the loop's own thread).
    prefetch : int, default 2
        Datasets only: at most ``num_workers + prefetch`` batches are held on the host, in buffers made once
        and reused.
    use_multiprocessing : bool, default False
        Datasets only: processes instead of threads, for a ``__getitem__`` that holds the GIL (the dataset and
        ``sample_transform`` must then pickle).
    sample_transform : callable, optional
        Datasets only: ``sample_transform(sample, rng)`` augments one sample on the host with a NumPy generator
        drawn from ``(seed, epoch, index)``.
    check_finite : bool, default True
        Refuse float inputs holding NaN or infinity (a dataset's by sample index).

    Raises
    ------
    ValueError
        If x and y differ in length, data hold NaN or infinity (with ``check_finite``), ``y`` is given with a
        dataset, the dataset is empty, or a dataset-only argument is given with arrays.
    TypeError
        If an argument has the wrong type, or a transform is not callable.
    xpcnn.data.SampleError
        While iterating, when a sample's ``__getitem__`` fails; one that raises ``xpcnn.data.SkipSample`` is
        instead left out of its batch (counted, one warning per epoch).

    Examples
    --------
    >>> from xpcnn.data import DataLoader
    >>> x = np.zeros((100, 1, 28, 28), dtype=np.uint8)
    >>> loader = DataLoader(x, np.arange(100) % 10, batch_size=32, seed=0)
    >>> len(loader), [tuple(xb.shape) for xb, yb in loader]
    (4, [(32, 1, 28, 28), (32, 1, 28, 28), (32, 1, 28, 28), (4, 1, 28, 28)])
    >>> loader.state_dict()
    {'seed': 0, 'epoch': 1, 'batch': 0}
    """

    def __init__(
        self,
        data: Any,
        y: Any = None,
        batch_size: int = 32,
        shuffle: bool = True,
        drop_last: bool = False,
        transform: Callable[[Any], Any] | None = None,
        shard: tuple[int, int] | None = None,
        *,
        seed: int | None = None,
        num_workers: int | None = None,
        prefetch: int = 2,
        use_multiprocessing: bool = False,
        sample_transform: Callable[[Any, np.random.Generator], Any] | None = None,
        check_finite: bool = True,
    ) -> None:
        owner = "DataLoader"
        batch_size = check_int(batch_size, "batch_size", 1, owner)
        shuffle, drop_last = check_flag(shuffle, "shuffle", owner), check_flag(drop_last, "drop_last", owner)
        use_multiprocessing = check_flag(use_multiprocessing, "use_multiprocessing", owner)
        check_finite = check_flag(check_finite, "check_finite", owner)
        prefetch = check_int(prefetch, "prefetch", 0, owner)
        for name, fn in (("transform", transform), ("sample_transform", sample_transform)):
            if fn is not None and not callable(fn):
                raise TypeError(f"DataLoader: {name} must be callable or None, got {fn!r}")
        if seed is not None:
            seed = check_int(seed, "seed", 0, owner)
        self.dataset = data if is_dataset(data) else None
        if self.dataset is not None:
            if y is not None:
                raise ValueError("DataLoader: a dataset yields its own targets ((x, y) samples); y must be None"
                                 + (f" (for a batch size, write batch_size={y})" if isinstance(y, int) else ""))
            if len(self.dataset) == 0:
                raise ValueError(f"DataLoader: the dataset {type(data).__name__} holds no samples")
            workers = min(_DEFAULT_WORKERS, os.cpu_count() or 1) if num_workers is None else num_workers
            workers = check_int(workers, "num_workers", 0, owner)
            self._source: Any = StreamBatches(self.dataset, batch_size, shuffle, drop_last, workers, prefetch,
                                              use_multiprocessing, sample_transform, check_finite)
            self.num_workers = workers
        else:
            if sample_transform is not None or use_multiprocessing or num_workers:
                raise ValueError("DataLoader: num_workers, use_multiprocessing and sample_transform read a dataset; "
                                 "arrays are already in memory (gathered on the device)")
            self._source = _ArrayBatches(data, y, batch_size, drop_last, shuffle, check_finite)
            self.num_workers = 0
        self.batch_size, self.shuffle, self.drop_last = batch_size, shuffle, drop_last
        self.transform, self.shard, self.prefetch = transform, shard, prefetch
        self.seed = seed
        self._draws = shuffle or sample_transform is not None  # whether the order or the samples are random
        self._next_epoch = 0
        self._position: tuple[int | None, int, int] = (seed, 0, 0)  # (seed, epoch, next batch) of the last loop
        self._resume: tuple[int, int, int] | None = None

    @property
    def num_samples(self) -> int:
        """Number of samples in one pass over the data (all ranks' shares together under ``shard``)."""
        return self._source.num_samples

    def __len__(self) -> int:
        """Number of batches per epoch."""
        return batch_count(self.num_samples, self.batch_size, self.drop_last)

    def _epoch_seed(self) -> int:
        """The seed of a new epoch: the loader's, else a draw from xpcnn's random stream (as PyTorch draws
        one from its global generator for each loop), so that ``xpcnn.manual_seed`` repeats the orders."""
        if self.seed is not None:
            return self.seed
        return int(random.host_generator().integers(2**63)) if self._draws else 0

    def __iter__(self) -> Iterator[Any]:
        return self.iterate(self.shard)

    def iterate(self, shard: tuple[int, int] | None) -> Iterator[Any]:
        """One epoch, as ``for batch in loader`` gives it, of a rank's share of each batch: a data-parallel
        ``fit`` reads a user's loader in shares this way, and the loader's own position moves on as it does.

        Parameters
        ----------
        shard : (rank, ranks) or None
            The share to read; None: the whole batches.

        Yields
        ------
        batch
            ``x`` or ``(x, y)`` as ``for batch in loader`` yields them, cut to the share.
        """
        if self._resume is not None:
            seed, epoch, first = self._resume
        else:
            seed, epoch, first = self._epoch_seed(), self._next_epoch, 0
        self._resume, self._next_epoch, self._position = None, epoch + 1, (seed, epoch, first)
        # a drawn seed is new each epoch already; keyed by it alone, a loader repeats after manual_seed
        key_epoch = epoch if self.seed is not None else 0
        for batch, fields in self._source.batches(seed, key_epoch, first, shard):
            self._position = (seed, epoch, batch + 1)
            xb = fields[0]
            if self.transform is not None:
                xb = [self.transform(a) for a in xb] if isinstance(xb, list) else self.transform(xb)
            yield xb if len(fields) == 1 else (xb, *fields[1:])
        if getattr(self._source, "skipped", None):
            warn_skipped(self.dataset, self._source.skipped, epoch)

    def peek(self) -> Any:
        """A first batch to check shapes with, as the loop would yield it but without ``transform``, leaving
        the loader's state as it is: the first ``batch_size`` arrays, or a dataset's first readable sample."""
        if self.dataset is not None:
            fields = self._source.peek()
        else:  # any order will do (seed 0), the loader's own seed is not drawn
            fields = next(self._source.batches(0, 0, 0, None))[1]
        return fields[0] if len(fields) == 1 else tuple(fields)

    def span(self, batch: int) -> tuple[int, int]:
        """Where batch ``batch``'s samples lie in the epoch's order.

        Parameters
        ----------
        batch : int
            The batch's index in the epoch.

        Returns
        -------
        (int, int)
            The positions ``[start, stop)`` of the samples this loader yields for it (with ``shard``, this
            rank's part).
        """
        return batch_span(batch, self.batch_size, self.num_samples, self.shard)

    def state_dict(self) -> dict[str, int | None]:
        """Where the next batch comes from, as plain ints (JSON-friendly): ``{"seed", "epoch", "batch"}``, the
        seed of that epoch's order (None: drawn from xpcnn's random stream when the epoch starts)."""
        seed, epoch, batch = self._position
        if batch >= len(self):
            seed, epoch, batch = self.seed, epoch + 1, 0
        return {"seed": seed, "epoch": epoch, "batch": batch}

    def load_state_dict(self, state: dict[str, int | None]) -> None:
        """The next ``for`` loop yields batch ``state["batch"]`` of epoch ``state["epoch"]`` onwards, in the
        order of ``state["seed"]``."""
        try:
            seed = state["seed"]
            seed = None if seed is None else int(seed)
            epoch, batch = int(state["epoch"]), int(state["batch"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"DataLoader.load_state_dict takes {{'seed': int or None, 'epoch': int, 'batch': int}}, "
                             f"got {state!r}") from exc
        if min(epoch, batch, 0 if seed is None else seed) < 0 or batch > len(self) or (seed is None and batch):
            raise ValueError(f"DataLoader.load_state_dict: {state!r} is out of range (this loader has {len(self)} "
                             "batches per epoch)")
        if seed is None:
            self._resume, self._next_epoch = None, epoch
        else:
            self._resume = (seed, epoch, batch)
        self._position = (seed, epoch, batch)

    def __repr__(self) -> str:
        source = f"dataset={type(self.dataset).__name__}" if self.dataset is not None else "arrays"
        return (f"DataLoader({source}, num_samples={self.num_samples}, batch_size={self.batch_size}, "
                f"shuffle={self.shuffle}, drop_last={self.drop_last}, num_workers={self.num_workers}, "
                f"seed={self.seed}, transform={self.transform!r})")
