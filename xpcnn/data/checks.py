"""The checks data passes before training, on the host and before any state changes.

``check_samples`` for inputs, ``check_targets`` for targets against the model's output and the loss,
``check_finite`` for NaN and infinity, ``split_validation`` for Keras's ``validation_split``. In-memory arrays
are checked whole, once; a stream is checked batch by batch as it is read (``xpcnn.data.loader``).
"""

from __future__ import annotations

import math
from typing import Any

import array_api_compat
import numpy as np

from ..backend import dtype_name, to_numpy

__all__ = ["check_finite", "check_samples", "check_targets", "refuse_non_finite", "split_validation"]


# --- checks, once per call of fit/evaluate/predict -----------------------------------------------------

def check_samples(a: Any, name: str, *, inputs: bool = False) -> Any:
    """``a`` as an array with a non-empty leading sample axis: arrays of any backend stay as they are,
    anything else (lists, NumPy) becomes NumPy. ``inputs=True`` also requires floating values or uint8 (images,
    scaled to [0, 1] on the device batch by batch), since other integers would fail deep inside the first layer.

    Parameters
    ----------
    a : array_like
    name : str
        What the messages call it (``"x"``).
    inputs : bool, default False
        Whether ``a`` holds a model's inputs.

    Returns
    -------
    array

    Raises
    ------
    ValueError
        If ``a`` is None, 0-d or empty, or (``inputs=True``) neither floating nor uint8.
    """
    if a is None:
        raise ValueError(f"{name} is required")
    if not array_api_compat.is_array_api_obj(a):
        a = np.asarray(a)
    if a.ndim == 0:
        raise ValueError(f"{name} must have a leading sample axis, got a 0-d array")
    if a.shape[0] == 0:
        raise ValueError(f"{name} holds no samples (shape {tuple(a.shape)})")
    if inputs and not (_has_kind(a, "real floating") or dtype_name(a.dtype) == "uint8"):
        raise ValueError(f"{name} must hold floating-point values or uint8 images, got dtype "
                         f"{dtype_name(a.dtype)}; convert it first, e.g. images.astype('float32') / 255")
    return a



_FINITE_CHUNK = 1 << 22  # values per pass of the NumPy check: bounded temporary memory on big datasets


def check_finite(a: Any, name: str) -> None:
    """A ValueError naming ``name`` and the first sample holding NaN or infinity, if one does (floating data
    only): one pass over host data in bounded chunks, one reduction and one read for a device array.

    Parameters
    ----------
    a : array
        Samples along axis 0.
    name : str
        What the message calls it.

    Raises
    ------
    ValueError
        If a value is NaN or infinite.
    """
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

def refuse_non_finite(a: np.ndarray, what: str, off: str = "check_finite=False") -> None:
    """A ValueError naming ``what`` if host floats ``a`` hold NaN or infinity (a streamed sample or batch);
    ``off`` says how to switch the check off where it was switched on."""
    if a.dtype.kind == "f" and not np.isfinite(a).all():
        raise ValueError(f"{what} holds NaN or infinity; clean the data, or pass {off} to train on it anyway")


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

    Parameters
    ----------
    x, y : array
        Inputs and targets, samples along axis 0.
    output_shape : tuple of int
        The model's per-sample output shape.
    loss_name : str or None
        The loss's ``name`` (``"cross_entropy"``, ...).
    xname, yname : str
        What the messages call them.

    Returns
    -------
    array
        ``y``, reshaped where it came flat.

    Raises
    ------
    ValueError
        If the lengths differ, or the targets do not fit the outputs and the loss.
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
    outputs).

    Parameters
    ----------
    x, y : array or list of arrays
    fraction : float
        The part held out, in (0, 1).

    Returns
    -------
    tuple
        ``((x_train, y_train), (x_val, y_val))``.

    Raises
    ------
    ValueError
        If either part would be empty.

    Examples
    --------
    >>> from xpcnn.data import split_validation
    >>> (x_train, y_train), (x_val, y_val) = split_validation(np.arange(10), np.arange(10), 0.2)
    >>> x_val
    array([8, 9])
    """
    n = int((x[0] if isinstance(x, list) else x).shape[0])
    split_at = int(n * (1.0 - float(fraction)))
    if split_at < 1 or split_at >= n:
        raise ValueError(f"validation_split={fraction} leaves no training or no validation samples out of {n}")

    def cut(v: Any, part: slice) -> Any:
        return [a[part, ...] for a in v] if isinstance(v, list) else v[part, ...]

    head, tail = slice(None, split_at), slice(split_at, None)
    return (cut(x, head), cut(y, head)), (cut(x, tail), cut(y, tail))
