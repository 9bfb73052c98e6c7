"""Inverted dropout: zero a random part of the input while training and rescale the rest by 1 / (1 - rate).

Masks come from ``xpcnn.random.bernoulli`` on the current device, so a seeded run is reproducible and the
gradient check can replay a mask by rewinding the stream. Outside training both layers are the identity.
"""

from __future__ import annotations

import numbers
from typing import Any

import array_api_compat

from .. import random
from .base import Layer

__all__ = ["Dropout", "SpatialDropout2D"]


class _Dropout(Layer):
    """Keeps each mask entry with probability 1 - rate; the scaled mask is what backward multiplies by."""

    def __init__(self, rate: float, *, name: str | None = None) -> None:
        super().__init__(name)
        name = type(self).__name__
        if not isinstance(rate, numbers.Real) or isinstance(rate, bool):
            raise TypeError(f"{name}: rate must be a number in [0, 1), got {rate!r}")
        if not 0.0 <= rate < 1.0:
            raise ValueError(f"{name}: rate must lie in [0, 1), got {rate!r}")
        self.rate = float(rate)

    def _mask_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        raise NotImplementedError

    def _forward(self, x: Any, training: bool) -> Any:
        if not training or self.rate == 0.0:
            return x
        xp = array_api_compat.array_namespace(x)
        keep = 1.0 - self.rate
        kept = random.bernoulli(self._mask_shape(tuple(x.shape)), keep)
        self._cache = xp.astype(kept, x.dtype) * (1.0 / keep)
        return x * self._cache

    def _backward(self, dy: Any) -> Any:
        return dy if self.rate == 0.0 else dy * self._cache

    def get_config(self) -> dict[str, Any]:
        return {"rate": self.rate}


class Dropout(_Dropout):
    """Zeroes each element independently with probability ``rate`` (torch.nn.Dropout)."""

    def _mask_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        return shape


class SpatialDropout2D(_Dropout):
    """Zeroes whole channels of NCHW input: one draw per (sample, channel), mask (N, C, 1, 1) (nn.Dropout2d)."""

    input_ndim = 3

    def _mask_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        return (shape[0], shape[1], 1, 1)
