"""Weight initialisers: PyTorch's fans, the bounds and spreads their papers give, one seed giving the same
weights on every backend, unknown names refused when the layer is made."""

from __future__ import annotations

import math

import numpy as np
import pytest

import xpcnn
from xpcnn import initializers
from xpcnn.backend import dtype_name
from xpcnn.layers import Conv2D, Dense

SHAPES = [(64, 32), (32, 16, 3, 3), (8, 4, 5, 1)]


@pytest.mark.parametrize("shape", SHAPES)
def test_fans_are_pytorchs(shape):
    torch = pytest.importorskip("torch")
    expected = torch.nn.init._calculate_fan_in_and_fan_out(torch.empty(shape))
    assert initializers.fans(shape) == expected


@pytest.mark.parametrize(("name", "bound", "std"), [
    ("he_uniform", lambda fi, fo: math.sqrt(6.0 / fi), lambda fi, fo: math.sqrt(2.0 / fi)),
    ("glorot_uniform", lambda fi, fo: math.sqrt(6.0 / (fi + fo)), lambda fi, fo: math.sqrt(2.0 / (fi + fo))),
    ("he_normal", None, lambda fi, fo: math.sqrt(2.0 / fi)),
    ("glorot_normal", None, lambda fi, fo: math.sqrt(2.0 / (fi + fo))),
])
def test_bounds_and_spread(name, bound, std):
    shape = (256, 128, 3, 3)
    fan_in, fan_out = initializers.fans(shape)
    xpcnn.manual_seed(0)
    w = initializers.INITIALIZERS[name](shape, fan_in, fan_out)
    assert w.shape == shape and w.dtype == np.float64
    if bound is not None:
        limit = bound(fan_in, fan_out)
        assert np.abs(w).max() <= limit and np.abs(w).max() > 0.99 * limit
    assert abs(w.mean()) < 0.01 * std(fan_in, fan_out)
    assert w.std() == pytest.approx(std(fan_in, fan_out), rel=0.01)


def test_one_seed_gives_the_same_weights_on_every_backend(backend):
    xpcnn.manual_seed(11)
    layer = Conv2D(4, 3, weight_init="glorot_normal")
    layer.build((2, 5, 5))
    xpcnn.manual_seed(11)
    expected = initializers.glorot_normal((4, 2, 3, 3), *initializers.fans((4, 2, 3, 3)))
    np.testing.assert_allclose(np.asarray(xpcnn.to_numpy(layer.params["weight"])), expected.astype(dtype_name(backend.dtype)),
                               rtol=0, atol=0)


def test_unknown_initializer_is_refused_when_the_layer_is_made():
    for layer in (Conv2D, Dense):
        args = (4, 3) if layer is Conv2D else (4,)
        with pytest.raises(ValueError, match=r"weight_init must be one of \['glorot_normal', 'glorot_uniform', "):
            layer(*args, weight_init="orthogonal")
