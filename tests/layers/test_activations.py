"""Activation layers: numerical gradients, PyTorch oracle, kinks, stability, device discipline, errors."""

from __future__ import annotations

import numpy as np
import pytest

import xpcnn
from layer_checks import assert_matches_torch, assert_on_device, check_numerical_gradients, host, rtol_for
from xpcnn.layers.activations import (
    ELU, GELU, Hardsigmoid, Hardswish, LeakyReLU, ReLU, ReLU6, Sigmoid, SiLU, Softmax, Tanh,
)


def _torch_reference(name: str, **kwargs):
    import torch
    import torch.nn.functional as F

    return {
        "ReLU": F.relu,
        "LeakyReLU": lambda x: F.leaky_relu(x, kwargs.get("negative_slope", 0.01)),
        "ELU": lambda x: F.elu(x, kwargs.get("alpha", 1.0)),
        "Sigmoid": torch.sigmoid,
        "Tanh": torch.tanh,
        "Softmax": lambda x: F.softmax(x, dim=kwargs.get("axis", 1)),
        "ReLU6": F.relu6,
        "Hardsigmoid": F.hardsigmoid,
        "Hardswish": F.hardswish,
        "SiLU": F.silu,
        "GELU": lambda x: F.gelu(x, approximate=kwargs.get("approximate", "none")),
    }[name]


# (layer class, constructor kwargs)
ACTIVATIONS = [
    pytest.param(ReLU, {}, id="relu"),
    pytest.param(LeakyReLU, {}, id="leaky-relu"),
    pytest.param(LeakyReLU, {"negative_slope": 0.2}, id="leaky-relu-0.2"),
    pytest.param(ELU, {}, id="elu"),
    pytest.param(ELU, {"alpha": 0.5}, id="elu-0.5"),
    pytest.param(Sigmoid, {}, id="sigmoid"),
    pytest.param(Tanh, {}, id="tanh"),
    pytest.param(Softmax, {}, id="softmax"),
    pytest.param(Softmax, {"axis": -1}, id="softmax-last-axis"),
    pytest.param(ReLU6, {}, id="relu6"),
    pytest.param(Hardsigmoid, {}, id="hardsigmoid"),
    pytest.param(Hardswish, {}, id="hardswish"),
    pytest.param(SiLU, {}, id="silu"),
    pytest.param(GELU, {}, id="gelu"),
    pytest.param(GELU, {"approximate": "tanh"}, id="gelu-tanh"),
]
#: the activations with kinks away from 0, at the points where torch's derivative changes
KINKS = {ReLU6: [0.0, 6.0], Hardsigmoid: [-3.0, 3.0], Hardswish: [-3.0, 3.0]}
#: torch's float64 hardsigmoid backward multiplies by float32's 1/6 (0.1666666716): 3e-8 relative off
FLOAT64_RTOL = {Hardsigmoid: 1e-7}
SHAPES = [pytest.param((1, 5), id="batch1"), pytest.param((2, 3, 4, 3), id="nchw")]


