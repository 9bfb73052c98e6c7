"""PyTorch's own kernels for the ops in ``conv.py``, ``pool.py`` and ``normalization.py`` (oneDNN on CPUs, cuDNN
on CUDA), ``erf`` and the activations of ``activations.py``, the sum of ``merge.py``.

Each function takes the geometry the generic op resolved (strides, pads as (top, bottom, left, right),
dilation, groups). Gradients come from ``aten.convolution_backward``, the kernel autograd itself calls, so
no autograd graph is built. Pads that differ between the two sides of an axis (TensorFlow's "same" for even
kernels or strides > 1) are applied to the input first and cropped from its gradient.

Max pooling keeps xpcnn's indices: for each output the row-major offset of its first maximum inside the
window (``kh*kw`` where the window holds NaN, which then passes no gradient), converted from and to the
flat pixel indices of ``aten.max_pool2d_with_indices``, whose ties also go to the first maximum. What a layer
keeps between its forward and backward passes (``return_saved``) is those flat indices unconverted.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from .windows import conv_transpose_output_hw

__all__ = ["add", "avg_pool2d", "avg_pool2d_backward", "batch_norm", "batch_norm_backward", "conv2d", "conv2d_backward",
           "conv2d_transpose", "conv2d_transpose_backward", "erf", "hardsigmoid", "hardswish", "max_pool2d",
           "max_pool2d_backward", "max_pool2d_backward_saved", "max_pool2d_saving", "relu", "relu6"]

Pair = tuple[int, int]
Pads = tuple[int, int, int, int]
_aten = torch.ops.aten


def _symmetric(pads: Pads) -> bool:
    return pads[0] == pads[1] and pads[2] == pads[3]


def _padded(x: Any, pads: Pads) -> tuple[Any, Pair]:
    """``x`` and the padding to give the kernel: as is when symmetric, else padded here and (0, 0)."""
    if _symmetric(pads):
        return x, (pads[0], pads[2])
    return F.pad(x, (pads[2], pads[3], pads[0], pads[1])), (0, 0)


def conv2d(x: Any, w: Any, bias: Any, *, stride: Pair, pads: Pads, dilation: Pair, groups: int) -> Any:
    """``conv2d``: ``x (N, C, H, W)``, ``w (O, C/groups, kh, kw)``."""
    x, padding = _padded(x, pads)
    return F.conv2d(x, w, bias, stride, padding, dilation, groups)


def conv2d_backward(dy: Any, x: Any, w: Any, *, stride: Pair, pads: Pads, dilation: Pair, groups: int, bias: bool,
                    input_grad: bool) -> tuple[Any, Any, Any]:
    """``(dx, dw, db)`` of ``conv2d``; ``dx`` is None without ``input_grad``, ``db`` None without ``bias``."""
    xp, padding = _padded(x, pads)
    dx, dw, db = _aten.convolution_backward(
        dy, xp, w, [w.shape[0]] if bias else None, list(stride), list(padding), list(dilation), False, [0, 0],
        groups, [input_grad, True, bias],
    )
    if dx is not None and not _symmetric(pads):
        dx = dx[:, :, pads[0] : pads[0] + x.shape[2], pads[2] : pads[2] + x.shape[3]]
    return dx, dw, db


def _output_padding(x: Any, w: Any, stride: Pair, pads: Pads, dilation: Pair, out_hw: Pair) -> list[int]:
    """What ``aten.convolution`` needs to produce ``out_hw`` pixels: the excess over the size without it."""
    plain = conv_transpose_output_hw((x.shape[2], x.shape[3]), (w.shape[2], w.shape[3]), stride, dilation,
                                     (pads[0], pads[2]))
    return [out_hw[0] - plain[0], out_hw[1] - plain[1]]


def conv2d_transpose(x: Any, w: Any, bias: Any, *, stride: Pair, pads: Pads, dilation: Pair, groups: int,
                     out_hw: Pair) -> Any:
    """``conv2d_transpose``: weight ``(C, O/groups, kh, kw)``, symmetric pads, ``out_hw`` output pixels."""
    output_padding = _output_padding(x, w, stride, pads, dilation, out_hw)
    return _aten.convolution(x, w, bias, list(stride), [pads[0], pads[2]], list(dilation), True, output_padding,
                             groups)


def conv2d_transpose_backward(dy: Any, x: Any, w: Any, *, stride: Pair, pads: Pads, dilation: Pair, groups: int,
                              bias: bool) -> tuple[Any, Any, Any]:
    """``(dx, dw, db)`` of ``conv2d_transpose``."""
    output_padding = _output_padding(x, w, stride, pads, dilation, (dy.shape[2], dy.shape[3]))
    return tuple(_aten.convolution_backward(
        dy, x, w, [w.shape[1] * groups] if bias else None, list(stride), [pads[0], pads[2]], list(dilation), True,
        output_padding, groups, [True, True, bias],
    ))


# --- pooling (geometry from ops.pool.pool_geometry, called here only with symmetric declared padding) -------

def _window_origins(x: Any, geometry: Any) -> tuple[Any, Any]:
    """Top row ``(OH, 1)`` and left column ``(1, OW)`` of every window, in unpadded input coordinates."""
    (sh, sw), (oh, ow), pads = geometry.stride, geometry.out_hw, geometry.pads
    rows = torch.arange(oh, device=x.device, dtype=torch.int32) * sh - pads[0]
    cols = torch.arange(ow, device=x.device, dtype=torch.int32) * sw - pads[2]
    return rows[:, None], cols[None, :]


def _offset_dtype(count: int) -> Any:
    return torch.uint8 if count < 255 else torch.int32


def _fast_layout(x: Any) -> Any:
    """On CPUs PyTorch's max pooling runs several times faster over channels-last memory than over NCHW."""
    return x.contiguous(memory_format=torch.channels_last) if x.device.type == "cpu" else x


