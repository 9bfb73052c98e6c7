"""ReLU + MaxPool2D run as one step by Sequential: identical outputs and gradients to the layers one by one."""

from __future__ import annotations

import numpy as np
import pytest

import xpcnn
from layer_checks import assert_on_device, host
from xpcnn.layers import Conv2D, Dense, Flatten, LeakyReLU, MaxPool2D, ReLU
from xpcnn.layers.fusion import fuse
from xpcnn.model import Sequential


def _layers() -> list:
    return [
        Conv2D(4, 3, padding="same"), ReLU(), MaxPool2D(2),                  # 2x2 tiles
        Conv2D(5, 3, padding="same"), ReLU(), MaxPool2D(3, 2, padding=1),    # overlapping, padded windows
        Conv2D(3, 1), LeakyReLU(0.1), MaxPool2D(2),                          # not a ReLU: not fused
        Flatten(), Dense(6),
    ]


def test_fuse_merges_exactly_relu_then_max_pool():
    layers = _layers()
    steps = fuse(layers)
    assert len(steps) == len(layers) - 2
    assert steps[0] is layers[0] and steps[2] is layers[3] and steps[4:] == layers[6:]
    assert steps[1].pool is layers[2] and steps[3].pool is layers[5]
    assert fuse([MaxPool2D(2), ReLU()])[1].__class__ is ReLU  # the other order stays as it is


def test_fused_model_equals_the_layers_one_by_one(backend64):
    xpcnn.manual_seed(0)
    model = Sequential(_layers(), input_shape=(2, 9, 8))
    rng = np.random.default_rng(1)
    values = rng.standard_normal((3, 2, 9, 8))
    values[0, :, :4, :4] = -np.abs(values[0, :, :4, :4])  # whole windows negative: the ReLU kills their gradient
    values[1, :, 4:, 4:] = 0.0  # ties at zero
    x = xpcnn.asarray(values)
    dy = xpcnn.asarray(rng.standard_normal((3, 6)))

    y_plain = x
    for layer in model.layers:
        y_plain = layer.forward(y_plain, training=True)
    dx_plain = dy
    for layer in reversed(model.layers):
        dx_plain = layer.backward(dx_plain)
    grads_plain = {k: host(v) for k, v in model.grads.items()}

    y = model.forward(x, training=True)
    dx = model.backward(dy)
    assert_on_device(y, backend64)
    assert_on_device(dx, backend64)
    np.testing.assert_array_equal(host(y), host(y_plain))
    np.testing.assert_array_equal(host(dx), host(dx_plain))
    for key, value in model.grads.items():
        np.testing.assert_array_equal(host(value), grads_plain[key], err_msg=key)
    np.testing.assert_array_equal(host(model.forward(x)), host(y_plain))  # inference runs fused too


def test_fused_step_checks_the_gradient_it_gets(backend):
    model = Sequential([ReLU(), MaxPool2D(2)], input_shape=(1, 4, 4))
    with pytest.raises(RuntimeError, match="needs a forward"):
        model.backward(xpcnn.asarray(np.ones((1, 1, 2, 2), dtype=np.float32)))
    model.forward(xpcnn.asarray(np.ones((1, 1, 4, 4), dtype=np.float32)), training=True)
    with pytest.raises(ValueError, match=r"output gradient has shape \(1, 1, 3, 3\).*\(1, 1, 2, 2\)"):
        model.backward(xpcnn.asarray(np.ones((1, 1, 3, 3), dtype=np.float32)))
