"""Reshape behaviours that mutation testing (``nox -s mutation``) found unchecked: target entries of 1, targets that
are no sequence of ints refused by their type, and ZeroPadding2D's one pixel by default."""

from __future__ import annotations

import re

import numpy as np
import pytest
from layer_checks import host

import xpcnn
from xpcnn.layers import Reshape, ZeroPadding2D


def test_reshape_to_axes_of_one(backend):
    x = np.arange(8, dtype=np.float32).reshape(2, 4)
    y = Reshape((1, -1, 1)).forward(xpcnn.asarray(x))
    np.testing.assert_array_equal(host(y), x.reshape(2, 1, 4, 1))


@pytest.mark.parametrize("shape", [2.5, {4}, "4"])
def test_reshape_refuses_targets_that_are_no_sequence_of_ints(shape):
    message = f"Reshape: shape must be an int or a sequence of ints, got {shape!r}"
    with pytest.raises(TypeError, match=f"^{re.escape(message)}$"):
        Reshape(shape)


def test_zero_padding_adds_one_pixel_by_default(backend):
    x = np.ones((1, 1, 2, 3), dtype=np.float32)
    y = ZeroPadding2D().forward(xpcnn.asarray(x))
    np.testing.assert_array_equal(host(y), np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1))))
