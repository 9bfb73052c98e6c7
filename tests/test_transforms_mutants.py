"""Transform behaviours that mutation testing (``nox -s mutation``) found unchecked: RandomCrop draws every offset
in [0, span] uniformly, its defaults and size checks, symmetric ranges for a single factor, nearest rotation and
crops of integer images, and errors that name the transform and the argument."""

from __future__ import annotations

import re

import numpy as np
import pytest

import xpcnn
from xpcnn.transforms import RandomCrop, RandomRotation, RandomTranslation


def test_random_crop_draws_every_offset_uniformly(backend):
    """Padding 1 around 4x4 crops back to 4x4 at offsets 0, 1 or 2 per axis, each a third of the time."""
    n = 900
    marker = np.zeros((n, 1, 4, 4), dtype=np.float32)
    marker[:, :, 1, 1] = 1.0  # at (2, 2) of the padded image: at (2 - offset) in every crop
    out = xpcnn.to_numpy(RandomCrop(padding=1)(xpcnn.asarray(marker)))[:, 0]
    where = np.argwhere(out == 1.0)
    assert len(where) == n and np.array_equal(where[:, 0], np.arange(n)), "one marker in every crop"
    for axis in (1, 2):
        offset = 2 - where[:, axis]
        counts = np.bincount(offset, minlength=3)
        assert len(counts) == 3 and np.all(np.abs(counts / n - 1 / 3) < 0.07), counts


def test_random_crop_defaults_and_sizes():
    crop = RandomCrop()
    assert (crop.size, crop.padding) == (None, 4)  # the CIFAR recipe
    assert RandomCrop(size=1).size == (1, 1)
    for bad in ((4,), (4, 2.5), (4, 4, 4)):
        with pytest.raises(ValueError, match=re.escape(f"RandomCrop size must be a positive int or (height, width), "
                                                       f"got {bad!r}")):
            RandomCrop(size=bad)


def test_random_crop_refuses_a_size_larger_than_the_padded_image_in_either_axis(backend):
    x = xpcnn.asarray(np.zeros((2, 1, 8, 8), dtype=np.float32))
    with pytest.raises(ValueError, match=re.escape("RandomCrop size (12, 4) exceeds the padded image (10, 10)")):
        RandomCrop(size=(12, 4), padding=1)(x)
    with pytest.raises(ValueError, match=re.escape("RandomCrop size (4, 13) exceeds the padded image (12, 12)")):
        RandomCrop(size=(4, 13), padding=2)(x)


def test_a_single_factor_is_a_symmetric_range():
    assert RandomRotation(30).degrees == (-30.0, 30.0)
    assert RandomRotation(-30).degrees == (-30.0, 30.0)
    translation = RandomTranslation(0.1, 0.2)
    assert translation.height_range == (-0.1, 0.1) and translation.width_range == (-0.2, 0.2)
    with pytest.raises(TypeError, match=r"width_factor must be a number or a \(low, high\) pair, got 'wide'"):
        RandomTranslation(0.1, "wide")


def test_integer_images_rotate_nearest_and_crop(backend):
    host = np.arange(2 * 1 * 4 * 4, dtype=np.uint8).reshape(2, 1, 4, 4)
    x = backend.xp.asarray(host, device=backend.device)
    turned = RandomRotation((90.0, 90.0), interpolation="nearest")(x)
    assert turned.dtype == x.dtype
    np.testing.assert_array_equal(xpcnn.to_numpy(turned), np.rot90(host, k=1, axes=(2, 3)))
    cropped = RandomCrop(padding=0)(x)
    assert cropped.dtype == x.dtype
    np.testing.assert_array_equal(xpcnn.to_numpy(cropped), host)


@pytest.mark.parametrize("transform", [RandomCrop(), RandomRotation(10), RandomTranslation(0.1, 0.1)], ids=repr)
def test_shape_errors_name_the_transform(backend, transform):
    name = type(transform).__name__
    with pytest.raises(ValueError, match=rf"^{name} takes NCHW batches \(4 dimensions\), got shape \(2, 3\)$"):
        transform(xpcnn.asarray(np.zeros((2, 3), dtype=np.float32)))
