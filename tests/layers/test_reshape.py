"""Flatten, Reshape, ZeroPadding2D and UpSampling2D: gradients, PyTorch oracle, device, shapes, errors."""

from __future__ import annotations

import numpy as np
import pytest

import xpcnn
from layer_checks import assert_forward_backward_on_device, assert_matches_torch, assert_on_device, check_numerical_gradients, host, rtol_for
from xpcnn.layers.base import get_layer_class
from xpcnn.layers.reshape import Flatten, Reshape, ZeroPadding2D
from xpcnn.layers.upsampling import UpSampling2D
from xpcnn.ops import resize as resize_ops


def _input(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape)


def _torch_reshape(shape):
    return lambda x: x.reshape(x.shape[0], *shape)


def _torch_pad(padding):
    import torch.nn.functional as F

    (top, bottom), (left, right) = padding
    return lambda x: F.pad(x, (left, right, top, bottom))


def _torch_upsample(scale_factor, mode, align_corners=False):
    import torch.nn.functional as F

    corners = {} if mode == "nearest" else {"align_corners": align_corners}
    return lambda x: F.interpolate(x, scale_factor=scale_factor, mode=mode, **corners)


def _torch_resize(size, mode, align_corners):
    import torch.nn.functional as F

    corners = {} if mode == "nearest" else {"align_corners": align_corners}
    return lambda x: F.interpolate(x, size=size, mode=mode, **corners)


# (make layer, input shape, torch reference factory, its argument)
CASES = [
    pytest.param(Flatten, (), (2, 3, 4, 5), lambda: (lambda x: x.flatten(1)), id="flatten-4d"),
    pytest.param(Flatten, (), (1, 7), lambda: (lambda x: x.flatten(1)), id="flatten-2d-batch1"),
    pytest.param(Reshape, ((5, -1),), (2, 3, 4, 5), lambda: _torch_reshape((5, 12)), id="reshape-infer"),
    pytest.param(Reshape, ((2, 3, 2),), (3, 12), lambda: _torch_reshape((2, 3, 2)), id="reshape-up-rank"),
    pytest.param(Reshape, (6,), (2, 2, 3), lambda: _torch_reshape((6,)), id="reshape-int"),
    pytest.param(ZeroPadding2D, (1,), (2, 3, 4, 5), lambda: _torch_pad(((1, 1), (1, 1))), id="pad-int"),
    pytest.param(ZeroPadding2D, ((2, 0),), (1, 2, 3, 3), lambda: _torch_pad(((2, 2), (0, 0))), id="pad-pair"),
    pytest.param(
        ZeroPadding2D, (((0, 2), (3, 1)),), (2, 2, 4, 3), lambda: _torch_pad(((0, 2), (3, 1))), id="pad-asymmetric"
    ),
    pytest.param(UpSampling2D, (2,), (2, 3, 4, 5), lambda: _torch_upsample(2, "nearest"), id="nearest-2"),
    pytest.param(UpSampling2D, ((3, 2),), (1, 2, 3, 4), lambda: _torch_upsample((3, 2), "nearest"), id="nearest-3x2"),
    pytest.param(UpSampling2D, (2, "bilinear"), (2, 3, 4, 5), lambda: _torch_upsample(2, "bilinear"), id="bilinear-2"),
    pytest.param(UpSampling2D, (3, "bilinear"), (1, 2, 5, 3), lambda: _torch_upsample(3, "bilinear"), id="bilinear-3"),
    pytest.param(
        UpSampling2D, ((2, 4), "bilinear"), (2, 1, 3, 2), lambda: _torch_upsample((2, 4), "bilinear"), id="bilinear-2x4"
    ),
    pytest.param(
        UpSampling2D, (2, "bilinear"), (1, 2, 1, 1), lambda: _torch_upsample(2, "bilinear"), id="bilinear-1px"
    ),
    pytest.param(UpSampling2D, (1, "bilinear"), (1, 2, 3, 3), lambda: _torch_upsample(1, "bilinear"), id="bilinear-1x"),
    *[pytest.param(lambda mode=mode, size=size, corners=corners: UpSampling2D(mode=mode, size=size,
                                                                            align_corners=corners),
                   (), shape, lambda mode=mode, size=size, corners=corners: _torch_resize(size, mode, corners),
                   id=f"{mode}-size{size}-{shape[2:]}" + ("-corners" if corners else ""))
      for mode, size, shape, corners in [
          ("nearest", (7, 5), (2, 2, 4, 3), False), ("nearest", (5, 9), (1, 1, 7, 4), False),
          ("nearest", (20, 14), (1, 1, 14, 10), False), ("nearest", (3, 2), (1, 2, 6, 5), False),
          ("bilinear", (7, 5), (2, 2, 4, 3), False), ("bilinear", (3, 8), (1, 1, 5, 3), False),
          ("bilinear", (7, 5), (2, 2, 4, 3), True), ("bilinear", (9, 9), (1, 1, 3, 3), True),
          ("bilinear", (1, 4), (1, 1, 3, 2), True)]],
    pytest.param(lambda: UpSampling2D(2, "bilinear", align_corners=True), (), (1, 2, 3, 4),
                 lambda: _torch_upsample(2, "bilinear", True), id="bilinear-2-corners"),
]


