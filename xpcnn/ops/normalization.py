"""Batch normalisation over every axis but the channel axis 1: (N, C), (N, C, L) or (N, C, H, W).

Numerics follow F.batch_norm: training normalises with the biased batch variance and folds the unbiased one
into the running estimate, ``new = (1 - momentum) * running + momentum * batch``; inference normalises with
the running statistics. Statistics and parameters have shape ``(C,)``. On torch, PyTorch's own batch-norm
kernels run instead (``_native``), tested equal in tests/ops/test_native_kernels.py.
"""

from __future__ import annotations

import math
from typing import Any

import array_api_compat

from . import _native, _strided

__all__ = ["batch_norm", "batch_norm_backward", "batch_norm_inference_backward", "check_training_batch",
           "sync_batch_norm", "sync_batch_norm_backward"]


def _reduced_axes(ndim: int) -> tuple[int, ...]:
    return (0, *range(2, ndim))


def _per_channel(v: Any, ndim: int) -> Any:
    """A ``(C,)`` vector shaped to broadcast against ``ndim``-D input: ``(1, C, 1, ...)``."""
    xp = array_api_compat.array_namespace(v)
    return xp.reshape(v, (1, v.shape[0], *([1] * (ndim - 2))))


def _values_per_channel(shape: tuple[int, ...]) -> int:
    return shape[0] * math.prod(shape[2:])


def check_training_batch(shape: tuple[int, ...], owner: str = "batch_norm") -> None:
    """Raise ValueError when a channel has a single value: its unbiased batch variance would be 0 / 0."""
    if len(shape) >= 2 and _values_per_channel(shape) == 1:
        raise ValueError(
            f"{owner}: training needs more than one value per channel to estimate the batch variance, "
            f"got input of shape {tuple(shape)}"
        )


def _widened(x: Any, like: Any) -> Any:
    """``x`` in the dtype of ``like`` (a parameter or statistic) when that is another floating dtype: under
    mixed precision a half-precision input is normalised in its float32 parameters' dtype, as PyTorch's
    kernels do (a batch's statistics summed in 16 bits would lose too much)."""
    if like is None or x.dtype == like.dtype:
        return x
    return array_api_compat.array_namespace(x).astype(x, like.dtype)


def _narrowed(y: Any, dtype: Any) -> Any:
    return y if y.dtype == dtype else array_api_compat.array_namespace(y).astype(y, dtype)


def _batch_moments(x: Any) -> tuple[Any, Any]:
    """Per-channel mean ``(C,)`` and ``x`` centred on it."""
    xp = array_api_compat.array_namespace(x)
    mean = xp.mean(x, axis=_reduced_axes(x.ndim))
    return mean, x - _per_channel(mean, x.ndim)


def _normalised(x: Any, mean: Any, var: Any, weight: Any, bias: Any, eps: float) -> tuple[Any, Any, Any]:
    """``(y, mean, var)``: ``x`` normalised with the given statistics, or the batch's (two passes: the mean,
    then the mean square of the centred values) where ``mean`` is None."""
    xp = array_api_compat.array_namespace(x)
    if mean is None:
        mean, centered = _batch_moments(x)
        var = xp.mean(centered * centered, axis=_reduced_axes(x.ndim))
    else:
        centered = x - _per_channel(mean, x.ndim)
    y = centered  # a temporary of this op: scaled and shifted in place (JAX rebinds instead)
    scale = 1.0 / xp.sqrt(var + eps)
    y *= _per_channel(scale if weight is None else weight * scale, x.ndim)
    if bias is not None:
        y += _per_channel(bias, x.ndim)
    return y, mean, var


