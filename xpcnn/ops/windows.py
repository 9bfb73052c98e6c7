"""Sliding windows over NCHW images: the one home of conv/pool index arithmetic.

``im2col`` gathers the kh*kw shifted strided views of a padded image (one strided slice per kernel offset,
never a Python loop over pixels; on NumPy one ``as_strided`` view copied once, see ``_strided``);
``col2im`` is its adjoint, adding each offset's slice back with ``array_api_extra.at``. Both work on NCHW
images and on the convolution's internal batch-last layout ``(C, H, W, N)`` (``layout="CHWN"``).
Padding is always a 4-tuple ``(top, bottom, left, right)`` so that TensorFlow's asymmetric "same" padding
needs no special case downstream.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from typing import Any

import array_api_compat
import array_api_extra as xpx

from . import _strided

Pads = tuple[int, int, int, int]

__all__ = [
    "LAYOUTS",
    "Pads",
    "adaptive_windows",
    "as_pair",
    "check_padding",
    "col2im",
    "conv_output_hw",
    "im2col",
    "pad2d",
    "resolve_padding",
    "same_pads_1d",
    "unpad2d",
    "window_slices",
]


def as_pair(value: Any, name: str, minimum: int = 1, owner: str = "") -> tuple[int, int]:
    """``3`` -> ``(3, 3)``; ``(2, 3)`` stays; anything else, or a value below ``minimum``, is an error."""
    if type(value) is tuple and len(value) == 2 and type(value[0]) is int and type(value[1]) is int:
        if min(value) >= minimum:  # what layers pass at every call: checked without the abstract classes
            return value
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


def same_pads_1d(size: int, kernel: int, stride: int, dilation: int) -> tuple[int, int]:
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
        top, bottom = same_pads_1d(in_hw[0], kernel[0], stride[0], dilation[0])
        left, right = same_pads_1d(in_hw[1], kernel[1], stride[1], dilation[1])
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


def conv_transpose_output_hw(
    in_hw: tuple[int, int], kernel: tuple[int, int], stride: tuple[int, int], dilation: tuple[int, int],
    padding: tuple[int, int], output_padding: tuple[int, int] = (0, 0),
) -> tuple[int, int]:
    """Output height and width of a transposed convolution, as PyTorch's: ``(H - 1)*stride - 2*padding +
    dilation*(k - 1) + output_padding + 1``; <= 0 means the padding leaves no output."""
    return tuple(
        (in_hw[a] - 1) * stride[a] - 2 * padding[a] + dilation[a] * (kernel[a] - 1) + output_padding[a] + 1
        for a in range(2)
    )  # type: ignore[return-value]


LAYOUTS = ("NCHW", "CHWN")


def _check_layout(op: str, layout: str) -> None:
    if layout not in LAYOUTS:
        raise ValueError(f"{op}: layout must be one of {LAYOUTS}, got {layout!r}")


def _spatial(layout: str, hs: Any, ws: Any) -> tuple[Any, ...]:
    """The index of a 4-D array of ``layout`` that applies ``hs, ws`` to its height and width axes."""
    full = slice(None)
    return (full, full, hs, ws) if layout == "NCHW" else (full, hs, ws, full)


def pad2d(x: Any, pads: Pads, value: float = 0.0, layout: str = "NCHW") -> Any:
    """Pad the height and width axes of a 4-D array with ``value`` (no-op when all pads are zero).

    ``layout`` names the axes: ``"NCHW"`` (height and width last) or ``"CHWN"`` (the convolution's internal
    batch-last layout). A filled array with the input written into its interior: one pass, C-contiguous.
    """
    _check_layout("pad2d", layout)
    if not any(pads):
        return x
    xp = array_api_compat.array_namespace(x)
    top, bottom, left, right = pads
    if layout == "NCHW":
        a, b, h, w = x.shape
        shape = (a, b, h + top + bottom, w + left + right)
    else:
        a, h, w, b = x.shape
        shape = (a, h + top + bottom, w + left + right, b)
    interior = _spatial(layout, slice(top, top + h), slice(left, left + w))
    if _strided.supports(xp):
        return _strided.pad2d(x, shape, interior, value)
    out = xp.full(shape, value, dtype=x.dtype, device=array_api_compat.device(x))
    return xpx.at(out, interior).set(x)


def unpad2d(x: Any, pads: Pads, layout: str = "NCHW") -> Any:
    """Crop what ``pad2d`` added: the adjoint of zero padding (a view)."""
    _check_layout("unpad2d", layout)
    if not any(pads):
        return x
    top, bottom, left, right = pads
    h, w = (x.shape[2], x.shape[3]) if layout == "NCHW" else (x.shape[1], x.shape[2])
    return x[_spatial(layout, slice(top, h - bottom), slice(left, w - right))]


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


def adaptive_windows(size: int, out: int) -> tuple[slice, ...]:
    """Adaptive pooling's windows along one axis, torch's rule: window ``i`` of ``out`` over ``size`` pixels is
    ``[floor(i * size / out), ceil((i + 1) * size / out))``. Neighbours may overlap by a pixel and sizes may
    differ by one or two; each window holds at least one pixel, for any ``out`` (larger than ``size`` too)."""
    return tuple(slice(i * size // out, -(-(i + 1) * size // out)) for i in range(out))


def _im2col_generic(
    x_padded: Any, kernel: tuple[int, int], stride: tuple[int, int], dilation: tuple[int, int],
    out_hw: tuple[int, int], layout: str = "NCHW",
) -> Any:
    """The Array API implementation of ``im2col``: one strided slice per kernel offset, stacked."""
    xp = array_api_compat.array_namespace(x_padded)
    slices = window_slices(kernel, stride, dilation, out_hw)
    return xp.stack([x_padded[_spatial(layout, hs, ws)] for hs, ws in slices], axis=2 if layout == "NCHW" else 1)


def im2col(
    x_padded: Any, kernel: tuple[int, int], stride: tuple[int, int], dilation: tuple[int, int],
    out_hw: tuple[int, int], layout: str = "NCHW", scratch: str | None = None,
) -> Any:
    """The windows of a padded image, kernel offsets (row-major over kh, kw) on a new axis.

    ``layout="NCHW"``: ``(N, C, Hp, Wp)`` -> ``(N, C, kh*kw, OH, OW)``.
    ``layout="CHWN"``: ``(C, Hp, Wp, N)`` -> ``(C, kh*kw, OH, OW, N)``, which reshapes without a copy into the
    ``(C*kh*kw, OH*OW*N)`` column matrix of the convolution's GEMM; with the batch innermost every window
    row is one contiguous run of ``OW*N`` values, which is what makes the copy fast.
    NumPy takes one strided view and copies it once (``_strided.im2col``); every other namespace stacks
    one strided slice per kernel offset. Both give the same array.

    ``scratch``: the caller consumes the result before its next request with the same name on this thread
    (the columns of one GEMM) and never returns it; NumPy may then write it into a reused buffer instead of
    fresh memory.
    """
    _check_layout("im2col", layout)
    if _strided.supports(array_api_compat.array_namespace(x_padded)):
        return _strided.im2col(x_padded, kernel, stride, dilation, out_hw, layout, scratch)
    return _im2col_generic(x_padded, kernel, stride, dilation, out_hw, layout)


def col2im(
    cols: Any, padded_hw: tuple[int, int], kernel: tuple[int, int], stride: tuple[int, int],
    dilation: tuple[int, int], layout: str = "NCHW", scratch: str | None = None,
) -> Any:
    """Adjoint of ``im2col``: the windows summed back into the padded image.

    ``layout="NCHW"``: ``(N, C, kh*kw, OH, OW)`` -> ``(N, C, Hp, Wp)``; ``layout="CHWN"``:
    ``(C, kh*kw, OH, OW, N)`` -> ``(C, Hp, Wp, N)``. One strided ``array_api_extra.at(...).add`` per kernel
    offset (functional on JAX); on NumPy the same additions as in-place slice ``+=``
    (``_strided.col2im``). ``scratch`` as in ``im2col``.
    """
    _check_layout("col2im", layout)
    xp = array_api_compat.array_namespace(cols)
    if layout == "NCHW":
        a, b, _, oh, ow = cols.shape
        shape = (a, b, *padded_hw)
    else:
        a, _, oh, ow, b = cols.shape
        shape = (a, *padded_hw, b)
    slices = window_slices(kernel, stride, dilation, (oh, ow))
    targets = [_spatial(layout, hs, ws) for hs, ws in slices]
    if _strided.supports(xp):
        return _strided.col2im(cols, shape, targets, layout, scratch)
    out = xp.zeros(shape, dtype=cols.dtype, device=array_api_compat.device(cols))
    for k, target in enumerate(targets):
        out = xpx.at(out, target).add(cols[:, :, k, ...] if layout == "NCHW" else cols[:, k, ...])
    return out
