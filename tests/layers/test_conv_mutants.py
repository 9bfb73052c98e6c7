"""Convolution layer behaviours that mutation testing (``nox -s mutation``) found unchecked: the bias in inference,
"same" padding with strides and dilations against torch on the padded input, outputs of one pixel, zero padding
wider than the input, the transposed layer's defaults, and argument and shape errors word for word."""

from __future__ import annotations

import re

import numpy as np
import pytest
from layer_checks import host

import xpcnn
from xpcnn.layers import Conv2D, Conv2DTranspose


def _torch_conv(x, layer, pads, transpose=False, mode="constant"):
    torch = pytest.importorskip("torch")
    t = torch.nn.functional
    weight = torch.from_numpy(host(layer.params["weight"]))
    bias = torch.from_numpy(host(layer.params["bias"])) if "bias" in layer.params else None
    xt = t.pad(torch.from_numpy(x), pads, mode=mode) if pads else torch.from_numpy(x)
    if transpose:
        padding = (0, 0) if layer.padding == "valid" else layer.padding
        return t.conv_transpose2d(xt, weight, bias, stride=layer.stride, padding=padding).numpy()
    return t.conv2d(xt, weight, bias, stride=layer.stride, dilation=layer.dilation).numpy()


def _build_with_bias(layer, x):
    layer.build(x.shape[1:])
    layer.params["bias"] = xpcnn.asarray(np.linspace(-1.0, 1.0, layer.out_channels).astype(np.float32))
    return layer


@pytest.mark.parametrize(("kwargs", "in_hw", "pads"), [
    ({"stride": 2, "padding": "same"}, (8, 7), (1, 1, 0, 1)),  # (left, right, top, bottom): the odd pixel last
    ({"dilation": 2, "padding": "same"}, (6, 6), (2, 2, 2, 2)),
    ({"padding": 3}, (1, 2), (3, 3, 3, 3)),  # zero padding wider than the input
    ({}, (3, 3), ()),  # a one-pixel output
    ({"stride": 2, "padding": "same", "padding_mode": "reflect"}, (8, 7), (1, 1, 0, 1)),
    ({"dilation": 2, "padding": "same", "padding_mode": "replicate"}, (6, 6), (2, 2, 2, 2)),
])
def test_conv2d_inference_with_bias_matches_torch(backend64, kwargs, in_hw, pads):
    x = np.random.default_rng(0).standard_normal((2, 3, *in_hw))
    layer = _build_with_bias(Conv2D(4, 3, **kwargs), x)
    y = layer.forward(xpcnn.asarray(x))  # inference: no saved state
    expected = _torch_conv(x, layer, pads, mode=kwargs.get("padding_mode", "zeros").replace("zeros", "constant"))
    np.testing.assert_allclose(host(y), expected, rtol=1e-10, atol=1e-12)
    assert layer.output_shape == expected.shape[1:]


def test_conv2d_transpose_defaults_valid_padding_and_activation(backend64):
    x = np.random.default_rng(1).standard_normal((2, 3, 4, 5))
    for layer in (Conv2DTranspose(2, 3), Conv2DTranspose(2, 3, padding="valid")):
        y = _build_with_bias(layer, x).forward(xpcnn.asarray(x))
        assert tuple(y.shape) == (2, 2, 6, 7) and layer.output_shape == (2, 6, 7)  # stride 1, no padding: H + k - 1
        np.testing.assert_allclose(host(y), _torch_conv(x, layer, (), transpose=True), rtol=1e-10, atol=1e-12)
    relu = _build_with_bias(Conv2DTranspose(2, 3, activation="relu"), x)
    expected = np.maximum(_torch_conv(x, relu, (), transpose=True), 0.0)
    np.testing.assert_allclose(host(relu.forward(xpcnn.asarray(x))), expected, rtol=1e-10, atol=1e-12)
    assert tuple(Conv2DTranspose(2, 1).build((3, 1, 1))) == (2, 1, 1)  # a one-pixel output


def test_conv2d_config_names_the_padding_mode_only_when_it_is_not_zeros():
    assert "padding_mode" not in Conv2D(2, 3).get_config()
    assert Conv2D(2, 3, padding=1, padding_mode="circular").get_config()["padding_mode"] == "circular"


@pytest.mark.parametrize(("make", "error", "message"), [
    (lambda: Conv2D(1, 0), ValueError, "Conv2D: kernel_size must be >= 1, got 0"),
    (lambda: Conv2D(1, 3, stride=0), ValueError, "Conv2D: stride must be >= 1, got 0"),
    (lambda: Conv2D(1, 3, dilation=0), ValueError, "Conv2D: dilation must be >= 1, got 0"),
    (lambda: Conv2D(1, 3, padding="full"), ValueError,
     "Conv2D: padding must be an int, a pair or one of ('valid', 'same'), got 'full'"),
    (lambda: Conv2D(1, 3, weight_init="zeros"), ValueError,
     "Conv2D: weight_init must be one of ['glorot_normal', 'glorot_uniform', 'he_normal', 'he_uniform'], got 'zeros'"),
    (lambda: Conv2D(1, 3, activation=3), TypeError, "Conv2D: activation must be a name such as 'relu', or None; got 3"),
    (lambda: Conv2DTranspose(1, 3, activation="nope"), ValueError, (
        "Conv2DTranspose: unknown activation 'nope'; use one of ['elu', 'gelu', 'hard_sigmoid', 'hard_swish', "
        "'leaky_relu', 'relu', 'relu6', 'sigmoid', 'silu', 'softmax', 'tanh'] (or hard_silu, hardsigmoid, hardswish, "
        "swish) or None")),
    (lambda: Conv2DTranspose(1, 3, padding="full"), ValueError,
     "Conv2DTranspose: padding must be an int, a pair or one of ('valid', 'same'), got 'full'"),
    (lambda: Conv2DTranspose(1, 3, output_padding=-1), ValueError,
     "Conv2DTranspose: output_padding must be >= 0, got -1"),
    (lambda: Conv2D(1, 7, padding=(1, 2)).build((1, 3, 4)), ValueError,
     ("Conv2D: kernel (7, 7) with dilation (1, 1) is larger than the padded input (5, 8) (per-sample input shape "
      "(1, 3, 4), padding (1, 2))")),
    (lambda: Conv2DTranspose(1, 2, padding=2).build((1, 1, 1)), ValueError,
     "Conv2DTranspose: padding (2, 2) leaves no output for per-sample input (1, 1, 1)"),
])
def test_argument_and_shape_errors(make, error, message):
    with pytest.raises(error, match=f"^{re.escape(message)}$"):
        make()