def batch_norm(
    x: Any, weight: Any, bias: Any, running_mean: Any, running_var: Any, training: bool,
    momentum: float = 0.1, eps: float = 1e-5, *, return_saved: bool = False,
) -> tuple[Any, ...]:
    """``(y, running_mean, running_var)``: y = weight * (x - mean) / sqrt(var + eps) + bias.

    In training the statistics come from the batch and the returned running statistics are new arrays;
    otherwise the running statistics normalise and come back unchanged. ``weight``/``bias`` None (no affine
    part) count as ones/zeros; ``running_mean``/``running_var`` None (no running statistics, then
    ``training`` must be True: the batch's are the only ones) come back None. With ``return_saved`` a fourth item
    follows: what ``batch_norm_backward(..., saved=saved)`` reuses for this ``x`` (the batch mean and 1/std
    per channel, as PyTorch saves them; None outside training). An ``x`` in a half dtype with float32
    parameters or statistics (mixed precision) is normalised in float32, and ``y`` comes back in ``x``'s dtype.
    """
    xp = array_api_compat.array_namespace(*(a for a in (x, weight, bias, running_mean, running_var) if a is not None))
    if not training and running_mean is None:
        raise ValueError("batch_norm: without running statistics only the batch's can normalise (training=True)")
    if training:
        check_training_batch(tuple(x.shape))
    native = _native.kernel(xp, "batch_norm")
    if native is not None:
        *result, saved = native(x, weight, bias, running_mean, running_var, training, momentum, eps)
        return (*result, saved) if return_saved else tuple(result)
    saved, out_dtype = None, x.dtype
    x = _widened(x, weight if weight is not None else running_mean)
    stats = None if training else (running_mean, running_var)
    blocked = _strided.batch_norm_blocks(x, weight, bias, eps, stats) if _strided.supports(xp) else None
    if blocked is not None:
        y, mean, var = blocked
    else:
        y, mean, var = _normalised(x, *((None, None) if training else stats), weight, bias, eps)
    if training:
        count = _values_per_channel(tuple(x.shape))
        if running_mean is not None:
            running_mean = running_mean * (1.0 - momentum) + mean * momentum
            running_var = running_var * (1.0 - momentum) + var * (momentum * count / (count - 1))
        if return_saved:
            saved = (mean, 1.0 / xp.sqrt(var + eps))
    y = _narrowed(y, out_dtype)
    return (y, running_mean, running_var, saved) if return_saved else (y, running_mean, running_var)


def _gradients(dy: Any, x: Any, weight: Any, eps: float, saved: Any) -> tuple[Any, Any, Any]:
    """``batch_norm_backward``'s arithmetic, in full-size passes (dweight and dbias computed even without
    ``weight``)."""
    xp = array_api_compat.array_namespace(*(a for a in (dy, x, weight) if a is not None))
    axes, ndim = _reduced_axes(x.ndim), x.ndim
    if saved is not None:
        mean, inv_std = saved
        centered = x - _per_channel(mean, ndim)
    else:
        _, centered = _batch_moments(x)
        inv_std = 1.0 / xp.sqrt(xp.mean(centered * centered, axis=axes) + eps)
    dbias = xp.sum(dy, axis=axes)
    dweight = xp.sum(dy * centered, axis=axes) * inv_std
    count = _values_per_channel(tuple(x.shape))
    k = inv_std if weight is None else weight * inv_std
    dx = dy * _per_channel(k, ndim)
    correction = centered  # a temporary of this op: updated in place (JAX rebinds instead)
    correction *= _per_channel(k * inv_std * dweight / count, ndim)
    correction += _per_channel(k * dbias / count, ndim)
    dx -= correction
    return dx, dweight, dbias


def batch_norm_backward(
    dy: Any, x: Any, weight: Any, eps: float = 1e-5, *, saved: Any = None,
) -> tuple[Any, Any, Any]:
    """Gradients ``(dx, dweight, dbias)`` of training-mode ``batch_norm``: batch statistics from ``saved``
    (what ``batch_norm(..., return_saved=True)`` returned for this ``x``), else recomputed from ``x``.
    ``weight`` None (no affine part): ones, and dweight and dbias come back None.

    With x_hat = (x - mean) / std and k = weight / std per channel:
    dx = k * (dy - mean(dy) - x_hat * mean(dy * x_hat)), written as ``dy * k - (centered * a + b)`` with
    per-channel a, b, so that the full-size passes are few. Half-precision ``dy`` and ``x`` with float32
    ``weight`` or ``saved`` statistics are computed in float32; ``dx`` comes back in ``dy``'s dtype.
    """
    xp = array_api_compat.array_namespace(*(a for a in (dy, x, weight) if a is not None))
    native = _native.kernel(xp, "batch_norm_backward")
    if native is not None:
        return native(dy, x, weight, eps, saved)
    out_dtype = dy.dtype
    like = weight if weight is not None else (saved[0] if saved is not None else None)
    dy, x = _widened(dy, like), _widened(x, like)
    blocked = None
    if saved is not None and _strided.supports(xp):
        blocked = _strided.batch_norm_backward_blocks(dy, x, weight, *saved)
    dx, dweight, dbias = _gradients(dy, x, weight, eps, saved) if blocked is None else blocked
    dx = _narrowed(dx, out_dtype)
    return (dx, None, None) if weight is None else (dx, dweight, dbias)


