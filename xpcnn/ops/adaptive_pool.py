"""Adaptive pooling (torch's ``adaptive_avg_pool2d``/``adaptive_max_pool2d``): any output size.

torch's windows (``adaptive_windows``): along each axis window i covers [floor(i*H/out), ceil((i+1)*H/out)). A
rectangle's mean or maximum is the reduction along the width's windows, then along the height's: out_h + out_w
slices, whatever the sizes. Reducing the width first keeps the maximum's gradient on the rectangle's first maximum
in row-major order (the first row holding it, and in that row the first column), as torch's kernels route it. Where
the windows tile the input (the output size divides the input's) they are those of ``avg_pool2d``/``max_pool2d``
with kernel = stride = H/out, which run instead (their fast and native paths); a 1x1 output is a reduction over the
whole image.
"""

from __future__ import annotations

import numbers
from typing import Any

import array_api_compat
import array_api_extra as xpx

from ._select import keep_where
from .pool import (_first_max_mask, avg_pool2d, avg_pool2d_backward, check_nchw, global_max_pool2d_backward,
                   max_pool2d, max_pool2d_backward)
from .windows import adaptive_windows

__all__ = [
    "adaptive_avg_pool2d",
    "adaptive_avg_pool2d_backward",
    "adaptive_max_pool2d",
    "adaptive_max_pool2d_backward",
    "adaptive_output_hw",
    "adaptive_uniform_kernel",
    "check_adaptive_size",
]


def check_adaptive_size(output_size: Any, owner: str = "adaptive_pool2d") -> tuple[int | None, int | None]:
    """``output_size`` as ``(height, width)``: an int, or a pair of ints or None (None keeps that axis's size,
    as torch allows)."""
    pair = tuple(output_size) if isinstance(output_size, (list, tuple)) else (output_size, output_size)

    def fits(v: Any) -> bool:
        return v is None or (isinstance(v, numbers.Integral) and not isinstance(v, bool))

    if output_size is None or len(pair) != 2 or not all(fits(v) for v in pair):
        raise TypeError(f"{owner}: output_size must be an int or a pair of ints (None keeps an axis), got "
                        f"{output_size!r}")
    if any(v is not None and v < 1 for v in pair):
        raise ValueError(f"{owner}: output_size must be >= 1, got {output_size!r}")
    return tuple(None if v is None else int(v) for v in pair)  # type: ignore[return-value]


def adaptive_output_hw(in_hw: tuple[int, int], output_size: Any, owner: str = "adaptive_pool2d") -> tuple[int, int]:
    """The output's height and width for an input of ``in_hw`` pixels (None in ``output_size``: the input's)."""
    size = check_adaptive_size(output_size, owner)
    return tuple(int(in_hw[a]) if size[a] is None else size[a] for a in range(2))  # type: ignore[return-value]


def adaptive_uniform_kernel(in_hw: tuple[int, int], out_hw: tuple[int, int]) -> tuple[int, int] | None:
    """The kernel (= stride) of the plain pooling whose windows these are, when the output size divides the
    input's along both axes; else None."""
    if in_hw[0] % out_hw[0] or in_hw[1] % out_hw[1]:
        return None
    return in_hw[0] // out_hw[0], in_hw[1] // out_hw[1]


def _adaptive_geometry(op: str, x: Any, output_size: Any) -> tuple[tuple[int, int], tuple[int, int]]:
    check_nchw(op, x)
    in_hw = (int(x.shape[2]), int(x.shape[3]))
    return in_hw, adaptive_output_hw(in_hw, output_size, owner=op)


def _along(axis: int, window: slice, ndim: int = 4) -> tuple[slice, ...]:
    return (slice(None),) * axis + (window,) + (slice(None),) * (ndim - axis - 1)


def _reduce_windows(x: Any, axis: int, out: int, reduce: str) -> Any:
    """``mean`` or ``max`` of each adaptive window of ``x`` along ``axis``, joined along it."""
    xp = array_api_compat.array_namespace(x)
    fn = getattr(xp, reduce)
    return xp.concat([fn(x[_along(axis, w)], axis=axis, keepdims=True)
                      for w in adaptive_windows(x.shape[axis], out)], axis=axis)


