"""Resizing NCHW images: integer-factor upsampling and zero padding, each forward beside its backward.

``upsample2d`` matches ``F.interpolate(..., mode="nearest")`` and ``mode="bilinear", align_corners=False``
for integer scale factors. Bilinear resizing is linear and separable, so it is two small interpolation
matrices built on the device, ``y = A_h @ x @ A_w^T``, and its backward is the transposes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import array_api_compat

from .pool import check_nchw
from .windows import Pads, as_pair, pad2d, unpad2d

__all__ = [
    "UPSAMPLE_MODES",
    "check_upsample_args",
    "interpolation_matrix",
    "upsample2d",
    "upsample2d_backward",
    "zero_pad2d",
    "zero_pad2d_backward",
    "zero_pad_amounts",
]

UPSAMPLE_MODES = ("nearest", "bilinear")


def check_upsample_args(scale_factor: Any, mode: str, owner: str = "upsample2d") -> tuple[int, int]:
    """The scale factor as a pair of positive ints; an error for an unknown ``mode``."""
    if mode not in UPSAMPLE_MODES:
        raise ValueError(f"{owner}: mode must be one of {UPSAMPLE_MODES}, got {mode!r}")
    return as_pair(scale_factor, "scale_factor", owner=owner)


def interpolation_matrix(in_size: int, scale: int, like: Any) -> Any:
    """``(in_size*scale, in_size)`` bilinear weights (align_corners=False), in ``like``'s dtype and device.

    Output pixel ``o`` samples source coordinate ``max((o + 0.5)/scale - 0.5, 0)`` between neighbours ``i0``
    and ``i1 = min(i0 + 1, in_size - 1)``; each row holds the weights ``1 - t`` and ``t`` (summing at the edge).
    """
    xp = array_api_compat.array_namespace(like)
    dtype, device = like.dtype, array_api_compat.device(like)
    out = xp.arange(in_size * scale, dtype=dtype, device=device)
    source = xp.clip((out + 0.5) / scale - 0.5, min=0.0)
    low = xp.floor(source)
    high = xp.clip(low + 1.0, max=float(in_size - 1))
    frac = xp.expand_dims(source - low, axis=1)
    columns = xp.arange(in_size, dtype=dtype, device=device)
    low_weight = xp.where(columns == xp.expand_dims(low, axis=1), 1.0 - frac, 0.0)
    high_weight = xp.where(columns == xp.expand_dims(high, axis=1), frac, 0.0)
    return low_weight + high_weight


def upsample2d(x: Any, scale_factor: Any = 2, mode: str = "nearest") -> Any:
    """``(N, C, H, W)`` -> ``(N, C, H*sh, W*sw)`` by nearest-neighbour repetition or bilinear interpolation."""
    check_nchw("upsample2d", x)
    sh, sw = check_upsample_args(scale_factor, mode)
    xp = array_api_compat.array_namespace(x)
    n, c, h, w = x.shape
    if mode == "nearest":
        blocks = xp.broadcast_to(xp.reshape(x, (n, c, h, 1, w, 1)), (n, c, h, sh, w, sw))
        return xp.reshape(blocks, (n, c, h * sh, w * sw))
    a_h, a_w = interpolation_matrix(h, sh, x), interpolation_matrix(w, sw, x)
    return xp.matmul(xp.matmul(a_h, x), xp.matrix_transpose(a_w))


def upsample2d_backward(dy: Any, scale_factor: Any = 2, mode: str = "nearest") -> Any:
    """Input gradient of ``upsample2d``: ``(N, C, H*sh, W*sw)`` -> ``(N, C, H, W)``."""
    check_nchw("upsample2d_backward", dy)
    sh, sw = check_upsample_args(scale_factor, mode)
    xp = array_api_compat.array_namespace(dy)
    n, c, oh, ow = dy.shape
    if oh % sh or ow % sw:
        raise ValueError(
            f"upsample2d_backward: gradient height and width {(oh, ow)} are not multiples of scale_factor {(sh, sw)}"
        )
    h, w = oh // sh, ow // sw
    if mode == "nearest":
        return xp.sum(xp.reshape(dy, (n, c, h, sh, w, sw)), axis=(3, 5))
    a_h, a_w = interpolation_matrix(h, sh, dy), interpolation_matrix(w, sw, dy)
    return xp.matmul(xp.matmul(xp.matrix_transpose(a_h), dy), a_w)


def zero_pad_amounts(padding: Any, owner: str = "zero_pad2d") -> Pads:
    """``(top, bottom, left, right)`` from an int, a pair ``(h, w)`` or ``((top, bottom), (left, right))``."""
    if isinstance(padding, Sequence) and len(padding) == 2 and all(
        isinstance(p, Sequence) and not isinstance(p, str) for p in padding
    ):
        (top, bottom), (left, right) = (
            as_pair(p, name, minimum=0, owner=owner) for p, name in zip(padding, ("height padding", "width padding"))
        )
        return (top, bottom, left, right)
    ph, pw = as_pair(padding, "padding", minimum=0, owner=owner)
    return (ph, ph, pw, pw)


def zero_pad2d(x: Any, padding: Any) -> Any:
    """Zeros around the last two axes: ``(N, C, H, W)`` -> ``(N, C, top + H + bottom, left + W + right)``."""
    check_nchw("zero_pad2d", x)
    return pad2d(x, zero_pad_amounts(padding))


def zero_pad2d_backward(dy: Any, padding: Any) -> Any:
    """Input gradient of ``zero_pad2d``: the border cropped off again."""
    check_nchw("zero_pad2d_backward", dy)
    return unpad2d(dy, zero_pad_amounts(padding))
