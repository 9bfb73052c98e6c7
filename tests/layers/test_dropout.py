"""Dropout, SpatialDropout2D and StochasticDepth: gradients with replayed masks, statistics, identity outside
training, errors."""

from __future__ import annotations

import numpy as np
import pytest

import xpcnn
from conftest import BACKEND
from layer_checks import assert_on_device, check_numerical_gradients, host
from xpcnn.layers.dropout import Dropout, SpatialDropout2D, StochasticDepth


def _input(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape)


@pytest.mark.parametrize(
    "layer, shape",
    [
        pytest.param(Dropout(0.5), (3, 7), id="dropout-2d"),
        pytest.param(Dropout(0.3), (1, 2, 3, 3), id="dropout-nchw-batch1"),
        pytest.param(Dropout(0.0), (2, 4), id="dropout-rate0"),
        pytest.param(SpatialDropout2D(0.5), (3, 4, 2, 3), id="spatial"),
        pytest.param(SpatialDropout2D(0.2), (1, 3, 3, 3), id="spatial-batch1"),
        pytest.param(StochasticDepth(0.5), (6, 2, 3, 3), id="stochastic-depth-row"),
        pytest.param(StochasticDepth(0.3, "batch"), (3, 4), id="stochastic-depth-batch"),
        pytest.param(StochasticDepth(1.0), (2, 3), id="stochastic-depth-p1"),
    ],
)
def test_dropout_numerical_gradients_with_a_fixed_mask(backend64, layer, shape):
    check_numerical_gradients(layer, _input(shape))


@pytest.mark.parametrize("rate", [0.1, 0.5, 0.8])
def test_dropout_keeps_about_one_minus_rate_and_rescales(backend, rate):
    x = xpcnn.asarray(np.ones((200, 250)))
    layer = Dropout(rate)
    y = host(layer.forward(x, training=True))
    kept = y != 0
    assert abs(kept.mean() - (1 - rate)) < 0.01  # 50 000 draws: 5 standard deviations at most
    np.testing.assert_allclose(y[kept], 1 / (1 - rate), rtol=1e-6)
    assert abs(y.mean() - 1.0) < 0.05  # inverted dropout keeps the expectation
    dy = _input((200, 250), seed=1)
    np.testing.assert_allclose(host(layer.backward(xpcnn.asarray(dy))), dy * y, rtol=1e-6, atol=1e-7)


