"""NumPy fast paths of the window operations and batch norm: strided views, in-place updates, reused buffers.

Each function here is a second implementation (DESIGN.md rule 8) of one step of ``windows``, ``conv``,
``pool`` or ``normalization``; the caller asks ``supports(xp)`` first (NumPy only) and falls back to its
generic Array API code when the answer is no or the function returns None. ``tests/ops/test_fast_paths.py``
checks every one against the generic code: bit for bit, or to rounding where the sums run in another order.

* ``im2col``: the generic code stacks ``kh*kw`` strided slices, one array operation per kernel offset; here
  the windows are one 6-D ``as_strided`` view of the padded input, materialised by one copy (into a reused
  buffer when the caller names a ``scratch`` slot).
* ``col2im``: the generic code adds each offset's slice with ``array_api_extra.at`` (functional where arrays
  are immutable); the same additions, in the same order, as in-place slice ``+=``.
* ``pad2d``: the input written into an uninitialised array and only the border filled, where the generic code
  fills the whole array first and sets the interior with ``at``.
* ``matmul_rows``: a band of a convolution's batch-last output written by the GEMM straight into its slab of
  the output (``matmul(..., out=)``, bias added in place), where the generic code computes the band and
  copies it in.
* ``max_pool_forward``: the window maxima and each window's first maximum slab by slab (each slab of the
  input read from main memory once), the latter by branch-free uint8 arithmetic, where the generic code
  uses ``where`` (NumPy's ``where`` branches per element, and pooling masks are as good as random, so it
  runs at the speed of branch mispredictions).
* ``max_pool_backward_tiles``: for windows that tile the input, the gradient selected branch-free (as in
  ``_select``) straight into each offset's strided slots of the result (``bitwise_and(..., out=)``), where
  the generic code builds one piece per offset and then sets it.
* ``batch_norm_blocks``, ``batch_norm_backward_blocks``: where a batch norm's input is channel-major in memory
  (a convolution's batch-last output), each block of channels runs the generic code's passes while it is in
  cache, its sums as chunked BLAS dots (equal to rounding, as accurate), with no product temporaries, where
  the generic code makes each pass over the whole array and allocates its temporaries.

CuPy has ``as_strided`` and writeable arrays too, so most of this would carry over; it is left to the generic
path until it can be tested on a GPU. This module and ``_select`` are the only ones in ``xpcnn.ops`` that
import NumPy. Nothing here is public API: ``__all__`` is empty, so that the benchmark profiler charges this
time to the calling op.
"""

from __future__ import annotations

import math
import threading
from typing import Any

import array_api_compat
import numpy as np

from ._select import UINT_OF, blocks, same_layout, select_bits

__all__: list[str] = []


def supports(xp: Any) -> bool:
    """Whether the fast paths apply to this namespace (NumPy)."""
    return array_api_compat.is_numpy_namespace(xp)


# --- reused buffers ----------------------------------------------------------------------------------

_local = threading.local()
_KEEP_BYTES = 64 * 2**20  # larger requests (a huge batch in one band) get fresh memory, not a kept buffer


def scratch(slot: str, shape: tuple[int, ...], dtype: Any) -> Any:
    """An uninitialised ``shape`` array of ``dtype`` that the next request for ``slot`` on this thread reuses.

    Large temporaries (a convolution's column matrices) would otherwise be fresh allocations that the C
    allocator maps from, and gives back to, the operating system every time, paying a page fault per page;
    one buffer per slot and thread, grown when needed, is faulted in once. The caller promises that the
    array is dead before it asks for the same slot again on the same thread, and never returns it.
    """
    size, dtype = math.prod(shape), np.dtype(dtype)
    if size * dtype.itemsize > _KEEP_BYTES:
        return np.empty(shape, dtype=dtype)
    pool = _local.__dict__.setdefault("pool", {})
    buffer = pool.get((slot, dtype))
    if buffer is None or buffer.shape[0] < size:
        buffer = pool[(slot, dtype)] = np.empty((size,), dtype=dtype)
    return buffer[:size].reshape(shape)


# --- windows -----------------------------------------------------------------------------------------

