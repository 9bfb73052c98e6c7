"""Layers that rearrange or pad each sample without learning anything: Flatten, Reshape, ZeroPadding2D."""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import Any

import array_api_compat

from ..ops import resize as resize_ops
from .base import Layer

__all__ = ["Flatten", "Reshape", "ZeroPadding2D"]


class Reshape(Layer):
    """Reshape each sample: ``(N, *in_shape)`` -> ``(N, *shape)``; one entry of ``shape`` may be -1 (inferred).

    Parameters
    ----------
    shape : int or sequence of int
        The per-sample target shape, no batch axis.
    name : str, optional
        The layer's name (a model's parameter keys use it); by default made from the class name.

    Raises
    ------
    TypeError
        If ``shape`` is not an int or a sequence of ints.
    ValueError
        If an entry is neither positive nor -1, -1 appears twice, or (at build) the sizes differ.

    Examples
    --------
    >>> from xpcnn.layers import Reshape
    >>> Reshape((4, -1))(xpcnn.asarray(np.zeros((2, 3, 4, 4)))).shape
    (2, 4, 12)
    """

    def __init__(self, shape: Any, *, name: str | None = None) -> None:
        super().__init__(name)
        target = (shape,) if isinstance(shape, numbers.Integral) else shape
        if (
            not isinstance(target, Sequence)
            or isinstance(target, str)
            or not all(isinstance(d, numbers.Integral) and not isinstance(d, bool) for d in target)
        ):
            raise TypeError(f"{self._name()}: shape must be an int or a sequence of ints, got {shape!r}")
        target = tuple(int(d) for d in target)
        if any(d < 1 and d != -1 for d in target):
            raise ValueError(f"{self._name()}: shape entries must be positive or -1, got {target}")
        if target.count(-1) > 1:
            raise ValueError(f"{self._name()}: shape may contain at most one -1, got {target}")
        self.target_shape = target

    def _resolve(self, sample_shape: tuple[int, ...]) -> tuple[int, ...]:
        """The target shape for this per-sample input, -1 filled in; an error if the sizes differ."""
        size = math.prod(sample_shape)
        known = math.prod(d for d in self.target_shape if d != -1)
        inferred = -1 in self.target_shape and size % known == 0
        if not inferred and known != size:
            raise ValueError(
                f"{self._name()}: cannot reshape per-sample shape {sample_shape} ({size} elements) "
                f"into {self.target_shape}"
            )
        return tuple(size // known if d == -1 else d for d in self.target_shape)

    def _check_input(self, sample_shape: tuple[int, ...]) -> None:
        self._resolve(sample_shape)

    def _build(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        return self._resolve(input_shape)

    def _forward(self, x: Any, training: bool) -> Any:
        if training:
            self._cache = tuple(x.shape)
        xp = array_api_compat.array_namespace(x)
        return xp.reshape(x, (x.shape[0], *self._resolve(tuple(x.shape[1:]))))

    def _backward(self, dy: Any) -> Any:
        return array_api_compat.array_namespace(dy).reshape(dy, self._cache)

    def get_config(self) -> dict[str, Any]:
        return {"shape": self.target_shape}


class Flatten(Reshape):
    """``(N, ...)`` -> ``(N, prod(...))``, row-major like ``torch.flatten(x, 1)``.

    Parameters
    ----------
    name : str, optional
        The layer's name (a model's parameter keys use it); by default made from the class name.

    Examples
    --------
    >>> from xpcnn.layers import Flatten
    >>> Flatten()(xpcnn.asarray(np.zeros((2, 3, 4, 4)))).shape
    (2, 48)
    """

    def __init__(self, *, name: str | None = None) -> None:
        super().__init__((-1,), name=name)

    def get_config(self) -> dict[str, Any]:
        return {}


class ZeroPadding2D(Layer):
    """Zeros around each image: ``(N, C, H, W)`` -> ``(N, C, top + H + bottom, left + W + right)``.

    Parameters
    ----------
    padding : int, (int, int) or ((int, int), (int, int)), default 1
        An int (all sides), a pair ``(h, w)`` (symmetric) or ``((top, bottom), (left, right))``.
    name : str, optional
        The layer's name (a model's parameter keys use it); by default made from the class name.

    Examples
    --------
    >>> from xpcnn.layers import ZeroPadding2D
    >>> ZeroPadding2D(((1, 0), (2, 2)))(xpcnn.asarray(np.zeros((1, 3, 4, 4)))).shape
    (1, 3, 5, 8)
    """

    input_ndim = 3

    def __init__(self, padding: Any = 1, *, name: str | None = None) -> None:
        super().__init__(name)
        top, bottom, left, right = resize_ops.zero_pad_amounts(padding, owner=self._name())
        self.padding = ((top, bottom), (left, right))

    def _build(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        (top, bottom), (left, right) = self.padding
        c, h, w = input_shape
        return (c, top + h + bottom, left + w + right)

    def _forward(self, x: Any, training: bool) -> Any:
        return resize_ops.zero_pad2d(x, self.padding)

    def _backward(self, dy: Any) -> Any:
        return resize_ops.zero_pad2d_backward(dy, self.padding)

    def get_config(self) -> dict[str, Any]:
        return {"padding": self.padding}
