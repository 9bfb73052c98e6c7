"""PyTorch's own convolution kernels for the ops in ``conv.py`` (oneDNN on CPUs, cuDNN on CUDA).

Each function takes the geometry the generic op resolved (strides, pads as (top, bottom, left, right),
dilation, groups). Gradients come from ``aten.convolution_backward``, the kernel autograd itself calls, so
no autograd graph is built. Pads that differ between the two sides of an axis (TensorFlow's "same" for even
kernels or strides > 1) are applied to the input first and cropped from its gradient.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

__all__ = ["conv2d", "conv2d_backward", "conv2d_transpose", "conv2d_transpose_backward"]

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
    return [out_hw[i] - ((x.shape[2 + i] - 1) * stride[i] - 2 * pads[2 * i] + dilation[i] * (w.shape[2 + i] - 1) + 1)
            for i in (0, 1)]


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
