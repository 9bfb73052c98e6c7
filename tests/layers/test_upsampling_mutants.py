"""UpSampling2D behaviour that mutation testing (``nox -s mutation``) found unchecked: its default factor 2."""

from __future__ import annotations

import numpy as np
from layer_checks import host

import xpcnn
from xpcnn.layers import UpSampling2D


def test_upsampling_doubles_by_default(backend):
    x = np.arange(6, dtype=np.float32).reshape(1, 1, 2, 3)
    y = UpSampling2D().forward(xpcnn.asarray(x))
    np.testing.assert_array_equal(host(y), x.repeat(2, axis=2).repeat(2, axis=3))
