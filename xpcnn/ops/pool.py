"""Max and average pooling over NCHW images, local and global, each forward beside its backward.

Numerics follow ``torch.nn.functional``: floor mode, max pooling pads with -inf and sends each window's
gradient to its FIRST maximum (row-major over the window, like ``argmax``), average pooling counts the
padding (``count_include_pad=True``), ``stride`` defaults to the kernel size and ``padding`` may be at most
half the kernel. Windows are gathered as ``(N, C, kh*kw, OH, OW)``: by strided slices in general
(``windows.im2col``), by a reshape when the windows tile the input exactly (stride == kernel, no padding),
which is what makes large kernels cheap. Backward ops take the forward's input ``x``, as PyTorch's do.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import array_api_compat

from .windows import Pads, as_pair, col2im, conv_output_hw, im2col, pad2d, unpad2d

__all__ = [
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

_NO_DILATION = (1, 1)


class PoolGeometry(NamedTuple):
    """Everything the window arithmetic needs for one input size."""

    kernel: tuple[int, int]
    stride: tuple[int, int]
    pads: Pads
    in_hw: tuple[int, int]
    out_hw: tuple[int, int]

    @property
    def padded_hw(self) -> tuple[int, int]:
        return (self.in_hw[0] + self.pads[0] + self.pads[1], self.in_hw[1] + self.pads[2] + self.pads[3])

    @property
    def tiles_input(self) -> bool:
        """Windows are disjoint, unpadded and stride apart: the input reshapes into them."""
        return self.stride == self.kernel and not any(self.pads)


def check_pool_args(
    kernel_size: Any, stride: Any = None, padding: Any = 0, owner: str = "pool2d",
) -> tuple[tuple[int, int], tuple[int, int], tuple[int, int]]:
    """Validated ``(kernel, stride, padding)`` pairs; ``stride=None`` means the kernel size."""
    kernel = as_pair(kernel_size, "kernel_size", owner=owner)
    stride = kernel if stride is None else as_pair(stride, "stride", owner=owner)
    padding = as_pair(padding, "padding", minimum=0, owner=owner)
    if padding[0] > kernel[0] // 2 or padding[1] > kernel[1] // 2:
        raise ValueError(f"{owner}: padding {padding} must be at most half the kernel size {kernel}")
    return kernel, stride, padding


def pool_geometry(
    in_hw: tuple[int, int], kernel_size: Any, stride: Any = None, padding: Any = 0, owner: str = "pool2d",
) -> PoolGeometry:
    """The window geometry for an input of spatial size ``in_hw``; an error if no window fits."""
    kernel, stride, (ph, pw) = check_pool_args(kernel_size, stride, padding, owner)
    pads = (ph, ph, pw, pw)
    out_hw = conv_output_hw(in_hw, kernel, stride, _NO_DILATION, pads)
    geometry = PoolGeometry(kernel, stride, pads, tuple(in_hw), out_hw)
    if min(out_hw) < 1:
        raise ValueError(
            f"{owner}: kernel {kernel} is larger than the padded input {geometry.padded_hw} "
            f"(input height and width {tuple(in_hw)}, padding {(ph, pw)})"
        )
    return geometry


def check_nchw(op: str, x: Any) -> None:
    """Ops on images refuse anything but a 4-D ``(N, C, H, W)`` array."""
    if x.ndim != 4:
        raise ValueError(f"{op}: input must be 4-D (N, C, H, W), got shape {tuple(x.shape)}")


def _geometry_of(op: str, x: Any, kernel_size: Any, stride: Any, padding: Any) -> PoolGeometry:
    check_nchw(op, x)
    return pool_geometry((x.shape[2], x.shape[3]), kernel_size, stride, padding, owner=op)


# --- windows and their adjoint ------------------------------------------------------------------------

def _gather_windows(x: Any, geometry: PoolGeometry, fill: float) -> Any:
    """``(N, C, H, W)`` -> ``(N, C, kh*kw, OH, OW)``, window offsets row-major, padding set to ``fill``."""
    xp = array_api_compat.array_namespace(x)
    (kh, kw), (oh, ow) = geometry.kernel, geometry.out_hw
    if geometry.tiles_input:
        n, c = x.shape[0], x.shape[1]
        tiles = xp.reshape(x[:, :, : oh * kh, : ow * kw], (n, c, oh, kh, ow, kw))
        return xp.reshape(xp.permute_dims(tiles, (0, 1, 3, 5, 2, 4)), (n, c, kh * kw, oh, ow))
    return im2col(pad2d(x, geometry.pads, fill), geometry.kernel, geometry.stride, _NO_DILATION, geometry.out_hw)


def _scatter_windows(cols: Any, geometry: PoolGeometry) -> Any:
    """Adjoint of ``_gather_windows``: ``(N, C, kh*kw, OH, OW)`` summed back into ``(N, C, H, W)``."""
    xp = array_api_compat.array_namespace(cols)
    (kh, kw), (oh, ow), (h, w) = geometry.kernel, geometry.out_hw, geometry.in_hw
    if geometry.tiles_input:
        n, c = cols.shape[0], cols.shape[1]
        tiles = xp.permute_dims(xp.reshape(cols, (n, c, kh, kw, oh, ow)), (0, 1, 4, 2, 5, 3))
        return pad2d(xp.reshape(tiles, (n, c, oh * kh, ow * kw)), (0, h - oh * kh, 0, w - ow * kw))
    return unpad2d(col2im(cols, geometry.padded_hw, geometry.kernel, geometry.stride, _NO_DILATION), geometry.pads)


def _first_max_mask(values: Any, axis: int) -> Any:
    """Boolean one-hot along ``axis`` marking the first maximum (the Array API's ``argmax`` tie rule)."""
    xp = array_api_compat.array_namespace(values)
    winner = xp.argmax(values, axis=axis, keepdims=True)
    positions = xp.arange(values.shape[axis], dtype=winner.dtype, device=array_api_compat.device(values))
    shape = [1] * values.ndim
    shape[axis] = values.shape[axis]
    return xp.reshape(positions, tuple(shape)) == winner


# --- local pooling ------------------------------------------------------------------------------------

def max_pool2d(x: Any, kernel_size: Any, stride: Any = None, padding: Any = 0) -> Any:
    """Window maxima of ``x (N, C, H, W)`` -> ``(N, C, OH, OW)``; padding counts as -inf."""
    geometry = _geometry_of("max_pool2d", x, kernel_size, stride, padding)
    xp = array_api_compat.array_namespace(x)
    return xp.max(_gather_windows(x, geometry, -math.inf), axis=2)


def max_pool2d_backward(dy: Any, x: Any, kernel_size: Any, stride: Any = None, padding: Any = 0) -> Any:
    """Input gradient of ``max_pool2d``: each ``dy`` goes to its window's first maximum in ``x``."""
    geometry = _geometry_of("max_pool2d", x, kernel_size, stride, padding)
    xp = array_api_compat.array_namespace(dy, x)
    winners = _first_max_mask(_gather_windows(x, geometry, -math.inf), axis=2)
    return _scatter_windows(xp.where(winners, xp.expand_dims(dy, axis=2), 0.0), geometry)


def avg_pool2d(x: Any, kernel_size: Any, stride: Any = None, padding: Any = 0) -> Any:
    """Window means of ``x (N, C, H, W)`` -> ``(N, C, OH, OW)``; zero padding counts in the mean."""
    geometry = _geometry_of("avg_pool2d", x, kernel_size, stride, padding)
    xp = array_api_compat.array_namespace(x)
    return xp.mean(_gather_windows(x, geometry, 0.0), axis=2)


def avg_pool2d_backward(dy: Any, x: Any, kernel_size: Any, stride: Any = None, padding: Any = 0) -> Any:
    """Input gradient of ``avg_pool2d``: ``dy / (kh*kw)`` spread over each window (only ``x.shape`` is read)."""
    geometry = _geometry_of("avg_pool2d", x, kernel_size, stride, padding)
    xp = array_api_compat.array_namespace(dy)
    (kh, kw), (n, c) = geometry.kernel, dy.shape[:2]
    share = xp.expand_dims(dy / (kh * kw), axis=2)
    return _scatter_windows(xp.broadcast_to(share, (n, c, kh * kw, *geometry.out_hw)), geometry)


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
    return xp.reshape(xp.where(winners, xp.expand_dims(dy, axis=2), 0.0), (n, c, h, w))
