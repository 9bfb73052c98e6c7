"""Preprocessing inside the model (Keras's ``Rescaling`` and ``Normalization``), so that a saved model takes the
images as the loader gives them: the [0, 1] floats of a uint8 batch scaled on the device, for a pretrained
network that expects ImageNet's mean and standard deviation subtracted and divided out.

Both are fixed: their constants live in the config, not in buffers (so a torchvision state dict still loads
as it is), and nothing about them trains.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import Any

from ..backend import get_backend
from .base import Layer

__all__ = ["Normalization", "Rescaling"]


def _numbers(value: Any, name: str, owner: str) -> tuple[float, ...]:
    """One finite number or a sequence of them, as a tuple."""
    values = (value,) if isinstance(value, numbers.Real) else value
    if (isinstance(values, (str, bytes)) or not isinstance(values, Sequence) or not values
            or not all(isinstance(v, numbers.Real) and not isinstance(v, bool) for v in values)):
        raise TypeError(f"{owner}: {name} must be a number or a sequence of numbers, got {value!r}")
    if not all(math.isfinite(v) for v in values):
        raise ValueError(f"{owner}: {name} must be finite, got {value!r}")
    return tuple(float(v) for v in values)


def _number(value: Any, name: str, owner: str) -> float:
    if not isinstance(value, numbers.Real):
        raise TypeError(f"{owner}: {name} must be a number, got {value!r}")
    return _numbers(value, name, owner)[0]


class Rescaling(Layer):
    """``x * scale + offset`` (Keras's ``Rescaling``): ``Rescaling(1 / 127.5, offset=-1)`` maps [0, 255] to
    [-1, 1].

    Parameters
    ----------
    scale : float
    offset : float, default 0.0
    name : str, optional
        The layer's name (a model's parameter keys use it); by default made from the class name.

    Raises
    ------
    TypeError
        If a value is not a number.
    ValueError
        If a value is not finite.

    Examples
    --------
    >>> from xpcnn.layers import Rescaling
    >>> xpcnn.to_numpy(Rescaling(1 / 127.5, offset=-1)(xpcnn.asarray(np.array([[0.0, 255.0]]))))
    array([[-1.,  1.]], dtype=float32)
    """

    computes_in_float32 = True

    def __init__(self, scale: float, offset: float = 0.0, *, name: str | None = None) -> None:
        super().__init__(name)
        self.scale = _number(scale, "scale", "Rescaling")
        self.offset = _number(offset, "offset", "Rescaling")

    def _forward(self, x: Any, training: bool) -> Any:
        return x * self.scale + self.offset

    def _backward(self, dy: Any) -> Any:
        return dy * self.scale

    def get_config(self) -> dict[str, Any]:
        return {"scale": self.scale, "offset": self.offset}


class Normalization(Layer):
    """``(x - mean) / sqrt(variance)`` per channel (axis 1 of ``(N, C, ...)``), with fixed ``mean`` and
    ``variance`` (Keras's ``Normalization`` given them; ``Normalization.imagenet()`` for torchvision's
    pretrained networks on inputs in [0, 1]).

    Parameters
    ----------
    mean : float or sequence of float
        One value, or one per channel.
    variance : float or sequence of float
        As many values as ``mean``, each > 0.
    name : str, optional
        The layer's name (a model's parameter keys use it); by default made from the class name.

    Raises
    ------
    TypeError
        If a value is not a number.
    ValueError
        If a value is not finite, a variance is not > 0, or the lengths differ; when called, for input
        whose channel count differs from the number of means.

    Examples
    --------
    >>> from xpcnn.layers import Normalization
    >>> layer = Normalization(mean=[0.5, 0.5, 0.5], variance=[0.25, 0.25, 0.25])
    >>> xpcnn.to_numpy(layer(xpcnn.asarray(np.ones((1, 3, 1, 1))))).ravel()
    array([1., 1., 1.], dtype=float32)
    """

    computes_in_float32 = True

    def __init__(self, mean: Any, variance: Any, *, name: str | None = None) -> None:
        super().__init__(name)
        self.mean = _numbers(mean, "mean", "Normalization")
        self.variance = _numbers(variance, "variance", "Normalization")
        if len(self.mean) != len(self.variance):
            raise ValueError(f"Normalization: mean and variance must have one entry per channel alike, got "
                             f"{len(self.mean)} and {len(self.variance)}")
        if min(self.variance) <= 0.0:
            raise ValueError(f"Normalization: variance must be > 0, got {self.variance}")

    @classmethod
    def imagenet(cls, name: str | None = None) -> Normalization:
        """ImageNet's mean and standard deviation (as torchvision's weights expect), for inputs in [0, 1].

        Parameters
        ----------
        name : str, optional
            The layer's name.

        Returns
        -------
        Normalization
        """
        return cls((0.485, 0.456, 0.406), tuple(s * s for s in (0.229, 0.224, 0.225)), name=name)

    def _check_input(self, sample_shape: tuple[int, ...]) -> None:
        if len(sample_shape) < 1 or len(self.mean) not in (1, sample_shape[0]):
            raise ValueError(f"Normalization: {len(self.mean)} channel means for per-sample input {sample_shape} "
                             f"(channels first)")

    def _constants(self, ndim: int) -> tuple[Any, Any]:
        """The mean and 1/std as arrays shaped to broadcast over ``(N, C, ...)``."""
        backend = get_backend()
        shape = (1, len(self.mean)) + (1,) * (ndim - 2)
        mean = backend.xp.reshape(backend.xp.asarray(self.mean, dtype=backend.dtype, device=backend.device), shape)
        inverse = backend.xp.reshape(backend.xp.asarray([1.0 / math.sqrt(v) for v in self.variance],
                                                        dtype=backend.dtype, device=backend.device), shape)
        return mean, inverse

    def _forward(self, x: Any, training: bool) -> Any:
        mean, inverse = self._constants(x.ndim)
        if training:
            self._cache = inverse
        return (x - mean) * inverse

    def _backward(self, dy: Any) -> Any:
        return dy * self._cache

    def get_config(self) -> dict[str, Any]:
        return {"mean": list(self.mean), "variance": list(self.variance)}
