"""Weight initialisation, drawn on the host so that one seed gives the same weights on every backend.

Each function returns a float64 NumPy array; layers cast it to the backend dtype and move it to the device.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from .random import host_generator

__all__ = ["INITIALIZERS", "fans", "glorot_normal", "glorot_uniform", "he_normal", "he_uniform"]


def fans(shape: tuple[int, ...]) -> tuple[int, int]:
    """(fan_in, fan_out) as PyTorch computes them: ``(out, in, *kernel)`` weights, receptive field included."""
    receptive = math.prod(shape[2:])
    return shape[1] * receptive, shape[0] * receptive


def he_uniform(shape: tuple[int, ...], fan_in: int, fan_out: int) -> np.ndarray:
    """Kaiming/He uniform for ReLU nets: U(-b, b), b = sqrt(6 / fan_in) (torch ``kaiming_uniform_``, relu)."""
    bound = math.sqrt(6.0 / fan_in)
    return host_generator().uniform(-bound, bound, size=shape)


def he_normal(shape: tuple[int, ...], fan_in: int, fan_out: int) -> np.ndarray:
    """Kaiming/He normal: N(0, 2 / fan_in)."""
    return host_generator().normal(0.0, math.sqrt(2.0 / fan_in), size=shape)


def glorot_uniform(shape: tuple[int, ...], fan_in: int, fan_out: int) -> np.ndarray:
    """Glorot/Xavier uniform (Keras's default): U(-b, b), b = sqrt(6 / (fan_in + fan_out))."""
    bound = math.sqrt(6.0 / (fan_in + fan_out))
    return host_generator().uniform(-bound, bound, size=shape)


def glorot_normal(shape: tuple[int, ...], fan_in: int, fan_out: int) -> np.ndarray:
    """Glorot/Xavier normal: N(0, 2 / (fan_in + fan_out))."""
    return host_generator().normal(0.0, math.sqrt(2.0 / (fan_in + fan_out)), size=shape)


INITIALIZERS: dict[str, Callable[[tuple[int, ...], int, int], np.ndarray]] = {
    "he_uniform": he_uniform,
    "he_normal": he_normal,
    "glorot_uniform": glorot_uniform,
    "glorot_normal": glorot_normal,
}


def check_initializer(name: str, owner: str) -> str:
    """Reject an unknown initializer name at construction time."""
    if name not in INITIALIZERS:
        raise ValueError(f"{owner}: weight_init must be one of {sorted(INITIALIZERS)}, got {name!r}")
    return name
