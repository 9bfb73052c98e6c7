"""2-D convolution and transposed convolution as one (grouped) matrix product over window columns.

Shapes follow PyTorch: ``conv2d`` weight ``(out, in/groups, kh, kw)``; ``conv2d_transpose`` weight
``(in, out/groups, kh, kw)``. The transposed convolution *is* the input gradient of a convolution, so both
ops share ``_input_grad`` and ``_weight_grad``.
"""

from __future__ import annotations

from typing import Any

import array_api_compat

from .windows import Pads, as_pair, col2im, conv_output_hw, im2col, pad2d, resolve_padding, unpad2d

__all__ = ["conv2d", "conv2d_backward", "conv2d_transpose", "conv2d_transpose_backward"]


def _check_operands(op: str, x: Any, weight: Any, groups: int, in_axis: int) -> None:
    """Shapes of input and weight agree; ``in_axis`` is the weight axis that meets the input channels."""
    if x.ndim != 4:
        raise ValueError(f"{op}: input must be 4-D (N, C, H, W), got shape {tuple(x.shape)}")
    if weight.ndim != 4:
        raise ValueError(f"{op}: weight must be 4-D, got shape {tuple(weight.shape)}")
    if not isinstance(groups, int) or groups < 1:
        raise ValueError(f"{op}: groups must be a positive int, got {groups!r}")
    expected_in = weight.shape[1] * groups if in_axis == 1 else weight.shape[0]
    if x.shape[1] != expected_in:
        raise ValueError(
            f"{op}: input has {x.shape[1]} channels but weight {tuple(weight.shape)} with groups={groups} "
            f"expects {expected_in}"
        )
    if weight.shape[0] % groups:
        raise ValueError(f"{op}: weight axis 0 ({weight.shape[0]}) is not divisible by groups={groups}")


def _geometry(
    op: str, in_hw: tuple[int, int], kernel: tuple[int, int], stride: Any, padding: Any, dilation: Any,
) -> tuple[tuple[int, int], Pads, tuple[int, int], tuple[int, int]]:
    stride, dilation = as_pair(stride, "stride", owner=op), as_pair(dilation, "dilation", owner=op)
    pads = resolve_padding(padding, in_hw, kernel, stride, dilation)
    out_hw = conv_output_hw(in_hw, kernel, stride, dilation, pads)
    if min(out_hw) < 1:
        raise ValueError(
            f"{op}: kernel {kernel} (dilation {dilation}) is larger than the padded input "
            f"{(in_hw[0] + pads[0] + pads[1], in_hw[1] + pads[2] + pads[3])}"
        )
    return stride, pads, dilation, out_hw