def im2col(
    x_padded: Any, kernel: tuple[int, int], stride: tuple[int, int], dilation: tuple[int, int],
    out_hw: tuple[int, int], layout: str, slot: str | None = None,
) -> Any:
    """``windows.im2col``: ``(N, C, Hp, Wp)`` -> ``(N, C, kh*kw, OH, OW)`` for ``"NCHW"``, ``(C, Hp, Wp, N)``
    -> ``(C, kh*kw, OH, OW, N)`` for ``"CHWN"``; C-contiguous, in ``scratch(slot)`` when a slot is named."""
    (kh, kw), (sh, sw), (dh, dw), (oh, ow) = kernel, stride, dilation, out_hw
    if layout == "NCHW":
        a, b = x_padded.shape[0], x_padded.shape[1]
        s0, s1, s2, s3 = x_padded.strides
        shape, strides = (a, b, kh, kw, oh, ow), (s0, s1, dh * s2, dw * s3, sh * s2, sw * s3)
        final = (a, b, kh * kw, oh, ow)
    else:
        a, b = x_padded.shape[0], x_padded.shape[3]
        s0, s2, s3, s1 = x_padded.strides
        shape, strides = (a, kh, kw, oh, ow, b), (s0, dh * s2, dw * s3, sh * s2, sw * s3, s1)
        final = (a, kh * kw, oh, ow, b)
    view = np.lib.stride_tricks.as_strided(x_padded, shape=shape, strides=strides, writeable=False)
    if slot is None:
        return view.copy().reshape(final)  # C order: the one materialising pass
    out = scratch(slot, shape, x_padded.dtype)
    out[...] = view
    return out.reshape(final)


def col2im(
    cols: Any, out_shape: tuple[int, ...], targets: list[tuple[Any, ...]], layout: str, slot: str | None = None,
) -> Any:
    """``windows.col2im``; ``targets[k]`` indexes offset k's strided slice of the ``out_shape`` result, which
    lives in ``scratch(slot)`` when a slot is named."""
    if slot is None:
        out = np.zeros(out_shape, dtype=cols.dtype)
    else:
        out = scratch(slot, out_shape, cols.dtype)
        out[...] = 0
    for k, target in enumerate(targets):
        out[target] += cols[:, :, k] if layout == "NCHW" else cols[:, k]
    return out


def pad2d(x: Any, out_shape: tuple[int, ...], interior: tuple[Any, ...], value: float) -> Any:
    """``windows.pad2d``: ``x`` written into ``out[interior]`` of an ``out_shape`` array, ``value`` around it.
    Only the border is filled (each element once), not the whole array before the interior is written."""
    out = np.empty(out_shape, dtype=x.dtype)
    out[interior] = x
    index = [slice(None)] * len(out_shape)
    for axis, part in enumerate(interior):
        if part == slice(None):
            continue
        for border in (slice(0, part.start), slice(part.stop, out_shape[axis])):
            out[(*index[:axis], border, *index[axis + 1:])] = value
        index[axis] = part  # the next axis's border only beside this one's interior: corners are filled once
    return out


# --- convolution -------------------------------------------------------------------------------------

def matmul_rows(
    out: Any, r0: int, r1: int, a: Any, b: Any, bias: Any, shape: tuple[int, int, int, int],
) -> Any:
    """``conv._store_rows``: rows ``r0:r1`` of a batch-last ``(C, H, W, N)`` array of ``shape`` (created when
    ``out`` is None) set to ``a @ b (+ bias)``, a product of shape ``(groups, C/groups, rows*W*N)``."""
    xp = array_api_compat.array_namespace(a, b)  # matmul through the namespace, as the generic code calls it
    if out is None:
        out = np.empty(shape, dtype=np.result_type(a, b))
    slab = out[:, r0:r1].reshape((a.shape[0], a.shape[1], b.shape[2]), copy=False)  # a view, never a copy
    xp.matmul(a, b, out=slab)
    if bias is not None:
        slab += bias
    return out


# --- max pooling -------------------------------------------------------------------------------------

