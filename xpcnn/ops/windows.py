"""Sliding windows over NCHW images: the one home of conv/pool index arithmetic.

``im2col`` gathers the kh*kw shifted strided views of a padded image (one strided slice per kernel offset,
never a Python loop over pixels); ``col2im`` is its adjoint, adding each offset's slice back with
``array_api_extra.at``. Padding is always a 4-tuple ``(top, bottom, left, right)`` so that TensorFlow's
asymmetric "same" padding needs no special case downstream.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from typing import Any

import array_api_compat
import array_api_extra as xpx

Pads = tuple[int, int, int, int]

__all__ = [
    "Pads",
    "as_pair",
    "check_padding",
    "col2im",
    "conv_output_hw",
    "im2col",
    "pad2d",
    "resolve_padding",
    "unpad2d",
    "window_slices",
]


def as_pair(value: Any, name: str, minimum: int = 1, owner: str = "") -> tuple[int, int]:
    """``3`` -> ``(3, 3)``; ``(2, 3)`` stays; anything else, or a value below ``minimum``, is an error."""
    where = f"{owner}: " if owner else ""
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        pair = (int(value), int(value))
    elif (
        isinstance(value, Sequence)
        and not isinstance(value, str)
        and len(value) == 2
        and all(isinstance(v, numbers.Integral) and not isinstance(v, bool) for v in value)
    ):
        pair = (int(value[0]), int(value[1]))
    else:
        raise TypeError(f"{where}{name} must be an int or a pair of ints, got {value!r}")
    if min(pair) < minimum:
        raise ValueError(f"{where}{name} must be >= {minimum}, got {value!r}")
    return pair


def check_padding(padding: Any, owner: str = "", allow_same: bool = True) -> Any:
    """Validate a padding argument early (constructor time): int, pair, 'valid' or 'same'."""
    if isinstance(padding, str):
        allowed = ("valid", "same") if allow_same else ("valid",)
        if padding not in allowed:
            raise ValueError(f"{owner}: padding must be an int, a pair or one of {allowed}, got {padding!r}")
        return padding
    return as_pair(padding, "padding", minimum=0, owner=owner)


def _same_1d(size: int, kernel: int, stride: int, dilation: int) -> tuple[int, int]:
    """TensorFlow 'same': output ceil(size/stride); the odd pixel of padding goes last (bottom/right)."""
    out = -(-size // stride)
    total = max((out - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)
    return total // 2, total - total // 2


def resolve_padding(
    padding: Any, in_hw: tuple[int, int], kernel: tuple[int, int], stride: tuple[int, int],
    dilation: tuple[int, int] = (1, 1),
) -> Pads:
    """Any accepted padding spec as ``(top, bottom, left, right)`` for this input size."""
    if padding == "valid":
        return (0, 0, 0, 0)
    if padding == "same":
        top, bottom = _same_1d(in_hw[0], kernel[0], stride[0], dilation[0])
        left, right = _same_1d(in_hw[1], kernel[1], stride[1], dilation[1])
        return (top, bottom, left, right)
    ph, pw = as_pair(padding, "padding", minimum=0)
    return (ph, ph, pw, pw)


def conv_output_hw(
    in_hw: tuple[int, int], kernel: tuple[int, int], stride: tuple[int, int],
    dilation: tuple[int, int], pads: Pads,
) -> tuple[int, int]:
    """Output height and width of a window sweep (floor mode); <= 0 means the kernel does not fit."""
    padded = (in_hw[0] + pads[0] + pads[1], in_hw[1] + pads[2] + pads[3])
    return tuple(
        (padded[a] - dilation[a] * (kernel[a] - 1) - 1) // stride[a] + 1 for a in range(2)
    )  # type: ignore[return-value]


def pad2d(x: Any, pads: Pads, value: float = 0.0) -> Any:
    """Pad the last two axes of an NCHW array (no-op when all pads are zero)."""
    if not any(pads):
        return x
    top, bottom, left, right = pads
    xp = array_api_compat.array_namespace(x)
    return xpx.pad(x, ((0, 0), (0, 0), (top, bottom), (left, right)), constant_values=value, xp=xp)


def unpad2d(x: Any, pads: Pads) -> Any:
    """Crop what ``pad2d`` added: the adjoint of zero padding."""
    if not any(pads):
        return x
    top, bottom, left, right = pads
    h, w = x.shape[-2], x.shape[-1]
    return x[..., top : h - bottom, left : w - right]


def window_slices(
    kernel: tuple[int, int], stride: tuple[int, int], dilation: tuple[int, int], out_hw: tuple[int, int],
) -> list[tuple[slice, slice]]:
    """For each kernel offset (row-major over kh, kw), the strided slices it reads from the padded input."""
    (kh, kw), (sh, sw), (dh, dw), (oh, ow) = kernel, stride, dilation, out_hw
    return [
        (slice(i * dh, i * dh + sh * (oh - 1) + 1, sh), slice(j * dw, j * dw + sw * (ow - 1) + 1, sw))
        for i in range(kh)
        for j in range(kw)
    ]


def im2col(
    x_padded: Any, kernel: tuple[int, int], stride: tuple[int, int], dilation: tuple[int, int],
    out_hw: tuple[int, int],
) -> Any:
    """Windows of ``(N, C, Hp, Wp)`` as ``(N, C, kh*kw, OH, OW)``: one strided slice per kernel offset."""
    xp = array_api_compat.array_namespace(x_padded)
    slices = window_slices(kernel, stride, dilation, out_hw)
    return xp.stack([x_padded[:, :, hs, ws] for hs, ws in slices], axis=2)


def col2im(
    cols: Any, padded_hw: tuple[int, int], kernel: tuple[int, int], stride: tuple[int, int],
    dilation: tuple[int, int],
) -> Any:
    """Adjoint of ``im2col``: ``(N, C, kh*kw, OH, OW)`` summed back into ``(N, C, Hp, Wp)``."""
    xp = array_api_compat.array_namespace(cols)
    n, c, _, oh, ow = cols.shape
    out = xp.zeros((n, c, *padded_hw), dtype=cols.dtype, device=array_api_compat.device(cols))
    for k, (hs, ws) in enumerate(window_slices(kernel, stride, dilation, (oh, ow))):
        out = xpx.at(out, (slice(None), slice(None), hs, ws)).add(cols[:, :, k, :, :])
    return out
