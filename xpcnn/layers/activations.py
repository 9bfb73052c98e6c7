"""Activation layers: no parameters, thin over ``xpcnn.ops.activations``."""

from __future__ import annotations

import numbers
from typing import Any, ClassVar

from ..ops import activations as act
from .base import Layer

__all__ = [
    "ACTIVATIONS", "ACTIVATION_ALIASES", "ELU", "GELU", "Hardsigmoid", "Hardswish", "LeakyReLU", "ReLU", "ReLU6",
    "SiLU", "Sigmoid", "Softmax", "Tanh", "canonical_activation", "make_activation",
]


class _Activation(Layer):
    """Applies ``_activate`` on forward; keeps the output (``saves_output``) or the input for ``_gradient``."""

    saves_output: ClassVar[bool] = True

    def _activate(self, x: Any) -> Any:
        raise NotImplementedError

    def _gradient(self, dy: Any, saved: Any) -> Any:
        raise NotImplementedError

    def _forward(self, x: Any, training: bool) -> Any:
        y = self._activate(x)
        if training:
            self._cache = y if self.saves_output else x
        return y

    def _backward(self, dy: Any) -> Any:
        return self._gradient(dy, self._cache)


def _check_float(value: Any, name: str, owner: str) -> float:
    if not isinstance(value, numbers.Real) or isinstance(value, bool):
        raise TypeError(f"{owner}: {name} must be a real number, got {value!r}")
    return float(value)


class ReLU(_Activation):
    """max(x, 0).

    Parameters
    ----------
    name : str, optional
        The layer's name (a model's parameter keys use it); by default made from the class name.
    """

    def _activate(self, x: Any) -> Any:
        return act.relu(x)

    def _gradient(self, dy: Any, saved: Any) -> Any:
        return act.relu_backward(dy, saved)


class ReLU6(_Activation):
    """min(max(x, 0), 6) (torch.nn.ReLU6; MobileNetV2's activation).

    Parameters
    ----------
    name : str, optional
        The layer's name (a model's parameter keys use it); by default made from the class name.
    """

    def _activate(self, x: Any) -> Any:
        return act.relu6(x)

    def _gradient(self, dy: Any, saved: Any) -> Any:
        return act.relu6_backward(dy, saved)


class Hardsigmoid(_Activation):
    """relu6(x + 3) / 6 (torch.nn.Hardsigmoid, Keras 3's ``hard_sigmoid``; MobileNetV3's gate).

    Parameters
    ----------
    name : str, optional
        The layer's name (a model's parameter keys use it); by default made from the class name.
    """

    saves_output = False

    def _activate(self, x: Any) -> Any:
        return act.hardsigmoid(x)

    def _gradient(self, dy: Any, saved: Any) -> Any:
        return act.hardsigmoid_backward(dy, saved)


class Hardswish(_Activation):
    """x * relu6(x + 3) / 6 (torch.nn.Hardswish, Keras's ``hard_swish``/``hard_silu``; MobileNetV3).

    Parameters
    ----------
    name : str, optional
        The layer's name (a model's parameter keys use it); by default made from the class name.
    """

    saves_output = False

    def _activate(self, x: Any) -> Any:
        return act.hardswish(x)

    def _gradient(self, dy: Any, saved: Any) -> Any:
        return act.hardswish_backward(dy, saved)


class SiLU(_Activation):
    """x * sigmoid(x) (torch.nn.SiLU, Keras's ``silu``/``swish``; EfficientNet's activation).

    Parameters
    ----------
    name : str, optional
        The layer's name (a model's parameter keys use it); by default made from the class name.
    """

    saves_output = False

    def _activate(self, x: Any) -> Any:
        return act.silu(x)

    def _gradient(self, dy: Any, saved: Any) -> Any:
        return act.silu_backward(dy, saved)


class GELU(_Activation):
    """x * Phi(x), Phi the standard normal CDF (torch.nn.GELU): ``approximate="none"`` computes it with erf
    (``xpcnn.ops.activations.erf``, accurate to float32 and float64), ``"tanh"`` with torch's tanh formula.

    Parameters
    ----------
    approximate : {"none", "tanh"}, default "none"
    name : str, optional
        The layer's name (a model's parameter keys use it); by default made from the class name.

    Raises
    ------
    ValueError
        If ``approximate`` is neither.
    """

    saves_output = False

    def __init__(self, approximate: str = "none", *, name: str | None = None) -> None:
        super().__init__(name)
        if approximate not in act.GELU_APPROXIMATIONS:
            raise ValueError(f"GELU: approximate must be 'none' or 'tanh', got {approximate!r}")
        self.approximate = approximate

    def _activate(self, x: Any) -> Any:
        return act.gelu(x, self.approximate)

    def _gradient(self, dy: Any, saved: Any) -> Any:
        return act.gelu_backward(dy, saved, self.approximate)

    def get_config(self) -> dict[str, Any]:
        return {"approximate": self.approximate} if self.approximate != "none" else {}


class LeakyReLU(_Activation):
    """x for x > 0, negative_slope * x otherwise.

    Parameters
    ----------
    negative_slope : float, default 0.01
    name : str, optional
        The layer's name (a model's parameter keys use it); by default made from the class name.

    Raises
    ------
    TypeError
        If ``negative_slope`` is not a real number.

    Examples
    --------
    >>> from xpcnn.layers import LeakyReLU
    >>> xpcnn.to_numpy(LeakyReLU(0.1)(xpcnn.asarray(np.array([[-2.0, 3.0]]))))
    array([[-0.2,  3. ]], dtype=float32)
    """

    saves_output = False

    def __init__(self, negative_slope: float = 0.01, *, name: str | None = None) -> None:
        super().__init__(name)
        self.negative_slope = _check_float(negative_slope, "negative_slope", "LeakyReLU")

    def _activate(self, x: Any) -> Any:
        return act.leaky_relu(x, self.negative_slope)

    def _gradient(self, dy: Any, saved: Any) -> Any:
        return act.leaky_relu_backward(dy, saved, self.negative_slope)

    def get_config(self) -> dict[str, Any]:
        return {"negative_slope": self.negative_slope}


