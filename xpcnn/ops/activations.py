"""Elementwise activations and softmax, each with its backward.

A backward takes whatever is cheapest to keep: the output ``y`` where the derivative is a function of it
(ReLU, sigmoid, tanh, softmax), else the input ``x``. Derivatives at kinks follow PyTorch: ReLU'(0) = 0,
LeakyReLU'(0) = negative_slope, ELU'(0) = alpha. NaN inputs stay NaN.
"""

from __future__ import annotations

from typing import Any

import array_api_compat

from ._select import keep_where_positive

__all__ = [
    "elu",
    "elu_backward",
    "leaky_relu",
    "leaky_relu_backward",
    "log_softmax",
    "relu",
    "relu_backward",
    "sigmoid",
    "sigmoid_backward",
    "softmax",
    "softmax_backward",
    "tanh",
    "tanh_backward",
]


def relu(x: Any) -> Any:
    """max(x, 0): one elementwise ``maximum`` (NaN propagates), no mask."""
    xp = array_api_compat.array_namespace(x)
    return xp.maximum(x, 0.0)


def relu_backward(dy: Any, y: Any) -> Any:
    """dy where the output ``y`` is positive, else 0 (branch-free and cache-blocked on NumPy, see ``_select``)."""
    return keep_where_positive(y, dy)


def leaky_relu(x: Any, negative_slope: float = 0.01) -> Any:
    """x for x > 0, negative_slope * x otherwise."""
    xp = array_api_compat.array_namespace(x)
    return xp.where(x > 0, x, x * negative_slope)


def leaky_relu_backward(dy: Any, x: Any, negative_slope: float = 0.01) -> Any:
    xp = array_api_compat.array_namespace(dy, x)
    return xp.where(x > 0, dy, dy * negative_slope)


def elu(x: Any, alpha: float = 1.0) -> Any:
    """x for x > 0, alpha * (exp(x) - 1) otherwise (expm1 of min(x, 0), so large x never overflows)."""
    xp = array_api_compat.array_namespace(x)
    return xp.where(x > 0, x, xp.expm1(xp.minimum(x, 0.0)) * alpha)


def elu_backward(dy: Any, x: Any, alpha: float = 1.0) -> Any:
    xp = array_api_compat.array_namespace(dy, x)
    return xp.where(x > 0, dy, dy * (xp.exp(xp.minimum(x, 0.0)) * alpha))


def sigmoid(x: Any) -> Any:
    """1 / (1 + exp(-x)), written with exp(-|x|) so that no branch overflows."""
    xp = array_api_compat.array_namespace(x)
    e = xp.exp(-xp.abs(x))
    s = 1.0 / (1.0 + e)
    return xp.where(x >= 0, s, e * s)


def sigmoid_backward(dy: Any, y: Any) -> Any:
    return dy * y * (1.0 - y)


def tanh(x: Any) -> Any:
    return array_api_compat.array_namespace(x).tanh(x)


def tanh_backward(dy: Any, y: Any) -> Any:
    return dy * (1.0 - y * y)


def _shifted(x: Any, axis: int) -> Any:
    """x minus its maximum along ``axis``: the largest exponent becomes exp(0)."""
    xp = array_api_compat.array_namespace(x)
    return x - xp.max(x, axis=axis, keepdims=True)


def softmax(x: Any, axis: int = 1) -> Any:
    """exp(x) normalised to sum 1 along ``axis``."""
    xp = array_api_compat.array_namespace(x)
    e = xp.exp(_shifted(x, axis))
    return e / xp.sum(e, axis=axis, keepdims=True)


def softmax_backward(dy: Any, y: Any, axis: int = 1) -> Any:
    """y * (dy - <dy, y>) along ``axis``: the Jacobian-vector product without forming the Jacobian."""
    xp = array_api_compat.array_namespace(dy, y)
    return y * (dy - xp.sum(dy * y, axis=axis, keepdims=True))


def log_softmax(x: Any, axis: int = 1) -> Any:
    """x - logsumexp(x) along ``axis``, stable for any logits."""
    xp = array_api_compat.array_namespace(x)
    shifted = _shifted(x, axis)
    return shifted - xp.log(xp.sum(xp.exp(shifted), axis=axis, keepdims=True))