@pytest.mark.parametrize("layer_class, args, shape, reference", CASES)
def test_numerical_gradients(backend64, layer_class, args, shape, reference):
    check_numerical_gradients(layer_class(*args), _input(shape))


@pytest.mark.parametrize("dtype_fixture", ["backend", "backend64"])
@pytest.mark.parametrize("layer_class, args, shape, reference", CASES)
def test_matches_torch(request, dtype_fixture, layer_class, args, shape, reference):
    pytest.importorskip("torch")
    backend = request.getfixturevalue(dtype_fixture)
    assert_matches_torch(layer_class(*args), _input(shape), reference(), rtol=rtol_for(backend))


@pytest.mark.parametrize(
    "layer",
    [Flatten(), Reshape((-1, 2)), ZeroPadding2D(((1, 0), (2, 3))), UpSampling2D(2), UpSampling2D((2, 3), "bilinear")],
    ids=repr,
)
def test_layers_keep_everything_on_the_device(backend, layer):
    assert_forward_backward_on_device(layer, xpcnn.asarray(_input((2, 3, 4, 6))), backend)


def test_interpolation_matrix_rows_sum_to_one_and_stay_on_the_device(backend):
    like = xpcnn.asarray(np.zeros((1,)))
    for in_size, out_size in [(1, 2), (4, 8), (5, 15), (3, 3), (7, 4), (4, 9)]:
        for mode, corners in [("nearest", False), ("bilinear", False), ("bilinear", True)]:
            a = resize_ops.interpolation_matrix(in_size, out_size, like, mode, corners)
            assert_on_device(a, backend)
            assert a.dtype == backend.dtype and tuple(a.shape) == (out_size, in_size)
            np.testing.assert_allclose(host(a).sum(axis=1), 1.0, rtol=1e-6)


def test_shapes_config_and_repr(backend):
    assert Flatten().build((16, 7, 7)) == (784,)
    assert repr(Flatten()) == "Flatten()"
    assert Reshape((4, -1)).build((2, 3, 4)) == (4, 6)
    assert repr(Reshape([4, -1])) == "Reshape(shape=(4, -1))"
    assert Reshape(12).build((3, 4)) == (12,)
    pad = ZeroPadding2D((1, 2))
    assert pad.build((3, 5, 5)) == (3, 7, 9)
    assert repr(pad) == "ZeroPadding2D(padding=((1, 1), (2, 2)))"
    assert ZeroPadding2D(((0, 1), (2, 0))).build((1, 4, 4)) == (1, 5, 6)
    up = UpSampling2D((2, 3), mode="bilinear")
    assert up.build((4, 5, 6)) == (4, 10, 18)
    assert repr(up) == "UpSampling2D(scale_factor=(2, 3), mode='bilinear')"
    sized = UpSampling2D(size=(7, 5), mode="bilinear", align_corners=True)
    assert sized.build((2, 3, 3)) == (2, 7, 5)
    assert repr(sized) == "UpSampling2D(size=(7, 5), mode='bilinear', align_corners=True)"
    for layer in (Flatten(), Reshape((3, -1)), pad, up, sized):
        rebuilt = get_layer_class(type(layer).__name__)(**layer.get_config())
        assert rebuilt.get_config() == layer.get_config()
        assert layer.num_params == 0