def _pool_args(geometry: Any) -> tuple[list[int], list[int], list[int]]:
    """kernel, stride and (symmetric) padding as PyTorch's pooling kernels take them."""
    return list(geometry.kernel), list(geometry.stride), [geometry.declared[0], geometry.declared[2]]


def max_pool2d(x: Any, geometry: Any, return_indices: bool) -> Any:
    """``max_pool2d``; with ``return_indices`` also the first maxima's offsets (taps) inside their windows."""
    kernel, stride, padding = _pool_args(geometry)
    dilation, ceil_mode = list(geometry.dilation), geometry.ceil_mode
    if not return_indices:
        return F.max_pool2d(_fast_layout(x), kernel, stride, padding, dilation, ceil_mode).contiguous()
    y, flat = _aten.max_pool2d_with_indices(_fast_layout(x), kernel, stride, padding, dilation, ceil_mode)
    flat = flat.to(torch.int32)
    row = torch.div(flat, x.shape[3], rounding_mode="floor")
    top, left = _window_origins(x, geometry)
    (dh, dw), count = geometry.dilation, kernel[0] * kernel[1]
    offsets = torch.div(row - top, dh, rounding_mode="floor") * kernel[1] + torch.div(
        flat - row * x.shape[3] - left, dw, rounding_mode="floor")
    offsets = torch.where(torch.isnan(y), count, offsets)
    return y.contiguous(), offsets.contiguous().to(_offset_dtype(count))


def max_pool2d_saving(x: Any, geometry: Any) -> tuple[Any, Any]:
    """``max_pool2d`` and what ``max_pool2d_backward_saved`` reads back: torch's own flat indices, unconverted,
    and which outputs' windows hold NaN (they pass no gradient, as the generic offsets say)."""
    kernel, stride, padding = _pool_args(geometry)
    y, flat = _aten.max_pool2d_with_indices(_fast_layout(x), kernel, stride, padding, list(geometry.dilation),
                                            geometry.ceil_mode)
    return y.contiguous(), (flat, torch.isnan(y))


def max_pool2d_backward_saved(dy: Any, x: Any, geometry: Any, saved: Any) -> Any:
    """Input gradient of ``max_pool2d`` from what ``max_pool2d_saving`` kept (only ``x.shape`` is read)."""
    kernel, stride, padding = _pool_args(geometry)
    flat, nan_windows = saved
    return _aten.max_pool2d_with_indices_backward(dy.masked_fill(nan_windows, 0.0), x, kernel, stride, padding,
                                                  list(geometry.dilation), geometry.ceil_mode, flat)


