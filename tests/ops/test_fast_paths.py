"""Every NumPy fast path in ``xpcnn.ops`` equals the generic Array API path it replaces (DESIGN.md rule 8).

The fast paths (``ops/_strided.py``, ``ops/_select.py``, the cache-sized bands of ``ops/conv.py``, batch norm
by channel blocks) are chosen
by namespace. On the NumPy session each test runs an op with them and again with them switched off (the
``generic`` context below) and asserts identical results: bit for bit where the two paths do the same
arithmetic in the same order (windows, padding, scatter-add, selections, pooling, the GEMM written in place),
and to rounding where they sum in a different order (a weight gradient accumulated band by band). On every
other session switching them off changes nothing (the generic code runs anyway), so the tests check that the
dispatcher picks the generic path and compare the session's result with the NumPy fast path on the same host
values (``_paths``): the two implementations are pinned to each other from both sides, and no test holds a
computation against itself. The band loop of the convolution is generic code that only NumPy uses by
default; it is forced here on every backend.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import array_api_compat
import numpy as np
import pytest

import xpcnn
from layer_checks import host
from xpcnn.ops import _select, _strided, conv, normalization, pool, windows
from xpcnn.ops.activations import relu, relu_backward


@contextlib.contextmanager
def generic() -> Iterator[None]:
    """Switch every NumPy fast path off (the generic Array API code runs, on NumPy arrays too)."""
    saved = (_strided.supports, _select.numpy_float)
    _strided.supports = lambda xp: False
    _select.numpy_float = lambda a: False
    try:
        yield
    finally:
        _strided.supports, _select.numpy_float = saved


@contextlib.contextmanager
def small_blocks(elements: int = 37) -> Iterator[None]:
    """Make the cache-blocked NumPy passes (``_select.blocks``) cut even small test arrays into many slabs."""
    saved = _select._BLOCK_ELEMENTS
    _select._BLOCK_ELEMENTS = elements
    try:
        yield
    finally:
        _select._BLOCK_ELEMENTS = saved


@contextlib.contextmanager
def bands(rows: int | None) -> Iterator[None]:
    """Force the convolution to cut its output rows into bands of ``rows`` (None: one band)."""
    saved = conv._band_rows
    conv._band_rows = lambda like, total, columns, bytes_per_column: total if rows is None else min(rows, total)
    try:
        yield
    finally:
        conv._band_rows = saved


def _np(x):
    return np.asarray(xpcnn.to_numpy(x))


def _same(a, b, exact: bool = True, rtol: float = 1e-5) -> None:
    a, b = _np(a), _np(b)
    assert a.shape == b.shape and a.dtype == b.dtype, (a.shape, a.dtype, b.shape, b.dtype)
    if exact:
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(np.signbit(a), np.signbit(b))
    else:
        np.testing.assert_allclose(a, b, rtol=rtol, atol=rtol * max(1.0, float(np.abs(b).max(initial=0.0))))


def _layouts(x: np.ndarray) -> list[np.ndarray]:
    """The same NCHW values in three memory orders: contiguous, batch-last (the convolution's output) and a
    strided view."""
    batch_last = np.ascontiguousarray(np.transpose(x, (1, 2, 3, 0))).transpose(3, 0, 1, 2)
    wide = np.zeros((x.shape[0], x.shape[1], x.shape[2], 2 * x.shape[3]), dtype=x.dtype)
    wide[..., ::2] = x
    return [x, batch_last, wide[..., ::2]]


def _is_numpy(backend) -> bool:
    return array_api_compat.is_numpy_namespace(backend.xp)


def _paths(backend, slabs: bool = False) -> list[tuple[Callable[[], Any], Callable[[np.ndarray], Any]]]:
    """The ways an op runs here that can differ, as ``(context, move)``: ``move`` makes the op's arrays from
    host values. On NumPy: the fast path (with ``slabs``, also cut into small slabs), then the generic path.
    Elsewhere the switches change nothing, so the session's path, then the NumPy fast path on the same values
    (NumPy arrays in the session's float dtype, memory order kept)."""
    if _is_numpy(backend):
        contexts = (contextlib.nullcontext, small_blocks, generic) if slabs else (contextlib.nullcontext, generic)
        return [(context, xpcnn.asarray) for context in contexts]
    dtype = xpcnn.backend.dtype_name(backend.dtype)

    def on_host(a: np.ndarray) -> np.ndarray:
        return a.astype(dtype, copy=False) if a.dtype.kind == "f" else a

    return [(contextlib.nullcontext, xpcnn.asarray), (contextlib.nullcontext, on_host)]


# --- dispatch ------------------------------------------------------------------------------------------

def test_fast_paths_are_chosen_for_numpy_only(backend):
    x = xpcnn.asarray(np.ones((2, 3, 4, 5)))
    xp = array_api_compat.array_namespace(x)
    assert _strided.supports(xp) == _is_numpy(backend)
    assert _select.fast(x > 0, x) == _is_numpy(backend)
    wide = conv._BAND_MIN_COLUMNS  # columns per row: one row is enough for an efficient GEMM
    assert conv._band_rows(x, 7, wide, 1) == 7  # everything fits in one band
    assert conv._band_rows(x, 7, wide, 10**12) == (1 if _is_numpy(backend) else 7)  # bands only on NumPy
    assert conv._band_rows(x, 7, wide, conv._BAND_BYTES // (3 * wide)) == (3 if _is_numpy(backend) else 7)
    narrow = conv._BAND_MIN_COLUMNS // 4  # narrow rows: four make the GEMM wide enough ...
    assert conv._band_rows(x, 7, narrow, conv._BAND_BYTES // narrow) == (4 if _is_numpy(backend) else 7)
    # ... unless four rows take more than the band's byte limit: then as many as fit, at least one
    assert conv._band_rows(x, 7, narrow, conv._BAND_MAX_BYTES // (2 * narrow)) == (2 if _is_numpy(backend) else 7)
    assert conv._band_rows(x, 7, narrow, 10**12) == (1 if _is_numpy(backend) else 7)


# --- windows -------------------------------------------------------------------------------------------

WINDOW_CASES = [  # (shape NCHW, kernel, stride, dilation, pads)
    ((2, 3, 7, 6), (3, 3), (1, 1), (1, 1), (1, 1, 1, 1)),
    ((1, 2, 9, 8), (3, 2), (2, 3), (1, 1), (0, 1, 2, 0)),
    ((2, 2, 9, 9), (3, 3), (1, 1), (2, 2), (2, 2, 2, 2)),
    ((3, 1, 5, 7), (1, 1), (1, 1), (1, 1), (0, 0, 0, 0)),
    ((2, 4, 8, 8), (4, 4), (3, 2), (1, 2), (1, 2, 3, 0)),
    ((1, 2, 6, 6), (6, 6), (1, 1), (1, 1), (0, 0, 0, 0)),
]


@pytest.mark.parametrize("layout", ["NCHW", "CHWN"])
@pytest.mark.parametrize("shape, kernel, stride, dilation, pads", WINDOW_CASES)
def test_im2col_col2im_pad_equal_the_generic_path(backend, layout, shape, kernel, stride, dilation, pads):
    rng = np.random.default_rng(0)
    values = rng.standard_normal(shape).astype(np.float32)
    padded_hw = (shape[2] + pads[0] + pads[1], shape[3] + pads[2] + pads[3])
    out_hw = windows.conv_output_hw(shape[2:], kernel, stride, dilation, pads)
    results: dict[float, list] = {0.0: [], -np.inf: []}
    for x_np in _layouts(values):
        x_np = x_np if layout == "NCHW" else np.transpose(x_np, (1, 2, 3, 0))
        for fill in (0.0, -np.inf):
            for run, move in _paths(backend):
                with run():
                    padded = windows.pad2d(move(x_np), pads, fill, layout=layout)
                    cols = windows.im2col(padded, kernel, stride, dilation, out_hw, layout=layout)
                    scratch = windows.im2col(padded, kernel, stride, dilation, out_hw, layout=layout, scratch="t")
                    back = windows.col2im(scratch, padded_hw, kernel, stride, dilation, layout=layout)
                    unpadded = windows.unpad2d(back, pads, layout=layout)
                    kept = _np(scratch).copy()  # a scratch result lives only until the slot's next use
                    results[fill].append((padded, cols, kept, back, unpadded))
    for runs in results.values():  # every memory layout and both paths agree, for each fill value
        for result in runs[1:]:
            for a, b in zip(result, runs[0]):
                _same(a, b)
        _same(runs[0][2], runs[0][1])


def test_blocks_cover_the_array_along_its_outermost_memory_axis():
    a = np.zeros((3, 4, 5, 6), dtype=np.float32)
    with small_blocks(20):
        for x, axis in ((a, 0), (np.transpose(np.zeros((4, 5, 6, 3), np.float32), (3, 0, 1, 2)), 1)):
            parts = _select.blocks(x, axes=(0, 1))
            assert len(parts) > 1 and all(len(index) == axis + 1 for index in parts)
            covered = np.zeros(x.shape, dtype=int)
            for index in parts:
                covered[index] += 1
            assert (covered == 1).all()
    assert _select.blocks(a) == [(slice(None),)]


def test_scratch_buffers_are_reused_and_grown():
    a = _strided.scratch("test slot", (2, 3), np.float32)
    b = _strided.scratch("test slot", (3, 2), np.float32)
    assert np.shares_memory(a, b) and b.shape == (3, 2)
    c = _strided.scratch("test slot", (4, 4), np.float32)
    assert c.shape == (4, 4) and c.dtype == np.float32
    assert not np.shares_memory(a, _strided.scratch("other slot", (2, 3), np.float32))
    assert _strided.scratch("test slot", (2,), np.float64).dtype == np.float64
    huge = _strided.scratch("test slot", (_strided._KEEP_BYTES // 4 + 1,), np.float32)
    assert not np.shares_memory(huge, _strided.scratch("test slot", (_strided._KEEP_BYTES // 4 + 1,), np.float32))


# --- selections ----------------------------------------------------------------------------------------

def _special_values(shape, dtype, seed=0):
    rng = np.random.default_rng(seed)
    a = rng.standard_normal(shape).astype(dtype)
    flat = a.reshape(-1)
    flat[:5] = [np.nan, np.inf, -np.inf, -0.0, 0.0]  # (no subnormals: XLA on CPU flushes them to zero)
    return a


@pytest.mark.parametrize("dtype_fixture", ["backend", "backend64"])
def test_select_equals_where(request, dtype_fixture):
    backend = request.getfixturevalue(dtype_fixture)
    rng = np.random.default_rng(1)
    for a_np in _layouts(_special_values((3, 4, 5, 6), xpcnn.backend.dtype_name(backend.dtype))):
        for mask_np in (rng.random(a_np.shape) > 0.5, rng.random((3, 1, 5, 1)) > 0.5):
            for ours, where in ((_select.keep_where, np.where(mask_np, a_np, 0.0)),
                                (_select.drop_where, np.where(mask_np, 0.0, a_np))):
                for run, move in _paths(backend):
                    a = move(a_np)
                    with run():
                        selected = ours(move(mask_np), a)
                    _same(selected, where)
                    assert array_api_compat.device(selected) == array_api_compat.device(a)


def test_relu_and_its_backward_keep_layout_dtype_and_specials(backend):
    x_np = _special_values((2, 3, 4, 5), np.float32)
    dy_np = _special_values((2, 3, 4, 5), np.float32, seed=2)
    outs = []
    for run, move in _paths(backend, slabs=True):
        with run():
            for x_layout in _layouts(x_np):
                y = relu(move(x_layout))
                for dy_layout in _layouts(dy_np):
                    outs.append((y, relu_backward(move(dy_layout), y)))
    for y, dx in outs:
        _same(y, np.maximum(x_np, np.float32(0.0)), exact=False)  # max(-0.0, 0) may keep either zero
        _same(dx, np.where(np.maximum(x_np, 0) > 0, dy_np, 0.0).astype(np.float32))


# --- pooling -------------------------------------------------------------------------------------------

POOL_CASES = [  # (shape, kernel, stride, padding)
    ((2, 3, 8, 8), 2, None, 0),
    ((1, 2, 7, 9), 2, None, 0),
    ((2, 2, 9, 6), 3, None, 0),
    ((1, 1, 6, 8), (3, 4), None, 0),
    ((2, 2, 5, 5), 5, None, 0),
    ((3, 2, 6, 7), (2, 1), None, 0),
    ((2, 2, 7, 6), 3, 2, 1),
    ((2, 3, 6, 5), 3, 1, 1),
    ((1, 2, 5, 5), 2, 1, 1),
    ((2, 1, 10, 9), 4, 3, 2),
    ((1, 2, 9, 8), (3, 2), (2, 3), (1, 0)),
]


def _pool_inputs(shape, seed=0):
    rng = np.random.default_rng(seed)
    tied = np.maximum(rng.integers(-3, 3, size=shape), 0).astype(np.float32)  # many ties, all-zero windows
    normal = rng.standard_normal(shape).astype(np.float32)
    with_nan = normal.copy()
    with_nan.reshape(-1)[::7] = np.nan
    return {"tied": tied, "normal": normal, "nan": with_nan}


@pytest.mark.parametrize("shape, k, s, p", POOL_CASES)
def test_max_pool_equals_the_generic_path(backend, shape, k, s, p):
    for name, values in _pool_inputs(shape).items():
        for x_np in _layouts(values):
            runs = []
            for run, move in _paths(backend, slabs=True):
                x = move(x_np)
                with run():
                    y, offsets = pool.max_pool2d(x, k, s, p, return_indices=True)
                    dy = move(np.random.default_rng(3).standard_normal(tuple(y.shape)))
                    runs.append((
                        pool.max_pool2d(x, k, s, p), y, offsets,
                        pool.max_pool2d_backward(dy, x, k, s, p, indices=offsets),
                        pool.max_pool2d_backward(dy, x, k, s, p, y=y),
                        pool.max_pool2d_backward(dy, x, k, s, p),
                    ))
            # the paths agree output by output: the pooled values and offsets exactly, the gradients exactly on
            # NumPy (elsewhere the session may add the gradients of overlapping windows in another order)
            for other in runs[1:]:
                for i, (fast, slow) in enumerate(zip(runs[0], other)):
                    _same(fast, slow, exact=i < 3 or _is_numpy(backend))
            grads = runs[0][3:]
            for other in grads[1:]:  # from the offsets, from y, from x alone: one gradient
                _same(other, grads[0])


@pytest.mark.parametrize("shape, k, s, p", POOL_CASES[:6])
def test_avg_pool_equals_the_generic_path(backend, shape, k, s, p):
    runs = []
    for run, move in _paths(backend):
        x = move(_pool_inputs(shape)["normal"])
        with run():
            y = pool.avg_pool2d(x, k, s, p)
            runs.append((y, pool.avg_pool2d_backward(move(np.ones(tuple(y.shape))), x, k, s, p)))
    for a, b in zip(*runs):  # (XLA divides by multiplying with the reciprocal)
        _same(a, b, exact=backend.name != "jax")


# --- convolution ---------------------------------------------------------------------------------------

# (batch, in_channels, H, W, out_channels, kernel, stride, padding, dilation, groups)
CONV_CASES = [
    (2, 3, 7, 7, 4, 3, 1, 1, 1, 1),
    (2, 2, 8, 6, 3, 2, 2, 0, 1, 1),
    (1, 2, 9, 8, 2, (3, 2), 3, (2, 1), 1, 1),
    (2, 4, 9, 9, 6, 3, 1, 2, 2, 2),
    (2, 3, 6, 7, 3, 3, 2, 1, 1, 3),
    (3, 2, 7, 6, 3, 3, 1, "same", 1, 1),
    (2, 2, 8, 7, 3, 4, 2, "same", 1, 1),
    (2, 6, 8, 8, 2, 3, 1, 5, 1, 1),
    (3, 6, 8, 9, 2, (3, 4), (2, 3), (4, 1), (2, 1), 2),
    (2, 2, 12, 6, 2, 3, 4, 0, 1, 1),
    (2, 3, 13, 7, 2, (2, 3), (3, 2), 1, (2, 1), 1),
    (4, 8, 6, 6, 16, 5, 1, "same", 1, 1),
]


def _pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


def _conv_run(x, w, b, dy, s, p, d, g, route):
    y = conv.conv2d(x, w, b, s, p, d, g)
    kernel = (w.shape[2], w.shape[3])
    stride, pads, dilation, _ = conv._geometry("test", (x.shape[2], x.shape[3]), kernel, s, p, d)
    dx, dw, db = conv._backward(dy, x, w, stride, pads, dilation, g, bias=True, route=route)
    x_only = conv._backward(dy, x, None, stride, pads, dilation, g, weight_shape=tuple(w.shape))
    w_only = conv._backward(dy, None, w, stride, pads, dilation, g, x_shape=tuple(x.shape), route=route)
    assert x_only[0] is None and w_only[1] is None
    return y, dx, dw, db, x_only[1], w_only[0]


@pytest.mark.parametrize("n, c, h, w, o, k, s, p, d, g", CONV_CASES)
def test_conv_bands_routes_and_fast_paths_agree(backend64, n, c, h, w, o, k, s, p, d, g):
    """float64: every combination of bands, input-gradient route and fast path gives the same gradients
    (exactly where the arithmetic is the same, to rounding where bands sum in another order)."""
    rng = np.random.default_rng(0)
    x_np = rng.standard_normal((n, c, h, w))
    w_np = rng.standard_normal((o, c // g, *_pair(k)))
    b_np = rng.standard_normal(o)
    y_shape = tuple(conv.conv2d(x_np, w_np, None, s, p, d, g).shape)
    dy_np = rng.standard_normal(y_shape)
    reference = None
    layouts = _layouts(x_np)
    combos = [(x, None) for x in layouts] + [(layouts[1], 1), (layouts[0], 2)]  # memory orders, then bands
    for x_layout, rows in combos:
        for route in ("col2im", "correlation"):
            for run, move in _paths(backend64):
                with bands(rows), run():
                    result = _conv_run(move(x_layout), move(w_np), move(b_np), move(dy_np), s, p, d, g, route)
                if reference is None:
                    reference = result
                    continue
                same_sums = rows is None and route == "col2im" and move is xpcnn.asarray  # (host: NumPy's GEMM)
                for a, r in zip(result, reference):
                    _same(a, r, exact=same_sums, rtol=1e-12)
    # and the transposed convolution, which runs the same code the other way round
    xt = rng.standard_normal((n, o, 3, 4))
    wt = rng.standard_normal((o, c // g, *_pair(k)))
    outs = []
    for rows in (None, 1):
        for run, move in _paths(backend64):
            with bands(rows), run():
                yt = conv.conv2d_transpose(move(xt), move(wt), None, s, 0, 0, d, g)
                outs.append((yt, *conv.conv2d_transpose_backward(move(np.ones(tuple(yt.shape))), move(xt), move(wt),
                                                                   s, 0, 0, d, g)))
    for result in outs[1:]:
        for a, r in zip(result, outs[0]):
            if a is not None:
                _same(a, r, exact=False, rtol=1e-12)


def test_conv_float32_fast_path_is_bit_identical_in_one_band(backend):
    """float32, one band, same route: the fast path (GEMM written in place, strided windows) changes no bit.
    Elsewhere the session's convolution equals the NumPy one to float32 rounding (another GEMM)."""
    rng = np.random.default_rng(5)
    x = _layouts(rng.standard_normal((4, 8, 9, 7)).astype(np.float32))[1]
    w = rng.standard_normal((16, 8, 3, 3)).astype(np.float32)
    b = rng.standard_normal(16).astype(np.float32)
    dy = rng.standard_normal((4, 16, 9, 7)).astype(np.float32)
    for route in ("col2im", "correlation"):
        runs = []
        for run, move in _paths(backend):
            with bands(None), run():
                runs.append(_conv_run(move(x), move(w), move(b), move(dy), 1, 1, 1, 1, route))
        for a, r in zip(*runs):
            _same(a, r, exact=_is_numpy(backend))
            assert a.dtype == backend.dtype


def test_conv_output_is_nchw_whatever_the_memory(backend):
    """The result is an NCHW array (values, shape) however it is laid out in memory; the next layer reads it."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(6)
    x_np = rng.standard_normal((3, 2, 6, 5)).astype(np.float32)
    w1 = rng.standard_normal((4, 2, 3, 3)).astype(np.float32)
    w2 = rng.standard_normal((2, 4, 2, 2)).astype(np.float32)
    y = conv.conv2d(xpcnn.asarray(x_np), xpcnn.asarray(w1), padding=1)
    z = conv.conv2d(relu(y), xpcnn.asarray(w2), stride=2)
    ty = torch.nn.functional.conv2d(torch.tensor(x_np), torch.tensor(w1), padding=1)
    tz = torch.nn.functional.conv2d(torch.relu(ty), torch.tensor(w2), stride=2)
    np.testing.assert_allclose(host(y), ty.numpy(), rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(host(z), tz.numpy(), rtol=1e-5, atol=1e-4)
    assert tuple(y.shape) == (3, 4, 6, 5) and tuple(z.shape) == (3, 2, 3, 2)


# --- batch normalisation -------------------------------------------------------------------------------

def _channel_major(x: np.ndarray, order: tuple[int, ...]) -> np.ndarray:
    """``x``'s values in the memory order ``order`` (axes outermost first)."""
    return np.ascontiguousarray(np.transpose(x, order)).transpose(np.argsort(order))


BATCH_NORM_CASES = [  # (shape, x's memory order, dy's memory order)
    ((6, 5, 4, 3), (1, 2, 3, 0), (1, 2, 3, 0)),  # a convolution's batch-last output: the blocked path
    ((6, 5, 4, 3), (1, 0, 2, 3), (1, 0, 2, 3)),  # channel-major, batch next: blocked too
    ((4, 3, 7), (1, 2, 0), (1, 2, 0)),
    ((6, 5, 4, 3), (1, 2, 3, 0), (0, 1, 2, 3)),  # dy in another order: the forward blocked, the backward not
    ((6, 5, 4, 3), (0, 1, 2, 3), (0, 1, 2, 3)),  # NCHW-contiguous: generic everywhere
    ((7, 3), (0, 1), (0, 1)),
    ((1, 4, 3, 2), (1, 2, 3, 0), (1, 2, 3, 0)),  # one sample: the batch axis's stride says nothing
    ((5, 1, 3, 2), (1, 2, 3, 0), (0, 1, 2, 3)),  # one channel
]


@pytest.mark.parametrize("shape, x_order, dy_order", BATCH_NORM_CASES)
def test_batch_norm_equals_the_generic_path(backend, shape, x_order, dy_order):
    """Training forward (output, running and saved statistics), backward with and without the affine part,
    and inference: the channel-block path is the generic arithmetic row by row but for its sums (chunked
    dots), so it agrees to rounding, cut into one block or many, as the session's own kernels do; inference
    sums nothing, so there the two agree to the bit."""
    rng = np.random.default_rng(7)
    x_np = _channel_major(rng.standard_normal(shape) * 3.0 + 2.0, x_order)
    dy_np = _channel_major(rng.standard_normal(shape), dy_order)
    weight, bias = rng.standard_normal(shape[1]), rng.standard_normal(shape[1])
    runs = []
    for run, move in _paths(backend, slabs=True):
        x, dy, w, b = move(x_np), move(dy_np), move(weight), move(bias)
        with run():
            y, running_mean, running_var, saved = normalization.batch_norm(
                x, w, b, move(np.zeros(shape[1])), move(np.ones(shape[1])), True, return_saved=True)
            plain, _, _, plain_saved = normalization.batch_norm(x, None, None, None, None, True, return_saved=True)
            runs.append((
                y, running_mean, running_var, *saved,
                *normalization.batch_norm_backward(dy, x, w, saved=saved),
                plain, normalization.batch_norm_backward(dy, x, None, saved=plain_saved)[0],
                normalization.batch_norm(x, w, b, move(weight), move(np.abs(bias) + 0.5), False)[0],
            ))
    for other in runs[1:]:
        for fast, slow in zip(runs[0][:-1], other[:-1]):
            _same(fast, slow, exact=False)
        _same(runs[0][-1], other[-1], exact=_is_numpy(backend))


def test_batch_norm_row_sums_are_as_accurate_as_numpys():
    """The blocked path's sums (chunked BLAS dots, partial sums added pairwise) against float64: within twice
    NumPy's own pairwise-summation error, on rows long enough for many chunks and a ragged tail."""
    rng = np.random.default_rng(8)
    a = (rng.standard_normal((3, 5 * _strided._DOT_CHUNK + 123)) * 3.0 + 2.0).astype(np.float32)
    b = rng.standard_normal(a.shape).astype(np.float32)
    for other, exact in ((None, a.astype(np.float64).sum(axis=1)), (b, np.vecdot(a.astype(np.float64), b))):
        ours = np.abs(_strided._row_dots(a, other) - exact)
        numpys = np.abs((a if other is None else a * other).sum(axis=1) - exact)
        scale = np.abs(a if other is None else a * other).sum(axis=1)
        assert np.all(ours <= 2 * numpys + 1e-6 * scale), (ours, numpys)


def test_batch_norm_blocks_only_channel_major_memory():
    """The blocked path takes a ``(C, rest)`` view of memory only where one exists without a copy."""
    x = np.zeros((2, 3, 4, 5), dtype=np.float32)
    assert _strided.channel_rows(x) is None
    rows = _strided.channel_rows(_channel_major(x, (1, 2, 3, 0)))
    assert rows.shape == (3, 40) and rows.flags.c_contiguous
    assert _strided.channel_rows(_channel_major(x, (1, 0, 2, 3))[:, :, :, ::2]) is None  # not dense
    assert _strided.channel_rows(_channel_major(x[:1], (1, 2, 3, 0))).shape == (3, 20)  # one sample
    assert _strided.channel_rows(_channel_major(x, (1, 2, 3, 0))[:1]) is None  # one sample's strided slice
