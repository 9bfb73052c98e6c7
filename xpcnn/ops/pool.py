"""Max and average pooling over NCHW images, local and global, each forward beside its backward.

Numerics follow ``torch.nn.functional``: floor mode, max pooling pads with -inf and sends each window's
gradient to its FIRST maximum (row-major over the window, like ``argmax``), average pooling counts the
padding (``count_include_pad=True``), ``stride`` defaults to the kernel size and ``padding`` may be at most
half the kernel. No window array is ever built: a pool is an elementwise maximum (or sum) over the kh*kw
strided views of the padded input, one per window offset, and its backward writes one strided slice per
offset back (a plain ``set`` when the windows tile the input exactly, an ``add`` when they overlap or leave
pixels out). Backward ops take the forward's input ``x``, as PyTorch's do; ``max_pool2d_backward`` also
takes what the forward can hand over instead: the positions of the maxima (``return_indices=True``; or
``return_saved=True``, what ``MaxPool2D`` keeps, so that its backward never reads ``x`` again) or the output
``y``. A window holding NaN outputs NaN and passes no gradient (PyTorch sends it to the window's last NaN). A
window that reaches into the padding and holds only -inf sends its gradient to its first real pixel, as
PyTorch does. NumPy fast paths (``_strided``) find the maxima's positions and route the gradient without
``where``; tests/ops/test_fast_paths.py holds them equal to the generic code. On torch, PyTorch's own pooling
kernels run instead (``_native``), tested equal in tests/ops/test_native_kernels.py.
"""

from __future__ import annotations

import functools
import math
from typing import Any, NamedTuple

import array_api_compat
import array_api_extra as xpx

from . import _native, _strided
from ._select import keep_where
from .windows import Pads, as_pair, pad2d, resolve_padding, unpad2d, window_slices

__all__ = [
    "MaxPoolSaved",
    "PoolGeometry",
    "avg_pool2d",
    "avg_pool2d_backward",
    "check_nchw",
    "check_pool_args",
    "global_avg_pool2d",
    "global_avg_pool2d_backward",
    "global_max_pool2d",
    "global_max_pool2d_backward",
    "max_pool2d",
    "max_pool2d_backward",
    "pool_geometry",
]

class PoolGeometry(NamedTuple):
    """Everything the window arithmetic needs for one input size. ``pads`` are what the input is padded with
    (including, in ceil mode, the overhang of the last windows at the bottom and right); ``declared`` the
    padding asked for (what ``count_include_pad`` counts)."""

    kernel: tuple[int, int]
    stride: tuple[int, int]
    pads: Pads
    in_hw: tuple[int, int]
    out_hw: tuple[int, int]
    dilation: tuple[int, int] = (1, 1)
    declared: Pads = (0, 0, 0, 0)
    ceil_mode: bool = False

    @property
    def padded_hw(self) -> tuple[int, int]:
        return (self.in_hw[0] + self.pads[0] + self.pads[1], self.in_hw[1] + self.pads[2] + self.pads[3])

    @property
    def tiles_input(self) -> bool:
        """Windows are disjoint, unpadded and stride apart: the input reshapes into them."""
        return self.stride == self.kernel and not any(self.pads) and self.dilation == (1, 1)

    @property
    def torch_padding(self) -> bool:
        """The declared padding is what PyTorch's kernels take: the same on both sides of each axis, at most
        half the kernel ("same" with dilation can ask for more)."""
        top, bottom, left, right = self.declared
        return top == bottom and left == right and top <= self.kernel[0] // 2 and left <= self.kernel[1] // 2


