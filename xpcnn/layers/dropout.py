"""Inverted dropout: zero a random part of the input while training and rescale the rest by 1 / (1 - rate).

Masks come from ``xpcnn.random.bernoulli`` on the current device, so a seeded run is reproducible and the
gradient check can replay a mask by rewinding the stream. Outside training every layer here is the identity.
``StochasticDepth`` is the same with one draw per sample: it drops a residual branch for whole samples.
"""

from __future__ import annotations

import numbers
from typing import Any

import array_api_compat

from .. import random
from .base import Layer

__all__ = ["Dropout", "SpatialDropout2D", "StochasticDepth"]


class _Dropout(Layer):
    """Keeps each mask entry with probability 1 - rate; the scaled mask is what backward multiplies by."""

    #: the argument's name and whether it may be 1 (everything dropped)
    _rate_argument: tuple[str, bool] = ("rate", False)

    def __init__(self, rate: float, *, name: str | None = None) -> None:
        super().__init__(name)
        owner, (argument, one_allowed) = type(self).__name__, self._rate_argument
        interval = "[0, 1]" if one_allowed else "[0, 1)"
        if not isinstance(rate, numbers.Real) or isinstance(rate, bool):
            raise TypeError(f"{owner}: {argument} must be a number in {interval}, got {rate!r}")
        if not (0.0 <= rate <= 1.0 if one_allowed else 0.0 <= rate < 1.0):
            raise ValueError(f"{owner}: {argument} must lie in {interval}, got {rate!r}")
        self.rate = float(rate)

    def _mask_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        raise NotImplementedError

    def _forward(self, x: Any, training: bool) -> Any:
        if not training or self.rate == 0.0:
            return x
        xp = array_api_compat.array_namespace(x)
        keep = 1.0 - self.rate
        kept = random.bernoulli(self._mask_shape(tuple(x.shape)), keep)
        self._cache = xp.astype(kept, x.dtype) * (1.0 / keep if keep > 0.0 else 0.0)
        return x * self._cache

    def _backward(self, dy: Any) -> Any:
        return dy if self.rate == 0.0 else dy * self._cache

    def get_config(self) -> dict[str, Any]:
        return {"rate": self.rate}


class Dropout(_Dropout):
    """Zeroes each element independently with probability ``rate`` (torch.nn.Dropout).

    Parameters
    ----------
    rate : float
        The probability of zeroing, in [0, 1).
    name : str, optional
        The layer's name (a model's parameter keys use it); by default made from the class name.

    Raises
    ------
    TypeError
        If ``rate`` is not a number.
    ValueError
        If ``rate`` is outside [0, 1).

    Examples
    --------
    >>> from xpcnn.layers import Dropout
    >>> x = xpcnn.asarray(np.ones((2, 8)))
    >>> float(xpcnn.to_numpy(Dropout(0.5)(x)).sum())  # the identity outside training
    16.0
    >>> sorted(set(xpcnn.to_numpy(Dropout(0.5)(x, training=True)).ravel().tolist()) - {0.0})
    [2.0]
    """

    def _mask_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        return shape


class SpatialDropout2D(_Dropout):
    """Zeroes whole channels of NCHW input: one draw per (sample, channel), mask (N, C, 1, 1) (nn.Dropout2d).

    Parameters
    ----------
    rate : float
        The probability of zeroing, in [0, 1).
    name : str, optional
        The layer's name (a model's parameter keys use it); by default made from the class name.

    Raises
    ------
    TypeError
        If ``rate`` is not a number.
    ValueError
        If ``rate`` is outside [0, 1).
    """

    input_ndim = 3

    def _mask_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        return (shape[0], shape[1], 1, 1)


class StochasticDepth(_Dropout):
    """Drops the input of whole samples with probability ``p`` while training, the survivors scaled by
    1 / (1 - p) (torchvision.ops.StochasticDepth): applied to a residual branch before its ``Add``, it skips the
    block for those samples. ``mode="row"``: one draw per sample, mask ``(N, 1, ...)``; ``"batch"``: one draw
    for the whole batch. ``p=1`` drops everything. The identity outside training.

    Parameters
    ----------
    p : float
        The probability of dropping, in [0, 1].
    mode : {"row", "batch"}, default "row"
    name : str, optional
        The layer's name (a model's parameter keys use it); by default made from the class name.

    Raises
    ------
    TypeError
        If ``p`` is not a number.
    ValueError
        If ``p`` is outside [0, 1] or ``mode`` is unknown.
    """

    _rate_argument = ("p", True)

    def __init__(self, p: float, mode: str = "row", *, name: str | None = None) -> None:
        super().__init__(p, name=name)
        if mode not in ("row", "batch"):
            raise ValueError(f"StochasticDepth: mode must be 'row' or 'batch', got {mode!r}")
        self.mode = mode

    @property
    def p(self) -> float:
        """torchvision's name for ``rate``: the probability of dropping a sample (or the batch)."""
        return self.rate

    def _mask_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        return (shape[0] if self.mode == "row" else 1,) + (1,) * (len(shape) - 1)

    def get_config(self) -> dict[str, Any]:
        return {"p": self.rate, "mode": self.mode}