def _forward(x: Any, weight: Any, stride, pads, dilation, out_hw, groups: int) -> Any:
    """y[n, g*Og+o] = W[g, o, :] @ cols[n, g, :, :] : one broadcast matmul over batch and groups."""
    xp = array_api_compat.array_namespace(x, weight)
    n, c = x.shape[0], x.shape[1]
    o, kh, kw = weight.shape[0], weight.shape[2], weight.shape[3]
    cols = im2col(pad2d(x, pads), (kh, kw), stride, dilation, out_hw)
    cols = xp.reshape(cols, (n, groups, (c // groups) * kh * kw, out_hw[0] * out_hw[1]))
    w = xp.reshape(weight, (groups, o // groups, (c // groups) * kh * kw))
    return xp.reshape(xp.matmul(w, cols), (n, o, *out_hw))


def _weight_grad(x: Any, dy: Any, weight_shape, stride, pads, dilation, groups: int) -> Any:
    """dW[g] = sum_n dy[n, g] @ cols[n, g]^T."""
    xp = array_api_compat.array_namespace(x, dy)
    n, c = x.shape[0], x.shape[1]
    o, kh, kw = weight_shape[0], weight_shape[2], weight_shape[3]
    out_hw = (dy.shape[2], dy.shape[3])
    cols = im2col(pad2d(x, pads), (kh, kw), stride, dilation, out_hw)
    cols = xp.reshape(cols, (n, groups, (c // groups) * kh * kw, out_hw[0] * out_hw[1]))
    g = xp.reshape(dy, (n, groups, o // groups, out_hw[0] * out_hw[1]))
    dw = xp.sum(xp.matmul(g, xp.matrix_transpose(cols)), axis=0)
    return xp.reshape(dw, tuple(weight_shape))


def _input_grad(dy: Any, weight: Any, in_hw: tuple[int, int], stride, pads, dilation, groups: int) -> Any:
    """dx = col2im(W^T @ dy): the adjoint of ``_forward`` for an input of spatial size ``in_hw``."""
    xp = array_api_compat.array_namespace(dy, weight)
    n, o, oh, ow = dy.shape
    cg, kh, kw = weight.shape[1], weight.shape[2], weight.shape[3]
    w = xp.reshape(weight, (groups, o // groups, cg * kh * kw))
    g = xp.reshape(dy, (n, groups, o // groups, oh * ow))
    dcols = xp.reshape(xp.matmul(xp.matrix_transpose(w), g), (n, groups * cg, kh * kw, oh, ow))
    padded_hw = (in_hw[0] + pads[0] + pads[1], in_hw[1] + pads[2] + pads[3])
    return unpad2d(col2im(dcols, padded_hw, (kh, kw), stride, dilation), pads)


def _bias_grad(dy: Any) -> Any:
    return array_api_compat.array_namespace(dy).sum(dy, axis=(0, 2, 3))


def _add_bias(y: Any, bias: Any) -> Any:
    if bias is None:
        return y
    xp = array_api_compat.array_namespace(y, bias)
    return y + xp.reshape(bias, (1, bias.shape[0], 1, 1))


def conv2d(
    x: Any, weight: Any, bias: Any = None, stride: Any = 1, padding: Any = 0, dilation: Any = 1, groups: int = 1,
) -> Any:
    """Cross-correlation of ``x (N, C, H, W)`` with ``weight (O, C/groups, kh, kw)`` -> ``(N, O, OH, OW)``.

    ``padding`` is an int, a pair, ``"valid"`` or ``"same"`` (TensorFlow placement for stride > 1).
    """
    _check_operands("conv2d", x, weight, groups, in_axis=1)
    kernel = (weight.shape[2], weight.shape[3])
    stride, pads, dilation, out_hw = _geometry("conv2d", (x.shape[2], x.shape[3]), kernel, stride, padding, dilation)
    return _add_bias(_forward(x, weight, stride, pads, dilation, out_hw, groups), bias)


def conv2d_backward(
    dy: Any, x: Any, weight: Any, stride: Any = 1, padding: Any = 0, dilation: Any = 1, groups: int = 1,
    bias: bool = True,
) -> tuple[Any, Any, Any]:
    """Gradients ``(dx, dweight, dbias)`` of ``conv2d`` for output gradient ``dy``; dbias is None without bias."""
    kernel = (weight.shape[2], weight.shape[3])
    in_hw = (x.shape[2], x.shape[3])
    stride, pads, dilation, _ = _geometry("conv2d", in_hw, kernel, stride, padding, dilation)
    dx = _input_grad(dy, weight, in_hw, stride, pads, dilation, groups)
    dw = _weight_grad(x, dy, weight.shape, stride, pads, dilation, groups)
    return dx, dw, (_bias_grad(dy) if bias else None)


def _transpose_geometry(
    x: Any, weight: Any, stride: Any, padding: Any, output_padding: Any, dilation: Any,
) -> tuple[tuple[int, int], Pads, tuple[int, int], tuple[int, int]]:
    op = "conv2d_transpose"
    stride, dilation = as_pair(stride, "stride", owner=op), as_pair(dilation, "dilation", owner=op)
    ph, pw = (0, 0) if padding == "valid" else as_pair(padding, "padding", minimum=0, owner=op)
    oph, opw = as_pair(output_padding, "output_padding", minimum=0, owner=op)
    if oph >= max(stride[0], dilation[0]) or opw >= max(stride[1], dilation[1]):
        raise ValueError(
            f"{op}: output_padding {(oph, opw)} must be smaller than stride {stride} or dilation {dilation}"
        )
    kh, kw = weight.shape[2], weight.shape[3]
    out_hw = (
        (x.shape[2] - 1) * stride[0] - 2 * ph + dilation[0] * (kh - 1) + oph + 1,
        (x.shape[3] - 1) * stride[1] - 2 * pw + dilation[1] * (kw - 1) + opw + 1,
    )
    if min(out_hw) < 1:
        raise ValueError(f"{op}: padding {(ph, pw)} leaves no output for input {tuple(x.shape)}")
    return stride, (ph, ph, pw, pw), dilation, out_hw


def conv2d_transpose(
    x: Any, weight: Any, bias: Any = None, stride: Any = 1, padding: Any = 0, output_padding: Any = 0,
    dilation: Any = 1, groups: int = 1,
) -> Any:
    """Transposed convolution (the input gradient of ``conv2d``): weight ``(C, O/groups, kh, kw)``.

    Output size ``(H - 1)*stride - 2*padding + dilation*(k - 1) + output_padding + 1``, as in PyTorch.
    """
    _check_operands("conv2d_transpose", x, weight, groups, in_axis=0)
    stride, pads, dilation, out_hw = _transpose_geometry(x, weight, stride, padding, output_padding, dilation)
    return _add_bias(_input_grad(x, weight, out_hw, stride, pads, dilation, groups), bias)


def conv2d_transpose_backward(
    dy: Any, x: Any, weight: Any, stride: Any = 1, padding: Any = 0, output_padding: Any = 0,
    dilation: Any = 1, groups: int = 1, bias: bool = True,
) -> tuple[Any, Any, Any]:
    """Gradients ``(dx, dweight, dbias)`` of ``conv2d_transpose``: a convolution of ``dy`` gives both."""
    stride, pads, dilation, _ = _transpose_geometry(x, weight, stride, padding, output_padding, dilation)
    in_hw = (x.shape[2], x.shape[3])
    dx = _forward(dy, weight, stride, pads, dilation, in_hw, groups)
    dw = _weight_grad(dy, x, weight.shape, stride, pads, dilation, groups)
    return dx, dw, (_bias_grad(dy) if bias else None)
