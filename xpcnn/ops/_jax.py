"""JAX's own kernels: the convolutions of ``conv.py`` (``lax.conv_general_dilated`` and its VJP), and ``erf``.

Each function takes the geometry the generic op resolved (strides, pads as (top, bottom, left, right),
dilation, groups) and is compiled once per shape with ``jax.jit``, so an eager call runs one XLA program and
a call inside a compiled step is inlined. Gradients come from ``jax.vjp`` of the forward: inside the jit XLA
drops the forward that the VJP would recompute, and the input gradient too where it is not returned.
``precision=HIGHEST`` keeps float32 convolutions in float32 on GPUs (no TF32), as every other path computes.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax

__all__ = ["conv2d", "conv2d_backward", "conv2d_transpose", "conv2d_transpose_backward", "erf"]

Pair = tuple[int, int]
Pads = tuple[int, int, int, int]
_GEOMETRY = ("stride", "pads", "dilation", "groups")


def _conv(x: Any, w: Any, stride: Pair, pads: Pads, dilation: Pair, groups: int) -> Any:
    return lax.conv_general_dilated(
        x, w, window_strides=stride, padding=((pads[0], pads[1]), (pads[2], pads[3])), rhs_dilation=dilation,
        feature_group_count=groups, dimension_numbers=("NCHW", "OIHW", "NCHW"), precision=lax.Precision.HIGHEST,
    )


def _with_bias(y: Any, bias: Any) -> Any:
    return y if bias is None else y + jnp.reshape(bias, (1, -1, 1, 1))


@functools.partial(jax.jit, static_argnames=_GEOMETRY)
def conv2d(x: Any, w: Any, bias: Any, stride: Pair, pads: Pads, dilation: Pair, groups: int) -> Any:
    """``conv2d``: ``x (N, C, H, W)``, ``w (O, C/groups, kh, kw)``."""
    return _with_bias(_conv(x, w, stride, pads, dilation, groups), bias)


@functools.partial(jax.jit, static_argnames=(*_GEOMETRY, "bias", "input_grad"))
def conv2d_backward(dy: Any, x: Any, w: Any, stride: Pair, pads: Pads, dilation: Pair, groups: int, bias: bool,
                    input_grad: bool) -> tuple[Any, Any, Any]:
    """``(dx, dw, db)`` of ``conv2d``; ``dx`` is None without ``input_grad``, ``db`` None without ``bias``."""
    if input_grad:
        _, pullback = jax.vjp(lambda x_, w_: _conv(x_, w_, stride, pads, dilation, groups), x, w)
        dx, dw = pullback(dy)
    else:
        _, pullback = jax.vjp(lambda w_: _conv(x, w_, stride, pads, dilation, groups), w)
        dx, (dw,) = None, pullback(dy)
    return dx, dw, (jnp.sum(dy, axis=(0, 2, 3)) if bias else None)


@functools.partial(jax.jit, static_argnames=(*_GEOMETRY, "out_hw"))
def conv2d_transpose(x: Any, w: Any, bias: Any, stride: Pair, pads: Pads, dilation: Pair, groups: int,
                     out_hw: Pair) -> Any:
    """``conv2d_transpose``: the input gradient of the convolution whose weight is ``w (C, O/groups, kh, kw)``
    and whose input has ``out_hw`` pixels."""
    shape = (x.shape[0], w.shape[1] * groups, *out_hw)
    _, pullback = jax.vjp(lambda z: _conv(z, w, stride, pads, dilation, groups), jnp.zeros(shape, x.dtype))
    return _with_bias(pullback(x)[0], bias)


@functools.partial(jax.jit, static_argnames=(*_GEOMETRY, "bias"))
def conv2d_transpose_backward(dy: Any, x: Any, w: Any, stride: Pair, pads: Pads, dilation: Pair, groups: int,
                              bias: bool) -> tuple[Any, Any, Any]:
    """``(dx, dw, db)`` of ``conv2d_transpose``: the convolution of ``dy`` gives ``dx``, and ``dw`` is that
    convolution's weight gradient for output gradient ``x``."""
    dx, pullback = jax.vjp(lambda w_: _conv(dy, w_, stride, pads, dilation, groups), w)
    return dx, pullback(x)[0], (jnp.sum(dy, axis=(0, 2, 3)) if bias else None)


def erf(x: Any) -> Any:
    """``erf``: XLA's own (the Array API has none)."""
    return lax.erf(x)
