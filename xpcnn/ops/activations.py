"""Elementwise activations and softmax, each with its backward.

A backward takes whatever is cheapest to keep: the output ``y`` where the derivative is a function of it
(ReLU, ReLU6, sigmoid, tanh, softmax), else the input ``x``. Derivatives at kinks follow PyTorch: ReLU'(0) = 0,
LeakyReLU'(0) = negative_slope, ELU'(0) = alpha, ReLU6'(0) = ReLU6'(6) = 0, Hardsigmoid'(+-3) = 0,
Hardswish'(-3) = 0 and Hardswish'(3) = 1. NaN inputs stay NaN.

The Array API has no ``erf``, which exact GELU needs: ``erf`` here is Cephes' rational approximation (ndtr.c,
S. L. Moshier), accurate to a few units in the last place in float64 and in float32; where a namespace has its
own (``torch.special.erf``, ``jax.lax.erf``) it runs instead (``_native``), tested equal; so do torch's
``relu`` and its fused ``relu6``, ``hardsigmoid`` and ``hardswish`` (a MobileNetV3 spends more time in those than in its convolutions
when each is four elementwise passes).

``overwrite=True`` (``relu``, ``relu6``, ``hardsigmoid``, ``hardswish``) says the caller hands ``x`` over:
nothing reads it afterwards and no other array shares its memory (the graph executor grants it in inference
for a fresh array that only the activation reads, ``layers.fusion.in_place``). Where the namespace's kernels
write in place (torch's ``relu_``, ``hardswish_``, ...) the result is then ``x`` itself, overwritten, as
torchvision's ``inplace=True`` activations do: no new array, one pass over memory that is already in cache.
The generic path ignores it (it never writes in place) and the values are the same either way.
"""

from __future__ import annotations

from typing import Any

import array_api_compat

from . import _native
from ._select import drop_where, keep_where, keep_where_positive

__all__ = [
    "elu",
    "elu_backward",
    "erf",
    "gelu",
    "gelu_backward",
    "hardsigmoid",
    "hardsigmoid_backward",
    "hardswish",
    "hardswish_backward",
    "leaky_relu",
    "leaky_relu_backward",
    "log_softmax",
    "relu",
    "relu6",
    "relu6_backward",
    "relu_backward",
    "sigmoid",
    "sigmoid_backward",
    "silu",
    "silu_backward",
    "softmax",
    "softmax_backward",
    "tanh",
    "tanh_backward",
]


def relu(x: Any, *, overwrite: bool = False) -> Any:
    """max(x, 0): one elementwise ``maximum`` (NaN propagates), no mask. On torch its ``relu`` kernel runs
    instead: ``maximum`` with a Python scalar makes a 0-d tensor and broadcasts it, three times slower.
    ``overwrite``: see the module's docstring."""
    xp = array_api_compat.array_namespace(x)
    native = _native.kernel(xp, "relu")
    if native is not None:
        return native(x, overwrite)
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


def relu6(x: Any, *, overwrite: bool = False) -> Any:
    """min(max(x, 0), 6) (NaN propagates); ``overwrite``: see the module's docstring."""
    xp = array_api_compat.array_namespace(x)
    native = _native.kernel(xp, "relu6")
    if native is not None:
        return native(x, overwrite)
    return xp.minimum(xp.maximum(x, 0.0), 6.0)


def relu6_backward(dy: Any, y: Any) -> Any:
    """dy where the output lies strictly between 0 and 6, else 0 (torch's hardtanh rule at the kinks)."""
    return drop_where((y <= 0.0) | (y >= 6.0), dy)


def hardsigmoid(x: Any, *, overwrite: bool = False) -> Any:
    """relu6(x + 3) / 6: 0 below -3, 1 above 3, linear between (torch's and Keras 3's ``hard_sigmoid``);
    ``overwrite``: see the module's docstring."""
    native = _native.kernel(array_api_compat.array_namespace(x), "hardsigmoid")
    return native(x, overwrite) if native is not None else relu6(x + 3.0) * (1.0 / 6.0)


def hardsigmoid_backward(dy: Any, x: Any) -> Any:
    """dy / 6 where -3 < x < 3, else 0."""
    return keep_where((x > -3.0) & (x < 3.0), dy * (1.0 / 6.0))


def hardswish(x: Any, *, overwrite: bool = False) -> Any:
    """x * relu6(x + 3) / 6 (MobileNetV3's h-swish); ``overwrite``: see the module's docstring."""
    native = _native.kernel(array_api_compat.array_namespace(x), "hardswish")
    return native(x, overwrite) if native is not None else x * hardsigmoid(x)


def hardswish_backward(dy: Any, x: Any) -> Any:
    """0 up to -3, x/3 + 1/2 between, 1 from 3 on (torch's values at the kinks)."""
    xp = array_api_compat.array_namespace(dy, x)
    return drop_where(x <= -3.0, xp.where(x < 3.0, dy * (x * (1.0 / 3.0) + 0.5), dy))


def silu(x: Any) -> Any:
    """x * sigmoid(x) (SiLU, Keras's ``swish``)."""
    return x * sigmoid(x)


