"""ReLU + MaxPool2D fusion behaviours that mutation testing (``nox -s mutation``) found unchecked: a pair at the
end of the layers is fused too, and the fused step's forward is an inference forward unless told otherwise."""

from __future__ import annotations

import numpy as np
import pytest
from layer_checks import host

import xpcnn
from xpcnn.layers import Flatten, MaxPool2D, ReLU
from xpcnn.layers.fusion import ReLUMaxPool, fuse


def test_a_pair_at_the_end_is_fused():
    layers = [Flatten(), ReLU(), MaxPool2D(2)]
    steps = fuse(layers)
    assert steps[0] is layers[0] and isinstance(steps[1], ReLUMaxPool) and steps[1].pool is layers[2]
    assert len(steps) == 2


def test_the_fused_step_trains_only_when_asked(backend):
    x = np.random.default_rng(0).standard_normal((1, 1, 4, 4)).astype(np.float32)
    step = ReLUMaxPool(MaxPool2D(2))
    step.forward(xpcnn.asarray(x))
    with pytest.raises(RuntimeError, match="needs a forward"):
        step.backward(xpcnn.asarray(np.ones((1, 1, 2, 2), dtype=np.float32)))
    y = step.forward(xpcnn.asarray(x), training=True)
    dx = host(step.backward(xpcnn.asarray(np.ones((1, 1, 2, 2), dtype=np.float32))))
    windows = x.reshape(2, 2, 2, 2).transpose(0, 2, 1, 3).reshape(2, 2, 4)
    np.testing.assert_array_equal(host(y)[0, 0], np.maximum(windows.max(axis=2), 0))
    assert dx.sum() == (windows.max(axis=2) > 0).sum()  # one gradient per window whose maximum is positive
