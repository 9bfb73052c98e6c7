"""Op behaviours that mutation testing (``nox -s mutation``) found unchecked: the public defaults of the stateless
functions, the softmax shift taken per row, cross-entropy's documented clip and soft targets whose rows do not
sum to one, dense's shape errors and its bias-less backward."""

from __future__ import annotations

import re
import numpy as np
import pytest

import xpcnn
from layer_checks import host
from xpcnn import ops

X = np.array([[-2.0, -0.5, 0.0, 0.5, 3.0], [1.0, -1.0, 2.0, -3.0, 0.25]])


def _arr(values) -> object:
    return xpcnn.asarray(np.asarray(values, dtype=np.float32))


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def test_activation_defaults_are_pytorchs(backend):
    """``negative_slope=0.01``, ``alpha=1`` and the class axis 1, as ``torch.nn.functional``."""
    x, dy = _arr(X), _arr(np.ones_like(X))
    assert np.allclose(host(ops.leaky_relu(x)), np.where(X > 0, X, 0.01 * X), rtol=1e-6)
    assert np.allclose(host(ops.leaky_relu_backward(dy, x)), np.where(X > 0, 1.0, 0.01), rtol=1e-6)
    assert np.allclose(host(ops.elu(x)), np.where(X > 0, X, np.expm1(X)), rtol=1e-6)
    assert np.allclose(host(ops.elu_backward(dy, x)), np.where(X > 0, 1.0, np.exp(X)), rtol=1e-6)
    assert np.allclose(host(ops.softmax(x)), _softmax(X), rtol=1e-6)
    assert np.allclose(host(ops.log_softmax(x)), np.log(_softmax(X)), rtol=1e-6)
    y = ops.softmax(x)
    g = _arr(np.arange(X.size, dtype=np.float64).reshape(X.shape))
    assert np.allclose(host(ops.softmax_backward(g, y)), host(ops.softmax_backward(g, y, axis=1)), rtol=1e-6)


def test_softmax_shifts_each_row_by_its_own_maximum(backend):
    """Rows thousands apart stay finite: a shift by the batch's maximum would underflow the lower row to 0/0."""
    z = np.array([[1000.0, 999.0, 998.0], [-1000.0, -1001.0, -1003.0]])
    expected = _softmax(z - z.max(axis=1, keepdims=True))
    np.testing.assert_allclose(host(ops.softmax(_arr(z))), expected, rtol=1e-5)
    np.testing.assert_allclose(host(ops.log_softmax(_arr(z))), np.log(expected), rtol=1e-5)


def test_loss_op_defaults_take_logits(backend):
    rng = np.random.default_rng(0)
    logits, labels = _arr(3 * rng.standard_normal((4, 3))), xpcnn.asarray(np.array([0, 2, 1, 2]))
    scores, targets = _arr(3 * rng.standard_normal((4, 2))), _arr(rng.uniform(0, 1, (4, 2)))
    for default, explicit in [
        (ops.cross_entropy(logits, labels), ops.cross_entropy(logits, labels, True)),
        (ops.cross_entropy_backward(logits, labels), ops.cross_entropy_backward(logits, labels, True)),
        (ops.binary_cross_entropy(scores, targets), ops.binary_cross_entropy(scores, targets, True)),
        (ops.binary_cross_entropy_backward(scores, targets), ops.binary_cross_entropy_backward(scores, targets, True)),
    ]:
        np.testing.assert_array_equal(host(default), host(explicit))


def test_cross_entropy_gradient_for_soft_targets_that_do_not_sum_to_one(backend):
    """d/dz of -sum_c t_c log softmax(z)_c is softmax(z) * sum_c t_c - t: label-smoothed or multi-hot rows
    need the row sum, which one-hot rows hide."""
    z = np.array([[0.5, -1.0, 2.0], [1.0, 0.0, -0.5]])
    t = np.array([[0.5, 1.0, 0.0], [2.0, 0.0, 0.25]])

    def loss(zz: np.ndarray) -> float:
        return float(-(t * np.log(_softmax(zz))).sum() / zz.shape[0])

    eps = 1e-6
    numeric = np.zeros_like(z)
    for i in np.ndindex(z.shape):
        step = np.zeros_like(z)
        step[i] = eps
        numeric[i] = (loss(z + step) - loss(z - step)) / (2 * eps)
    np.testing.assert_allclose(float(host(ops.cross_entropy(_arr(z), _arr(t)))), loss(z), rtol=1e-5)
    np.testing.assert_allclose(host(ops.cross_entropy_backward(_arr(z), _arr(t))), numeric, rtol=1e-4, atol=1e-6)


def test_cross_entropy_from_probabilities_clips_to_the_documented_range(backend):
    """Probabilities are clipped to [PROBABILITY_CLIP, 1] before the logarithm, in the loss and its gradient."""
    p = np.array([[0.0, 0.5, 1.5], [0.25, 0.25, 2.0]])
    t = np.array([[0.5, 0.0, 0.5], [0.0, 0.5, 0.5]])
    clipped = np.clip(p, np.float32(ops.losses.PROBABILITY_CLIP), 1.0)
    value = ops.cross_entropy(_arr(p), _arr(t), from_logits=False)
    grad = ops.cross_entropy_backward(_arr(p), _arr(t), from_logits=False)
    np.testing.assert_allclose(float(host(value)), -(t * np.log(clipped)).sum() / 2, rtol=1e-6)
    np.testing.assert_allclose(host(grad), -t / (clipped * 2), rtol=1e-6)


@pytest.mark.parametrize(("x_shape", "w_shape"), [((2, 3), (4, 3, 1)), ((2, 3, 4), (5, 3)), ((2, 3), (4, 5))])
def test_dense_refuses_inputs_that_do_not_fit(backend, x_shape, w_shape):
    message = f"dense: input (N, in) and weight (out, in) must agree, got input {x_shape} and weight {w_shape}"
    with pytest.raises(ValueError, match=re.escape(message)):
        ops.dense(_arr(np.ones(x_shape)), _arr(np.ones(w_shape)))


def test_dense_backward_gives_a_bias_gradient_unless_told_there_is_none(backend):
    rng = np.random.default_rng(1)
    dy, x, w = rng.standard_normal((3, 4)), rng.standard_normal((3, 2)), rng.standard_normal((4, 2))
    dx, dw, db = ops.dense_backward(_arr(dy), _arr(x), _arr(w))
    np.testing.assert_allclose(host(dx), dy @ w, rtol=1e-5)
    np.testing.assert_allclose(host(dw), dy.T @ x, rtol=1e-5)
    np.testing.assert_allclose(host(db), dy.sum(axis=0), rtol=1e-5)
    assert ops.dense_backward(_arr(dy), _arr(x), _arr(w), bias=False)[2] is None
