"""Loss functions and their gradients with respect to the prediction, PyTorch's ``reduction="mean"``.

Each loss returns a 0-d array on the prediction's device (never a Python float: reading it is a host sync);
each ``*_backward`` returns ``d loss / d pred`` with the prediction's shape. Cross-entropy averages over
the batch; binary cross-entropy and MSE average over every element, as ``torch.nn.functional`` does.
Targets must already have the prediction's dtype (``xpcnn.losses`` casts and validates).
"""

from __future__ import annotations

import math
from typing import Any

import array_api_compat

from .activations import log_softmax, sigmoid

__all__ = [
    "PROBABILITY_CLIP",
    "binary_cross_entropy",
    "binary_cross_entropy_backward",
    "cross_entropy",
    "cross_entropy_backward",
    "mse",
    "mse_backward",
]

PROBABILITY_CLIP = 1e-7
"""Probabilities are clipped to [PROBABILITY_CLIP, 1 - PROBABILITY_CLIP] before their logarithm."""


def _class_weights(target: Any, logits: Any) -> Any:
    """Targets as an (N, C) matrix in the logits' dtype: one-hot rows for integer labels (N,)."""
    xp = array_api_compat.array_namespace(target, logits)
    if target.ndim == 2:
        return target
    classes = xp.arange(logits.shape[1], dtype=target.dtype, device=array_api_compat.device(target))
    return xp.astype(xp.expand_dims(target, axis=1) == classes, logits.dtype)


def cross_entropy(pred: Any, target: Any, from_logits: bool = True) -> Any:
    """Mean over the batch of -sum_c target_c * log q_c (F.cross_entropy), q = softmax(pred) or pred itself.

    ``pred (N, C)``: logits, or probabilities with ``from_logits=False`` (clipped to [PROBABILITY_CLIP, 1]
    before the logarithm, as Keras does); ``target`` integer class indices ``(N,)`` or class probabilities
    ``(N, C)``.
    """
    xp = array_api_compat.array_namespace(pred, target)
    weights = _class_weights(target, pred)
    log_q = log_softmax(pred, axis=1) if from_logits else xp.log(xp.clip(pred, PROBABILITY_CLIP, 1.0))
    return -xp.sum(weights * log_q) / pred.shape[0]


def cross_entropy_backward(pred: Any, target: Any, from_logits: bool = True) -> Any:
    """From logits (softmax(pred) * sum_c target_c - target) / N, for indices and soft targets alike; from
    probabilities -target / (N q), q clipped as in the forward (a softmax before it turns this into the
    same gradient as from its logits)."""
    xp = array_api_compat.array_namespace(pred, target)
    weights = _class_weights(target, pred)
    if not from_logits:
        return -weights / (xp.clip(pred, PROBABILITY_CLIP, 1.0) * pred.shape[0])
    probs = xp.exp(log_softmax(pred, axis=1))
    return (probs * xp.sum(weights, axis=1, keepdims=True) - weights) / pred.shape[0]


def binary_cross_entropy(pred: Any, target: Any, from_logits: bool = True) -> Any:
    """Mean of -(t log p + (1 - t) log(1 - p)) over all elements, p = sigmoid(pred) or pred itself.

    From logits it is max(z, 0) - z t + log1p(exp(-|z|)), exact for any z (F.binary_cross_entropy_with_logits);
    from probabilities, p is clipped to [PROBABILITY_CLIP, 1 - PROBABILITY_CLIP] so the log stays finite.
    """
    xp = array_api_compat.array_namespace(pred, target)
    if from_logits:
        losses = xp.maximum(pred, 0.0) - pred * target + xp.log1p(xp.exp(-xp.abs(pred)))
    else:
        p = _clipped(pred)
        losses = -(target * xp.log(p) + (1.0 - target) * xp.log1p(-p))
    return xp.sum(losses) / math.prod(pred.shape)


def binary_cross_entropy_backward(pred: Any, target: Any, from_logits: bool = True) -> Any:
    """(sigmoid(z) - t) / size from logits; (p - t) / (p (1 - p)) / size from probabilities.

    Beyond the clip the gradient is the one at the clip boundary, so a saturated wrong prediction still learns.
    """
    size = math.prod(pred.shape)
    if from_logits:
        return (sigmoid(pred) - target) / size
    p = _clipped(pred)
    return (p - target) / (p * (1.0 - p) * size)


def _clipped(p: Any) -> Any:
    return array_api_compat.array_namespace(p).clip(p, PROBABILITY_CLIP, 1.0 - PROBABILITY_CLIP)


def mse(pred: Any, target: Any) -> Any:
    """Mean of (pred - target)**2 over all elements (F.mse_loss)."""
    xp = array_api_compat.array_namespace(pred, target)
    diff = pred - target
    return xp.sum(diff * diff) / math.prod(pred.shape)


def mse_backward(pred: Any, target: Any) -> Any:
    return (pred - target) * (2.0 / math.prod(pred.shape))
