"""Fully connected (affine) map, PyTorch layout: ``y = x @ weight.T + bias``, weight ``(out, in)``."""

from __future__ import annotations

from typing import Any

import array_api_compat

__all__ = ["dense", "dense_backward"]


def dense(x: Any, weight: Any, bias: Any = None) -> Any:
    """``x (N, in)`` times ``weight (out, in)`` transposed, plus ``bias (out,)`` -> ``(N, out)`` (F.linear)."""
    if x.ndim != 2 or weight.ndim != 2 or x.shape[1] != weight.shape[1]:
        raise ValueError(
            f"dense: input (N, in) and weight (out, in) must agree, got input {tuple(x.shape)} "
            f"and weight {tuple(weight.shape)}"
        )
    xp = array_api_compat.array_namespace(x, weight)
    y = xp.matmul(x, xp.matrix_transpose(weight))
    return y if bias is None else y + bias


def dense_backward(dy: Any, x: Any, weight: Any, bias: bool = True) -> tuple[Any, Any, Any]:
    """Gradients ``(dx (N, in), dweight (out, in), dbias (out,))`` for ``dy (N, out)``; dbias None without bias."""
    xp = array_api_compat.array_namespace(dy, x, weight)
    dx = xp.matmul(dy, weight)
    dw = xp.matmul(xp.matrix_transpose(dy), x)
    return dx, dw, (xp.sum(dy, axis=0) if bias else None)
