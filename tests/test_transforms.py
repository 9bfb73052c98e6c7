"""Transforms on the session's backend: shape, dtype and device kept, each one's geometry exact, per-sample draws."""

from __future__ import annotations

import array_api_compat
import numpy as np
import pytest

import xpcnn
from xpcnn.transforms import Compose, RandomCrop, RandomFlip, RandomRotation, RandomTranslation


def _images(backend, n: int = 6, c: int = 2, h: int = 8, w: int = 8):
    host = np.random.default_rng(1).random((n, c, h, w), dtype=np.float32) + 0.5  # no zeros: fills show
    return host, xpcnn.asarray(host)


ALL_TRANSFORMS = [
    RandomFlip(p=0.5),
    RandomFlip(horizontal=False, vertical=True),
    RandomCrop(padding=2),
    RandomRotation(30.0),
    RandomRotation(30.0, interpolation="nearest"),
    RandomTranslation(0.25, 0.25),
    Compose([RandomCrop(padding=2), RandomFlip()]),
]


@pytest.mark.parametrize("transform", ALL_TRANSFORMS, ids=repr)
def test_transform_keeps_shape_dtype_device_and_changes_data(backend, transform):
    host, x = _images(backend, n=16)
    out = transform(x)
    assert tuple(out.shape) == tuple(x.shape)
    assert out.dtype == x.dtype
    assert array_api_compat.device(out) == backend.device
    assert not np.array_equal(xpcnn.to_numpy(out), host)


def test_flip_with_p1_is_a_flip(backend):
    host, x = _images(backend)
    np.testing.assert_array_equal(xpcnn.to_numpy(RandomFlip(p=1.0)(x)), host[..., ::-1])
    both = RandomFlip(horizontal=True, vertical=True, p=1.0)(x)
    np.testing.assert_array_equal(xpcnn.to_numpy(both), host[..., ::-1, ::-1])
    np.testing.assert_array_equal(xpcnn.to_numpy(RandomFlip(p=0.0)(x)), host)


def test_flip_is_per_sample(backend):
    host, x = _images(backend, n=64)
    out = xpcnn.to_numpy(RandomFlip(p=0.5)(x))
    flipped = np.array([np.array_equal(o, h[..., ::-1]) for o, h in zip(out, host)])
    kept = np.array([np.array_equal(o, h) for o, h in zip(out, host)])
    assert np.all(flipped ^ kept)
    assert 0 < flipped.sum() < 64


def test_crop_without_padding_is_identity(backend):
    host, x = _images(backend)
    np.testing.assert_array_equal(xpcnn.to_numpy(RandomCrop(padding=0)(x)), host)


def test_crop_is_a_shifted_window_with_zero_fill(backend):
    host, x = _images(backend, n=32)
    out = xpcnn.to_numpy(RandomCrop(padding=2)(x))
    padded = np.pad(host, ((0, 0), (0, 0), (2, 2), (2, 2)))
    offsets = set()
    for o, p in zip(out, padded):
        matches = [(i, j) for i in range(5) for j in range(5) if np.array_equal(o, p[:, i:i + 8, j:j + 8])]
        assert matches, "every crop is a window of the zero-padded image"
        offsets.add(matches[0])
    assert len(offsets) > 1  # offsets are drawn per sample


def test_crop_to_smaller_size(backend):
    host, x = _images(backend)
    out = RandomCrop(size=(5, 6), padding=0)(x)
    assert tuple(out.shape) == (6, 2, 5, 6)
    with pytest.raises(ValueError, match="exceeds"):
        RandomCrop(size=12, padding=1)(x)


def test_translation_with_zero_factors_is_identity(backend):
    host, x = _images(backend)
    np.testing.assert_array_equal(xpcnn.to_numpy(RandomTranslation(0.0, 0.0)(x)), host)


def test_translation_shifts_with_zero_fill(backend):
    host, x = _images(backend)
    out = xpcnn.to_numpy(RandomTranslation((0.25, 0.25), (-0.25, -0.25))(x))  # 2 down, 2 left
    expected = np.zeros_like(host)
    expected[:, :, 2:, :-2] = host[:, :, :-2, 2:]
    np.testing.assert_array_equal(out, expected)