def _spread_windows(dy: Any, shape: tuple[int, ...], axis: int, route: Any) -> Any:
    """Adjoint of ``_reduce_windows`` along ``axis``: window k's ``route(window, dy_k)`` (the part of the input
    gradient that lands in window k) added into zeros of ``shape``."""
    xp = array_api_compat.array_namespace(dy)
    dx = xp.zeros(shape, dtype=dy.dtype, device=array_api_compat.device(dy))
    for k, w in enumerate(adaptive_windows(shape[axis], dy.shape[axis])):
        dx = xpx.at(dx, _along(axis, w)).add(route(w, dy[_along(axis, slice(k, k + 1))]))
    return dx


def adaptive_avg_pool2d(x: Any, output_size: Any) -> Any:
    """Means over torch's adaptive windows: ``(N, C, H, W)`` -> ``(N, C, *output_size)`` for any output size
    (``output_size`` an int or a pair; None in it keeps that axis)."""
    in_hw, out_hw = _adaptive_geometry("adaptive_avg_pool2d", x, output_size)
    xp = array_api_compat.array_namespace(x)
    if out_hw == (1, 1):
        return xp.mean(x, axis=(2, 3), keepdims=True)
    kernel = adaptive_uniform_kernel(in_hw, out_hw)
    if kernel is not None:
        return avg_pool2d(x, kernel, kernel)
    return _reduce_windows(_reduce_windows(x, 3, out_hw[1], "mean"), 2, out_hw[0], "mean")


def adaptive_avg_pool2d_backward(dy: Any, x: Any, output_size: Any) -> Any:
    """Input gradient of ``adaptive_avg_pool2d``: each ``dy`` over its window's size, spread over the window
    (only ``x.shape`` is read)."""
    in_hw, out_hw = _adaptive_geometry("adaptive_avg_pool2d", x, output_size)
    xp = array_api_compat.array_namespace(dy)
    if out_hw == (1, 1):
        return xp.broadcast_to(dy / (in_hw[0] * in_hw[1]), tuple(x.shape))
    kernel = adaptive_uniform_kernel(in_hw, out_hw)
    if kernel is not None:
        return avg_pool2d_backward(dy, x, kernel, kernel)
    def share(w: slice, piece: Any) -> Any:
        return piece / (w.stop - w.start)

    rows_shape = (x.shape[0], x.shape[1], in_hw[0], out_hw[1])
    return _spread_windows(_spread_windows(dy, rows_shape, 2, share), tuple(x.shape), 3, share)


def adaptive_max_pool2d(x: Any, output_size: Any) -> Any:
    """Maxima over torch's adaptive windows: ``(N, C, H, W)`` -> ``(N, C, *output_size)``; NaN propagates."""
    in_hw, out_hw = _adaptive_geometry("adaptive_max_pool2d", x, output_size)
    if out_hw == (1, 1):
        return array_api_compat.array_namespace(x).max(x, axis=(2, 3), keepdims=True)
    kernel = adaptive_uniform_kernel(in_hw, out_hw)
    if kernel is not None:
        return max_pool2d(x, kernel, kernel)
    return _reduce_windows(_reduce_windows(x, 3, out_hw[1], "max"), 2, out_hw[0], "max")


def adaptive_max_pool2d_backward(dy: Any, x: Any, output_size: Any) -> Any:
    """Input gradient of ``adaptive_max_pool2d``: each ``dy`` to its window's first maximum (row-major), as
    torch routes it."""
    in_hw, out_hw = _adaptive_geometry("adaptive_max_pool2d", x, output_size)
    xp = array_api_compat.array_namespace(dy, x)
    if out_hw == (1, 1):
        return global_max_pool2d_backward(xp.reshape(dy, tuple(dy.shape[:2])), x)
    kernel = adaptive_uniform_kernel(in_hw, out_hw)
    if kernel is not None:
        return max_pool2d_backward(dy, x, kernel, kernel)
    rows = _reduce_windows(x, 3, out_hw[1], "max")  # (N, C, H, out_w): each row's maximum per width window

    def to_first_max(source: Any, axis: int) -> Any:
        def route(w: slice, piece: Any) -> Any:
            return keep_where(_first_max_mask(source[_along(axis, w)], axis), piece)
        return route

    drows = _spread_windows(dy, tuple(rows.shape), 2, to_first_max(rows, 2))
    return _spread_windows(drows, tuple(x.shape), 3, to_first_max(x, 3))