def batch_norm_inference_backward(
    dy: Any, x: Any, weight: Any, running_mean: Any, running_var: Any, eps: float = 1e-5,
) -> tuple[Any, Any, Any]:
    """Gradients ``(dx, dweight, dbias)`` of inference-mode ``batch_norm``, whose statistics are constants (the
    running ones): dx = dy * weight / sqrt(var + eps), dweight = sum(dy * x_hat), dbias = sum(dy) per channel.
    What a frozen batch norm back-propagates while the network around it trains; ``weight`` None (no affine
    part): ones, and dweight and dbias come back None. Mixed dtypes: as ``batch_norm_backward``."""
    xp = array_api_compat.array_namespace(*(a for a in (dy, x, weight, running_mean, running_var) if a is not None))
    axes, ndim, out_dtype = _reduced_axes(x.ndim), x.ndim, dy.dtype
    dy, x = _widened(dy, running_var), _widened(x, running_var)
    inv_std = 1.0 / xp.sqrt(running_var + eps)
    dx = _narrowed(dy * _per_channel(inv_std if weight is None else weight * inv_std, ndim), out_dtype)
    if weight is None:
        return dx, None, None
    dweight = xp.sum(dy * (x - _per_channel(running_mean, ndim)), axis=axes) * inv_std
    return dx, dweight, xp.sum(dy, axis=axes)


def sync_batch_norm(
    x: Any, weight: Any, bias: Any, running_mean: Any, running_var: Any, momentum: float, eps: float,
    reduce: Any,
) -> tuple[Any, Any, Any, Any]:
    """Training-mode ``batch_norm`` over a batch split between processes: ``reduce`` sums a list of arrays over
    them (``Communicator.allreduce_sum``), so the statistics are those of the whole batch. Returns ``(y,
    running_mean, running_var, saved)``; ``saved`` goes to ``sync_batch_norm_backward``. ``x`` may hold no
    sample (a process with an empty share still takes part in the sums). Mixed dtypes: as ``batch_norm``."""
    xp = array_api_compat.array_namespace(*(a for a in (x, weight, running_mean) if a is not None))
    out_dtype = x.dtype
    x = _widened(x, weight if weight is not None else running_mean)
    axes, ndim = _reduced_axes(x.ndim), x.ndim
    local = xp.asarray([_values_per_channel(tuple(x.shape))], dtype=x.dtype, device=array_api_compat.device(x))
    total, sq, count = reduce([xp.sum(x, axis=axes), xp.sum(x * x, axis=axes), local])
    count = count[0]
    mean = total / count
    var = xp.clip(sq / count - mean * mean, min=0.0)
    if running_mean is not None:
        running_mean = running_mean * (1.0 - momentum) + mean * momentum
        running_var = running_var * (1.0 - momentum) + var * (momentum * count / (count - 1.0))
    inv_std = 1.0 / xp.sqrt(var + eps)
    scale = inv_std if weight is None else weight * inv_std
    y = (x - _per_channel(mean, ndim)) * _per_channel(scale, ndim)
    if bias is not None:
        y += _per_channel(bias, ndim)
    return _narrowed(y, out_dtype), running_mean, running_var, (mean, inv_std, count)


def sync_batch_norm_backward(dy: Any, x: Any, weight: Any, saved: Any, reduce: Any) -> tuple[Any, Any, Any]:
    """Gradients of ``sync_batch_norm``: ``dx`` with the whole batch's sums of ``dy`` and ``dy * x_hat``, and
    this process's share of ``dweight``/``dbias`` (their sum over the processes is the whole gradient).
    Mixed dtypes: as ``batch_norm_backward``."""
    xp = array_api_compat.array_namespace(*(a for a in (dy, x, weight) if a is not None))
    axes, ndim, out_dtype = _reduced_axes(x.ndim), x.ndim, dy.dtype
    mean, inv_std, count = saved
    dy, x = _widened(dy, mean), _widened(x, mean)
    centered = x - _per_channel(mean, ndim)
    dbias = xp.sum(dy, axis=axes)
    dweight = xp.sum(dy * centered, axis=axes) * inv_std
    total_dbias, total_dweight = reduce([dbias, dweight])
    k = inv_std if weight is None else weight * inv_std
    dx = (dy - _per_channel(total_dbias / count, ndim)
          - centered * _per_channel(inv_std * total_dweight / count, ndim)) * _per_channel(k, ndim)
    dx = _narrowed(dx, out_dtype)
    return (dx, None, None) if weight is None else (dx, dweight, dbias)
