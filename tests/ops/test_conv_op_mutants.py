"""Convolution op behaviours that mutation testing (``nox -s mutation``) found unchecked, called as the public
stateless functions (the layers always pass every argument): PyTorch's defaults, the transposed geometry's checks
per axis, "same" placement on non-square inputs, and the errors of direct calls word for word. (Named
``*_op_mutants`` because ``tests/layers`` has a ``test_conv_mutants.py``: pytest needs distinct basenames.)"""

from __future__ import annotations

import re

import numpy as np
import pytest
from conftest import BACKEND
from layer_checks import host

import xpcnn
from xpcnn.ops import conv


def _a(values):
    return xpcnn.asarray(np.asarray(values, dtype=np.float64))


def _data(seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((2, 4, 5, 6)), rng.standard_normal((4, 3, 3, 2)), rng.standard_normal(3)


def test_transposed_defaults_are_torchs(backend64):
    torch = pytest.importorskip("torch")
    x, w, _ = _data()
    y = conv.conv2d_transpose(_a(x), _a(w))
    expected = torch.nn.functional.conv_transpose2d(torch.from_numpy(x), torch.from_numpy(w)).numpy()
    np.testing.assert_allclose(host(y), expected, rtol=1e-10, atol=1e-12)
    dy = np.random.default_rng(1).standard_normal(expected.shape)
    dx, dw, db = conv.conv2d_transpose_backward(_a(dy), _a(x), _a(w))
    explicit = conv.conv2d_transpose_backward(_a(dy), _a(x), _a(w), 1, 0, 0, 1, 1, True)
    for got, want in zip((dx, dw, db), explicit):
        np.testing.assert_array_equal(host(got), host(want))
    np.testing.assert_allclose(host(db), dy.sum(axis=(0, 2, 3)), rtol=1e-12)  # bias=True by default


def test_convolution_backward_defaults_are_torchs(backend64):
    x, w, _ = _data()
    w = w.transpose(1, 0, 2, 3)  # (out, in, kh, kw)
    dy = np.random.default_rng(2).standard_normal((2, 3, 3, 5))
    defaults = conv.conv2d_backward(_a(dy), _a(x), _a(w))
    explicit = conv.conv2d_backward(_a(dy), _a(x), _a(w), 1, 0, 1, 1, True, input_grad=True)
    for got, want in zip(defaults, explicit):
        np.testing.assert_array_equal(host(got), host(want))


def test_transposed_same_padding_on_a_non_square_input(backend64):
    """Keras's "same" transposed convolution: the adjoint of the "same" convolution of its output, so its output is
    the input's size times the stride and its gradient is that convolution."""
    rng = np.random.default_rng(3)
    x, w = rng.standard_normal((1, 2, 3, 5)), rng.standard_normal((2, 1, 3, 3))
    y = conv.conv2d_transpose(_a(x), _a(w), stride=2, padding="same")
    assert tuple(y.shape) == (1, 1, 6, 10)
    z = rng.standard_normal((1, 1, 6, 10))
    forward = conv.conv2d(_a(z), _a(w), stride=2, padding="same")
    np.testing.assert_allclose(np.sum(host(y) * z), np.sum(x * host(forward)), rtol=1e-10)  # <Ty, z> = <y, Cz>


def test_output_padding_is_checked_per_axis(backend64):
    x, w = _a(np.ones((1, 2, 2, 2))), _a(np.ones((2, 1, 2, 2)))
    assert tuple(conv.conv2d_transpose(x, w, stride=(2, 1), output_padding=(1, 0)).shape) == (1, 1, 5, 3)
    assert tuple(conv.conv2d_transpose(_a(np.ones((1, 2, 1, 1))), _a(np.ones((2, 1, 1, 1)))).shape) == (1, 1, 1, 1)


@pytest.mark.xfail(BACKEND == "jax", strict=True, raises=ValueError,
                   reason="ops/_jax.py conv2d_transpose takes the adjoint of a convolution whose output is x's size "
                          "only when output_padding < stride; torch also allows output_padding < dilation")
def test_output_padding_below_the_dilation_matches_torch(backend64):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(6)
    x, w = rng.standard_normal((1, 2, 2, 3)), rng.standard_normal((2, 1, 2, 2))
    y = conv.conv2d_transpose(_a(x), _a(w), dilation=(1, 2), output_padding=(0, 1))
    expected = torch.nn.functional.conv_transpose2d(torch.from_numpy(x), torch.from_numpy(w), dilation=(1, 2),
                                                    output_padding=(0, 1)).numpy()
    assert expected.shape == (1, 1, 3, 6)
    np.testing.assert_allclose(host(y), expected, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize(("kwargs", "error", "message"), [
    ({"padding": 2}, ValueError, "conv2d_transpose: padding (2, 2) leaves no output for input height and width (1, 1)"),
    ({"stride": (2, 1), "output_padding": (0, 1)}, ValueError,
     "conv2d_transpose: output_padding (0, 1) must be smaller than stride (2, 1) or dilation (1, 1)"),
    ({"stride": (1, 2), "output_padding": (1, 0)}, ValueError,
     "conv2d_transpose: output_padding (1, 0) must be smaller than stride (1, 2) or dilation (1, 1)"),
    ({"dilation": (1, 2), "output_padding": (1, 0)}, ValueError,
     "conv2d_transpose: output_padding (1, 0) must be smaller than stride (1, 1) or dilation (1, 2)"),
    ({"stride": 2, "output_padding": 2}, ValueError,
     "conv2d_transpose: output_padding (2, 2) must be smaller than stride (2, 2) or dilation (1, 1)"),
    ({"padding": "same", "output_padding": 1}, ValueError,
     "conv2d_transpose: output_padding (1, 1) does not apply with padding='same'"),
    ({"stride": "x"}, TypeError, "conv2d_transpose: stride must be an int or a pair of ints, got 'x'"),
    ({"dilation": 0}, ValueError, "conv2d_transpose: dilation must be >= 1, got 0"),
    ({"output_padding": -1}, ValueError, "conv2d_transpose: output_padding must be >= 0, got -1"),
    ({"padding": -1}, ValueError, "conv2d_transpose: padding must be >= 0, got -1"),
])
def test_transposed_errors(backend, kwargs, error, message):
    x = xpcnn.asarray(np.ones((1, 2, 1, 1), dtype=np.float32))
    w = xpcnn.asarray(np.ones((2, 3, 2, 2), dtype=np.float32))
    with pytest.raises(error, match=f"^{re.escape(message)}$"):
        conv.conv2d_transpose(x, w, **kwargs)
    with pytest.raises(ValueError, match=re.escape("conv2d_transpose: input has 3 channels but weight (2, 3, 2, 2) "
                                                   "with groups=1 expects 2")):
        conv.conv2d_transpose(xpcnn.asarray(np.ones((1, 3, 1, 1), dtype=np.float32)), w)


def test_a_one_by_one_same_convolution_keeps_the_size(backend64):
    x = np.random.default_rng(4).standard_normal((1, 2, 4, 5))
    w = np.random.default_rng(5).standard_normal((3, 2, 1, 1))
    y = conv.conv2d(_a(x), _a(w), padding="same")
    np.testing.assert_allclose(host(y), np.einsum("nchw,oc->nohw", x, w[:, :, 0, 0]), rtol=1e-10)


@pytest.mark.parametrize(("x_shape", "w_shape", "kwargs", "message"), [
    ((1, 1, 3, 4), (1, 1, 7, 7), {"padding": (1, 2)},
     "conv2d: kernel (7, 7) (dilation (1, 1)) is larger than the padded input (5, 8)"),
    ((1, 1, 3), (1, 1, 1, 1), {}, "conv2d: input must be 4-D (N, C, H, W), got shape (1, 1, 3)"),
    ((1, 1, 3, 3), (1, 1, 1), {}, "conv2d: weight must be 4-D, got shape (1, 1, 1)"),
    ((1, 4, 3, 3), (3, 2, 1, 1), {"groups": 2}, "conv2d: weight axis 0 (3) is not divisible by groups=2"),
    ((1, 4, 3, 3), (4, 2, 1, 1), {"groups": 0}, "conv2d: groups must be a positive int, got 0"),
])
def test_convolution_errors(backend, x_shape, w_shape, kwargs, message):
    x, w = (xpcnn.asarray(np.ones(s, dtype=np.float32)) for s in (x_shape, w_shape))
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        conv.conv2d(x, w, **kwargs)
