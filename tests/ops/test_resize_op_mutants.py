"""Resize and padding op behaviours that mutation testing (``nox -s mutation``) found unchecked, called as the public
functions: the defaults (factor 2, nearest, corners not aligned), the limits of reflect and circular padding at their
edges, the gradient of uneven boundary padding against torch, and the errors of direct calls word for word."""

from __future__ import annotations

import re

import numpy as np
import pytest
from layer_checks import host

import xpcnn
from xpcnn.ops import resize


def _a(values):
    return xpcnn.asarray(np.asarray(values, dtype=np.float64))


def test_defaults(backend64):
    x = np.random.default_rng(0).standard_normal((1, 2, 3, 4))
    up = resize.upsample2d(_a(x))
    np.testing.assert_array_equal(host(up), x.repeat(2, axis=2).repeat(2, axis=3))
    np.testing.assert_array_equal(host(resize.resize2d(_a(x), (6, 8))), host(up))
    dy = np.random.default_rng(1).standard_normal((1, 2, 6, 8))
    expected = dy.reshape(1, 2, 3, 2, 4, 2).sum(axis=(3, 5))
    np.testing.assert_allclose(host(resize.upsample2d_backward(_a(dy))), expected, rtol=1e-12)
    np.testing.assert_allclose(host(resize.resize2d_backward(_a(dy), (3, 4))), expected, rtol=1e-12)
    bilinear = resize.upsample2d(_a(x), 2, "bilinear")
    assert host(bilinear)[0, 0, 0, 0] == x[0, 0, 0, 0]  # corners not aligned: the first output is the first input
    torch = pytest.importorskip("torch")
    want = torch.nn.functional.interpolate(torch.from_numpy(x), scale_factor=2, mode="bilinear").numpy()
    np.testing.assert_allclose(host(bilinear), want, rtol=1e-10)


def test_bilinear_resizes_do_not_align_corners_by_default(backend64):
    torch = pytest.importorskip("torch")
    x = np.random.default_rng(4).standard_normal((1, 2, 3, 4))
    xt = torch.from_numpy(x).requires_grad_()
    yt = torch.nn.functional.interpolate(xt, size=(6, 8), mode="bilinear")
    dy = np.random.default_rng(5).standard_normal((1, 2, 6, 8))
    yt.backward(torch.from_numpy(dy))
    np.testing.assert_allclose(host(resize.resize2d(_a(x), (6, 8), "bilinear")), yt.detach().numpy(), rtol=1e-10)
    for dx in (resize.resize2d_backward(_a(dy), (3, 4), "bilinear"), resize.upsample2d_backward(_a(dy), 2, "bilinear")):
        np.testing.assert_allclose(host(dx), xt.grad.numpy(), rtol=1e-10)


def test_zero_padding_amounts():
    assert resize.zero_pad_amounts(((1, 2), (3, 4))) == (1, 2, 3, 4)
    assert resize.zero_pad_amounts((1, 2)) == (1, 1, 2, 2)
    with pytest.raises(ValueError, match=re.escape("zero_pad2d: width padding must be >= 0, got (3, -1)")):
        resize.zero_pad_amounts(((1, 2), (3, -1)))
    with pytest.raises(TypeError, match=re.escape("zero_pad2d: padding must be an int or a pair of ints, got "
                                                  "((1, 2), 'ab')")):
        resize.zero_pad_amounts(((1, 2), "ab"))


@pytest.mark.parametrize(("mode", "fits", "too_much"), [("reflect", 2, 3), ("circular", 3, 4)])
def test_boundary_padding_limits(mode, fits, too_much):
    resize.check_boundary_pads((3, 3), (fits, fits, fits, fits), mode)
    resize.check_boundary_pads((1, 5), (0, 0, fits + 1, fits + 1), mode)  # each axis against its own size
    bound = "smaller than" if mode == "reflect" else "at most"
    for pads in [(too_much, 0, 0, 0), (0, too_much, 0, 0), (0, 0, too_much, 0), (0, 0, 0, too_much)]:
        message = f"boundary_pad2d: {mode} padding {pads} must be {bound} the input"
        with pytest.raises(ValueError, match=f"^{re.escape(message)}"):
            resize.check_boundary_pads((3, 3), pads, mode)


@pytest.mark.parametrize("mode", ["reflect", "replicate", "circular"])
def test_uneven_boundary_padding_and_its_gradient_match_torch(backend64, mode):
    torch = pytest.importorskip("torch")
    x = np.random.default_rng(2).standard_normal((1, 2, 4, 5))
    pads = (2, 0, 1, 3)  # top, bottom, left, right
    xt = torch.from_numpy(x).requires_grad_()
    yt = torch.nn.functional.pad(xt, (pads[2], pads[3], pads[0], pads[1]), mode=mode)
    dy = np.random.default_rng(3).standard_normal(tuple(yt.shape))
    yt.backward(torch.from_numpy(dy))
    np.testing.assert_allclose(host(resize.boundary_pad2d(_a(x), pads, mode)), yt.detach().numpy(), rtol=1e-12)
    np.testing.assert_allclose(host(resize.boundary_pad2d_backward(_a(dy), (4, 5), pads, mode)), xt.grad.numpy(),
                               rtol=1e-12)


@pytest.mark.parametrize(("call", "message"), [
    (lambda v: resize.resize2d(v, (4, 4)), "resize2d: input must be 4-D (N, C, H, W), got shape (2, 3)"),
    (lambda v: resize.resize2d_backward(v, (4, 4)),
     "resize2d_backward: input must be 4-D (N, C, H, W), got shape (2, 3)"),
    (lambda v: resize.upsample2d(v), "upsample2d: input must be 4-D (N, C, H, W), got shape (2, 3)"),
    (lambda v: resize.boundary_pad2d(v, (1, 1, 1, 1), "reflect"),
     "boundary_pad2d: input must be 4-D (N, C, H, W), got shape (2, 3)"),
    (lambda v: resize.boundary_pad2d_backward(v, (1, 1), (0, 0, 0, 0), "reflect"),
     "boundary_pad2d_backward: input must be 4-D (N, C, H, W), got shape (2, 3)"),
    (lambda v: resize.zero_pad2d_backward(v, 1),
     "zero_pad2d_backward: input must be 4-D (N, C, H, W), got shape (2, 3)"),
    (lambda v: resize.check_size(0), "resize2d: size must be >= 1, got 0"),
    (lambda v: resize.check_upsample_args(0, "nearest"), "upsample2d: scale_factor must be >= 1, got 0"),
])
def test_errors_of_direct_calls(backend, call, message):
    with pytest.raises(ValueError, match=f"^{re.escape(message)}"):
        call(xpcnn.asarray(np.zeros((2, 3), dtype=np.float32)))