def test_shape_layers_follow_the_batch_size(backend):
    layer = Flatten()
    layer.forward(xpcnn.asarray(_input((2, 3, 4))))
    y = layer.forward(xpcnn.asarray(_input((5, 3, 4))), training=True)
    assert tuple(y.shape) == (5, 12)
    assert tuple(layer.backward(y).shape) == (5, 3, 4)


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: Reshape((2, -1, -1)), r"Reshape: shape may contain at most one -1, got \(2, -1, -1\)"),
        (lambda: Reshape((0, 3)), "Reshape: shape entries must be positive or -1"),
        (lambda: Reshape("3x4"), "Reshape: shape must be an int or a sequence of ints"),
        (lambda: Reshape((2.0, 3)), "Reshape: shape must be an int or a sequence of ints"),
        (lambda: ZeroPadding2D(-1), "ZeroPadding2D: padding must be >= 0"),
        (lambda: ZeroPadding2D(((1, -2), (0, 0))), "ZeroPadding2D: height padding must be >= 0"),
        (lambda: ZeroPadding2D(((1, 2, 3), (0, 0))), "ZeroPadding2D: height padding must be an int or a pair"),
        (lambda: ZeroPadding2D(1.5), "ZeroPadding2D: padding must be an int or a pair"),
        (lambda: UpSampling2D(0), "UpSampling2D: scale_factor must be >= 1"),
        (lambda: UpSampling2D(1.5), "UpSampling2D: scale_factor must be an int or a pair"),
        (lambda: UpSampling2D(2, mode="bicubic"), "UpSampling2D: mode must be one of"),
        (lambda: UpSampling2D(2, size=(4, 4)), "UpSampling2D: give scale_factor or size, not both"),
        (lambda: UpSampling2D(size=(0, 4)), "UpSampling2D: size must be >= 1"),
        (lambda: UpSampling2D(size=4, mode="bicubic"), "UpSampling2D: mode must be one of"),
        (lambda: UpSampling2D(2, align_corners=True), "align_corners applies to mode='bilinear' only"),
        (lambda: UpSampling2D(2, "bilinear", align_corners=None), "align_corners must be True or False"),
    ],
)
def test_constructor_rejects_bad_arguments(make, message):
    with pytest.raises((ValueError, TypeError), match=message):
        make()


def test_reshape_rejects_mismatched_sizes_before_changing_state(backend):
    layer = Reshape((5, -1))
    message = r"Reshape: cannot reshape per-sample shape \(3, 4\) \(12 elements\) into \(5, -1\)"
    with pytest.raises(ValueError, match=message):
        layer.forward(xpcnn.asarray(_input((2, 3, 4))))
    assert not layer.built
    fixed = Reshape((2, 5))
    with pytest.raises(ValueError, match=r"per-sample shape \(12,\) \(12 elements\) into \(2, 5\)"):
        fixed.forward(xpcnn.asarray(_input((2, 12))))
    fixed.forward(xpcnn.asarray(_input((2, 10))))
    with pytest.raises(ValueError, match=r"per-sample shape \(11,\)"):
        fixed.forward(xpcnn.asarray(_input((2, 11))))
    assert fixed.output_shape == (2, 5)


@pytest.mark.parametrize("layer", [ZeroPadding2D(1), UpSampling2D(2)], ids=repr)
def test_image_layers_reject_wrong_ndim(backend, layer):
    with pytest.raises(ValueError, match=rf"{type(layer).__name__}: expected 4-D input .* \(2, 3, 4\)"):
        layer.forward(xpcnn.asarray(_input((2, 3, 4))))
    assert not layer.built


@pytest.mark.parametrize(
    "op, args", [(resize_ops.upsample2d, (2,)), (resize_ops.zero_pad2d, (1,)), (resize_ops.upsample2d_backward, ())]
)
def test_ops_reject_non_images(backend, op, args):
    with pytest.raises(ValueError, match=rf"{op.__name__}: input must be 4-D \(N, C, H, W\), got shape \(3, 4\)"):
        op(xpcnn.asarray(_input((3, 4))), *args)


