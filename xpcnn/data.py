"""Mini-batches on the device: the dataset is moved once, then every batch is a gather on the device.

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
from .backend import asarray, get_backend

__all__ = ["DataLoader"]


def _shape(a: Any, name: str) -> tuple[int, ...]:
    shape = tuple(a.shape)
    if len(shape) == 0:
        raise ValueError(f"{name} must have a leading sample axis, got a 0-d array")
    return shape


class DataLoader:
    """Iterate over ``(xb, yb)`` mini-batches (or ``xb`` when ``y`` is None) of the current backend.

    ``x`` and ``y`` may be NumPy arrays, lists, or arrays of any backend; they are moved to the current
    backend's device on first use (``x`` in the backend's float dtype when floating, integer labels keep an
    integer dtype) and moved again only if the backend changes. Each ``for`` loop over the loader is one
    epoch: with ``shuffle`` a fresh permutation is drawn, so ``xpcnn.manual_seed`` makes epochs reproducible.
    ``transform`` (e.g. ``xpcnn.transforms.Compose([...])``) is applied to each ``xb`` on the device.
    """

    def __init__(
        self,
        x: Any,
        y: Any = None,
        batch_size: int = 32,
        shuffle: bool = True,
        drop_last: bool = False,
        transform: Callable[[Any], Any] | None = None,
    ) -> None:
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)):
            raise TypeError(f"batch_size must be an int, got {type(batch_size).__name__} {batch_size!r}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if transform is not None and not callable(transform):
            raise TypeError(f"transform must be callable or None, got {transform!r}")
        if not array_api_compat.is_array_api_obj(x):
            x = np.asarray(x)
        if y is not None and not array_api_compat.is_array_api_obj(y):
            y = np.asarray(y)
        x_shape = _shape(x, "x")
        if y is not None:
            y_shape = _shape(y, "y")
            if y_shape[0] != x_shape[0]:
                raise ValueError(
                    f"x and y must hold the same number of samples, got x.shape={x_shape} and y.shape={y_shape}"
                )
        self.x, self.y = x, y
        self.num_samples = int(x_shape[0])
        self.batch_size = int(batch_size)
        self.shuffle, self.drop_last, self.transform = bool(shuffle), bool(drop_last), transform
        self._cache: tuple[Any, Any, Any] | None = None  # (backend, x on device, y on device)

    def __len__(self) -> int:
        """Number of batches per epoch."""
        if self.drop_last:
            return self.num_samples // self.batch_size
        return math.ceil(self.num_samples / self.batch_size)

    def _on_device(self) -> tuple[Any, Any]:
        backend = get_backend()
        if self._cache is None or self._cache[0] != backend:
            y = None if self.y is None else asarray(self.y)
            self._cache = (backend, asarray(self.x), y)
        return self._cache[1], self._cache[2]

    def __iter__(self) -> Iterator[Any]:
        x, y = self._on_device()
        xp = get_backend().xp
        order = random.permutation(self.num_samples) if self.shuffle else None
        for b in range(len(self)):
            start, stop = b * self.batch_size, min((b + 1) * self.batch_size, self.num_samples)
            if order is None:
                xb = x[start:stop, ...]
                yb = None if y is None else y[start:stop, ...]
            else:
                idx = order[start:stop]
                xb = xp.take(x, idx, axis=0)
                yb = None if y is None else xp.take(y, idx, axis=0)
            if self.transform is not None:
                xb = self.transform(xb)
            yield xb if y is None else (xb, yb)

    def __repr__(self) -> str:
        return (
            f"DataLoader(num_samples={self.num_samples}, batch_size={self.batch_size}, shuffle={self.shuffle}, "
            f"drop_last={self.drop_last}, transform={self.transform!r})"
        )
