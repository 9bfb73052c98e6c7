"""Checks of plain Python arguments, shared so one mistake reads the same everywhere: a wrong type is a
``TypeError``, a value out of range a ``ValueError``, both naming the owner, the argument and what was given.

A flag is checked rather than passed through ``bool()``: ``bias="false"`` or a flag of a hand-edited model
file would otherwise silently read as True.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import numpy as np

__all__ = ["check_flag", "check_int", "check_number"]


def _prefix(owner: str) -> str:
    return f"{owner}: " if owner else ""


def check_flag(value: Any, name: str, owner: str = "") -> bool:
    """``value`` as a Python bool; True, False and NumPy's bools are accepted, nothing else."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    raise TypeError(f"{_prefix(owner)}{name} must be True or False, got {type(value).__name__} {value!r}")


def check_int(value: Any, name: str, minimum: int, owner: str = "") -> int:
    """``value`` as a Python int >= ``minimum``; any integer type but bool is accepted."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{_prefix(owner)}{name} must be an integer, got {type(value).__name__} {value!r}")
    if value < minimum:
        raise ValueError(f"{_prefix(owner)}{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def check_number(value: Any, name: str, owner: str = "", minimum: float | None = 0.0) -> float:
    """``value`` as a finite Python float (>= ``minimum`` unless that is None); any real type but bool."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{_prefix(owner)}{name} must be a finite number, got {type(value).__name__} {value!r}")
    if not math.isfinite(value):
        raise ValueError(f"{_prefix(owner)}{name} must be a finite number, got {value!r}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{_prefix(owner)}{name} must be >= {minimum}, got {value!r}")
    return float(value)