def max_pool_forward(windows: list[Any], want_offsets: bool) -> tuple[Any, Any] | None:
    """``pool.max_pool2d`` from the window views: ``(y, offsets)`` (offsets None unless ``want_offsets``), or
    None for 255 window offsets or more. The maximum and the first-maximum offsets (``pool._first_max_offsets``)
    are computed slab by slab along the channel or batch axis, so each slab of the input is read from main
    memory once while its window passes run in cache; offsets by branch-free uint8 arithmetic: offset k
    scores ``count - k`` where it equals the maximum, the best score is the first hit, ``count - best`` its
    offset (``count`` where nothing hit: a window holding NaN)."""
    count = len(windows)
    if count >= 255:
        return None
    y = np.empty_like(windows[0])  # the windows' memory order
    offsets = np.empty_like(y, dtype=np.uint8) if want_offsets else None
    for index in blocks(y, axes=(0, 1)):
        parts, out = [w[index] for w in windows], y[index]
        if count == 1:
            out[...] = parts[0]
        else:
            np.maximum(parts[0], parts[1], out=out)
            for part in parts[2:]:
                np.maximum(out, part, out=out)
        if offsets is None:
            continue
        best, hit = offsets[index], np.empty_like(out, dtype=np.bool_)
        score = np.empty_like(best)
        for k, part in enumerate(parts):
            np.equal(part, out, out=hit)
            np.multiply(hit.view(np.uint8), np.uint8(count - k), out=best if k == 0 else score)
            if k:
                np.maximum(best, score, out=best)
        np.subtract(np.uint8(count), best, out=best)
    return y, offsets


