"""2-D convolution and transposed convolution as one (grouped) matrix product over window columns.

Shapes follow PyTorch: ``conv2d`` weight ``(out, in/groups, kh, kw)``; ``conv2d_transpose`` weight
``(in, out/groups, kh, kw)``. The transposed convolution *is* the input gradient of a convolution, so both
ops share ``_forward`` and ``_backward``. Where the namespace has convolution kernels of its own (JAX's
``lax``, see ``_native``), the public ops hand the resolved geometry to them instead.
"""

from __future__ import annotations

from typing import Any

import array_api_compat
import array_api_extra as xpx

from . import _native, _strided
from .windows import (
    Pads, as_pair, col2im, conv_output_hw, conv_transpose_output_hw, im2col, pad2d, resolve_padding, same_pads_1d,
    unpad2d,
)

__all__ = ["conv2d", "conv2d_backward", "conv2d_transpose", "conv2d_transpose_backward", "conv_transpose_geometry"]


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


# --- the column algorithm ------------------------------------------------------------------------------
#
# Callers see NCHW, but the GEMMs run batch-last: ``x`` is viewed as ``(C, H, W, N)`` (a free axis
# permutation) and padded once, the windows of a band of output rows become the column matrix
# ``(C*kh*kw, rows*OW*N)`` (``im2col`` in the ``"CHWN"`` layout makes that a reshape, no copy), and one GEMM
# per group and band gives ``(O, rows*OW*N)``, the band's slab of the batch-last output ``(O, OH, OW, N)``.
# The output is returned as the NCHW view of that result: values and shape are NCHW, memory is batch-last,
# which the next convolution reads again without a transpose. With the batch innermost every window row
# is one contiguous run of ``OW*N`` values, so window copies, col2im, pooling and activations stream instead
# of stepping through short image rows, and a band of rows is a contiguous slab of every array involved.
# On NumPy the output rows are cut into bands whose columns stay in cache (``_band_rows``): the matrices
# meet the BLAS while hot, and the weight gradient recomputes each band's columns rather than keeping the
# column matrix of the whole batch in memory. A band is never narrower than ``_BAND_MIN_COLUMNS`` columns
# though: OpenBLAS runs a product with a few hundred columns far below its speed, and the per-band Python
# and BLAS start-up adds up (MNIST's second convolution at batch 64 had one-row bands of 896 columns; bands
# of at least 8192 made its training step 20 -> 16 ms, 2-core Xeon). Other namespaces take all rows in one
# band (one large op).

_BAND_BYTES = 4 * 2**20  # column bytes per band on NumPy: cache-resident between im2col and the GEMM
_BAND_MIN_COLUMNS = 8192  # columns per band on NumPy: GEMMs wide enough to run fast ...
_BAND_MAX_BYTES = 64 * 2**20  # ... unless that takes more bytes than a reused scratch buffer holds (_strided)
_LAYOUT = "CHWN"


