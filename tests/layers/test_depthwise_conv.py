"""DepthwiseConv2D and SeparableConv2D: numerical gradients, PyTorch oracle (grouped convolutions), torch's
parameter layout, configs, device discipline, errors that name the layer."""

from __future__ import annotations

import numpy as np
import pytest

import xpcnn
from layer_checks import assert_forward_backward_on_device, assert_matches_torch, check_numerical_gradients, host
from layer_checks import rtol_for
from test_conv import _pair, _torch_conv
from xpcnn.layers import Conv2D, DepthwiseConv2D, SeparableConv2D

# (batch, in_channels, H, W, kernel, stride, padding, depth_multiplier, dilation)
DEPTHWISE_CASES = [
    pytest.param(2, 3, 6, 6, 3, 1, 1, 1, 1, id="k3-p1"),
    pytest.param(2, 2, 7, 6, 3, 2, "same", 2, 1, id="same-s2-multiplier2"),
    pytest.param(1, 3, 8, 7, (3, 2), 1, (2, 1), 1, 2, id="rect-dilation2"),
    pytest.param(2, 2, 5, 5, 5, 1, "same", 1, 1, id="k5-same"),
]


def _input(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape)


@pytest.mark.parametrize("n, c, h, w, k, s, p, m, d", DEPTHWISE_CASES)
def test_depthwise_numerical_gradients(backend64, n, c, h, w, k, s, p, m, d):
    check_numerical_gradients(DepthwiseConv2D(k, s, p, m, d), _input((n, c, h, w)))


@pytest.mark.parametrize("dtype_fixture", ["backend", "backend64"])
@pytest.mark.parametrize("n, c, h, w, k, s, p, m, d", DEPTHWISE_CASES)
def test_depthwise_matches_torch(request, dtype_fixture, n, c, h, w, k, s, p, m, d):
    pytest.importorskip("torch")
    backend = request.getfixturevalue(dtype_fixture)
    layer = DepthwiseConv2D(k, stride=s, padding=p, depth_multiplier=m, dilation=d)
    assert layer.build((c, h, w))[0] == c * m and (layer.groups, layer.out_channels) == (c, c * m)
    assert tuple(layer.params["weight"].shape) == (c * m, 1, *_pair(k))  # torch's Conv2d(c, c*m, k, groups=c)
    layer.params["bias"] = xpcnn.asarray(_input((c * m,), seed=3))
    assert_matches_torch(layer, _input((n, c, h, w)), _torch_conv(s, p, d, c, (h, w), _pair(k)),
                         rtol=rtol_for(backend))


# (batch, in_channels, H, W, out_channels, kernel, stride, padding, depth_multiplier, dilation, bias)
SEPARABLE_CASES = [
    pytest.param(2, 3, 6, 6, 4, 3, 1, 1, 1, 1, True, id="k3-p1"),
    pytest.param(2, 2, 7, 6, 3, 3, 2, "same", 2, 1, True, id="same-s2-multiplier2"),
    pytest.param(1, 3, 7, 8, 2, (3, 2), 1, "valid", 1, 2, False, id="valid-dilation2-no-bias"),
]


def _torch_separable(c, s, p, d, in_hw, k):
    import torch.nn.functional as F

    depthwise = _torch_conv(s, p, d, c, in_hw, _pair(k))

    def forward(x, depthwise_weight, pointwise_weight, bias=None):
        return F.conv2d(depthwise(x, depthwise_weight, None), pointwise_weight, bias)

    return forward


@pytest.mark.parametrize("n, c, h, w, o, k, s, p, m, d, bias", SEPARABLE_CASES)
def test_separable_numerical_gradients(backend64, n, c, h, w, o, k, s, p, m, d, bias):
    check_numerical_gradients(SeparableConv2D(o, k, s, p, m, d, bias), _input((n, c, h, w)))