def check_pool_args(
    kernel_size: Any, stride: Any = None, padding: Any = 0, dilation: Any = 1, owner: str = "pool2d",
) -> tuple[tuple[int, int], tuple[int, int], Any, tuple[int, int]]:
    """Validated ``(kernel, stride, padding, dilation)``; ``stride=None`` means the kernel size; ``padding`` a
    pair of at most half the kernel, or ``"same"``/``"valid"`` (Keras's placement)."""
    kernel = as_pair(kernel_size, "kernel_size", owner=owner)
    stride = kernel if stride is None else as_pair(stride, "stride", owner=owner)
    dilation = as_pair(dilation, "dilation", owner=owner)
    if padding not in ("same", "valid"):
        padding = as_pair(padding, "padding", minimum=0, owner=owner)
        if padding[0] > kernel[0] // 2 or padding[1] > kernel[1] // 2:
            raise ValueError(f"{owner}: padding {padding} must be at most half the kernel size {kernel}")
    return kernel, stride, padding, dilation


def _out_size(size: int, before: int, after: int, reach: int, stride: int, ceil_mode: bool) -> int:
    """Windows along one axis, PyTorch's rule: in ceil mode a last, partial window counts when it starts
    inside the input or its leading padding."""
    span = size + before + after - reach
    out = (-(-span // stride) if ceil_mode else span // stride) + 1
    if ceil_mode and (out - 1) * stride >= size + before:
        out -= 1
    return out


def pool_geometry(
    in_hw: tuple[int, int], kernel_size: Any, stride: Any = None, padding: Any = 0, dilation: Any = 1,
    ceil_mode: bool = False, owner: str = "pool2d",
) -> PoolGeometry:
    """The window geometry for an input of spatial size ``in_hw``; an error if no window fits."""
    kernel, stride, padding, dilation = check_pool_args(kernel_size, stride, padding, dilation, owner)
    if padding in ("same", "valid"):
        declared = resolve_padding(padding, in_hw, kernel, stride, dilation)
    else:
        declared = (padding[0], padding[0], padding[1], padding[1])
    reach = tuple(dilation[a] * (kernel[a] - 1) + 1 for a in range(2))
    out_hw = tuple(_out_size(in_hw[a], declared[2 * a], declared[2 * a + 1], reach[a], stride[a], ceil_mode)
                   for a in range(2))
    if min(out_hw) < 1:
        raise ValueError(
            f"{owner}: kernel {kernel}{f' (dilation {dilation})' if dilation != (1, 1) else ''} is larger than "
            "the padded input "
            f"{(in_hw[0] + declared[0] + declared[1], in_hw[1] + declared[2] + declared[3])} "
            f"(input height and width {tuple(in_hw)}, padding {padding})"
        )
    overhang = [max((out_hw[a] - 1) * stride[a] + reach[a] - (in_hw[a] + declared[2 * a] + declared[2 * a + 1]), 0)
                for a in range(2)]
    pads = (declared[0], declared[1] + overhang[0], declared[2], declared[3] + overhang[1])
    return PoolGeometry(kernel, stride, pads, tuple(in_hw), out_hw, dilation, declared, bool(ceil_mode))


def check_nchw(op: str, x: Any) -> None:
    """Ops on images refuse anything but a 4-D ``(N, C, H, W)`` array."""
    if x.ndim != 4:
        raise ValueError(f"{op}: input must be 4-D (N, C, H, W), got shape {tuple(x.shape)}")


def _geometry_of(op: str, x: Any, kernel_size: Any, stride: Any, padding: Any, dilation: Any = 1,
                 ceil_mode: bool = False) -> PoolGeometry:
    check_nchw(op, x)
    return pool_geometry((x.shape[2], x.shape[3]), kernel_size, stride, padding, dilation, ceil_mode, owner=op)


# --- windows and their adjoint ------------------------------------------------------------------------

def _windows(x_padded: Any, geometry: PoolGeometry) -> list[Any]:
    """The ``kh*kw`` strided views ``(N, C, OH, OW)`` of a padded input, one per window offset (row-major)."""
    slices = window_slices(geometry.kernel, geometry.stride, geometry.dilation, geometry.out_hw)
    return [x_padded[:, :, hs, ws] for hs, ws in slices]


def _scatter(pieces: list[Any], like: Any, geometry: PoolGeometry) -> Any:
    """Adjoint of ``_windows``: ``pieces[k] (N, C, OH, OW)`` summed back into the input ``like (N, C, H, W)``.

    A strided ``set`` per offset where the windows tile the padded input exactly (each pixel in exactly one
    window: no zeros, no additions), else a strided ``add`` per offset into zeros, then the padding cropped.
    The result takes ``like``'s memory layout where the backend allows (``zeros_like``/``empty_like``).
    """
    xp = array_api_compat.array_namespace(like)
    (kh, kw), (oh, ow), (h, w) = geometry.kernel, geometry.out_hw, geometry.in_hw
    slices = window_slices(geometry.kernel, geometry.stride, geometry.dilation, geometry.out_hw)
    device = array_api_compat.device(like)
    if geometry.tiles_input and (oh * kh, ow * kw) == (h, w):
        out = xp.empty_like(like, dtype=pieces[0].dtype, device=device)
        for piece, (hs, ws) in zip(pieces, slices):
            out = xpx.at(out, (slice(None), slice(None), hs, ws)).set(piece)
        return out
    if any(geometry.pads):
        n, c = like.shape[0], like.shape[1]
        out = xp.zeros((n, c, *geometry.padded_hw), dtype=pieces[0].dtype, device=device)
    else:
        out = xp.zeros_like(like, dtype=pieces[0].dtype, device=device)
    for piece, (hs, ws) in zip(pieces, slices):
        out = xpx.at(out, (slice(None), slice(None), hs, ws)).add(piece)
    return unpad2d(out, geometry.pads)


def _first_max_mask(values: Any, axis: int) -> Any:
    """Boolean one-hot along ``axis`` marking the first maximum (the Array API's ``argmax`` tie rule)."""
    xp = array_api_compat.array_namespace(values)
    winner = xp.argmax(values, axis=axis, keepdims=True)
    positions = xp.arange(values.shape[axis], dtype=winner.dtype, device=array_api_compat.device(values))
    shape = [1] * values.ndim
    shape[axis] = values.shape[axis]
    return xp.reshape(positions, tuple(shape)) == winner


# --- local pooling ------------------------------------------------------------------------------------

def _max_of(windows: list[Any]) -> Any:
    xp = array_api_compat.array_namespace(windows[0])
    if len(windows) == 1:
        return xp.asarray(windows[0], copy=True)
    y = xp.maximum(windows[0], windows[1])
    for window in windows[2:]:
        y = xp.maximum(y, window)
    return y


def _offset_dtype(xp: Any, count: int) -> Any:
    return xp.uint8 if count < 255 else xp.int32


def _first_max_offsets(windows: list[Any], y: Any) -> Any:
    """For each output, the offset (row-major in the window) of the first window value equal to the maximum
    ``y``; ``len(windows)`` where none is (a window holding NaN)."""
    xp = array_api_compat.array_namespace(y)
    count, device = len(windows), array_api_compat.device(y)
    dtype = _offset_dtype(xp, count)
    offsets = xp.full(tuple(y.shape), count, dtype=dtype, device=device)
    for k in reversed(range(count)):  # the first hit is written last
        offsets = xp.where(windows[k] == y, xp.asarray(k, dtype=dtype, device=device), offsets)
    return offsets


def _max_and_offsets(windows: list[Any], want_offsets: bool) -> tuple[Any, Any]:
    """The window maxima and (if wanted, else None) the first maxima's offsets."""
    if _strided.supports(array_api_compat.array_namespace(windows[0])):
        fast = _strided.max_pool_forward(windows, want_offsets)
        if fast is not None:
            return fast
    y = _max_of(windows)
    return y, (_first_max_offsets(windows, y) if want_offsets else None)


@functools.lru_cache(maxsize=256)
def _real_taps(geometry: PoolGeometry, axis: int) -> tuple[tuple[bool, ...], ...]:
    """Per window along ``axis`` (rows 0, columns 1): whether each of its taps lands on a real pixel. A host
    table from the geometry alone, made once per geometry."""
    stride, dilation, size = geometry.stride[axis], geometry.dilation[axis], geometry.in_hw[axis]
    return tuple(tuple(0 <= o * stride - geometry.pads[2 * axis] + t * dilation < size
                       for t in range(geometry.kernel[axis])) for o in range(geometry.out_hw[axis]))


def _axis_table(values: list[Any], axis: int, like: Any, dtype: Any) -> Any:
    """Per-window ``values`` along ``axis`` as an array shaped to broadcast over ``(OH, OW)``."""
    xp = array_api_compat.array_namespace(like)
    table = xp.asarray(values, dtype=dtype, device=array_api_compat.device(like))
    return xp.reshape(table, (-1, 1) if axis == 0 else (1, -1))


def _padding_ties_to_real_pixels(offsets: Any, y: Any, geometry: PoolGeometry) -> Any:
    """PyTorch's rule for a window that reaches into the padding and holds only -inf: its maximum is the
    first REAL pixel (the -inf padding ties with it, and the first-maximum rule could pick the padding)."""
    if not any(geometry.pads):
        return offsets
    xp = array_api_compat.array_namespace(offsets, y)
    rows, cols = _real_taps(geometry, 0), _real_taps(geometry, 1)
    touches = (_axis_table([not all(r) for r in rows], 0, offsets, xp.bool)
               | _axis_table([not all(c) for c in cols], 1, offsets, xp.bool))
    first_real = (_axis_table([r.index(True) * geometry.kernel[1] for r in rows], 0, offsets, offsets.dtype)
                  + _axis_table([c.index(True) for c in cols], 1, offsets, offsets.dtype))
    return xp.where((y == -math.inf) & touches, first_real, offsets)


class MaxPoolSaved(NamedTuple):
    """What ``max_pool2d(..., return_saved=True)`` keeps for ``max_pool2d_backward(..., saved=)``: the maxima's
    positions as the kernel that found them reads them back. On torch, converting its flat pixel indices to
    window offsets and back took several times as long as the pooling kernels themselves."""

    positions: Any  # generic: the offsets of return_indices; native: that kernel's own record
    native: bool


def max_pool2d(
    x: Any, kernel_size: Any, stride: Any = None, padding: Any = 0, dilation: Any = 1, ceil_mode: bool = False, *,
    return_indices: bool = False, return_saved: bool = False,
) -> Any:
    """Window maxima of ``x (N, C, H, W)`` -> ``(N, C, OH, OW)``; padding counts as -inf; NaN propagates.

    ``padding``: pixels each side (at most half the kernel), or ``"same"``/``"valid"``; ``dilation`` spaces
    the window's taps; ``ceil_mode`` keeps a last, partial window (PyTorch's rule). An elementwise maximum
    over the ``kh*kw`` strided views of the (padded) input: no window array is built. With
    ``return_indices=True`` the result is ``(y, offsets)``: ``offsets (N, C, OH, OW)`` (uint8 for windows of
    fewer than 255 taps, else int32) holds the row-major position inside its window of each output's first
    maximum, ``kh*kw`` where the window holds NaN. ``max_pool2d_backward`` accepts them in place of
    re-reading ``x``. With ``return_saved=True`` it is ``(y, saved)``, a ``MaxPoolSaved`` that only
    ``max_pool2d_backward(..., saved=saved)`` reads: the same positions in the form the kernel made them.
    """
    if return_indices and return_saved:
        raise ValueError("max_pool2d: return_indices and return_saved are exclusive: ask for one of them")
    geometry = _geometry_of("max_pool2d", x, kernel_size, stride, padding, dilation, ceil_mode)
    if return_saved:
        saving = _native_pool(x, "max_pool2d_saving", geometry)
        if saving is not None:
            y, positions = saving(x, geometry)
            return y, MaxPoolSaved(positions, native=True)
        y, offsets = max_pool2d(x, kernel_size, stride, padding, dilation, ceil_mode, return_indices=True)
        return y, MaxPoolSaved(offsets, native=False)
    native = _native_pool(x, "max_pool2d", geometry)
    if native is not None:
        return native(x, geometry, return_indices)
    y, offsets = _max_and_offsets(_windows(pad2d(x, geometry.pads, -math.inf), geometry), return_indices)
    return (y, _padding_ties_to_real_pixels(offsets, y, geometry)) if return_indices else y


def _native_pool(a: Any, name: str, geometry: PoolGeometry) -> Any:
    """The backend's own kernel, where there is one and it takes this padding (``torch_padding``)."""
    return _native.kernel(array_api_compat.array_namespace(a), name) if geometry.torch_padding else None


def max_pool2d_backward(
    dy: Any, x: Any, kernel_size: Any, stride: Any = None, padding: Any = 0, dilation: Any = 1,
    ceil_mode: bool = False, *, y: Any = None, indices: Any = None, saved: MaxPoolSaved | None = None,
) -> Any:
    """Input gradient of ``max_pool2d``: each ``dy`` goes to its window's first maximum in ``x`` (row-major);
    a window holding NaN passes no gradient.

    ``indices``, the offsets from ``max_pool2d(..., return_indices=True)`` for this ``x``, or ``saved``, from
    ``return_saved=True``, spare reading ``x`` again (then only its shape is used); else ``y``, the forward's
    output, spares recomputing the maxima.
    """
    geometry = _geometry_of("max_pool2d", x, kernel_size, stride, padding, dilation, ceil_mode)
    if saved is not None:
        if indices is not None:
            raise ValueError("max_pool2d_backward: pass indices or saved, not both")
        if not saved.native:
            indices = saved.positions
        else:
            from_saved = _native_pool(dy, "max_pool2d_backward_saved", geometry)
            if from_saved is None:
                raise ValueError("max_pool2d_backward: saved holds a native kernel's record, but that kernel does "
                                 "not serve this call (native kernels switched off, or another namespace)")
            return from_saved(dy, x, geometry, saved.positions)
    native = _native_pool(dy, "max_pool2d_backward", geometry)
    if indices is None:
        windows = _windows(pad2d(x, geometry.pads, -math.inf), geometry)
        if y is None:
            y, indices = _max_and_offsets(windows, True)
        else:
            indices = _first_max_offsets(windows, y)
        indices = _padding_ties_to_real_pixels(indices, y, geometry)
    if native is not None:
        return native(dy, x, geometry, indices)
    xp = array_api_compat.array_namespace(dy, indices)
    if geometry.tiles_input and _strided.supports(xp):
        dx = _strided.max_pool_backward_tiles(dy, x, indices, geometry.kernel, geometry.out_hw)
        if dx is not None:
            return dx
    device = array_api_compat.device(indices)
    pieces = [
        keep_where(indices == xp.asarray(k, dtype=indices.dtype, device=device), dy)
        for k in range(geometry.kernel[0] * geometry.kernel[1])
    ]
    return _scatter(pieces, x, geometry)


def _divisor(geometry: PoolGeometry, count_include_pad: bool, like: Any) -> Any:
    """What each window's sum is divided by: ``kh*kw`` (a number) when every window counts that many taps, else
    an ``(OH, OW)`` array: the taps inside the input and, with ``count_include_pad``, the declared padding (never
    the overhang of ceil mode), as PyTorch counts; padding ``"same"`` counts real pixels only, as Keras."""
    declared, counts = geometry.declared, []
    for axis in range(2):
        k, size, before = geometry.kernel[axis], geometry.in_hw[axis], declared[2 * axis]
        low, high = (-before, size + declared[2 * axis + 1]) if count_include_pad else (0, size)
        starts = [o * geometry.stride[axis] - before for o in range(geometry.out_hw[axis])]
        counts.append([min(start + k, high) - max(start, low) for start in starts])
    if all(c == geometry.kernel[0] for c in counts[0]) and all(c == geometry.kernel[1] for c in counts[1]):
        return geometry.kernel[0] * geometry.kernel[1]
    return _axis_table(counts[0], 0, like, like.dtype) * _axis_table(counts[1], 1, like, like.dtype)


def avg_pool2d(x: Any, kernel_size: Any, stride: Any = None, padding: Any = 0, ceil_mode: bool = False,
               count_include_pad: bool = True) -> Any:
    """Window means of ``x (N, C, H, W)`` -> ``(N, C, OH, OW)``: zero padding counts in the mean with
    ``count_include_pad`` (PyTorch's default), not without it, nor with ``padding="same"`` (Keras's mean over
    the real pixels); ``ceil_mode`` as in ``max_pool2d``."""
    geometry = _geometry_of("avg_pool2d", x, kernel_size, stride, padding, 1, ceil_mode)
    count_include_pad = count_include_pad and padding != "same"
    native = _native_pool(x, "avg_pool2d", geometry)
    if native is not None:
        return native(x, geometry, count_include_pad)
    windows = _windows(pad2d(x, geometry.pads, 0.0), geometry)
    total = windows[0]
    for window in windows[1:]:
        total = total + window
    return total / _divisor(geometry, count_include_pad, x)


def avg_pool2d_backward(dy: Any, x: Any, kernel_size: Any, stride: Any = None, padding: Any = 0,
                        ceil_mode: bool = False, count_include_pad: bool = True) -> Any:
    """Input gradient of ``avg_pool2d``: each ``dy`` over its window's divisor, spread over the window (only
    ``x.shape`` is read)."""
    geometry = _geometry_of("avg_pool2d", x, kernel_size, stride, padding, 1, ceil_mode)
    count_include_pad = count_include_pad and padding != "same"
    native = _native_pool(dy, "avg_pool2d_backward", geometry)
    if native is not None:
        return native(dy, x, geometry, count_include_pad)
    share = dy / _divisor(geometry, count_include_pad, dy)
    return _scatter([share] * (geometry.kernel[0] * geometry.kernel[1]), x, geometry)


# --- global pooling -----------------------------------------------------------------------------------

def global_avg_pool2d(x: Any) -> Any:
    """Mean over all pixels: ``(N, C, H, W)`` -> ``(N, C)``."""
    check_nchw("global_avg_pool2d", x)
    return array_api_compat.array_namespace(x).mean(x, axis=(2, 3))


def global_avg_pool2d_backward(dy: Any, x: Any) -> Any:
    """Input gradient of ``global_avg_pool2d``: ``dy (N, C) / (H*W)`` on every pixel (only ``x.shape`` is read)."""
    xp = array_api_compat.array_namespace(dy)
    h, w = x.shape[2], x.shape[3]
    return xp.broadcast_to(xp.reshape(dy / (h * w), (*dy.shape, 1, 1)), tuple(x.shape))


def global_max_pool2d(x: Any) -> Any:
    """Maximum over all pixels: ``(N, C, H, W)`` -> ``(N, C)``."""
    check_nchw("global_max_pool2d", x)
    return array_api_compat.array_namespace(x).max(x, axis=(2, 3))


def global_max_pool2d_backward(dy: Any, x: Any) -> Any:
    """Input gradient of ``global_max_pool2d``: ``dy (N, C)`` to the first maximum of each channel (row-major)."""
    xp = array_api_compat.array_namespace(dy, x)
    n, c, h, w = x.shape
    winners = _first_max_mask(xp.reshape(x, (n, c, h * w)), axis=2)
    return xp.reshape(keep_where(winners, xp.expand_dims(dy, axis=2)), (n, c, h, w))