class ELU(_Activation):
    """x for x > 0, alpha * (exp(x) - 1) otherwise.

    Parameters
    ----------
    alpha : float, default 1.0
    name : str, optional
        The layer's name (a model's parameter keys use it); by default made from the class name.

    Raises
    ------
    TypeError
        If ``alpha`` is not a real number.
    """

    saves_output = False

    def __init__(self, alpha: float = 1.0, *, name: str | None = None) -> None:
        super().__init__(name)
        self.alpha = _check_float(alpha, "alpha", "ELU")

    def _activate(self, x: Any) -> Any:
        return act.elu(x, self.alpha)

    def _gradient(self, dy: Any, saved: Any) -> Any:
        return act.elu_backward(dy, saved, self.alpha)

    def get_config(self) -> dict[str, Any]:
        return {"alpha": self.alpha}


class Sigmoid(_Activation):
    """1 / (1 + exp(-x)).

    Parameters
    ----------
    name : str, optional
        The layer's name (a model's parameter keys use it); by default made from the class name.
    """

    computes_in_float32 = True

    def _activate(self, x: Any) -> Any:
        return act.sigmoid(x)

    def _gradient(self, dy: Any, saved: Any) -> Any:
        return act.sigmoid_backward(dy, saved)


class Tanh(_Activation):
    """tanh(x).

    Parameters
    ----------
    name : str, optional
        The layer's name (a model's parameter keys use it); by default made from the class name.
    """

    def _activate(self, x: Any) -> Any:
        return act.tanh(x)

    def _gradient(self, dy: Any, saved: Any) -> Any:
        return act.tanh_backward(dy, saved)


class Softmax(_Activation):
    """exp(x) normalised along ``axis`` of the batched input (default 1: the classes of (N, C) logits).

    For training a classifier prefer raw logits with ``CrossEntropy``, which is stabler and cheaper.

    Parameters
    ----------
    axis : int, default 1
        An axis of the batched input; negative counts from the end, 0 (the batch) is refused.
    name : str, optional
        The layer's name (a model's parameter keys use it); by default made from the class name.

    Raises
    ------
    ValueError
        If ``axis`` is 0 or not an int.
    """

    computes_in_float32 = True

    def __init__(self, axis: int = 1, *, name: str | None = None) -> None:
        super().__init__(name)
        if not isinstance(axis, int) or isinstance(axis, bool) or axis == 0:
            raise ValueError(f"Softmax: axis must be a non-zero int (axis 0 is the batch axis), got {axis!r}")
        self.axis = axis

    def _check_input(self, sample_shape: tuple[int, ...]) -> None:
        ndim = len(sample_shape) + 1
        if not (1 <= self.axis < ndim or -ndim < self.axis < 0):
            raise ValueError(
                f"Softmax: axis {self.axis} is not a non-batch axis of {ndim}-D input "
                f"(per-sample shape {sample_shape})"
            )

    def _activate(self, x: Any) -> Any:
        return act.softmax(x, self.axis)

    def _gradient(self, dy: Any, saved: Any) -> Any:
        return act.softmax_backward(dy, saved, self.axis)

    def get_config(self) -> dict[str, Any]:
        return {"axis": self.axis}


#: the names ``activation=`` takes, as Keras spells them; the name a config keeps
ACTIVATIONS: dict[str, type[Layer]] = {
    "relu": ReLU, "leaky_relu": LeakyReLU, "elu": ELU, "sigmoid": Sigmoid, "tanh": Tanh, "softmax": Softmax,
    "relu6": ReLU6, "hard_sigmoid": Hardsigmoid, "hard_swish": Hardswish, "silu": SiLU, "gelu": GELU,
}
#: other spellings ``activation=`` accepts (Keras 3's and torch's), each read as its name in ``ACTIVATIONS``
ACTIVATION_ALIASES: dict[str, str] = {
    "swish": "silu", "hardswish": "hard_swish", "hard_silu": "hard_swish", "hardsigmoid": "hard_sigmoid",
}


def canonical_activation(activation: str | None, owner: str) -> str | None:
    """The name from ``ACTIVATIONS`` that ``activation`` (a name or an alias) stands for; None stays None."""
    if activation is None:
        return None
    if not isinstance(activation, str):
        raise TypeError(f"{owner}: activation must be a name such as 'relu', or None; got {activation!r}")
    canonical = ACTIVATION_ALIASES.get(activation, activation)
    if canonical not in ACTIVATIONS:
        raise ValueError(f"{owner}: unknown activation {activation!r}; use one of {sorted(ACTIVATIONS)} (or "
                         f"{', '.join(sorted(ACTIVATION_ALIASES))}) or None")
    return canonical


def make_activation(activation: str | None, owner: str, name: str | None = None) -> Layer | None:
    """A fresh activation layer for ``activation`` (a name from ``ACTIVATIONS`` or an alias), or None for None."""
    canonical = canonical_activation(activation, owner)
    return None if canonical is None else ACTIVATIONS[canonical](name=name)
