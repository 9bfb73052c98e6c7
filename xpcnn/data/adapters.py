"""Whatever ``fit``, ``evaluate`` or ``predict`` is given, as one ``EpochIterator`` the engine only iterates.

As Keras's data adapters: one kind of input each, behind one interface.

- a ``DataLoader`` (arrays in memory, or a map-style dataset streamed by workers): its batches as they are;
- a Keras ``PyDataset``-style object (``len()`` = batches per epoch, ``[i]`` = batch ``i``; ``on_epoch_end()``
  called after each pass when it has one);
- any other iterable of batches: a re-iterable (a PyTorch ``DataLoader``) is read once per epoch; an iterator
  (a generator) can be read once only.

With ``steps``, training takes that many batches per epoch and the next epoch goes on where the last one
stopped; an input that runs out starts again (an iterator cannot: the training ends with a warning).
Validation takes the first ``steps`` batches each time.

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
from .checks import refuse_non_finite
from .datasets import Dataset
from .device import inputs_on_device
from .loader import DataLoader, is_dataset
from .sampling import batch_span

__all__ = ["EpochIterator", "host_batch", "is_stream"]


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


def host_batch(value: Any) -> Any:
    """A batch part as NumPy (one array or a list of them), for the checks made before training."""
    return _each(value, lambda a: a if isinstance(a, np.ndarray) else np.asarray(to_numpy(a)))


class EpochIterator:
    """The batches of one ``fit``/``evaluate``/``predict`` input, epoch after epoch, on the device.

    The engine's one reader of its inputs (``trainer_inputs`` builds it): ``first_batch()`` gives a batch to
    check and build the model with before training starts, ``epoch()`` iterates one epoch, ``close()`` ends
    every loop still open (and so the loader's workers).

    Parameters
    ----------
    data : DataLoader, PyDataset-style object or iterable
        What yields the batches: ``x`` or ``(x, y)`` (``x`` one array or a list of them).
    steps : int or None
        Batches per epoch (``steps_per_epoch``, ``validation_steps``); None: one whole pass.
    what : str
        The name errors begin with (``"fit"``, ``"evaluate"``, ...).
    transform : callable, optional
        Applied to each batch's inputs on the device (augmentation) unless ``epoch(augment=False)``.
    check_finite : bool
        Refuse a host batch holding NaN or infinity (iterables and PyDataset-style inputs; a ``DataLoader``'s
        batches are not checked here).
    shard : (rank, ranks), optional
        Data-parallel training: this rank's share of each batch (a ``DataLoader`` only).
    carry_on : bool
        With ``steps``, go on where the previous epoch stopped (training); False starts a new pass each time
        (validation).
    inputs : array, optional
        The input arrays when the input was arrays (batch-norm statistics read them in order).

    Attributes
    ----------
    steps : int or None
        Batches per epoch, None when an iterable does not say.
    exhausted : bool
        True once a one-shot iterator has run out (``fit`` stops then).

    Raises
    ------
    TypeError
        For a dataset of samples (batch it with a ``DataLoader``) or an in-memory dataset object (pass its
        arrays).
    ValueError
        For ``shard`` with anything but a ``DataLoader``.
    """

    def __init__(self, data: Any, steps: int | None, what: str, transform: Callable[[Any], Any] | None = None,
                 check_finite: bool = True, shard: tuple[int, int] | None = None, carry_on: bool = True,
                 inputs: Any = None) -> None:
        if isinstance(data, Dataset):
            raise TypeError(f"{what}: {type(data).__name__} is a dataset of samples; batch it first: pass "
                            "xpcnn.DataLoader(dataset, batch_size=32)")
        if all(hasattr(data, name) for name in ("x", "y", "class_names")) and not isinstance(data, Iterator):
            raise TypeError(f"{what}: {type(data).__name__} holds arrays in memory: pass its arrays, x=data.x and "
                            "y=data.y")
        if shard is not None and not isinstance(data, DataLoader):
            raise ValueError(f"{what}: distributed training reads arrays or an xpcnn.DataLoader (each rank reads its "
                             f"share); got {type(data).__name__}")
        self.what, self.transform, self.check_finite = what, transform, check_finite
        self.loader, self.shard, self.inputs = data, shard, inputs
        self.kind = "loader" if isinstance(data, DataLoader) else "pydataset" if is_dataset(data) else "iterable"
        self.one_shot = isinstance(data, Iterator)  # a generator: it can be read once only
        self.steps = steps if steps is not None else len(data) if hasattr(data, "__len__") else None
        self._requested_steps, self._carry_on = steps, carry_on
        self._stream: Iterator[Any] | None = None  # training with steps: the pass that goes on across epochs
        self._open: list[Any] = []  # the loops to close when the engine is done (workers end with them)
        self._first: Any = None
        self.exhausted = False  # True once an iterator has run out (fit stops then)

    @property
    def num_samples(self) -> int | None:
        """Samples in one pass of the input when it is a loader; None for streams of unknown length."""
        return self.loader.num_samples if self.kind == "loader" else None

    @property
    def batch_size(self) -> int | None:
        """The loader's batch size; None for streams whose batches come made."""
        return self.loader.batch_size if self.kind == "loader" else None

    def span(self, step: int) -> tuple[int, int]:
        """The positions of batch ``step``'s samples (this rank's share) in the epoch's order."""
        return batch_span(step, self.loader.batch_size, self.loader.num_samples, self.shard)

    def first_batch(self) -> tuple[Any, Any]:
        """``(x, y)`` of the first batch, for the checks and the model's shapes (``y`` None for inputs alone);
        read once, and for an iterator kept to be yielded first."""
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
                if self.one_shot:  # keep what was read
                    self._stream = itertools.chain([batch], it)
            self._first = _split(batch, self.what)
        return self._first

    def _pass(self) -> Iterator[Any]:
        """One pass over the input from its start (an iterator: what is left of it)."""
        if self.kind == "loader":
            yield from self.loader.iterate(self.shard)
        elif self.kind == "pydataset":
            for i in range(len(self.loader)):
                yield self.loader[i]
            if hasattr(self.loader, "on_epoch_end"):
                self.loader.on_epoch_end()
        elif self.one_shot:
            yield from self._stream if self._stream is not None else self.loader
        else:
            yield from self.loader

    def _batches(self, done: int) -> Iterator[Any]:
        if self.one_shot:  # one stream, whatever the steps
            self._stream = self._stream if self._stream is not None else iter(self.loader)
            yield from (self._stream if self._requested_steps is None
                        else itertools.islice(self._stream, self._requested_steps))
            return
        if self._requested_steps is None:
            if not (done and self.kind == "loader" and self.loader.state_dict()["batch"] == 0):
                yield from self._pass()  # (a resumed loader: the rest of its pass, none when it was complete)
            return
        if not self._carry_on:  # validation: the first ``steps`` batches each time
            yield from itertools.islice(self._pass(), self._requested_steps)
            return
        for _ in range(self._requested_steps - done):
            batch = next(self._stream, _END) if self._stream is not None else _END
            if batch is _END:  # start (again)
                self._stream = self._pass()
                self._open.append(self._stream)
                batch = next(self._stream, _END)
                if batch is _END:
                    return
            yield batch

    def epoch(self, augment: bool = True, done: int = 0) -> Iterator[tuple[Any, Any]]:
        """``(x, y)`` batches of one epoch on the device (``y`` None for inputs alone); ``done``: the batches of
        it a resumed run had done already (``load_state_dict`` put the input after them)."""
        loop = self._epoch(augment, done)
        self._open = [g for g in self._open if g.gi_frame is not None] + [loop]  # finished loops need no close
        return loop

    def _epoch(self, augment: bool, done: int) -> Iterator[tuple[Any, Any]]:
        step = -1
        for step, batch in enumerate(self._batches(done)):
            x, y = _split(batch, self.what)
            if self.kind != "loader":
                if self.check_finite:
                    for part in (x, y):
                        for a in part if isinstance(part, list) else [part]:
                            if isinstance(a, np.ndarray):
                                refuse_non_finite(a, f"{self.what}: batch {step}")
                x = _each(x, inputs_on_device)
                y = None if y is None else _each(y, asarray)
            if augment and self.transform is not None:
                x = _each(x, self.transform)
            yield x, y
        if self.one_shot and (step < 0 or self._requested_steps is not None and step + 1 < self._requested_steps):
            self.exhausted = True
            warnings.warn(f"{self.what}: the generator ran out of data; training stops here (give a re-iterable "
                          "input such as a DataLoader, or one with steps_per_epoch * epochs batches)", UserWarning,
                          stacklevel=2)

    def state_dict(self) -> dict[str, Any] | None:
        """The position of the next batch, for a backup: a ``DataLoader``'s ``state_dict``; None for other
        inputs, whose position cannot be saved. Validation (``carry_on=False``) reads a new pass each time:
        a pass cut short by ``steps`` is not gone on with."""
        if self.kind != "loader":
            return None
        state = self.loader.state_dict()
        if not self._carry_on and state["batch"]:
            state = {"seed": self.loader.seed, "epoch": state["epoch"] + 1, "batch": 0}
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Go on from ``state``: the next batch is the one it names (a pass carried across epochs included)."""
        if self.kind != "loader":
            raise ValueError(f"{self.what}: the position of a {type(self.loader).__name__} cannot be restored; "
                             "only an xpcnn.DataLoader's")
        self.close()
        self.loader.load_state_dict(state)

    def close(self) -> None:
        """End the loops still open: a loader's workers end with them, even while an exception is held."""
        for loop in self._open:
            loop.close()
        self._open.clear()
        self._stream = None


_END = object()
