"""The namespaces' own kernels (``ops/_native.py``: JAX's ``lax`` and PyTorch's ``aten`` convolutions) equal
the generic Array API path.

On a session whose namespace has native kernels, every convolution op runs twice, delegated and with
``generic_only()``, and the results must agree: float64 within 1e-10 relative, float32 within 1e-5. On the
other sessions the dispatcher must pick no native module.
"""

from __future__ import annotations

import numpy as np
import pytest

import xpcnn
from test_fast_paths import POOL_CASES, _pool_inputs
from xpcnn.ops import _native, activations, conv, merge, normalization, pool

# (N, C, H, W, O, kernel, stride, padding, dilation, groups)
CASES = [
    (2, 3, 9, 8, 4, 3, 1, "same", 1, 1),
    (2, 4, 10, 7, 6, (3, 2), (2, 1), (1, 0), 1, 2),
    (1, 2, 11, 11, 4, 3, 2, "same", 2, 1),
    (3, 1, 8, 8, 2, 5, 1, "valid", 1, 1),
    (2, 3, 8, 9, 4, 2, 1, "same", 1, 1),  # even kernel: the odd pixel of padding at the bottom/right only
    (2, 2, 9, 9, 2, 3, 2, 1, 1, 1),  # the transposed convolution gets output_padding 1
]


def _has_native(backend) -> bool:
    return _native.kernels(backend.xp) is not None


def test_native_kernels_only_where_a_namespace_has_them(backend):
    assert _has_native(backend) == (backend.name in ("jax", "torch"))
    with _native.generic_only():
        assert _native.kernels(backend.xp) is None


def _runs(fn):
    """``fn()`` with the native kernels, then with the generic code."""
    native = fn()
    with _native.generic_only():
        generic = fn()
    return native, generic


def _close(native, generic, dtype: str) -> None:
    rtol = 1e-10 if dtype == "float64" else 1e-5
    for a, b in zip(native, generic):
        if a is None or b is None:
            assert a is None and b is None
            continue
        a, b = np.asarray(xpcnn.to_numpy(a)), np.asarray(xpcnn.to_numpy(b))
        assert a.shape == b.shape and a.dtype == b.dtype
        np.testing.assert_allclose(a, b, rtol=rtol, atol=rtol * max(1.0, float(np.abs(b).max())))


def test_max_pool_saved_is_read_only_by_the_kernel_that_made_it(backend):
    if _native.kernel(backend.xp, "max_pool2d") is None:
        pytest.skip(f"{backend.name} has no native pooling kernels here")
    x = xpcnn.asarray(np.random.default_rng(0).standard_normal((2, 3, 4, 4)).astype(np.float32))
    with pytest.raises(ValueError, match="exclusive"):
        pool.max_pool2d(x, 2, return_indices=True, return_saved=True)
    y, saved = pool.max_pool2d(x, 2, return_saved=True)
    with _native.generic_only(), pytest.raises(ValueError, match="native kernel's record"):
        pool.max_pool2d_backward(y, x, 2, saved=saved)
    with pytest.raises(ValueError, match="not both"):
        pool.max_pool2d_backward(y, x, 2, saved=saved, indices=saved.positions)


