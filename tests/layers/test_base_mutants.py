"""The layer contract's behaviours that mutation testing (``nox -s mutation``) found unchecked: default and given
names, the registry of saved layer types, a layer's spec (config, name, frozen flag) rebuilt as the same layer,
the parameter limits of ``load_model``, the initial weights' fans, and ``__call__``'s inference default."""

from __future__ import annotations

import math
import random
import re
import string

import numpy as np
import pytest
from layer_checks import host

import xpcnn
from xpcnn.layers import (
    ELU,
    GELU,
    AdaptiveAvgPool2D,
    AdaptiveMaxPool2D,
    Add,
    Average,
    AvgPool2D,
    BatchNorm1D,
    BatchNorm2D,
    Concatenate,
    Conv2D,
    Conv2DTranspose,
    Dense,
    DepthwiseConv2D,
    Dropout,
    Flatten,
    GlobalAvgPool2D,
    GlobalMaxPool2D,
    Hardsigmoid,
    Hardswish,
    InputLayer,
    Layer,
    LeakyReLU,
    Maximum,
    MaxPool2D,
    Multiply,
    Normalization,
    ReLU,
    ReLU6,
    Rescaling,
    Reshape,
    SeparableConv2D,
    Sigmoid,
    SiLU,
    Softmax,
    SpatialDropout2D,
    Subtract,
    Tanh,
    UpSampling2D,
    ZeroPadding2D,
)
from xpcnn.layers.base import get_layer_class, layer_spec, make_layer, parameter_limit

#: one of every registered layer class, with arguments that differ from its defaults where it has any
_LAYERS = [
    lambda **kw: AdaptiveAvgPool2D((2, 3), **kw), lambda **kw: AdaptiveMaxPool2D(2, **kw), Add, Average,
    lambda **kw: AvgPool2D(3, 2, 1, ceil_mode=True, **kw), lambda **kw: BatchNorm1D(0.2, **kw),
    lambda **kw: BatchNorm2D(eps=1e-3, **kw), lambda **kw: Concatenate(axis=-1, **kw),
    lambda **kw: Conv2D(4, 3, padding_mode="reflect", padding=1, activation="relu", **kw),
    lambda **kw: Conv2DTranspose(3, 3, stride=2, output_padding=1, **kw), lambda **kw: Dense(5, bias=False, **kw),
    lambda **kw: DepthwiseConv2D(3, depth_multiplier=2, **kw), lambda **kw: Dropout(0.25, **kw),
    lambda **kw: ELU(0.5, **kw), Flatten, lambda **kw: GELU("tanh", **kw), GlobalAvgPool2D, GlobalMaxPool2D,
    Hardsigmoid, Hardswish, lambda **kw: InputLayer((3, 4), **kw), lambda **kw: LeakyReLU(0.2, **kw),
    lambda **kw: MaxPool2D(2, dilation=2, **kw), Maximum, Multiply,
    lambda **kw: Normalization([0.5, 0.25], [4.0, 1.0], **kw), ReLU, ReLU6, lambda **kw: Rescaling(0.5, 1.0, **kw),
    lambda **kw: Reshape((2, -1), **kw), lambda **kw: SeparableConv2D(4, 3, **kw), SiLU, Sigmoid,
    lambda **kw: Softmax(-1, **kw), lambda **kw: SpatialDropout2D(0.5, **kw), Subtract, Tanh,
    lambda **kw: UpSampling2D(size=(3, 5), **kw), lambda **kw: UpSampling2D(3, mode="bilinear", **kw),
    lambda **kw: ZeroPadding2D((1, 2), **kw),
]


@pytest.mark.parametrize("make", _LAYERS)
def test_a_given_name_is_kept_and_a_spec_rebuilds_the_same_layer(make):
    layer = make(name="given.0_name")
    assert layer.name == "given.0_name"
    layer.trainable = False
    spec = layer_spec(layer, named=True)
    assert spec["trainable"] is False
    again = make_layer(spec, "layer 3")
    assert type(again) is type(layer) and again.name == "given.0_name" and again.trainable is False
    assert again.get_config() == layer.get_config()
    unfrozen = layer_spec(make(), named=False)
    assert set(unfrozen) == {"class_name", "config"}
    assert make_layer(unfrozen, "layer 3").trainable is True