def silu_backward(dy: Any, x: Any) -> Any:
    """dy * s * (1 + x * (1 - s)) with s = sigmoid(x), as torch writes it."""
    s = sigmoid(x)
    return dy * s * (1.0 + x * (1.0 - s))


# Cephes ndtr.c: erf(x) = x T(x^2) / U(x^2) for |x| < 1; erfc(x) = exp(-x^2) P(x) / Q(x) for 1 <= x < 8
# (U and Q with a leading coefficient 1). For |x| >= 6, erfc(x) < 2.2e-17 and erf(x) rounds to +-1 in float64,
# so the argument of the erfc branch is clipped to [1, 6]: the unused lanes of ``where`` stay finite.
_ERF_T = (9.60497373987051638749e0, 9.00260197203842689217e1, 2.23200534594684319226e3, 7.00332514112805075473e3,
          5.55923013010394962768e4)
_ERF_U = (3.35617141647503099647e1, 5.21357949780152679795e2, 4.59432382970980127987e3, 2.26290000613890934246e4,
          4.92673942608635921086e4)
_ERFC_P = (2.46196981473530512524e-10, 5.64189564831068821977e-1, 7.46321056442269912687e0,
           4.86371970985681366614e1, 1.96520832956077098242e2, 5.26445194995477358631e2, 9.34528527171957607540e2,
           1.02755188689515710272e3, 5.57535335369399327526e2)
_ERFC_Q = (1.32281951154744992508e1, 8.67072140885989742329e1, 3.54937778887819891062e2, 9.75708501743205489753e2,
           1.82390916687909736289e3, 2.24633760818710981792e3, 1.65666309194161350182e3, 5.57535340817727675546e2)


def _polynomial(x: Any, coefficients: tuple[float, ...], monic: bool = False) -> Any:
    """Horner's rule, highest power first; ``monic``: a leading coefficient 1 left out of ``coefficients``."""
    acc = x + coefficients[0] if monic else x * coefficients[0] + coefficients[1]
    for c in coefficients[1 if monic else 2:]:
        acc = acc * x + c
    return acc


def erf(x: Any) -> Any:
    """The error function, elementwise (NaN propagates, erf(+-inf) = +-1)."""
    xp = array_api_compat.array_namespace(x)
    native = _native.kernel(xp, "erf")
    if native is not None:
        return native(x)
    a = xp.abs(x)
    z = xp.minimum(x * x, 1.0)
    small = x * _polynomial(z, _ERF_T) / _polynomial(z, _ERF_U, monic=True)
    t = xp.minimum(xp.maximum(a, 1.0), 6.0)
    large = 1.0 - xp.exp(-(t * t)) * _polynomial(t, _ERFC_P) / _polynomial(t, _ERFC_Q, monic=True)
    return xp.where(a < 1.0, small, xp.where(x < 0.0, -large, large))


_SQRT_HALF = 0.7071067811865476  # 1/sqrt(2)
_INV_SQRT_2PI = 0.3989422804014327  # 1/sqrt(2 pi): the normal density at 0
_TANH_BETA = 0.7978845608028654  # sqrt(2/pi)
_TANH_KAPPA = 0.044715
GELU_APPROXIMATIONS = ("none", "tanh")


def _check_approximate(approximate: str) -> None:
    if approximate not in GELU_APPROXIMATIONS:
        raise ValueError(f"gelu: approximate must be 'none' or 'tanh', got {approximate!r}")


def gelu(x: Any, approximate: str = "none") -> Any:
    """x * Phi(x) with Phi the standard normal CDF, 0.5 * (1 + erf(x / sqrt(2))); ``approximate="tanh"``:
    0.5 * x * (1 + tanh(sqrt(2/pi) * (x + 0.044715 x^3))). Both as torch.nn.functional.gelu writes them."""
    _check_approximate(approximate)
    if approximate == "tanh":
        xp = array_api_compat.array_namespace(x)
        return 0.5 * x * (1.0 + xp.tanh(_TANH_BETA * (x + _TANH_KAPPA * (x * x * x))))
    return x * 0.5 * (1.0 + erf(x * _SQRT_HALF))


def gelu_backward(dy: Any, x: Any, approximate: str = "none") -> Any:
    """dy * (Phi(x) + x * phi(x)), phi the normal density; for ``"tanh"`` the derivative of that formula."""
    _check_approximate(approximate)
    xp = array_api_compat.array_namespace(dy, x)
    if approximate == "tanh":
        x2 = x * x
        inner = xp.tanh(_TANH_BETA * (x + _TANH_KAPPA * (x2 * x)))
        slope = 0.5 * x * (1.0 - inner * inner) * (_TANH_BETA * (1.0 + (3.0 * _TANH_KAPPA) * x2))
        return dy * (0.5 * (1.0 + inner) + slope)
    cdf = 0.5 * (1.0 + erf(x * _SQRT_HALF))
    pdf = xp.exp(-0.5 * (x * x)) * _INV_SQRT_2PI
    return dy * (cdf + x * pdf)


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
