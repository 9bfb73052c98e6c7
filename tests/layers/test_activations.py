"""Activation layers: numerical gradients, PyTorch oracle, kinks, stability, device discipline, errors."""

from __future__ import annotations

import numpy as np
import pytest

import xpcnn
from layer_checks import assert_matches_torch, assert_on_device, check_numerical_gradients, host, rtol_for
from xpcnn.layers.activations import ELU, LeakyReLU, ReLU, Sigmoid, Softmax, Tanh


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
]
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
    assert_matches_torch(cls(**kwargs), _input(shape), forward, rtol=rtol_for(backend))


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
    np.testing.assert_allclose(dx, tx.grad.numpy(), rtol=1e-12, atol=1e-15)


def test_extreme_inputs_stay_finite(backend):
    x = xpcnn.asarray(np.array([[-1e4, -100.0, 0.0, 100.0, 1e4]]))
    for layer in (Sigmoid(), Tanh(), ELU(), Softmax(), LeakyReLU()):
        y = host(layer.forward(x))
        assert np.all(np.isfinite(y)), f"{layer!r} gave {y}"
    np.testing.assert_allclose(host(Sigmoid().forward(x)), [[0, 0, 0.5, 1, 1]], atol=1e-30)
    np.testing.assert_allclose(host(Softmax().forward(x)), [[0, 0, 0, 0, 1]], atol=1e-30)


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


@pytest.mark.parametrize(
    "make, error, message",
    [
        (lambda: LeakyReLU("0.1"), TypeError, "LeakyReLU: negative_slope must be a real number"),
        (lambda: ELU(alpha=None), TypeError, "ELU: alpha must be a real number"),
        (lambda: Softmax(axis=0), ValueError, "Softmax: axis must be a non-zero int .*batch axis"),
        (lambda: Softmax(axis=1.0), ValueError, "Softmax: axis must be a non-zero int"),
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


@pytest.mark.parametrize("activation", ["relu", "leaky_relu", "elu", "sigmoid", "tanh", "softmax"])
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


def test_unknown_activation_names_the_choices(backend):
    from xpcnn.layers import Dense

    with pytest.raises(ValueError, match=r"Dense: unknown activation 'swish'; use one of \['elu', 'leaky_relu'"):
        Dense(3, activation="swish")