def test_default_names_follow_keras():
    """A private class (not registered) of a name no other test uses, so that its count starts at 0."""
    suffix = "".join(random.choice(string.ascii_lowercase) for _ in range(12))
    probe = type(f"_ProbeABC{suffix}Layer", (Layer,), {})
    prefix = f"probeab_c{suffix}_layer"  # a "_" before each capital followed by a small letter, leading "_" gone
    assert [probe().name for _ in range(3)] == [prefix, f"{prefix}_1", f"{prefix}_2"]
    with pytest.raises(ValueError, match=f"^unknown layer type '{probe.__name__}'; known: "):
        get_layer_class(probe.__name__)


def test_names_and_types_that_are_refused():
    with pytest.raises(ValueError, match=re.escape(
            "Dense: a layer name is letters, digits and underscores, not starting with a digit, or several such "
            "parts joined by dots (after the first, digits may start one); got '0abc'")):
        Dense(2, name="0abc")
    with pytest.raises(ValueError, match=re.escape("Dense: a layer name is letters")):
        Dense(2, name=3)
    with pytest.raises(ValueError, match=r"^unknown layer type 3; known: \['AdaptiveAvgPool2D', 'AdaptiveMaxPool2D'"):
        get_layer_class(3)
    assert get_layer_class("Dense") is Dense
    with pytest.raises(ValueError, match=re.escape("layer 2 (Dense): Dense: out_features must be an integer >= 1, "
                                                   "got 0")):
        make_layer({"class_name": "Dense", "config": {"out_features": 0}}, "layer 2")
    assert isinstance(make_layer({"class_name": "Flatten"}, "layer 1"), Flatten)  # no config: the defaults


def test_forward_refuses_what_is_no_array_by_its_type(backend):
    with pytest.raises(TypeError, match=r"^Dense: expected an array, got list$"):
        Dense(2).forward([[1.0, 2.0]])


def test_calling_a_layer_is_an_inference_forward(backend):
    layer = Dropout(0.5)
    x = xpcnn.asarray(np.ones((4, 8), dtype=np.float32))
    np.testing.assert_array_equal(host(layer(x)), 1.0)  # no mask outside training
    with pytest.raises(RuntimeError, match="needs a forward"):
        layer.backward(x)
    y = layer(x, True)
    assert set(np.unique(host(y))) <= {0.0, 2.0}


def test_parameter_limits_per_array_and_in_total(backend):
    with parameter_limit(8):
        Dense(2).build((4,))  # a weight of exactly the limit
        with pytest.raises(ValueError, match=re.escape(
                "Dense 'too_big': a parameter of shape (3, 4) would hold 12 values, more than the limit of 8 per "
                "array (raise it with max_array_elements= if the model really is that large)")):
            Dense(3, name="too_big").build((4,))
    with parameter_limit(100, total=14):
        Dense(2).build((4,))  # 8 + 2
        with pytest.raises(ValueError, match=re.escape(
                "BatchNorm1D 'bn': a parameter of shape (3,) would take the model past the values its file's weights "
                "hold")):
            BatchNorm1D(name="bn").build((3,))  # weight 3 fits the 4 left, bias 3 does not
    with parameter_limit(4, total=4):
        BatchNorm1D().build((1,))  # weight, bias and two running statistics of one value each


@pytest.mark.parametrize(("make", "in_channels", "fan_in"), [
    (lambda init: Conv2D(2, 3, weight_init=init), 64, 64 * 9),
    (lambda init: Dense(2, weight_init=init), 600, 600),
])
def test_initial_weights_use_torchs_fans(backend, make, in_channels, fan_in):
    """He uniform draws from U(-sqrt(6 / fan_in), ...), Glorot uniform from U(-sqrt(6 / (fan_in + fan_out)), ...):
    with over a thousand draws the largest magnitude comes within 5% of the bound."""
    xpcnn.manual_seed(0)
    for init, bound in [("he_uniform", math.sqrt(6 / fan_in)), ("glorot_uniform", None)]:
        layer = make(init)
        layer.build((in_channels, 5, 5) if not isinstance(layer, Dense) else (in_channels,))
        w = host(layer.params["weight"])
        if bound is None:
            receptive = math.prod(w.shape[2:])
            bound = math.sqrt(6 / ((w.shape[0] + w.shape[1]) * receptive))
        assert 0.95 * bound < np.abs(w).max() <= bound


def test_a_layer_before_its_build():
    layer = Flatten()
    assert (layer.built, layer.input_shape, layer.output_shape, layer.activation) == (False, None, None, None)
    with pytest.raises(ValueError, match=re.escape(
            "Conv2D: expected 4-D input (batch axis first), got per-sample input shape (3, 4)")):
        Conv2D(2, 3).build((3, 4))
