"""Dense: numerical gradients, PyTorch oracle (F.linear), device discipline, shapes and errors."""

from __future__ import annotations

import numpy as np
import pytest

import xpcnn
from layer_checks import assert_matches_torch, assert_on_device, check_numerical_gradients, rtol_for
from xpcnn.layers.dense import Dense

# (batch, in_features, out_features, bias)
DENSE_CASES = [
    pytest.param(4, 5, 3, True, id="n4-5to3"),
    pytest.param(1, 3, 6, True, id="batch1"),
    pytest.param(3, 1, 1, True, id="scalar-features"),
    pytest.param(2, 4, 2, False, id="no-bias"),
]


def _input(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape)


@pytest.mark.parametrize("n, fin, fout, bias", DENSE_CASES)
def test_dense_numerical_gradients(backend64, n, fin, fout, bias):
    check_numerical_gradients(Dense(fout, bias=bias), _input((n, fin)))


@pytest.mark.parametrize("dtype_fixture", ["backend", "backend64"])
@pytest.mark.parametrize("n, fin, fout, bias", DENSE_CASES)
def test_dense_matches_torch(request, dtype_fixture, n, fin, fout, bias):
    pytest.importorskip("torch")
    import torch.nn.functional as F

    backend = request.getfixturevalue(dtype_fixture)
    layer = Dense(fout, bias=bias)
    layer.build((fin,))
    if bias:
        layer.params["bias"] = xpcnn.asarray(_input((fout,), seed=3))  # zeros would hide bias mistakes

    def forward(x, weight, bias=None):
        return F.linear(x, weight, bias)

    assert_matches_torch(layer, _input((n, fin)), forward, rtol=rtol_for(backend))


def test_dense_keeps_everything_on_the_device(backend):
    layer = Dense(3)
    y = layer.forward(xpcnn.asarray(_input((2, 4))), training=True)
    dx = layer.backward(backend.xp.ones_like(y))
    for array in (y, dx, *layer.params.values(), *layer.grads.values()):
        assert_on_device(array, backend)
        assert array.dtype == backend.dtype


def test_dense_shapes_params_init_and_repr(backend):
    layer = Dense(10)
    assert layer.build((784,)) == (10,)
    assert tuple(layer.params["weight"].shape) == (10, 784)
    assert tuple(layer.params["bias"].shape) == (10,)
    assert layer.num_params == 7850
    np.testing.assert_array_equal(xpcnn.to_numpy(layer.params["bias"]), np.zeros(10))
    bound = np.sqrt(6.0 / 784)  # He uniform over fan_in = in_features
    weight = xpcnn.to_numpy(layer.params["weight"])
    assert np.abs(weight).max() <= bound and np.abs(weight).max() > 0.9 * bound
    assert repr(layer) == "Dense(out_features=10, bias=True, weight_init='he_uniform')"
    assert "bias" not in Dense(2, bias=False, weight_init="glorot_normal").params


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: Dense(0), "Dense: out_features must be an integer >= 1, got 0"),
        (lambda: Dense(2.0), "Dense: out_features must be an integer, got float 2.0"),
        (lambda: Dense(3, weight_init="zeros"), "Dense: weight_init must be one of"),
    ],
)
def test_dense_constructor_rejects_bad_arguments(make, message):
    with pytest.raises((ValueError, TypeError), match=message):
        make()


def test_dense_rejects_bad_inputs_before_changing_state(backend):
    layer = Dense(3)
    with pytest.raises(ValueError, match=r"Dense: expected 2-D input .* got input of shape \(2, 3, 4\)"):
        layer.forward(xpcnn.asarray(_input((2, 3, 4))))
    assert not layer.built
    layer.forward(xpcnn.asarray(_input((2, 4))))
    weight = layer.params["weight"]
    with pytest.raises(ValueError, match=r"Dense: built for 4 input features, got input with 5 .*\(5,\)"):
        layer.forward(xpcnn.asarray(_input((2, 5))))
    assert layer.params["weight"] is weight