def max_pool_backward_tiles(
    dy: Any, x: Any, offsets: Any, kernel: tuple[int, int], out_hw: tuple[int, int],
) -> Any | None:
    """``pool.max_pool2d_backward`` from the first-maximum ``offsets`` where the windows tile ``x`` (stride ==
    kernel, no padding); None for a dtype ``_select`` has no bit pattern for."""
    if x.dtype not in UINT_OF or dy.dtype != x.dtype:
        return None
    (kh, kw), (oh, ow) = kernel, out_hw
    h, w = x.shape[2], x.shape[3]
    if [s // dy.itemsize for s in dy.strides] != [s // offsets.itemsize for s in offsets.strides]:
        dy = same_layout(dy, offsets)  # one copy into the offsets' memory order beats passes walking two orders
    dx = np.empty_like(x) if (oh * kh, ow * kw) == (h, w) else np.zeros_like(x)  # empty_like keeps x's layout
    uint = UINT_OF[x.dtype]
    dx_bits, dy_bits = dx.view(uint), dy.view(uint)
    for index in blocks(offsets, axes=(0, 1)):  # slab by slab: the masks stay in cache
        part = offsets[index]
        hit, word = np.empty_like(part, dtype=np.bool_), np.empty_like(part, dtype=uint)
        for k in range(kh * kw):
            i, j = divmod(k, kw)
            np.equal(part, k, out=hit)
            tile = (*index, *(slice(None),) * (2 - len(index)), slice(i, oh * kh, kh), slice(j, ow * kw, kw))
            select_bits(hit, dy_bits[index], out=dx_bits[tile], word=word)  # the gradient where offset k won
    return dx


# --- batch normalisation -------------------------------------------------------------------------------

def _channel_order(a: Any) -> list[int] | None:
    """``a``'s axes outermost in memory first (axes of length 1 last) when the channel axis 1 leads and the rest
    is dense (a convolution's batch-last output), else None."""
    if not isinstance(a, np.ndarray) or a.ndim < 2 or a.dtype.kind != "f":
        return None
    order = sorted(range(a.ndim), key=lambda d: (0, -a.strides[d]) if a.shape[d] > 1 else (1, d))
    if (order[0] != 1 and a.shape[1] > 1) or not a.transpose(order).flags.c_contiguous:
        return None
    return order


def channel_rows(a: Any) -> Any | None:
    """``a``'s memory as a ``(C, rest)`` view where ``_channel_order`` finds one, else None. Each row holds one
    channel's values in memory order, the order in which NumPy's reductions over every other axis visit them."""
    order = _channel_order(a)
    return None if order is None else a.transpose(order).reshape((a.shape[1], -1))


def _empty_like_rows(like: Any) -> tuple[Any, Any]:
    """An uninitialised array shaped and laid out like ``like`` (channel-major), and its ``(C, rest)`` view."""
    order = _channel_order(like)
    memory = np.empty(tuple(like.shape[d] for d in order), dtype=like.dtype)
    return memory.transpose(np.argsort(order)), memory.reshape((like.shape[1], -1))


_DOT_CHUNK = 4096  # values per BLAS dot in ``_row_dots``; the chunks' partial sums are then added pairwise


def _row_dots(a: Any, b: Any | None) -> Any:
    """Per row of the ``(rows, L)`` arrays ``a`` and ``b``, the sum of ``a * b`` (of ``a`` where ``b`` is None).

    Chunks of ``_DOT_CHUNK`` values are dotted by the BLAS (``vecdot``: no product array, several times the
    speed of NumPy's summation here), the chunks' partial sums then added pairwise by ``np.sum``. The
    result differs from NumPy's pairwise sum only in rounding, and as little: on 131,072 float32 values
    per row, worst errors against float64 of 7e-8 (variance) and 7e-8 / 7e-6 (mean of N(2, 3) / N(100, 1)
    values, relative to the deviation) against NumPy's 7e-8 and 9e-8 / 4e-6; one dot over the whole row
    was 3x worse."""
    rows, length = a.shape
    whole = length - length % _DOT_CHUNK
    other = np.ones(_DOT_CHUNK, dtype=a.dtype) if b is None else b[:, :whole].reshape((rows, -1, _DOT_CHUNK))
    total = np.sum(np.vecdot(a[:, :whole].reshape((rows, -1, _DOT_CHUNK)), other), axis=1)
    if whole < length:
        total += np.vecdot(a[:, whole:], np.ones(length - whole, dtype=a.dtype) if b is None else b[:, whole:])
    return total


def batch_norm_blocks(
    x: Any, weight: Any, bias: Any, eps: float, stats: tuple[Any, Any] | None,
) -> tuple[Any, Any, Any] | None:
    """``normalization.batch_norm``'s ``(y, mean, var)``, channel block by channel block: the batch's
    statistics (``stats`` None) or the given ``(mean, var)``. Each block of ``x`` is read from main memory once
    while its passes (sum, centring, sum of squares, scale, shift) run in cache, and ``y`` is written once;
    the generic code's arithmetic row by row, but for the sums (``_row_dots``). None where ``x``'s memory is
    not channel-major."""
    rows = channel_rows(x)
    if rows is None:
        return None
    y, y_rows = _empty_like_rows(x)
    channels, count = rows.shape
    mean, var = (np.empty(channels, dtype=x.dtype), np.empty(channels, dtype=x.dtype)) if stats is None else stats
    for (cs,) in blocks(rows, axes=(0,)):
        xb, yb = rows[cs], y_rows[cs]
        if stats is None:
            mean[cs] = _row_dots(xb, None) / count
        np.subtract(xb, mean[cs, None], out=yb)
        if stats is None:
            var[cs] = _row_dots(yb, yb) / count
        scale = 1.0 / np.sqrt(var[cs] + eps)
        yb *= (scale if weight is None else weight[cs] * scale)[:, None]
        if bias is not None:
            yb += bias[cs, None]
    return y, mean, var


def batch_norm_backward_blocks(dy: Any, x: Any, weight: Any, mean: Any, inv_std: Any) -> tuple[Any, Any, Any] | None:
    """``normalization.batch_norm_backward``'s ``(dx, dweight, dbias)`` from the saved statistics, channel
    block by channel block (``dy`` and ``x`` read once, ``dx`` written once, the centred block in cache); the
    generic code's arithmetic row by row, but for the sums (``_row_dots``). None unless ``dy`` and ``x``
    share a channel-major memory order."""
    rows = channel_rows(x)
    if rows is None or _channel_order(dy) != _channel_order(x) or dy.dtype != x.dtype:
        return None
    dy_rows = channel_rows(dy)
    dx, dx_rows = _empty_like_rows(x)
    count = rows.shape[1]
    dweight, dbias = np.empty_like(inv_std), np.empty_like(inv_std)
    for (cs,) in blocks(rows, axes=(0,)):
        centered = scratch("batch norm", rows[cs].shape, x.dtype)
        np.subtract(rows[cs], mean[cs, None], out=centered)
        dbias[cs] = _row_dots(dy_rows[cs], None)
        dweight[cs] = _row_dots(dy_rows[cs], centered) * inv_std[cs]
        k = inv_std[cs] if weight is None else weight[cs] * inv_std[cs]
        np.multiply(dy_rows[cs], k[:, None], out=dx_rows[cs])
        centered *= (k * inv_std[cs] * dweight[cs] / count)[:, None]
        centered += (k * dbias[cs] / count)[:, None]
        dx_rows[cs] -= centered
    return dx, dweight, dbias
