"""Whatever ``fit``, ``evaluate`` or ``predict`` is given, as one ``EpochIterator`` the engine only iterates.

As Keras's data adapters: one kind of input each, behind one interface.

- a ``DataLoader`` (arrays in memory, or a map-style dataset streamed by workers): its batches as they are;
- a Keras ``PyDataset``-style object (``len()`` = batches per epoch, ``[i]`` = batch ``i``; ``on_epoch_end()``
  called after each pass when it has one);
- any other iterable of batches (a generator, a PyTorch ``DataLoader``): one pass per epoch, or with
  ``steps`` a stream that goes on across epochs and starts again when it runs out (a generator, which cannot
  start again, ends the training with a warning, as in Keras).

A batch is ``(x, y)`` or ``x`` (inputs alone, for ``predict``), of NumPy arrays, of another backend's arrays,
or of the current backend's; ``x`` and ``y`` may be lists for several inputs or outputs. Batches not yet on
the device are moved there one at a time (uint8 images scaled to [0, 1] on the device).
"""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import array_api_compat
import numpy as np

from ..backend import asarray, to_numpy
from .datasets import Dataset
from .device import inputs_on_device
from .loader import DataLoader, is_dataset

__all__ = ["EpochIterator", "is_stream"]


def is_stream(value: Any) -> bool:
    """Batches to iterate over (a loader, a PyDataset, a generator...), as opposed to arrays in memory."""
    if value is None or array_api_compat.is_array_api_obj(value) or isinstance(value, (list, tuple, dict, str)):
        return False
    return isinstance(value, DataLoader) or is_dataset(value) or isinstance(value, Iterable)


def _split(batch: Any, what: str) -> tuple[Any, Any]:
    """``(x, y)`` of a batch; ``y`` None for inputs alone."""
    if isinstance(batch, tuple):
        if len(batch) == 2:
            return batch
        if len(batch) == 1:
            return batch[0], None
        raise ValueError(f"{what}: a batch is (x, y) or x; got a tuple of {len(batch)} (sample weights are not "
                         "supported)")
    return batch, None


def _each(value: Any, fn: Callable[[Any], Any]) -> Any:
    return [fn(a) for a in value] if isinstance(value, list) else fn(value)


def _check_host_finite(value: Any, what: str, step: int) -> None:
    for a in value if isinstance(value, list) else [value]:
        if isinstance(a, np.ndarray) and a.dtype.kind == "f" and not np.isfinite(a).all():
            raise ValueError(f"{what}: batch {step} holds NaN or infinity; clean the data, or pass "
                             "check_finite=False to train on it anyway")


