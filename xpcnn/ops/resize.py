"""Resizing NCHW images: to a size or by integer factors, and padding (zeros, or copies of the boundary), each
forward beside its backward.

``resize2d`` (to an output size) and ``upsample2d`` (by integer factors) match ``F.interpolate`` in
``mode="nearest"`` and ``mode="bilinear"`` (``align_corners`` either way). Resizing is linear and separable:
the forward pass gathers each output pixel's taps (rows, then columns; a tap of weight 0 reads nothing, so an
infinity stays where it is), the backward pass multiplies by the transposed resampling matrices; nearest
resizing by integer factors repeats pixels instead.
"""

from __future__ import annotations

import array
import functools
import math
from collections.abc import Sequence
from typing import Any

import array_api_compat

from .pool import check_nchw
from .windows import Pads, as_pair, pad2d, unpad2d

__all__ = [
    "PAD_MODES",
    "UPSAMPLE_MODES",
    "boundary_pad2d",
    "boundary_pad2d_backward",
    "check_boundary_pads",
    "check_upsample_args",
    "check_size",
    "interpolation_matrix",
    "interpolation_taps",
    "resize2d",
    "resize2d_backward",
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


def check_size(size: Any, owner: str = "resize2d") -> tuple[int, int]:
    """An output size ``(H, W)`` (or one int for both) as a pair of positive ints."""
    return as_pair(size, "size", owner=owner)


Taps = tuple[tuple[int, ...], tuple[int, ...], tuple[float, ...]]  # per output pixel: low, high source, weight


def _float32(value: float) -> float:
    """``value`` rounded to float32, as torch's float32 index arithmetic rounds it."""
    return array.array("f", [value])[0]


@functools.lru_cache(maxsize=256)
def interpolation_taps(in_size: int, out_size: int, mode: str = "bilinear", align_corners: bool = False) -> Taps:
    """Where each of ``out_size`` output pixels reads, PyTorch's ``F.interpolate`` rules, from the source
    coordinate of output pixel ``o`` (host numbers from the sizes alone):

    * nearest: pixel ``min(floor(o * in/out), in - 1)``, with the product in float32 as torch computes it;
    * bilinear: ``max((o + 0.5) * in/out - 0.5, 0)``, or ``o * (in - 1)/(out - 1)`` with ``align_corners``,
      between neighbours ``i0`` and ``min(i0 + 1, in - 1)`` with weights ``1 - t`` and ``t``.
    """
    if mode == "nearest":
        scale = _float32(in_size / out_size)
        low = tuple(min(math.floor(_float32(o * scale)), in_size - 1) for o in range(out_size))
        return low, low, (0.0,) * out_size
    if align_corners:
        source = [o * ((in_size - 1) / (out_size - 1)) if out_size > 1 else 0.0 for o in range(out_size)]
    else:
        source = [max((o + 0.5) * (in_size / out_size) - 0.5, 0.0) for o in range(out_size)]
    low = tuple(min(math.floor(c), in_size - 1) for c in source)
    return low, tuple(min(i + 1, in_size - 1) for i in low), tuple(c - i for c, i in zip(source, low))


def interpolation_matrix(in_size: int, out_size: int, like: Any, mode: str = "bilinear",
                         align_corners: bool = False) -> Any:
    """``(out_size, in_size)`` resampling weights (``interpolation_taps`` as a matrix), in ``like``'s dtype
    and device: what the backward pass multiplies by."""
    return _matrix(interpolation_taps(in_size, out_size, mode, align_corners), in_size, like)


def _matrix(taps: Taps, in_size: int, like: Any) -> Any:
    """The taps as an ``(outputs, in_size)`` matrix, built on the device (a tap pair on one pixel adds up)."""
    xp, device = array_api_compat.array_namespace(like), array_api_compat.device(like)
    low, high = (xp.reshape(xp.asarray(v, device=device), (-1, 1)) for v in taps[:2])
    frac = xp.reshape(xp.asarray(taps[2], dtype=like.dtype, device=device), (-1, 1))
    columns = xp.reshape(xp.arange(in_size, device=device), (1, -1))
    zero = xp.zeros((), dtype=like.dtype, device=device)
    return xp.where(columns == low, 1.0 - frac, zero) + xp.where(columns == high, frac, zero)


def _gather(a: Any, axis: int, taps: Taps) -> Any:
    """``a`` resampled along ``axis`` by reading its taps: a tap of weight 0 reads nothing (no 0 * inf)."""
    xp, device = array_api_compat.array_namespace(a), array_api_compat.device(a)
    low, high, frac = taps
    near = xp.take(a, xp.asarray(low, device=device), axis=axis)
    if not any(frac):
        return near
    shape = [1] * a.ndim
    shape[axis] = len(frac)
    t = xp.reshape(xp.asarray(frac, dtype=a.dtype, device=device), tuple(shape))
    far = xp.take(a, xp.asarray(high, device=device), axis=axis)
    return xp.where(t == 0, near, near * (1 - t) + far * t)


def _repeats(in_hw: tuple[int, int], out_hw: tuple[int, int], mode: str) -> tuple[int, int] | None:
    """The integer factors when nearest resizing is a plain repetition of pixels, else None."""
    if mode != "nearest" or out_hw[0] % in_hw[0] or out_hw[1] % in_hw[1]:
        return None
    return out_hw[0] // in_hw[0], out_hw[1] // in_hw[1]


def resize2d(x: Any, out_hw: Any, mode: str = "nearest", align_corners: bool = False) -> Any:
    """``(N, C, H, W)`` -> ``(N, C, *out_hw)`` as ``F.interpolate(x, size=out_hw, mode=mode)``: nearest pixel
    or bilinear (``align_corners`` as torch's). Separable: ``A_h @ x @ A_w^T``; nearest with integer factors
    repeats pixels instead."""
    check_nchw("resize2d", x)
    return _resample(x, (x.shape[2], x.shape[3]), check_size(out_hw), mode, align_corners, adjoint=False)


def resize2d_backward(dy: Any, in_hw: Any, mode: str = "nearest", align_corners: bool = False) -> Any:
    """Input gradient of ``resize2d`` for an input of spatial size ``in_hw``: the transposed resampling."""
    check_nchw("resize2d_backward", dy)
    return _resample(dy, check_size(in_hw), (dy.shape[2], dy.shape[3]), mode, align_corners, adjoint=True)


def _resample(a: Any, in_hw: tuple[int, int], out_hw: tuple[int, int], mode: str, align_corners: bool,
              adjoint: bool) -> Any:
    """The resampling from ``in_hw`` to ``out_hw`` applied to ``a`` (an input), or its adjoint (``a`` an output
    gradient)."""
    xp = array_api_compat.array_namespace(a)
    n, c = a.shape[0], a.shape[1]
    (h, w), (oh, ow) = in_hw, out_hw
    factors = _repeats(in_hw, out_hw, mode)
    if factors is not None:
        sh, sw = factors
        if adjoint:
            return xp.sum(xp.reshape(a, (n, c, h, sh, w, sw)), axis=(3, 5))
        return xp.reshape(xp.broadcast_to(xp.reshape(a, (n, c, h, 1, w, 1)), (n, c, h, sh, w, sw)), (n, c, oh, ow))
    taps_h, taps_w = interpolation_taps(h, oh, mode, align_corners), interpolation_taps(w, ow, mode, align_corners)
    return _separable(a, taps_h, taps_w, (h, w), adjoint)


def _separable(a: Any, taps_h: Taps, taps_w: Taps, in_hw: tuple[int, int], adjoint: bool) -> Any:
    """Resample rows then columns by their taps, or (``adjoint``) ``A_h^T @ a @ A_w`` with the taps' matrices:
    the backward pass of the same linear map."""
    if not adjoint:
        return _gather(_gather(a, 2, taps_h), 3, taps_w)
    xp = array_api_compat.array_namespace(a)
    a_h, a_w = _matrix(taps_h, in_hw[0], a), _matrix(taps_w, in_hw[1], a)
    return xp.matmul(xp.matmul(xp.matrix_transpose(a_h), a), a_w)


PAD_MODES = ("zeros", "reflect", "replicate", "circular")


@functools.lru_cache(maxsize=256)
def _boundary_taps(size: int, before: int, after: int, mode: str) -> Taps:
    """Which pixel each of the ``before + size + after`` padded positions copies, by torch's rules."""
    index = list(range(-before, size + after))
    if mode == "reflect":
        index = [abs(i) if abs(i) <= size - 1 else 2 * (size - 1) - abs(i) for i in index]
    elif mode == "replicate":
        index = [min(max(i, 0), size - 1) for i in index]
    else:  # circular
        index = [i % size for i in index]
    return tuple(index), tuple(index), (0.0,) * len(index)


def check_boundary_pads(in_hw: tuple[int, int], pads: Pads, mode: str, owner: str = "boundary_pad2d") -> None:
    """``reflect`` needs pads below the size, ``circular`` at most the size (PyTorch's limits)."""
    if mode not in PAD_MODES:
        raise ValueError(f"{owner}: padding_mode must be one of {PAD_MODES}, got {mode!r}")
    limit = {"reflect": -1, "circular": 0}.get(mode)
    if limit is not None and (max(pads[:2]) > in_hw[0] + limit or max(pads[2:]) > in_hw[1] + limit):
        raise ValueError(f"{owner}: {mode} padding {pads} must be {'smaller than' if limit else 'at most'} the "
                         f"input's height and width {tuple(in_hw)}")


def boundary_pad2d(x: Any, pads: Pads, mode: str) -> Any:
    """``x`` padded by ``(top, bottom, left, right)`` pixels copied by ``mode`` ("reflect", "replicate",
    "circular"), as ``F.pad(x, ..., mode=)`` (torch's "reflect" mirrors without repeating the edge)."""
    check_nchw("boundary_pad2d", x)
    h, w = x.shape[2], x.shape[3]
    check_boundary_pads((h, w), pads, mode)
    return _separable(x, _boundary_taps(h, pads[0], pads[1], mode), _boundary_taps(w, pads[2], pads[3], mode),
                      (h, w), adjoint=False)


def boundary_pad2d_backward(dy: Any, in_hw: tuple[int, int], pads: Pads, mode: str) -> Any:
    """Input gradient of ``boundary_pad2d``: each padded pixel's gradient added back to the pixel it copied."""
    check_nchw("boundary_pad2d_backward", dy)
    return _separable(dy, _boundary_taps(in_hw[0], pads[0], pads[1], mode),
                      _boundary_taps(in_hw[1], pads[2], pads[3], mode), in_hw, adjoint=True)


def upsample2d(x: Any, scale_factor: Any = 2, mode: str = "nearest", align_corners: bool = False) -> Any:
    """``(N, C, H, W)`` -> ``(N, C, H*sh, W*sw)`` by nearest-neighbour repetition or bilinear interpolation."""
    check_nchw("upsample2d", x)
    sh, sw = check_upsample_args(scale_factor, mode)
    return resize2d(x, (x.shape[2] * sh, x.shape[3] * sw), mode, align_corners)


def upsample2d_backward(dy: Any, scale_factor: Any = 2, mode: str = "nearest", align_corners: bool = False) -> Any:
    """Input gradient of ``upsample2d``: ``(N, C, H*sh, W*sw)`` -> ``(N, C, H, W)``."""
    check_nchw("upsample2d_backward", dy)
    sh, sw = check_upsample_args(scale_factor, mode)
    oh, ow = dy.shape[2], dy.shape[3]
    if oh % sh or ow % sw:
        raise ValueError(
            f"upsample2d_backward: gradient height and width {(oh, ow)} are not multiples of scale_factor {(sh, sw)}"
        )
    return resize2d_backward(dy, (oh // sh, ow // sw), mode, align_corners)


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