def _band_rows(like: Any, rows: int, columns_per_row: int, bytes_per_column: int) -> int:
    """Output rows per band: cache-sized on NumPy (but at least ``_BAND_MIN_COLUMNS`` columns within
    ``_BAND_MAX_BYTES``; at least one row), all ``rows`` on every other namespace."""
    if not array_api_compat.is_numpy_namespace(array_api_compat.array_namespace(like)):
        return rows
    row_bytes = max(columns_per_row * bytes_per_column, 1)
    wide_enough = min(-(-_BAND_MIN_COLUMNS // max(columns_per_row, 1)), _BAND_MAX_BYTES // row_bytes)
    return max(1, min(rows, max(_BAND_BYTES // row_bytes, wide_enough)))


def _itemsize(x: Any) -> int:
    return array_api_compat.array_namespace(x).finfo(x.dtype).bits // 8


def _batch_last(x: Any) -> Any:
    """``(N, C, H, W)`` -> ``(C, H, W, N)``: a view, no data moves."""
    return array_api_compat.array_namespace(x).permute_dims(x, (1, 2, 3, 0))


def _batch_first(x: Any) -> Any:
    """``(C, H, W, N)`` -> ``(N, C, H, W)``: a view, no data moves."""
    return array_api_compat.array_namespace(x).permute_dims(x, (3, 0, 1, 2))


def _input_rows(r0: int, r1: int, kernel: int, stride: int, dilation: int) -> slice:
    """The padded-input rows that output rows ``r0:r1`` read."""
    return slice(r0 * stride, (r1 - 1) * stride + (kernel - 1) * dilation + 1)


def _band_columns(
    x_pad: Any, r0: int, r1: int, kernel, stride, dilation, out_w: int, groups: int, slot: str,
) -> Any:
    """Output rows ``r0:r1`` of a padded batch-last input ``(C, Hp, Wp, N)`` as the column matrix
    ``(groups, C/groups*kh*kw, (r1-r0)*OW*N)``."""
    xp = array_api_compat.array_namespace(x_pad)
    c, n = x_pad.shape[0], x_pad.shape[3]
    band = x_pad[:, _input_rows(r0, r1, kernel[0], stride[0], dilation[0]), :, :]
    cols = im2col(band, kernel, stride, dilation, (r1 - r0, out_w), layout=_LAYOUT, scratch=slot)
    return xp.reshape(cols, (groups, (c // groups) * kernel[0] * kernel[1], (r1 - r0) * out_w * n))


def _rows(a: Any, r0: int, r1: int, groups: int) -> Any:
    """Rows ``r0:r1`` of batch-last ``(C, H, W, N)`` as ``(groups, C/groups, rows*W*N)`` (a view where the
    memory is batch-last)."""
    xp = array_api_compat.array_namespace(a)
    c, _, w, n = a.shape
    return xp.reshape(a[:, r0:r1, :, :], (groups, c // groups, (r1 - r0) * w * n))


def _store_rows(
    out: Any, r0: int, r1: int, a: Any, b: Any, bias: Any, shape: tuple[int, int, int, int],
) -> Any:
    """``out[:, r0:r1] = a @ b (+ bias)`` for a batch-last ``out`` of ``shape`` (created by the first band),
    ``a @ b`` being ``(groups, C/groups, rows*W*N)``; returns the updated ``out``. A band that covers every
    row becomes the output itself. NumPy writes the product straight into the slab (``_strided.matmul_rows``).
    """
    xp = array_api_compat.array_namespace(a, b)
    if _strided.supports(xp):
        return _strided.matmul_rows(out, r0, r1, a, b, bias, shape)
    band = xp.matmul(a, b)
    if bias is not None:
        band = band + bias
    c, h, w, n = shape
    band = xp.reshape(band, (c, r1 - r0, w, n))
    if r0 == 0 and r1 == h:
        return band
    if out is None:
        out = xp.empty(shape, dtype=band.dtype, device=array_api_compat.device(band))
    return xpx.at(out, (slice(None), slice(r0, r1), slice(None), slice(None))).set(band)


def _forward(
    x: Any, weight: Any, stride, pads, dilation, out_hw, groups: int, bias: Any = None,
) -> tuple[Any, Any]:
    """y[n, g*Og+o] = W[g, o, :] @ cols[g, :, n]: one GEMM per group and band of output rows. Returns y and
    the batch-last padded x, which the weight gradient reads again."""
    xp = array_api_compat.array_namespace(x, weight)
    n, c = x.shape[0], x.shape[1]
    o, kh, kw = weight.shape[0], weight.shape[2], weight.shape[3]
    oh, ow = out_hw
    w = xp.reshape(weight, (groups, o // groups, (c // groups) * kh * kw))
    b = None if bias is None else xp.reshape(bias, (groups, o // groups, 1))
    x_pad = pad2d(_batch_last(x), pads, layout=_LAYOUT)
    step = _band_rows(x, oh, ow * n, c * kh * kw * _itemsize(x))
    y = None
    for r0 in range(0, oh, step):
        r1 = min(oh, r0 + step)
        cols = _band_columns(x_pad, r0, r1, (kh, kw), stride, dilation, ow, groups, "cols")
        y = _store_rows(y, r0, r1, w, cols, b, (o, oh, ow, n))
    return _batch_first(y), x_pad


def _flipped_transposed(weight: Any, groups: int) -> Any:
    """``(O, C/g, kh, kw)`` -> ``(g, C/g, O/g*kh*kw)``: the kernel of the input gradient as a correlation."""
    xp = array_api_compat.array_namespace(weight)
    o, cg, kh, kw = weight.shape
    w = xp.flip(xp.reshape(weight, (groups, o // groups, cg, kh, kw)), axis=(3, 4))
    return xp.reshape(xp.permute_dims(w, (0, 2, 1, 3, 4)), (groups, cg, (o // groups) * kh * kw))


def _correlation_input(dy_b: Any, in_hw, kernel, stride, pads, dilation) -> Any:
    """Batch-last ``dy`` zero-dilated by the stride and padded (or cropped) so that a stride-1 correlation
    with the flipped kernel yields exactly the ``in_hw`` input gradient."""
    xp = array_api_compat.array_namespace(dy_b)
    o, oh, ow, n = dy_b.shape
    if stride != (1, 1):
        dh, dw = (oh - 1) * stride[0] + 1, (ow - 1) * stride[1] + 1
        dilated = xp.zeros((o, dh, dw, n), dtype=dy_b.dtype, device=array_api_compat.device(dy_b))
        every = (slice(None), slice(None, None, stride[0]), slice(None, None, stride[1]), slice(None))
        dy_b = xpx.at(dilated, every).set(dy_b)
        oh, ow = dh, dw
    reach = ((kernel[0] - 1) * dilation[0], (kernel[1] - 1) * dilation[1])
    top, left = reach[0] - pads[0], reach[1] - pads[2]
    bottom, right = in_hw[0] + pads[0] - oh, in_hw[1] + pads[2] - ow
    crop = (max(-top, 0), max(-bottom, 0), max(-left, 0), max(-right, 0))
    if any(crop):
        dy_b = dy_b[:, crop[0] : oh - crop[1], crop[2] : ow - crop[3], :]
    return pad2d(dy_b, (max(top, 0), max(bottom, 0), max(left, 0), max(right, 0)), layout=_LAYOUT)


def _gradient_product(g: Any, cols: Any) -> Any:
    """``g @ cols^T`` (the weight gradient, ``(groups, O/g, K)``) for long rows of ``L`` columns, computed with
    the operand of more rows first: OpenBLAS splits a product's work by its output rows, so ``(cols @ g^T)^T``
    runs faster where K exceeds O (MNIST's second convolution, 32 x 400 over 10752 columns: 2.5 -> 1.5 ms,
    2-core Xeon; CIFAR's 128 x 576: 4.1 -> 3.4 ms) and slower where it does not (64 x 27: 1.3 -> 1.5 ms)."""
    xp = array_api_compat.array_namespace(g, cols)
    if cols.shape[1] > g.shape[1]:
        return xp.matrix_transpose(xp.matmul(cols, xp.matrix_transpose(g)))
    return xp.matmul(g, xp.matrix_transpose(cols))


def _use_correlation(x_channels: int, dy_channels: int, stride) -> bool:
    """Input gradient as a correlation of ``dy`` (windows of dy_channels*kh*kw values per pixel of x) unless
    col2im of the weight-transposed columns (x_channels*kh*kw per pixel of dy, each written by the GEMM, then
    read and added back) is cheaper: measured on NumPy (2-core Xeon, batches 32-256), correlation won up to
    1.5x as many ``dy`` channels as ``x`` channels (3.9 against 4.0 ms there) and col2im from 2x (MNIST's
    second convolution 4.3 -> 4.0 ms, CIFAR's 25.6 -> 24.0 ms)."""
    return stride == (1, 1) and 2 * dy_channels <= 3 * x_channels


def _backward(
    dy: Any, x: Any, weight: Any, stride, pads, dilation, groups: int, *, x_shape=None, weight_shape=None,
    bias: bool = False, route: str | None = None, x_pad: Any = None,
) -> tuple[Any, Any, Any]:
    """``(dx, dw, db)`` of ``_forward``, band by band (``db`` is None unless ``bias``).

    ``x=None`` skips the weight gradient (then ``x_shape`` gives the input's shape), ``weight=None`` skips the
    input gradient (then ``weight_shape`` gives the weight's); the skipped gradient comes back as None.
    ``x_pad``: the padded input ``_forward`` returned for this ``x``, else it is padded again.
    dw[g] = sum over bands of dy[g] @ cols[g]^T, each band's columns recomputed while hot. dx by ``route``:
    ``"col2im"`` (W^T @ dy, summed back over the windows) or ``"correlation"`` (the windows of the
    zero-dilated, padded ``dy`` times the flipped kernel: one im2col and one GEMM per band of input rows, no
    scatter-add); None picks the route that moves less data.
    """
    xp = array_api_compat.array_namespace(*(a for a in (dy, x, weight) if a is not None))
    n, c, h, w_in = tuple(x.shape) if x is not None else tuple(x_shape)
    o, cg, kh, kw = tuple(weight.shape) if weight is not None else tuple(weight_shape)
    oh, ow = dy.shape[2], dy.shape[3]
    kernel, size = (kh, kw), _itemsize(dy)
    if route is None:
        route = "correlation" if _use_correlation(c, o, stride) else "col2im"
    if route not in ("col2im", "correlation"):
        raise ValueError(f"conv2d_backward: route must be 'col2im' or 'correlation', got {route!r}")
    dy_b = _batch_last(dy)
    dw = db = dx = dx_pad = None
    col2im_dx = weight is not None and route == "col2im"
    if col2im_dx:
        w_t = xp.matrix_transpose(xp.reshape(weight, (groups, o // groups, cg * kh * kw)))
        padded_hw = (h + pads[0] + pads[1], w_in + pads[2] + pads[3])
    if x is not None or bias or col2im_dx:  # one pass over bands of output rows
        if x is None:
            x_pad = None  # no weight gradient
        elif x_pad is None:
            x_pad = pad2d(_batch_last(x), pads, layout=_LAYOUT)
        step = _band_rows(dy, oh, ow * n, c * kh * kw * size)
        for r0 in range(0, oh, step):
            r1 = min(oh, r0 + step)
            g = _rows(dy_b, r0, r1, groups)  # (groups, O/g, rows*OW*N)
            if bias:
                part = xp.sum(g, axis=2)
                db = part if db is None else db + part
            if x_pad is not None:
                cols = _band_columns(x_pad, r0, r1, kernel, stride, dilation, ow, groups, "cols")
                part = _gradient_product(g, cols)
                dw = part if dw is None else dw + part
            if col2im_dx:
                dcols = xp.reshape(xp.matmul(w_t, g), (c, kh * kw, r1 - r0, ow, n))
                in_rows = _input_rows(r0, r1, kh, stride[0], dilation[0])
                band_hw = (in_rows.stop - in_rows.start, padded_hw[1])
                if (in_rows.start, in_rows.stop) == (0, padded_hw[0]):  # one band: the result itself
                    dx_pad = col2im(dcols, band_hw, kernel, stride, dilation, layout=_LAYOUT)
                else:
                    band = col2im(dcols, band_hw, kernel, stride, dilation, layout=_LAYOUT, scratch="dx band")
                    if dx_pad is None:
                        dx_pad = xp.zeros((c, *padded_hw, n), dtype=dy.dtype, device=array_api_compat.device(dy))
                    dx_pad = xpx.at(dx_pad, (slice(None), in_rows, slice(None), slice(None))).add(band)
        if col2im_dx:
            dx = unpad2d(dx_pad, pads, layout=_LAYOUT)
    if weight is not None and route == "correlation":  # bands of input rows
        w_corr = _flipped_transposed(weight, groups)
        dy_pad = _correlation_input(dy_b, (h, w_in), kernel, stride, pads, dilation)
        step = _band_rows(dy, h, w_in * n, o * kh * kw * size)
        for q0 in range(0, h, step):
            q1 = min(h, q0 + step)
            dcols = _band_columns(dy_pad, q0, q1, kernel, (1, 1), dilation, w_in, groups, "dycols")
            dx = _store_rows(dx, q0, q1, w_corr, dcols, None, (c, h, w_in, n))
    if dw is not None:
        dw = xp.reshape(dw, (o, cg, kh, kw))
    if db is not None:
        db = xp.reshape(db, (o,))
    return (None if dx is None else _batch_first(dx)), dw, db


def conv2d(
    x: Any, weight: Any, bias: Any = None, stride: Any = 1, padding: Any = 0, dilation: Any = 1, groups: int = 1,
    *, return_saved: bool = False,
) -> Any:
    """Cross-correlation of ``x (N, C, H, W)`` with ``weight (O, C/groups, kh, kw)`` -> ``(N, O, OH, OW)``.

    ``padding`` is an int, a pair, ``"valid"`` or ``"same"`` (TensorFlow placement for stride > 1).
    With ``return_saved`` the result is ``(y, saved)``: what ``conv2d_backward(..., saved=saved)`` reuses for
    this ``x`` (the padded input; None where the backend's own kernels need nothing). The result is NCHW in
    shape and values; its memory is batch-last (see above).
    """
    _check_operands("conv2d", x, weight, groups, in_axis=1)
    kernel = (weight.shape[2], weight.shape[3])
    stride, pads, dilation, out_hw = _geometry("conv2d", (x.shape[2], x.shape[3]), kernel, stride, padding, dilation)
    native = _native.kernel(array_api_compat.array_namespace(x, weight), "conv2d")
    if native is not None:
        y = native(x, weight, bias, stride=stride, pads=pads, dilation=dilation, groups=groups)
        return (y, None) if return_saved else y
    y, x_pad = _forward(x, weight, stride, pads, dilation, out_hw, groups, bias)
    return (y, x_pad) if return_saved else y


def conv2d_backward(
    dy: Any, x: Any, weight: Any, stride: Any = 1, padding: Any = 0, dilation: Any = 1, groups: int = 1,
    bias: bool = True, *, input_grad: bool = True, saved: Any = None,
) -> tuple[Any, Any, Any]:
    """Gradients ``(dx, dweight, dbias)`` of ``conv2d`` for output gradient ``dy``; dbias is None without bias,
    dx is None with ``input_grad=False`` (not computed: for an input nobody differentiates, like the data).
    ``saved``: what ``conv2d(..., return_saved=True)`` returned with this ``x``'s output, if kept."""
    kernel = (weight.shape[2], weight.shape[3])
    in_hw = (x.shape[2], x.shape[3])
    stride, pads, dilation, _ = _geometry("conv2d", in_hw, kernel, stride, padding, dilation)
    native = _native.kernel(array_api_compat.array_namespace(dy, x, weight), "conv2d_backward")
    if native is not None:
        return native(dy, x, weight, stride=stride, pads=pads, dilation=dilation, groups=groups, bias=bool(bias),
                      input_grad=bool(input_grad))
    if not input_grad:
        return _backward(
            dy, x, None, stride, pads, dilation, groups, weight_shape=tuple(weight.shape), bias=bias, x_pad=saved
        )
    return _backward(dy, x, weight, stride, pads, dilation, groups, bias=bias, x_pad=saved)


def conv_transpose_geometry(
    in_hw: tuple[int, int], kernel: tuple[int, int], stride: Any, padding: Any, output_padding: Any, dilation: Any,
) -> tuple[tuple[int, int], Pads, tuple[int, int], tuple[int, int]]:
    """``(stride, pads, dilation, out_hw)`` of a transposed convolution of an ``in_hw`` input: the pads are those
    of the convolution it is the adjoint of (asymmetric for Keras's ``"same"``)."""
    op = "conv2d_transpose"
    stride, dilation = as_pair(stride, "stride", owner=op), as_pair(dilation, "dilation", owner=op)
    oph, opw = as_pair(output_padding, "output_padding", minimum=0, owner=op)
    if padding == "same":  # Keras: out = in * stride, the adjoint of a "same" convolution of that output
        if (oph, opw) != (0, 0):
            raise ValueError(f"{op}: output_padding {(oph, opw)} does not apply with padding='same'")
        out_hw = (in_hw[0] * stride[0], in_hw[1] * stride[1])
        pads = (*same_pads_1d(out_hw[0], kernel[0], stride[0], dilation[0]),
                *same_pads_1d(out_hw[1], kernel[1], stride[1], dilation[1]))
        return stride, pads, dilation, out_hw
    ph, pw = (0, 0) if padding == "valid" else as_pair(padding, "padding", minimum=0, owner=op)
    if oph >= max(stride[0], dilation[0]) or opw >= max(stride[1], dilation[1]):
        raise ValueError(
            f"{op}: output_padding {(oph, opw)} must be smaller than stride {stride} or dilation {dilation}"
        )
    out_hw = conv_transpose_output_hw(tuple(in_hw), kernel, stride, dilation, (ph, pw), (oph, opw))
    if min(out_hw) < 1:
        raise ValueError(f"{op}: padding {(ph, pw)} leaves no output for input height and width {tuple(in_hw)}")
    return stride, (ph, ph, pw, pw), dilation, out_hw


def _symmetric_native(pads: Pads, arrays: tuple[Any, ...], name: str) -> Any:
    """The backend's own kernel where there is one and the padding is symmetric (what they take)."""
    if pads[0] != pads[1] or pads[2] != pads[3]:
        return None
    return _native.kernel(array_api_compat.array_namespace(*arrays), name)


def conv2d_transpose(
    x: Any, weight: Any, bias: Any = None, stride: Any = 1, padding: Any = 0, output_padding: Any = 0,
    dilation: Any = 1, groups: int = 1,
) -> Any:
    """Transposed convolution (the input gradient of ``conv2d``): weight ``(C, O/groups, kh, kw)``.

    Output size ``(H - 1)*stride - 2*padding + dilation*(k - 1) + output_padding + 1``, as in PyTorch; with
    ``padding="same"``, ``H*stride`` as in Keras (the adjoint of a "same" convolution of that size).
    """
    _check_operands("conv2d_transpose", x, weight, groups, in_axis=0)
    stride, pads, dilation, out_hw = conv_transpose_geometry(
        (x.shape[2], x.shape[3]), (weight.shape[2], weight.shape[3]), stride, padding, output_padding, dilation)
    native = _symmetric_native(pads, (x, weight), "conv2d_transpose")
    if native is not None:
        return native(x, weight, bias, stride=stride, pads=pads, dilation=dilation, groups=groups, out_hw=out_hw)
    x_shape = (x.shape[0], weight.shape[1] * groups, *out_hw)
    y = _backward(x, None, weight, stride, pads, dilation, groups, x_shape=x_shape)[0]
    if bias is None:
        return y
    return y + array_api_compat.array_namespace(y, bias).reshape(bias, (1, bias.shape[0], 1, 1))


def conv2d_transpose_backward(
    dy: Any, x: Any, weight: Any, stride: Any = 1, padding: Any = 0, output_padding: Any = 0,
    dilation: Any = 1, groups: int = 1, bias: bool = True,
) -> tuple[Any, Any, Any]:
    """Gradients ``(dx, dweight, dbias)`` of ``conv2d_transpose``: a convolution of ``dy`` gives both."""
    stride, pads, dilation, _ = conv_transpose_geometry(
        (x.shape[2], x.shape[3]), (weight.shape[2], weight.shape[3]), stride, padding, output_padding, dilation)
    native = _symmetric_native(pads, (dy, x, weight), "conv2d_transpose_backward")
    if native is not None:
        return native(dy, x, weight, stride=stride, pads=pads, dilation=dilation, groups=groups, bias=bool(bias))
    in_hw = (x.shape[2], x.shape[3])
    dx = _forward(dy, weight, stride, pads, dilation, in_hw, groups)[0]
    dw = _backward(x, dy, None, stride, pads, dilation, groups, weight_shape=tuple(weight.shape))[1]
    db = array_api_compat.array_namespace(dy).sum(dy, axis=(0, 2, 3)) if bias else None
    return dx, dw, db