class EpochIterator:
    """The batches of one ``fit``/``evaluate``/``predict`` input, epoch after epoch, on the device.

    ``steps`` is the number of batches per epoch (None when an iterable does not say); with it, training
    (``carry_on``) goes on across epochs where the last one stopped, as in Keras, while validation takes the
    first ``steps`` batches each time (a generator, which cannot start again, goes on). ``num_samples`` is
    the number of samples when known. ``first_batch()`` gives a batch to check and build the model with, before
    training starts; ``epoch()`` iterates one epoch, with ``transform`` applied to the inputs unless
    ``augment=False``.
    """

    def __init__(self, data: Any, steps: int | None, what: str, transform: Callable[[Any], Any] | None = None,
                 check_finite: bool = True, shard: tuple[int, int] | None = None, carry_on: bool = True) -> None:
        if isinstance(data, Dataset):
            raise TypeError(f"{what}: {type(data).__name__} is a dataset of samples; batch it first: "
                            f"{what.split('(')[0]}(xpcnn.DataLoader(dataset, batch_size=32), ...)")
        if shard is not None and not isinstance(data, DataLoader):
            raise ValueError(f"{what}: distributed training reads arrays or an xpcnn.DataLoader (each rank reads its "
                             f"share); got {type(data).__name__}")
        self.what, self.transform, self.check_finite = what, transform, check_finite
        self.loader = data.sharded(shard) if isinstance(data, DataLoader) and shard is not None else data
        self.kind = "loader" if isinstance(data, DataLoader) else "pydataset" if is_dataset(data) else "iterable"
        length = len(data) if self.kind != "iterable" or hasattr(data, "__len__") else None
        self.steps = steps if steps is not None else length
        self._requested_steps = steps
        self._carry_on = carry_on  # with steps: the next epoch goes on where this one stopped (training)
        self._stream: Iterator[Any] | None = None  # with steps: the stream that goes on across epochs
        self._first: Any = None
        self._exhausted = False
        self.inputs: Any = None  # the input arrays, when made from arrays (batch norm statistics read them in order)

    @property
    def num_samples(self) -> int | None:
        return self.loader.num_samples if self.kind == "loader" else None

    @property
    def batch_size(self) -> int | None:
        return self.loader.batch_size if self.kind == "loader" else None

    def span(self, step: int) -> tuple[int, int]:
        return self.loader.span(step)

    def first_batch(self) -> tuple[Any, Any]:
        """``(x, y)`` of the first batch, for the checks and the model's shapes (``y`` None for inputs alone);
        read once, and for a generator kept to be yielded first."""
        if self._first is None:
            if self.kind == "loader":
                batch = self.loader.peek()
            elif self.kind == "pydataset":
                batch = self.loader[0]
            else:
                it = iter(self.loader)
                try:
                    batch = next(it)
                except StopIteration:
                    raise ValueError(f"{self.what}: the input yields no batch") from None
                if it is self.loader:  # a generator: keep what was read
                    self._stream = itertools.chain([batch], it)
            self._first = _split(batch, self.what)
        return self._first

    def _pass(self) -> Iterator[Any]:
        """One pass over the input from its start."""
        if self.kind == "pydataset":
            for i in range(len(self.loader)):
                yield self.loader[i]
            if hasattr(self.loader, "on_epoch_end"):
                self.loader.on_epoch_end()
            return
        if self._stream is not None and self._requested_steps is None:  # a generator's first (only) pass
            stream, self._stream = self._stream, None
            yield from stream
            return
        yield from self.loader

    def _batches(self) -> Iterator[Any]:
        if self._requested_steps is None:
            yield from self._pass()
            return
        if not self._carry_on and self._stream is not None and self.kind != "iterable":
            self._stream = None  # validation: the first ``steps`` batches each time
        for _ in range(self._requested_steps):
            if self._stream is None:
                self._stream = iter(self._pass())
            batch = next(self._stream, _END)
            if batch is _END:
                self._stream = None
                if self.kind == "iterable" and iter(self.loader) is self.loader:
                    self._exhausted = True
                    return
                self._stream = iter(self._pass())
                batch = next(self._stream, _END)
                if batch is _END:
                    self._exhausted = True
                    return
            yield batch

    def epoch(self, augment: bool = True) -> Iterator[tuple[Any, Any]]:
        """``(x, y)`` batches of one epoch on the device (``y`` None for inputs alone)."""
        step = -1
        for step, batch in enumerate(self._batches()):
            x, y = _split(batch, self.what)
            if self.kind != "loader":
                if self.check_finite:
                    _check_host_finite(x, self.what, step)
                    _check_host_finite(y, self.what, step)
                x = _each(x, inputs_on_device)
                y = None if y is None else _each(y, asarray)
            if augment and self.transform is not None:
                x = _each(x, self.transform)
            yield x, y
        if step < 0 or self._exhausted:
            self._exhausted = True
            warnings.warn(f"{self.what}: the input ran out of data; training stops here (give a re-iterable input, "
                          "or steps_per_epoch * epochs batches)", UserWarning, stacklevel=2)

    @property
    def exhausted(self) -> bool:
        """True once an input that cannot start again has run out (``fit`` stops then)."""
        return self._exhausted


_END = object()


def host_batch(value: Any) -> Any:
    """A batch part as NumPy (one array or a list of them), for the checks made before training."""
    return _each(value, lambda a: a if isinstance(a, np.ndarray) else np.asarray(to_numpy(a)))
