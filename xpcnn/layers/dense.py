"""Fully connected layer over (N, features) input, thin over ``xpcnn.ops.dense``."""

from __future__ import annotations

from typing import Any

from .._checks import check_flag, check_int
from ..initializers import check_initializer, fans
from ..ops.linear import dense, dense_backward
from .activations import canonical_activation
from .base import Layer

__all__ = ["Dense"]


class Dense(Layer):
    """``y = x @ weight.T + bias``, PyTorch layout: weight ``(out_features, in_features)``, bias ``(out_features,)``.

    Flatten convolutional features first: the input is 2-D ``(N, in_features)``.

    Parameters
    ----------
    out_features : int
        Output features (Keras's ``units``).
    bias : bool, default True
    weight_init : str, default "he_uniform"
        ``he_uniform``, ``he_normal``, ``glorot_uniform`` or ``glorot_normal``; bias zeros.
    activation : str, optional
        Applied to the output, as Keras's ``activation=``: ``"relu"``, ``"sigmoid"``, ``"softmax"``, ... or
        None.
    name : str, optional
        The layer's name (a model's parameter keys use it); by default made from the class name.

    Raises
    ------
    ValueError
        If ``out_features`` < 1 or a name is unknown; when called, for input whose feature count differs
        from the one it was built for.
    TypeError
        If an argument has the wrong type.

    Examples
    --------
    >>> from xpcnn.layers import Dense
    >>> layer = Dense(10, activation="softmax")
    >>> y = layer(xpcnn.asarray(np.zeros((4, 64))))
    >>> y.shape, layer.params["weight"].shape, layer.params["bias"].shape
    ((4, 10), (10, 64), (10,))
    """

    input_ndim = 1

    def __init__(self, out_features: int, bias: bool = True, weight_init: str = "he_uniform",
                 activation: str | None = None, *, name: str | None = None) -> None:
        super().__init__(name)
        self._set_activation(canonical_activation(activation, "Dense"))  # one name in configs
        self.out_features = check_int(out_features, "out_features", 1, "Dense")
        self.use_bias = check_flag(bias, "bias", type(self).__name__)
        self.weight_init = check_initializer(weight_init, "Dense")

    def _check_input(self, sample_shape: tuple[int, ...]) -> None:
        if self.built and sample_shape != self.input_shape:
            raise ValueError(
                f"Dense: built for {self.input_shape[0]} input features, got input with {sample_shape[0]} "
                f"(per-sample shape {sample_shape})"
            )

    def _build(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        shape = (self.out_features, input_shape[0])
        fan_in, fan_out = fans(shape)
        self.params["weight"] = self._drawn(shape, self.weight_init, fan_in, fan_out)
        if self.use_bias:
            self.params["bias"] = self._zeros((self.out_features,))
        return (self.out_features,)

    def _forward(self, x: Any, training: bool) -> Any:
        weight = self._param("weight")
        if training:
            self._cache = (x, weight)
        return dense(x, weight, self._param("bias"))

    def _backward(self, dy: Any) -> Any:
        x, weight = self._cache
        dx, dw, db = dense_backward(dy, x, weight, bias=self.use_bias)
        self.grads["weight"] = dw
        if self.use_bias:
            self.grads["bias"] = db
        return dx

    def get_config(self) -> dict[str, Any]:
        return {"out_features": self.out_features, "bias": self.use_bias, "weight_init": self.weight_init,
                **self._activation_config()}