@pytest.mark.parametrize("dtype_fixture", ["backend", "backend64"])
@pytest.mark.parametrize("n, c, h, w, o, k, s, p, m, d, bias", SEPARABLE_CASES)
def test_separable_matches_torch(request, dtype_fixture, n, c, h, w, o, k, s, p, m, d, bias):
    pytest.importorskip("torch")
    backend = request.getfixturevalue(dtype_fixture)
    layer = SeparableConv2D(o, k, stride=s, padding=p, depth_multiplier=m, dilation=d, bias=bias)
    layer.build((c, h, w))
    shapes = {k_: tuple(v.shape) for k_, v in layer.params.items()}
    assert shapes == {"depthwise_weight": (c * m, 1, *_pair(k)), "pointwise_weight": (o, c * m, 1, 1),
                      **({"bias": (o,)} if bias else {})}
    if bias:
        layer.params["bias"] = xpcnn.asarray(_input((o,), seed=3))
    assert_matches_torch(layer, _input((n, c, h, w)), _torch_separable(c, s, p, d, (h, w), k),
                         rtol=rtol_for(backend))


def test_separable_parameters_load_into_the_torch_module_the_docstring_names(backend64):
    torch = pytest.importorskip("torch")
    layer = SeparableConv2D(4, 3, padding=1, depth_multiplier=2)
    x = _input((2, 3, 5, 5))
    y = host(layer.forward(xpcnn.asarray(x)))
    module = torch.nn.Module()
    module.depthwise = torch.nn.Conv2d(3, 6, 3, padding=1, groups=3, bias=False)
    module.pointwise = torch.nn.Conv2d(6, 4, 1)
    names = {"depthwise_weight": "depthwise.weight", "pointwise_weight": "pointwise.weight", "bias": "pointwise.bias"}
    module.double().load_state_dict({names[k]: torch.tensor(host(v)) for k, v in layer.params.items()})
    with torch.no_grad():
        reference = module.pointwise(module.depthwise(torch.tensor(x))).numpy()
    np.testing.assert_allclose(y, reference, rtol=1e-10, atol=1e-12)


def test_separable_draws_its_weights_as_a_depthwise_then_a_pointwise_convolution(backend):
    xpcnn.manual_seed(3)
    layer = SeparableConv2D(4, 3, depth_multiplier=2)
    layer.build((3, 6, 6))
    xpcnn.manual_seed(3)
    depthwise, pointwise = DepthwiseConv2D(3, depth_multiplier=2, bias=False), Conv2D(4, 1)
    pointwise.build(depthwise.build((3, 6, 6)))
    np.testing.assert_array_equal(host(layer.params["depthwise_weight"]), host(depthwise.params["weight"]))
    np.testing.assert_array_equal(host(layer.params["pointwise_weight"]), host(pointwise.params["weight"]))
    np.testing.assert_array_equal(host(layer.params["bias"]), np.zeros(4))


def test_separable_skips_the_input_gradient_and_keeps_each_call_apart(backend64):
    layer = SeparableConv2D(3, 3, padding="same")
    a, b = xpcnn.asarray(_input((2, 2, 5, 5), 1)), xpcnn.asarray(_input((2, 2, 5, 5), 2))
    dy = xpcnn.asarray(_input((2, 3, 5, 5), 3))
    layer.forward(a, training=True)
    state_a = layer.call_state()
    dx_a, grads_a = host(layer.backward(dy)), {k: host(v) for k, v in layer.grads.items()}
    layer.forward(b, training=True)  # a second call of the layer (a graph model calls it twice)
    layer.restore_call_state(state_a)
    np.testing.assert_array_equal(host(layer.backward(dy)), dx_a)
    layer.input_grad = False
    layer.forward(a, training=True)
    assert layer.backward(dy) is None
    for k, v in layer.grads.items():
        np.testing.assert_array_equal(host(v), grads_a[k])


def test_depthwise_and_separable_keep_everything_on_the_device(backend):
    x = xpcnn.asarray(_input((2, 3, 6, 6)))
    for layer in (DepthwiseConv2D(3, padding="same", depth_multiplier=2), SeparableConv2D(4, 3, stride=2)):
        assert_forward_backward_on_device(layer, x, backend)


