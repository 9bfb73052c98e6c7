"""Data in: the checks a dataset passes before training, and mini-batches on the device.

Everything that looks at the data on the host (shapes, dtypes, label ranges, NaN) runs once here, before a
training loop starts and before any state changes: ``check_samples`` for inputs, ``check_targets`` for
targets against the model's output and the loss, ``split_validation`` for Keras's ``validation_split``. The
``DataLoader`` then moves the dataset to the device once, and every batch is a gather on the device.
Shuffling draws one permutation per epoch with ``xpcnn.random.permutation`` (on the device), so a training
loop never waits for the host between batches.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import Any

import array_api_compat
import numpy as np

from . import random
from ._checks import check_flag, check_int
from .backend import asarray, dtype_name, get_backend, to_numpy

__all__ = ["DataLoader", "check_finite", "check_samples", "check_targets", "split_validation"]


# --- checks, once per call of fit/evaluate/predict -----------------------------------------------------

def check_samples(a: Any, name: str, *, inputs: bool = False) -> Any:
    """``a`` as an array with a non-empty leading sample axis: arrays of any backend stay as they are,
    anything else (lists, NumPy) becomes NumPy. ``inputs=True`` also requires floating values, since integer
    images would fail deep inside the first layer."""
    if a is None:
        raise ValueError(f"{name} is required")
    if not array_api_compat.is_array_api_obj(a):
        a = np.asarray(a)
    if a.ndim == 0:
        raise ValueError(f"{name} must have a leading sample axis, got a 0-d array")
    if a.shape[0] == 0:
        raise ValueError(f"{name} holds no samples (shape {tuple(a.shape)})")
    if inputs and not _has_kind(a, "real floating"):
        raise ValueError(f"{name} must hold floating-point values, got dtype {dtype_name(a.dtype)}; convert it "
                         "first, e.g. images.astype('float32') / 255")
    return a



_FINITE_CHUNK = 1 << 22  # values per pass of the NumPy check: bounded temporary memory on big datasets


def check_finite(a: Any, name: str) -> None:
    """A ValueError naming ``name`` and the first sample holding NaN or infinity, if one does (floating data
    only): one pass over host data in bounded chunks, one reduction and one read for a device array."""
    if not _has_kind(a, "real floating"):
        return
    if isinstance(a, np.ndarray):
        per_sample = max(1, math.prod(a.shape[1:]))
        step = max(1, _FINITE_CHUNK // per_sample)
        for start in range(0, a.shape[0], step):
            chunk = a[start:start + step]
            if not np.isfinite(chunk).all():
                bad = start + int(np.argmin(np.isfinite(chunk.reshape(chunk.shape[0], -1)).all(axis=1)))
                raise ValueError(f"{name} holds NaN or infinity (first in sample {bad}); clean the data, or pass "
                                 "check_finite=False to train on it anyway")
        return
    xp = array_api_compat.array_namespace(a)
    if not bool(to_numpy(xp.all(xp.isfinite(a)))):
        raise ValueError(f"{name} holds NaN or infinity; clean the data, or pass check_finite=False to train on it "
                         "anyway")

def _has_kind(a: Any, kind: str) -> bool:
    if isinstance(a, np.ndarray):
        return bool(np.issubdtype(a.dtype, np.floating if kind == "real floating" else np.integer))
    return bool(array_api_compat.array_namespace(a).isdtype(a.dtype, kind))


def _reshape(a: Any, shape: tuple[int, ...]) -> Any:
    if isinstance(a, np.ndarray):
        return a.reshape(shape)
    return array_api_compat.array_namespace(a).reshape(a, shape)


def check_targets(x: Any, y: Any, output_shape: tuple[int, ...], loss_name: str | None, xname: str = "x",
                  yname: str = "y") -> Any:
    """``y`` checked against ``x``, the model's per-sample ``output_shape`` and the loss, on the host; returned
    reshaped to the outputs where a regression or binary target came flat.

    Cross-entropy takes integer labels in ``[0, classes)`` or one-hot rows; binary cross-entropy 0/1 labels
    or probabilities shaped like the outputs; other losses targets shaped like the outputs.
    """
    if x.shape[0] != y.shape[0]:
        raise ValueError(
            f"{xname} and {yname} must have the same length (number of samples): {xname} has {x.shape[0]} "
            f"(shape {tuple(x.shape)}), {yname} has {y.shape[0]} (shape {tuple(y.shape)})"
        )
    out = tuple(output_shape)
    n = int(y.shape[0])
    if loss_name == "cross_entropy":
        if len(out) != 1:
            raise ValueError(f"cross_entropy needs a model output of shape (classes,) per sample; this model "
                             f"outputs {out}")
        classes = out[0]
        if y.ndim == 1:
            if not _has_kind(y, "integral"):
                raise ValueError(f"{yname}: 1-D targets for cross_entropy are class labels and must be integers, "
                                 f"got dtype {dtype_name(y.dtype)}; give one-hot targets as (N, {classes})")
            labels = np.asarray(to_numpy(y))
            bad = (labels < 0) | (labels >= classes)
            if bad.any():
                where = np.flatnonzero(bad)
                raise ValueError(
                    f"{yname}: integer labels must lie in [0, {classes}) (the model has {classes} outputs); "
                    f"found {where.size} outside, e.g. {labels[where[0]]} at index {where[0]} "
                    f"(min {labels.min()}, max {labels.max()})"
                )
        elif tuple(y.shape[1:]) != out:
            raise ValueError(f"{yname}: cross_entropy takes integer labels ({n},) or one-hot targets "
                             f"({n}, {classes}); got shape {tuple(y.shape)}")
        return y
    if tuple(y.shape[1:]) != out:
        if math.prod(y.shape[1:]) == math.prod(out):
            y = _reshape(y, (n, *out))
        else:
            raise ValueError(f"{yname}: targets of shape {tuple(y.shape)} do not match the model's outputs "
                             f"({n}, {', '.join(map(str, out))})")
    if loss_name == "binary_cross_entropy" and _has_kind(y, "integral"):
        labels = np.asarray(to_numpy(y))
        if labels.size and (labels.min() < 0 or labels.max() > 1):
            raise ValueError(f"{yname}: binary_cross_entropy takes 0/1 labels, found values in "
                             f"[{labels.min()}, {labels.max()}]")
    return y


def split_validation(x: Any, y: Any, fraction: float) -> tuple[tuple[Any, Any], tuple[Any, Any]]:
    """``((x_train, y_train), (x_val, y_val))`` with the LAST ``fraction`` of the samples held out (before any
    shuffling), as Keras's ``validation_split``; ``x`` and ``y`` may be lists of arrays (several inputs or
    outputs)."""
    n = int((x[0] if isinstance(x, list) else x).shape[0])
    split_at = int(n * (1.0 - float(fraction)))
    if split_at < 1 or split_at >= n:
        raise ValueError(f"validation_split={fraction} leaves no training or no validation samples out of {n}")

    def cut(v: Any, part: slice) -> Any:
        return [a[part, ...] for a in v] if isinstance(v, list) else v[part, ...]

    head, tail = slice(None, split_at), slice(split_at, None)
    return (cut(x, head), cut(y, head)), (cut(x, tail), cut(y, tail))


# --- batches on the device -----------------------------------------------------------------------------


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


class DataLoader:
    """Iterate over ``(xb, yb)`` mini-batches (or ``xb`` when ``y`` is None) of the current backend.

    ``x`` and ``y`` may be NumPy arrays, lists, or arrays of any backend; they are moved to the current
    backend's device on first use (``x`` in the backend's float dtype when floating, integer labels keep an
    integer dtype) and moved again only if the backend changes. Each ``for`` loop over the loader is one
    epoch: with ``shuffle`` a fresh permutation is drawn, so ``xpcnn.manual_seed`` makes epochs reproducible.
    ``transform`` (e.g. ``xpcnn.transforms.Compose([...])``) is applied to each ``xb`` on the device.
    ``shard=(rank, ranks)`` yields only that rank's contiguous share of each batch (data-parallel training:
    with one seed every rank draws the same order, so the shares make up the one-process batches).
    A list or tuple of arrays for ``x`` or ``y`` is several arrays of one length (a model's several inputs
    or outputs): their batches come as lists, each gathered with the same indices.
    """

    def __init__(
        self,
        x: Any,
        y: Any = None,
        batch_size: int = 32,
        shuffle: bool = True,
        drop_last: bool = False,
        transform: Callable[[Any], Any] | None = None,
        shard: tuple[int, int] | None = None,
    ) -> None:
        batch_size = check_int(batch_size, "batch_size", 1, "DataLoader")
        if transform is not None and not callable(transform):
            raise TypeError(f"transform must be callable or None, got {transform!r}")
        xs, self._several_x = _parts(x)
        ys, self._several_y = ([], False) if y is None else _parts(y)
        shapes = {f"x[{i}]" if self._several_x else "x": _shape(a, "x") for i, a in enumerate(xs)}
        shapes.update({f"y[{i}]" if self._several_y else "y": _shape(a, "y") for i, a in enumerate(ys)})
        if len({shape[0] for shape in shapes.values()}) > 1:
            raise ValueError("x and y must hold the same number of samples, got shapes "
                             + ", ".join(f"{k}.shape={v}" for k, v in shapes.items()))
        self.x, self.y = x, y
        self._xs, self._ys = xs, (None if y is None else ys)
        self.num_samples = int(next(iter(shapes.values()))[0])
        self.batch_size = batch_size
        self.shuffle = check_flag(shuffle, "shuffle", "DataLoader")
        self.drop_last = check_flag(drop_last, "drop_last", "DataLoader")
        self.transform = transform
        self.shard = shard  # (rank, ranks): this rank's contiguous share of every batch
        self._cache: tuple[Any, Any, Any] | None = None  # (backend, x on device, y on device)

    def __len__(self) -> int:
        """Number of batches per epoch."""
        if self.drop_last:
            return self.num_samples // self.batch_size
        return math.ceil(self.num_samples / self.batch_size)

    def _on_device(self) -> tuple[list[Any], list[Any] | None]:
        backend = get_backend()
        if self._cache is None or self._cache[0] != backend:
            ys = None if self._ys is None else [asarray(a) for a in self._ys]
            self._cache = (backend, [asarray(a) for a in self._xs], ys)
        return self._cache[1], self._cache[2]

    def __iter__(self) -> Iterator[Any]:
        xs, ys = self._on_device()
        xp = get_backend().xp
        order = random.permutation(self.num_samples) if self.shuffle else None
        for b in range(len(self)):
            start, stop = self.span(b)
            if order is None:
                take = lambda a: a[start:stop, ...]  # noqa: E731
            else:
                idx = order[start:stop]
                take = lambda a: xp.take(a, idx, axis=0)  # noqa: E731
            xb = [take(a) for a in xs]
            if self.transform is not None:
                xb = [self.transform(a) for a in xb]
            xb = xb if self._several_x else xb[0]
            if ys is None:
                yield xb
            else:
                yb = [take(a) for a in ys]
                yield xb, (yb if self._several_y else yb[0])

    def span(self, batch: int) -> tuple[int, int]:
        """The samples ``[start, stop)`` of batch ``batch`` (in the epoch's order) this loader yields: all of
        them, or with ``shard`` this rank's contiguous part, the first ``n % ranks`` ranks one larger."""
        start, stop = batch * self.batch_size, min((batch + 1) * self.batch_size, self.num_samples)
        if self.shard is None:
            return start, stop
        rank, ranks = self.shard
        base, extra = divmod(stop - start, ranks)
        first = start + rank * base + min(rank, extra)
        return first, first + base + (rank < extra)

    def __repr__(self) -> str:
        return (
            f"DataLoader(num_samples={self.num_samples}, batch_size={self.batch_size}, shuffle={self.shuffle}, "
            f"drop_last={self.drop_last}, transform={self.transform!r})"
        )