def max_pool2d_backward(dy: Any, x: Any, geometry: Any, indices: Any) -> Any:
    """Input gradient of ``max_pool2d`` from the offsets ``max_pool2d`` returned (only ``x.shape`` is read)."""
    kernel, stride, padding = _pool_args(geometry)
    (dh, dw), count = geometry.dilation, kernel[0] * kernel[1]
    offsets = indices.to(torch.int32)
    tap_row = torch.div(offsets, kernel[1], rounding_mode="floor")
    top, left = _window_origins(x, geometry)
    flat = (top + tap_row * dh) * x.shape[3] + left + (offsets - tap_row * kernel[1]) * dw
    valid = offsets < count  # a window holding NaN passes no gradient: pixel 0 gets a zero
    flat = torch.where(valid, flat, 0).to(torch.int64)
    return _aten.max_pool2d_with_indices_backward(torch.where(valid, dy, 0.0), x, kernel, stride, padding,
                                                  list(geometry.dilation), geometry.ceil_mode, flat)


def avg_pool2d(x: Any, geometry: Any, count_include_pad: bool) -> Any:
    """``avg_pool2d``."""
    kernel, stride, padding = _pool_args(geometry)
    return F.avg_pool2d(x, kernel, stride, padding, geometry.ceil_mode, count_include_pad)


def avg_pool2d_backward(dy: Any, x: Any, geometry: Any, count_include_pad: bool) -> Any:
    """Input gradient of ``avg_pool2d`` (only ``x.shape`` is read)."""
    kernel, stride, padding = _pool_args(geometry)
    return _aten.avg_pool2d_backward(dy, x, kernel, stride, padding, geometry.ceil_mode, count_include_pad, None)


# --- batch normalisation (the op's contract: new running statistics, the caller's left as they are) -------

def batch_norm(x: Any, weight: Any, bias: Any, running_mean: Any, running_var: Any, training: bool, momentum: float,
               eps: float) -> tuple[Any, Any, Any, Any]:
    """``batch_norm`` and what its backward reuses: ``aten.native_batch_norm``, which updates running
    statistics in place, on copies."""
    if not training:
        y = _aten.native_batch_norm(x, weight, bias, running_mean, running_var, False, momentum, eps)[0]
        return y, running_mean, running_var, None
    if running_mean is not None:
        running_mean, running_var = running_mean.clone(), running_var.clone()
    y, mean, inv_std = _aten.native_batch_norm(x, weight, bias, running_mean, running_var, True, momentum, eps)
    return y, running_mean, running_var, (mean, inv_std)


def batch_norm_backward(dy: Any, x: Any, weight: Any, eps: float, saved: Any) -> tuple[Any, Any, Any]:
    """Gradients of training-mode ``batch_norm``, from the forward's batch statistics when saved."""
    if saved is not None:
        mean, inv_std = saved
    else:
        axes = [0, *range(2, x.ndim)]
        var, mean = torch.var_mean(x, dim=axes, correction=0)
        inv_std = torch.rsqrt(var + eps)
    affine = weight is not None
    return tuple(_aten.native_batch_norm_backward(dy, x, weight, None, None, mean, inv_std, True, eps,
                                                  [True, affine, affine]))


def erf(x: Any) -> Any:
    """``erf``: PyTorch's own (the Array API has none)."""
    return torch.special.erf(x)


def relu(x: Any, overwrite: bool = False) -> Any:
    """``relu``: PyTorch's kernel (``maximum(x, 0.0)`` broadcasts a 0-d tensor made for the scalar first); in
    ``x`` itself with ``overwrite``."""
    return torch.relu_(x) if overwrite else torch.relu(x)


def relu6(x: Any, overwrite: bool = False) -> Any:
    """``relu6``: PyTorch's fused kernel (one pass where the generic code makes two)."""
    return F.relu6(x, inplace=overwrite)


def hardsigmoid(x: Any, overwrite: bool = False) -> Any:
    """``hardsigmoid``: PyTorch's fused kernel (MobileNetV3 calls it in every squeeze-and-excitation gate)."""
    return F.hardsigmoid(x, inplace=overwrite)


def hardswish(x: Any, overwrite: bool = False) -> Any:
    """``hardswish``: PyTorch's fused kernel (one pass where the generic code makes four)."""
    return F.hardswish(x, inplace=overwrite)


def add(a: Any, b: Any, overwrite: bool = False) -> Any:
    """``a + b``; with ``overwrite``, written into ``a`` where it has the sum's shape and dtype (torchvision's
    ``out += identity``)."""
    if overwrite and a.shape == b.shape and a.dtype == b.dtype:
        return a.add_(b)
    return a + b