def _input(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    return 2.0 * np.random.default_rng(seed).standard_normal(shape)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("cls, kwargs", ACTIVATIONS)
def test_activation_numerical_gradients(backend64, cls, kwargs, shape):
    check_numerical_gradients(cls(**kwargs), _input(shape))


@pytest.mark.parametrize("dtype_fixture", ["backend", "backend64"])
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("cls, kwargs", ACTIVATIONS)
def test_activation_matches_torch(request, dtype_fixture, cls, kwargs, shape):
    pytest.importorskip("torch")
    backend = request.getfixturevalue(dtype_fixture)
    forward = _torch_reference(cls.__name__, **kwargs)
    assert_matches_torch(cls(**kwargs), _input(shape), forward, rtol=max(rtol_for(backend), FLOAT64_RTOL.get(cls, 0.0)))


@pytest.mark.parametrize("cls, kwargs", ACTIVATIONS)
def test_derivatives_at_zero_follow_torch(backend64, cls, kwargs):
    torch = pytest.importorskip("torch")
    x = np.array([[0.0, -0.0, 1.0, -1.0]])
    layer = cls(**kwargs)
    layer.forward(xpcnn.asarray(x), training=True)
    dy = np.array([[1.0, 2.0, 3.0, 4.0]])
    dx = host(layer.backward(xpcnn.asarray(dy)))
    tx = torch.tensor(x, requires_grad=True)
    _torch_reference(cls.__name__, **kwargs)(tx).backward(torch.tensor(dy))
    rtol = FLOAT64_RTOL.get(cls, 1e-12)
    np.testing.assert_allclose(dx, tx.grad.numpy(), rtol=rtol, atol=1e-15)


def _wide_input(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    """Values spread over [-8, 8]: every linear piece of ReLU6, Hardsigmoid and Hardswish is hit."""
    return np.random.default_rng(seed).uniform(-8.0, 8.0, shape)


@pytest.mark.parametrize("cls", list(KINKS))
def test_piecewise_activations_over_all_their_pieces(backend64, cls):
    x = _wide_input((4, 9))
    x = x[np.abs(x[..., None] - np.array(KINKS[cls])).min(axis=-1) > 1e-3].reshape(2, -1)  # no kink within eps
    check_numerical_gradients(cls(), x)
    pytest.importorskip("torch")
    assert_matches_torch(cls(), x, _torch_reference(cls.__name__), rtol=FLOAT64_RTOL.get(cls, 1e-12))


@pytest.mark.parametrize("cls, kwargs", [p for p in ACTIVATIONS if p.values[0] in KINKS or p.values[0] in (SiLU, GELU)])
def test_derivatives_at_the_kinks_follow_torch(backend64, cls, kwargs):
    torch = pytest.importorskip("torch")
    x = np.array([[-6.0, -3.0, -0.0, 0.0, 3.0, 6.0, -7.0, 7.0, np.nan]])
    layer = cls(**kwargs)
    y = host(layer.forward(xpcnn.asarray(x), training=True))
    dy = np.arange(1.0, 1.0 + x.size).reshape(x.shape)
    dx = host(layer.backward(xpcnn.asarray(dy)))
    tx = torch.tensor(x, requires_grad=True)
    ty = _torch_reference(cls.__name__, **kwargs)(tx)
    ty.backward(torch.tensor(dy))
    np.testing.assert_allclose(y, ty.detach().numpy(), rtol=1e-14, atol=1e-15)
    rtol = FLOAT64_RTOL.get(cls, 1e-14)  # atol: 1 - tanh^2 near saturation is a difference of nearly equal values
    np.testing.assert_allclose(dx[:, :-1], tx.grad.numpy()[:, :-1], rtol=rtol, atol=max(rtol, 1e-12))
    assert np.isnan(y[0, -1]), "NaN in, NaN out"


def test_extreme_inputs_stay_finite(backend):
    x = xpcnn.asarray(np.array([[-1e4, -100.0, 0.0, 100.0, 1e4]]))
    for layer in (Sigmoid(), Tanh(), ELU(), Softmax(), LeakyReLU(), ReLU6(), Hardsigmoid(), Hardswish(), SiLU(),
                  GELU(), GELU("tanh")):
        y = host(layer.forward(x))
        assert np.all(np.isfinite(y)), f"{layer!r} gave {y}"
    np.testing.assert_allclose(host(Sigmoid().forward(x)), [[0, 0, 0.5, 1, 1]], atol=1e-30)
    np.testing.assert_allclose(host(Softmax().forward(x)), [[0, 0, 0, 0, 1]], atol=1e-30)
    for layer in (SiLU(), GELU(), GELU("tanh"), Hardswish()):  # x * (a gate in [0, 1]): 0 far left, x far right
        np.testing.assert_allclose(host(layer.forward(x)), [[0, 0, 0, 100, 1e4]], atol=1e-30)


def test_relu_propagates_nan(backend):
    y = host(ReLU().forward(xpcnn.asarray(np.array([[np.nan, -1.0, 2.0]]))))
    assert np.isnan(y[0, 0]) and y[0, 1] == 0.0 and y[0, 2] == 2.0


@pytest.mark.parametrize("cls, kwargs", ACTIVATIONS)
def test_activations_keep_everything_on_the_device(backend, cls, kwargs):
    layer = cls(**kwargs)
    y = layer.forward(xpcnn.asarray(_input((2, 3))), training=True)
    dx = layer.backward(backend.xp.ones_like(y))
    for array in (y, dx):
        assert_on_device(array, backend)
        assert array.dtype == backend.dtype
    assert layer.params == {} and layer.num_params == 0
    assert layer.build((3, 4)) == (3, 4)


def test_repr_and_config():
    assert repr(ReLU()) == "ReLU()"
    assert repr(LeakyReLU(0.1)) == "LeakyReLU(negative_slope=0.1)"
    assert repr(ELU(alpha=2)) == "ELU(alpha=2.0)"
    assert repr(Softmax(axis=-1)) == "Softmax(axis=-1)"
    assert repr(GELU()) == "GELU()" and GELU().get_config() == {}
    assert repr(GELU("tanh")) == "GELU(approximate='tanh')"
    assert GELU(**GELU("tanh").get_config()).approximate == "tanh"
    assert repr(Hardswish()) == "Hardswish()" and repr(ReLU6()) == "ReLU6()"


@pytest.mark.parametrize(
    "make, error, message",
    [
        (lambda: LeakyReLU("0.1"), TypeError, "LeakyReLU: negative_slope must be a real number"),
        (lambda: ELU(alpha=None), TypeError, "ELU: alpha must be a real number"),
        (lambda: Softmax(axis=0), ValueError, "Softmax: axis must be a non-zero int .*batch axis"),
        (lambda: Softmax(axis=1.0), ValueError, "Softmax: axis must be a non-zero int"),
        (lambda: GELU("exact"), ValueError, "GELU: approximate must be 'none' or 'tanh', got 'exact'"),
        (lambda: GELU(approximate=None), ValueError, "GELU: approximate must be 'none' or 'tanh', got None"),
    ],
)
def test_constructor_rejects_bad_arguments(make, error, message):
    with pytest.raises(error, match=message):
        make()


def test_softmax_rejects_an_axis_the_input_lacks(backend):
    layer = Softmax(axis=2)
    with pytest.raises(ValueError, match=r"Softmax: axis 2 is not a non-batch axis of 2-D input .*\(3,\)"):
        layer.forward(xpcnn.asarray(_input((2, 3))))
    assert not layer.built
    with pytest.raises(ValueError, match="axis -1 is not a non-batch axis of 1-D input"):
        Softmax(axis=-1).forward(xpcnn.asarray(_input((4,))))


def test_backward_needs_a_training_forward(backend):
    layer = ReLU()
    layer.forward(xpcnn.asarray(_input((2, 3))))
    with pytest.raises(RuntimeError, match=r"ReLU: backward\(\) needs a forward\(x, training=True\) first"):
        layer.backward(xpcnn.asarray(np.ones((2, 3))))


@pytest.mark.parametrize("activation", ["relu", "leaky_relu", "elu", "sigmoid", "tanh", "softmax", "relu6",
                                        "hard_sigmoid", "hard_swish", "silu", "gelu"])
def test_activation_argument_equals_the_layer_after_it(backend64, activation):
    """``Dense(..., activation=a)`` and ``Conv2D(..., activation=a)`` give the values and gradients of the
    plain layer followed by the activation layer; the name is in the config."""
    from xpcnn.layers import Conv2D, Dense
    from xpcnn.layers.activations import ACTIVATIONS

    rng = np.random.default_rng(4)
    for make, x in ((lambda a: Dense(5, activation=a), rng.standard_normal((3, 4))),
                    (lambda a: Conv2D(3, 3, padding=1, activation=a), rng.standard_normal((2, 2, 4, 4)))):
        fused, plain, after = make(activation), make(None), ACTIVATIONS[activation]()
        y = fused.forward(xpcnn.asarray(x), training=True)
        plain.build(tuple(x.shape[1:]))
        plain.params = dict(fused.params)
        y_plain = after.forward(plain.forward(xpcnn.asarray(x), training=True), training=True)
        dy = xpcnn.asarray(rng.standard_normal(tuple(y.shape)))
        np.testing.assert_array_equal(host(y), host(y_plain))
        np.testing.assert_array_equal(host(fused.backward(dy)), host(plain.backward(after.backward(dy))))
        for key in fused.grads:
            np.testing.assert_array_equal(host(fused.grads[key]), host(plain.grads[key]))
        assert fused.get_config()["activation"] == activation and "activation" not in plain.get_config()
        assert type(fused)(**fused.get_config()).activation == activation


@pytest.mark.parametrize("alias, canonical, cls", [
    ("swish", "silu", SiLU), ("hardswish", "hard_swish", Hardswish), ("hard_silu", "hard_swish", Hardswish),
    ("hardsigmoid", "hard_sigmoid", Hardsigmoid),
])
def test_keras_and_torch_spellings_are_saved_under_one_name(backend, alias, canonical, cls):
    from xpcnn.layers import Conv2D, Dense

    for layer in (Dense(3, activation=alias), Conv2D(2, 3, activation=alias)):
        assert layer.activation == canonical and layer.get_config()["activation"] == canonical
        assert type(layer._activation) is cls
        assert type(layer)(**layer.get_config()).get_config() == layer.get_config()


def test_unknown_activation_names_the_choices(backend):
    from xpcnn.layers import Conv2D, Dense

    with pytest.raises(ValueError, match=r"Dense: unknown activation 'mish'; use one of \['elu', 'gelu', 'hard_sigmoid'"
                                         r".*\(or hard_silu, hardsigmoid, hardswish, swish\) or None"):
        Dense(3, activation="mish")
    with pytest.raises(TypeError, match=r"Conv2D: activation must be a name such as 'relu', or None; got \['relu'\]"):
        Conv2D(3, 3, activation=["relu"])