def test_configs_round_trip_and_repr():
    depthwise = DepthwiseConv2D(5, stride=2, padding="same", depth_multiplier=2, bias=False, activation="hardswish",
                                padding_mode="reflect")
    assert depthwise.get_config() == {
        "kernel_size": (5, 5), "stride": (2, 2), "padding": "same", "depth_multiplier": 2, "dilation": (1, 1),
        "bias": False, "weight_init": "he_uniform", "activation": "hard_swish", "padding_mode": "reflect"}
    separable = SeparableConv2D(8, 3, padding=1, activation="relu6")
    assert separable.get_config() == {
        "out_channels": 8, "kernel_size": (3, 3), "stride": (1, 1), "padding": (1, 1), "depth_multiplier": 1,
        "dilation": (1, 1), "bias": True, "weight_init": "he_uniform", "activation": "relu6"}
    for layer in (depthwise, separable):
        assert type(layer)(**layer.get_config()).get_config() == layer.get_config()
    assert repr(DepthwiseConv2D(3)).startswith("DepthwiseConv2D(kernel_size=(3, 3), stride=(1, 1), padding=(0, 0)")


@pytest.mark.parametrize("make, error, message", [
    (lambda: DepthwiseConv2D(3, depth_multiplier=0), ValueError,
     "DepthwiseConv2D: depth_multiplier must be an integer >= 1, got 0"),
    (lambda: DepthwiseConv2D(3, depth_multiplier=1.5), TypeError,
     "DepthwiseConv2D: depth_multiplier must be an integer, got float 1.5"),
    (lambda: DepthwiseConv2D(0), ValueError, "DepthwiseConv2D: kernel_size must be >= 1"),
    (lambda: DepthwiseConv2D(3, padding="full"), ValueError, "DepthwiseConv2D: padding must be"),
    (lambda: DepthwiseConv2D(3, padding_mode="mirror"), ValueError, "DepthwiseConv2D: padding_mode must be one of"),
    (lambda: DepthwiseConv2D(3, activation="mish"), ValueError, "DepthwiseConv2D: unknown activation 'mish'"),
    (lambda: SeparableConv2D(0, 3), ValueError, "SeparableConv2D: out_channels must be an integer >= 1, got 0"),
    (lambda: SeparableConv2D(4, 3, depth_multiplier=True), TypeError, "SeparableConv2D: depth_multiplier must be an"),
    (lambda: SeparableConv2D(4, 3, stride=0), ValueError, "SeparableConv2D: stride must be >= 1"),
    (lambda: SeparableConv2D(4, 3, bias="no"), TypeError, "SeparableConv2D: bias must be True or False"),
    (lambda: SeparableConv2D(4, 3, activation=["relu"]), TypeError, "SeparableConv2D: activation must be a name"),
])
def test_constructors_reject_bad_arguments(make, error, message):
    with pytest.raises(error, match=message):
        make()


@pytest.mark.parametrize("cls, args", [(DepthwiseConv2D, (3,)), (SeparableConv2D, (4, 3))])
def test_bad_inputs_are_refused_naming_the_layer_before_anything_changes(backend, cls, args):
    name = cls.__name__
    layer = cls(*args)
    with pytest.raises(ValueError, match=rf"{name}: expected 4-D input .* got input of shape \(3, 8, 8\)"):
        layer.forward(xpcnn.asarray(_input((3, 8, 8))))
    with pytest.raises(ValueError, match=rf"{name}: kernel \(3, 3\) .* larger than the padded input \(2, 2\)"):
        layer.forward(xpcnn.asarray(_input((1, 3, 2, 2))))
    assert not layer.built and layer.params == {}
    layer.forward(xpcnn.asarray(_input((1, 3, 5, 5))))
    params = dict(layer.params)
    with pytest.raises(ValueError, match=rf"{name}: built for 3 input channels, got input with 4"):
        layer.forward(xpcnn.asarray(_input((1, 4, 5, 5))))
    assert layer.params == params