def test_spatial_dropout_drops_whole_channels(backend):
    rate = 0.4
    layer = SpatialDropout2D(rate)
    y = host(layer.forward(xpcnn.asarray(np.ones((60, 50, 3, 4))), training=True))
    per_channel = y.reshape(60, 50, -1)
    assert np.all(per_channel == per_channel[:, :, :1]), "a channel was partly dropped"
    kept = per_channel[:, :, 0] != 0
    assert abs(kept.mean() - (1 - rate)) < 0.05  # 3 000 channel draws
    np.testing.assert_allclose(per_channel[kept], 1 / (1 - rate), rtol=1e-6)
    dy = _input(y.shape, seed=1)
    np.testing.assert_allclose(host(layer.backward(xpcnn.asarray(dy))), dy * y, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("mode", ["row", "batch"])
def test_stochastic_depth_drops_whole_samples_like_torchvision(backend, mode):
    """torchvision.ops.stochastic_depth: "row" keeps or drops each sample whole, "batch" the whole batch; the
    kept ones scaled by 1 / (1 - p)."""
    p, x = 0.3, np.ones((400, 3, 2, 2))
    layer = StochasticDepth(p, mode)
    outputs = [host(layer.forward(xpcnn.asarray(x), training=True)) for _ in range(1 if mode == "row" else 60)]
    for y in outputs:
        per_sample = y.reshape(len(y), -1)
        assert np.all(per_sample == per_sample[:, :1]), "a sample was partly dropped"
        assert set(np.unique(per_sample)) <= {0.0, np.float64(np.float32(1 / (1 - p)))}
        if mode == "batch":
            assert np.all(per_sample == per_sample[0, 0]), "batch mode: one draw for the batch"
    kept = np.concatenate([y.reshape(len(y), -1)[:, 0] for y in outputs]) != 0
    draws = len(x) if mode == "row" else len(outputs)
    assert abs(kept.mean() - (1 - p)) < 5 * np.sqrt(p * (1 - p) / draws)
    dy = _input(x.shape, seed=1)
    np.testing.assert_allclose(host(layer.backward(xpcnn.asarray(dy))), dy * outputs[-1], rtol=1e-6, atol=1e-7)


def test_stochastic_depth_with_p1_drops_everything_and_p0_nothing(backend):
    x = xpcnn.asarray(_input((4, 3)))
    layer = StochasticDepth(1.0)
    np.testing.assert_array_equal(host(layer.forward(x, training=True)), np.zeros((4, 3)))
    np.testing.assert_array_equal(host(layer.backward(x)), np.zeros((4, 3)))
    np.testing.assert_array_equal(host(StochasticDepth(0.0).forward(x, training=True)), host(x))


@pytest.mark.parametrize("layer", [Dropout(0.5), SpatialDropout2D(0.5), Dropout(0.0), StochasticDepth(0.5),
                                   StochasticDepth(1.0, "batch")])
def test_identity_outside_training(backend, layer):
    x = xpcnn.asarray(_input((2, 3, 4, 4)))
    state = xpcnn.random.get_state()
    np.testing.assert_array_equal(host(layer.forward(x)), host(x))
    assert xpcnn.random.get_state() == state, "an inference forward drew random numbers"
    np.testing.assert_array_equal(host(Dropout(0.0).forward(x, training=True)), host(x))


def test_masks_are_reproducible_and_fresh_each_step(backend):
    x = xpcnn.asarray(np.ones((4, 64)))
    xpcnn.manual_seed(3)
    first, second = (host(Dropout(0.5).forward(x, training=True)) for _ in range(2))
    xpcnn.manual_seed(3)
    np.testing.assert_array_equal(host(Dropout(0.5).forward(x, training=True)), first)
    assert not np.array_equal(first, second)


@pytest.mark.parametrize("layer", [Dropout(0.25), SpatialDropout2D(0.25), StochasticDepth(0.25)])
def test_dropout_keeps_everything_on_the_device(backend, layer):
    y = layer.forward(xpcnn.asarray(_input((2, 3, 4, 4))), training=True)
    dx = layer.backward(backend.xp.ones_like(y))
    for array in (y, dx):
        assert_on_device(array, backend)
        assert array.dtype == backend.dtype
    assert layer.params == {} and layer.build((3, 4, 4)) == (3, 4, 4)


@pytest.mark.parametrize(
    "make, error, message",
    [
        (lambda: Dropout(1.0), ValueError, r"Dropout: rate must lie in \[0, 1\), got 1.0"),
        (lambda: Dropout(-0.1), ValueError, r"rate must lie in \[0, 1\), got -0.1"),
        (lambda: SpatialDropout2D(1.5), ValueError, r"SpatialDropout2D: rate must lie in \[0, 1\)"),
        (lambda: Dropout("0.5"), TypeError, r"Dropout: rate must be a number in \[0, 1\), got '0.5'"),
        (lambda: Dropout(True), TypeError, "rate must be a number"),
        (lambda: StochasticDepth(1.5), ValueError, r"StochasticDepth: p must lie in \[0, 1\], got 1.5"),
        (lambda: StochasticDepth(-0.1), ValueError, r"StochasticDepth: p must lie in \[0, 1\], got -0.1"),
        (lambda: StochasticDepth(None), TypeError, r"StochasticDepth: p must be a number in \[0, 1\], got None"),
        (lambda: StochasticDepth(0.2, "sample"), ValueError,
         "StochasticDepth: mode must be 'row' or 'batch', got 'sample'"),
    ],
)
def test_constructor_rejects_bad_rates(make, error, message):
    with pytest.raises(error, match=message):
        make()


def test_repr_and_input_errors(backend):
    assert repr(Dropout(0.5)) == "Dropout(rate=0.5)"
    assert repr(SpatialDropout2D(0.1)) == "SpatialDropout2D(rate=0.1)"
    assert repr(StochasticDepth(0.2)) == "StochasticDepth(p=0.2, mode='row')" and StochasticDepth(0.2).p == 0.2
    rebuilt = StochasticDepth(**StochasticDepth(0.1, "batch").get_config())
    assert (rebuilt.p, rebuilt.mode) == (0.1, "batch")
    layer = SpatialDropout2D(0.5)
    with pytest.raises(ValueError, match=r"SpatialDropout2D: expected 4-D input .* got input of shape \(2, 3\)"):
        layer.forward(xpcnn.asarray(_input((2, 3))), training=True)
    assert not layer.built


@pytest.mark.skipif(BACKEND != "jax", reason="jax.jit rejects any host sync: the check needs JAX")
@pytest.mark.parametrize("cls", [Dropout, SpatialDropout2D, StochasticDepth])
def test_dropout_traces_under_jit_without_host_syncs(backend, cls):
    import jax

    def step(x):
        layer = cls(0.5)
        y = layer.forward(x, training=True)
        return y, layer.backward(x)

    y, dx = jax.jit(step)(xpcnn.asarray(np.ones((2, 3, 2, 2))))
    np.testing.assert_array_equal(host(y), host(dx))
    assert set(np.unique(host(y))) <= {0.0, 2.0}