def test_rotation_by_tiny_angle_is_identity(backend):
    host, x = _images(backend)
    np.testing.assert_allclose(xpcnn.to_numpy(RandomRotation(1e-4)(x)), host, atol=1e-3)
    np.testing.assert_array_equal(xpcnn.to_numpy(RandomRotation(1e-4, interpolation="nearest")(x)), host)


@pytest.mark.parametrize("interpolation", ["bilinear", "nearest"])
def test_rotation_by_90_degrees_is_rot90(backend, interpolation):
    host, x = _images(backend)
    out = xpcnn.to_numpy(RandomRotation((90.0, 90.0), interpolation=interpolation)(x))
    np.testing.assert_allclose(out, np.rot90(host, k=1, axes=(2, 3)), atol=1e-5)  # counter-clockwise


def test_bilinear_rotation_matches_scikit_image(backend):
    """At 30 degrees bilinear weights are fractional (at 90 they are 0 or 1, the same as nearest): compare
    with scikit-image's order-1 rotation, which shares the conventions (counter-clockwise, about pixel
    (h - 1) / 2, (w - 1) / 2, each source corner outside the image reading 0). A non-square image tells
    the axes apart."""
    rotate = pytest.importorskip("skimage.transform").rotate
    host, x = _images(backend, n=2, h=7, w=10)
    out = xpcnn.to_numpy(RandomRotation((30.0, 30.0))(x))
    expected = [[rotate(plane, 30.0, order=1, mode="constant", cval=0.0, preserve_range=True) for plane in image]
                for image in host]
    np.testing.assert_allclose(out, np.asarray(expected), atol=1e-5)


@pytest.mark.parametrize(("make", "error", "match"), [
    (lambda: RandomFlip(horizontal=False, vertical=False), ValueError,
     r"RandomFlip needs horizontal=True or vertical=True"),
    (lambda: RandomFlip(p=1.5), ValueError, r"RandomFlip probability p must lie in \[0, 1\], got 1.5"),
    (lambda: RandomCrop(padding=-1), ValueError, r"RandomCrop padding must be a non-negative int, got -1"),
    (lambda: RandomCrop(size=(4, 0)), ValueError, r"RandomCrop size must be a positive int or \(height, width\)"),
    (lambda: RandomRotation(10, interpolation="cubic"), ValueError,
     r"interpolation must be 'bilinear' or 'nearest', got 'cubic'"),
    (lambda: RandomRotation((20, 10)), ValueError, r"degrees range \(20.0, 10.0\) has low > high"),
    (lambda: RandomTranslation("wide", 0.1), TypeError, r"height_factor must be a number or a \(low, high\) pair"),
    (lambda: Compose([1]), TypeError, r"Compose takes callables, got 1"),
])
def test_transform_argument_errors(make, error, match):
    with pytest.raises(error, match=match):
        make()


def test_transforms_refuse_bad_images(backend):
    with pytest.raises(ValueError, match=r"RandomFlip takes NCHW batches \(4 dimensions\), got shape \(2, 3\)"):
        RandomFlip()(xpcnn.asarray(np.zeros((2, 3), dtype=np.float32)))
    integers = backend.xp.zeros((1, 1, 4, 4), dtype=backend.xp.uint8, device=backend.device)
    with pytest.raises(TypeError, match="bilinear rotation needs floating images, got .*uint8; use interpolation="):
        RandomRotation(10)(integers)


@pytest.mark.parametrize("transform", ALL_TRANSFORMS, ids=repr)
def test_transform_draws_repeat_after_manual_seed(backend, transform):
    _, x = _images(backend, n=8)
    xpcnn.manual_seed(5)
    first = xpcnn.to_numpy(transform(x))
    xpcnn.manual_seed(5)
    np.testing.assert_array_equal(xpcnn.to_numpy(transform(x)), first)


def test_compose_applies_its_transforms_in_order(backend):
    host, x = _images(backend)
    flip, shift = RandomFlip(p=1.0), RandomTranslation((0.0, 0.0), (0.25, 0.25))  # deterministic, 2 right
    composed = xpcnn.to_numpy(Compose([flip, shift])(x))
    np.testing.assert_array_equal(composed, xpcnn.to_numpy(shift(flip(x))))
    assert not np.array_equal(composed, xpcnn.to_numpy(flip(shift(x))))