def test_upsample_backward_rejects_a_gradient_of_the_wrong_size(backend):
    message = r"upsample2d_backward: .* \(4, 5\) are not multiples of scale_factor \(2, 2\)"
    with pytest.raises(ValueError, match=message):
        resize_ops.upsample2d_backward(xpcnn.asarray(_input((1, 1, 4, 5))), 2)



def test_upsampling_by_a_factor_follows_the_input_size(backend):
    layer = UpSampling2D(2, "bilinear")
    layer.forward(xpcnn.asarray(_input((1, 1, 3, 3))))
    y = layer.forward(xpcnn.asarray(_input((1, 1, 4, 5))), training=True)  # another image size: another output
    assert tuple(y.shape) == (1, 1, 8, 10)
    assert tuple(layer.backward(xpcnn.asarray(_input((1, 1, 8, 10)))).shape) == (1, 1, 4, 5)



def test_copying_resamplers_keep_infinities_where_they_are(backend):
    """Padding and nearest resizing copy pixels: an infinite one lands exactly where torch copies it."""
    torch = pytest.importorskip("torch")
    import torch.nn.functional as F

    x = _input((1, 1, 5, 6))
    x[0, 0, 2, 3] = np.inf
    tx = torch.tensor(x)
    for ours, theirs in [
        (resize_ops.boundary_pad2d(xpcnn.asarray(x), (2, 1, 1, 2), "reflect"), F.pad(tx, (1, 2, 2, 1), mode="reflect")),
        (resize_ops.resize2d(xpcnn.asarray(x), (7, 9), "nearest"), F.interpolate(tx, size=(7, 9), mode="nearest")),
    ]:
        np.testing.assert_array_equal(np.isinf(host(ours)), np.isinf(theirs.numpy()))
        assert not np.isnan(host(ours)).any()


@pytest.mark.parametrize("align_corners", [False, True])
@pytest.mark.parametrize("size", [(10, 12), (7, 9), (3, 4)])
def test_bilinear_resizing_puts_infinities_and_nans_where_torch_does(backend, size, align_corners):
    """Infinities land exactly where torch's do, with their sign. NaN lands where a tap of positive weight
    reads a NaN or both signs of infinity meet; torch also makes NaN of a weight-0 tap times infinity (at the
    clamped border, between exact pixels), which xpcnn does not read. Where that tap lands is found with
    torch too: the same resize of each pixel kind's 0/1 mask is positive exactly where a positive weight
    reads that kind."""
    torch = pytest.importorskip("torch")
    import torch.nn.functional as F

    def torch_resize(a):
        return F.interpolate(torch.tensor(a), size=size, mode="bilinear", align_corners=align_corners).numpy()

    x = _input((1, 1, 5, 6))
    x[0, 0, 1, 1] = np.inf  # read with weight 0 beside row/column 0 (clamped border, exact hits)
    x[0, 0, 3, 3], x[0, 0, 3, 4] = np.inf, -np.inf  # they meet between columns 3 and 4
    x[0, 0, 4, 0] = np.nan
    with np.errstate(invalid="ignore"):  # inf - inf on NumPy
        ours = host(resize_ops.resize2d(xpcnn.asarray(x), size, "bilinear", align_corners))
    theirs = torch_resize(x)
    pos, neg, nan = (torch_resize(mask.astype(np.float64)) > 0 for mask in (x == np.inf, x == -np.inf, np.isnan(x)))
    np.testing.assert_array_equal(np.isposinf(ours), np.isposinf(theirs))
    np.testing.assert_array_equal(np.isneginf(ours), np.isneginf(theirs))
    np.testing.assert_array_equal(np.isnan(ours), nan | (pos & neg))
    assert np.all(np.isnan(theirs)[np.isnan(ours)]), "every NaN of ours is one of torch's"
    finite = np.isfinite(theirs)
    np.testing.assert_allclose(ours[finite], theirs[finite], rtol=rtol_for(backend), atol=1e-6)