@pytest.mark.parametrize("dtype_fixture", ["backend", "backend64"])
@pytest.mark.parametrize("n, c, h, w, o, k, s, p, d, g", CASES)
def test_convolution_equals_the_generic_path(request, dtype_fixture, n, c, h, w, o, k, s, p, d, g):
    backend = request.getfixturevalue(dtype_fixture)
    if not _has_native(backend):
        pytest.skip(f"{backend.name} has no native convolution kernels here")
    dtype = "float64" if dtype_fixture == "backend64" else "float32"
    rng = np.random.default_rng(0)
    kh, kw = (k, k) if isinstance(k, int) else k
    x = xpcnn.asarray(rng.standard_normal((n, c, h, w)))
    weight = xpcnn.asarray(rng.standard_normal((o, c // g, kh, kw)))
    bias = xpcnn.asarray(rng.standard_normal(o))
    y = conv.conv2d(x, weight, bias, s, p, d, g)
    dy = xpcnn.asarray(rng.standard_normal(tuple(y.shape)))
    _close(*_runs(lambda: (conv.conv2d(x, weight, bias, s, p, d, g),)), dtype)
    _close(*_runs(lambda: conv.conv2d_backward(dy, x, weight, s, p, d, g)), dtype)
    _close(*_runs(lambda: conv.conv2d_backward(dy, x, weight, s, p, d, g, bias=False, input_grad=False)), dtype)
    if p in ("same", "valid"):
        return  # the transposed convolution takes numeric padding
    # the transposed convolution with the same geometry: weight (C_in, O/groups, kh, kw)
    wt = xpcnn.asarray(rng.standard_normal((c, o // g, kh, kw)))
    xt = xpcnn.asarray(rng.standard_normal((n, c, 4, 5)))
    op = 1 if s == 2 else 0
    yt = conv.conv2d_transpose(xt, wt, bias, s, p, op, d, g)
    dyt = xpcnn.asarray(rng.standard_normal(tuple(yt.shape)))
    _close(*_runs(lambda: (conv.conv2d_transpose(xt, wt, bias, s, p, op, d, g),)), dtype)
    _close(*_runs(lambda: conv.conv2d_transpose_backward(dyt, xt, wt, s, p, op, d, g)), dtype)


@pytest.mark.parametrize("shape, k, s, p", [*POOL_CASES, ((1, 2, 3, 4), 3, 1, 1), ((2, 1, 2, 5), (3, 5), 1, (1, 2))])
def test_pooling_equals_the_generic_path(backend, shape, k, s, p):
    """Maxima, their offsets (ties to the first, NaN windows marked and passing no gradient) and gradients, from
    the offsets, from what ``return_saved`` keeps (torch's own indices on torch) and recomputed."""
    if _native.kernel(backend.xp, "max_pool2d") is None:
        pytest.skip(f"{backend.name} has no native pooling kernels here")
    for name, values in _pool_inputs(shape).items():
        x = xpcnn.asarray(values)

        def run():
            y, offsets = pool.max_pool2d(x, k, s, p, return_indices=True)
            y_saving, saved = pool.max_pool2d(x, k, s, p, return_saved=True)
            dy = xpcnn.asarray(np.random.default_rng(3).standard_normal(tuple(y.shape)).astype(np.float32))
            return (y, offsets, pool.max_pool2d(x, k, s, p), y_saving,
                    pool.max_pool2d_backward(dy, x, k, s, p, indices=offsets),
                    pool.max_pool2d_backward(dy, x, k, s, p, saved=saved),
                    pool.max_pool2d_backward(dy, x, k, s, p), pool.avg_pool2d(x, k, s, p),
                    pool.avg_pool2d_backward(dy, x, k, s, p))

        assert pool.max_pool2d(x, k, s, p, return_saved=True)[1].native  # the route under test
        native, generic = _runs(run)
        for i, (a, b) in enumerate(zip(native, generic)):
            a, b = np.asarray(xpcnn.to_numpy(a)), np.asarray(xpcnn.to_numpy(b))
            assert a.dtype == b.dtype, (name, i)
            if i < 4:  # maxima and offsets: exactly
                np.testing.assert_array_equal(a, b, err_msg=f"{name} output {i}")
            else:  # gradients and means: to rounding (overlapping windows add in another order); NaN == NaN
                np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6, err_msg=f"{name} output {i}")


@pytest.mark.parametrize("dtype_fixture", ["backend", "backend64"])
@pytest.mark.parametrize("shape", [(4, 3, 5, 6), (6, 4), (3, 2, 7)])
def test_batch_norm_equals_the_generic_path(request, dtype_fixture, shape):
    backend = request.getfixturevalue(dtype_fixture)
    if _native.kernel(backend.xp, "batch_norm") is None:
        pytest.skip(f"{backend.name} has no native batch-norm kernels here")
    dtype = "float64" if dtype_fixture == "backend64" else "float32"
    rng = np.random.default_rng(2)
    x, dy = (xpcnn.asarray(3.0 * rng.standard_normal(shape) + 1.0) for _ in range(2))
    c = shape[1]
    weight, bias, mean = (xpcnn.asarray(rng.standard_normal(c)) for _ in range(3))
    var = xpcnn.asarray(rng.uniform(0.5, 2.0, c))
    before = [np.asarray(xpcnn.to_numpy(a)).copy() for a in (mean, var)]

    def run():
        *train, saved = normalization.batch_norm(x, weight, bias, mean, var, True, 0.1, 1e-5, return_saved=True)
        infer = normalization.batch_norm(x, weight, bias, mean, var, False, 0.1, 1e-5)[0]
        return (*train, infer, *normalization.batch_norm_backward(dy, x, weight, 1e-5, saved=saved),
                *normalization.batch_norm_backward(dy, x, weight, 1e-5))

    _close(*_runs(run), dtype)
    for kept, was in zip((mean, var), before):  # the caller's running statistics are not written
        np.testing.assert_array_equal(np.asarray(xpcnn.to_numpy(kept)), was)


@pytest.mark.parametrize("dtype_fixture", ["backend", "backend64"])
def test_erf_and_gelu_equal_the_generic_path(request, dtype_fixture):
    backend = request.getfixturevalue(dtype_fixture)
    if _native.kernel(backend.xp, "erf") is None:
        pytest.skip(f"{backend.name} has no erf of its own")
    dtype = "float64" if dtype_fixture == "backend64" else "float32"
    rng = np.random.default_rng(4)
    x = xpcnn.asarray(np.concatenate([np.linspace(-7.0, 7.0, 2001), 3.0 * rng.standard_normal(500)]))
    dy = xpcnn.asarray(rng.standard_normal(2501))
    _close(*_runs(lambda: (activations.erf(x), activations.gelu(x), activations.gelu_backward(dy, x))), dtype)


@pytest.mark.parametrize("dtype_fixture", ["backend", "backend64"])
def test_the_hard_activations_equal_the_generic_path(request, dtype_fixture):
    backend = request.getfixturevalue(dtype_fixture)
    if _native.kernel(backend.xp, "hardswish") is None:
        pytest.skip(f"{backend.name} has no fused hard activations of its own")
    dtype = "float64" if dtype_fixture == "backend64" else "float32"
    x = xpcnn.asarray(np.concatenate([np.linspace(-8.0, 8.0, 3201), [-3.0, 0.0, 3.0, 6.0, np.nan]]))
    _close(*_runs(lambda: (activations.relu(x), activations.relu6(x), activations.hardsigmoid(x),
                           activations.hardswish(x))), dtype)


@pytest.mark.parametrize("dtype_fixture", ["backend", "backend64"])
@pytest.mark.parametrize("name", ["relu", "relu6", "hardsigmoid", "hardswish"])
def test_activations_that_overwrite_their_input_equal_the_generic_path(request, dtype_fixture, name):
    """``overwrite=True``: torch writes into the array it is handed and returns it, with the generic path's
    values; the generic path leaves its input as it was. Bit for bit against torch's out-of-place kernel."""
    backend = request.getfixturevalue(dtype_fixture)
    dtype = "float64" if dtype_fixture == "backend64" else "float32"
    values = np.concatenate([np.linspace(-8.0, 8.0, 3201), [-3.0, -0.0, 0.0, 3.0, 6.0, np.nan, np.inf, -np.inf]])
    op = getattr(activations, name)
    expected = op(xpcnn.asarray(values))
    with _native.generic_only():
        given = xpcnn.asarray(values)
        generic = op(given, overwrite=True)
        np.testing.assert_array_equal(np.asarray(xpcnn.to_numpy(given)), values.astype(dtype))
    given = xpcnn.asarray(values)
    native = op(given, overwrite=True)
    assert (native is given) == (backend.name == "torch")
    np.testing.assert_array_equal(np.asarray(xpcnn.to_numpy(native)), np.asarray(xpcnn.to_numpy(expected)))
    _close([native], [generic], dtype)


@pytest.mark.parametrize("dtype_fixture", ["backend", "backend64"])
def test_add_that_overwrites_its_first_input_equals_the_generic_path(request, dtype_fixture):
    """``merge.add(a, b, overwrite=True)``: torch adds into ``a`` where it has the sum's shape and dtype, else
    (a broadcast ``a``) makes a new array; the values are ``a + b`` bit for bit on every path."""
    backend = request.getfixturevalue(dtype_fixture)
    rng = np.random.default_rng(5)
    a_np, b_np = rng.standard_normal((2, 3, 4, 5)), rng.standard_normal((2, 3, 4, 5))
    expected = np.asarray(xpcnn.to_numpy(xpcnn.asarray(a_np) + xpcnn.asarray(b_np)))
    with _native.generic_only():
        a = xpcnn.asarray(a_np)
        generic = merge.add(a, xpcnn.asarray(b_np), overwrite=True)
        assert generic is not a
    a = xpcnn.asarray(a_np)
    native = merge.add(a, xpcnn.asarray(b_np), overwrite=True)
    assert (native is a) == (backend.name == "torch")
    for got in (generic, native):
        np.testing.assert_array_equal(np.asarray(xpcnn.to_numpy(got)), expected)
    gate = xpcnn.asarray(a_np[:, :, :1, :1])  # broadcast over b: no room for the sum in it
    broadcast = merge.add(gate, xpcnn.asarray(b_np), overwrite=True)
    assert tuple(broadcast.shape) == (2, 3, 4, 5) and tuple(gate.shape) == (2, 3, 1, 1)
    np.testing.assert_array_equal(np.asarray(xpcnn.to_numpy(broadcast)),
                                  np.asarray(xpcnn.to_numpy(xpcnn.asarray(a_np[:, :, :1, :1]) + xpcnn.asarray(b_np))))

