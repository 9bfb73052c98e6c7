"""Convolution layers over NCHW input, thin over ``xpcnn.ops.conv``."""

from __future__ import annotations

from typing import Any

from .._checks import check_flag, check_int
from ..initializers import check_initializer, fans
from ..ops import conv as conv_ops
from ..ops import resize as resize_ops
from ..ops.windows import as_pair, check_padding, conv_output_hw, conv_transpose_output_hw, resolve_padding
from .activations import canonical_activation
from .base import Layer

__all__ = ["Conv2D", "Conv2DTranspose", "DepthwiseConv2D", "SeparableConv2D"]


class _ConvBase(Layer):
    """What both convolutions share: argument checks, parameter creation, channel validation."""

    input_ndim = 3

    def __init__(
        self, out_channels: int, kernel_size: Any, stride: Any, padding: Any, dilation: Any, groups: int,
        bias: bool, weight_init: str, activation: str | None, name: str | None,
    ) -> None:
        super().__init__(name)
        self._set_activation(canonical_activation(activation, type(self).__name__))  # one name in configs
        name = self._name()
        out_channels = check_int(out_channels, "out_channels", 1, name)
        groups = check_int(groups, "groups", 1, name)
        if out_channels % groups:
            raise ValueError(f"{name}: groups={groups} does not divide out_channels={out_channels}")
        self.out_channels = out_channels
        self.kernel_size = as_pair(kernel_size, "kernel_size", owner=name)
        self.stride = as_pair(stride, "stride", owner=name)
        self.dilation = as_pair(dilation, "dilation", owner=name)
        self.groups = groups
        self.use_bias = check_flag(bias, "bias", name)
        self.weight_init = check_initializer(weight_init, name)

    #: the layer a convolution is part of (``SeparableConv2D``), which its messages name; None: itself
    _owner: str | None = None

    def _name(self) -> str:
        return self._owner or type(self).__name__

    def _check_input(self, sample_shape: tuple[int, ...]) -> None:
        channels = sample_shape[0]
        if self.built and channels != self.input_shape[0]:
            raise ValueError(
                f"{self._name()}: built for {self.input_shape[0]} input channels, got input with {channels} "
                f"(per-sample shape {sample_shape})"
            )
        if self.groups is not None and channels % self.groups:
            raise ValueError(f"{self._name()}: groups={self.groups} does not divide the {channels} input channels")
        self._output_hw(sample_shape)

    def _create_params(self, weight_shape: tuple[int, ...]) -> None:
        fan_in, fan_out = fans(weight_shape)
        if type(self) is Conv2DTranspose:  # torch computes fans of (in, out/g, ...) weights the other way round
            fan_in, fan_out = fan_out, fan_in
        self.params["weight"] = self._drawn(weight_shape, self.weight_init, fan_in, fan_out)
        if self.use_bias:
            self.params["bias"] = self._zeros((self.out_channels,))

    def _set_grads(self, dw: Any, db: Any) -> None:
        self.grads["weight"] = dw
        if self.use_bias:
            self.grads["bias"] = db

    def get_config(self) -> dict[str, Any]:
        return {
            "out_channels": self.out_channels,
            "kernel_size": self.kernel_size,
            "stride": self.stride,
            "padding": self.padding,
            "dilation": self.dilation,
            "groups": self.groups,
            "bias": self.use_bias,
            "weight_init": self.weight_init,
            **self._activation_config(),
        }


class Conv2D(_ConvBase):
    """2-D convolution (cross-correlation), PyTorch layout: weight ``(out, in/groups, kh, kw)``, bias ``(out,)``.

    Parameters
    ----------
    out_channels : int
        Output channels (Keras's ``filters``).
    kernel_size : int or (int, int)
        Window height and width.
    stride : int or (int, int), default 1
    padding : int, (int, int), "valid" or "same", default 0
        ``"same"`` works for any stride (TensorFlow puts the odd pixel bottom/right).
    dilation : int or (int, int), default 1
    groups : int, default 1
        Channel groups; it must divide ``out_channels`` and the input channels.
    bias : bool, default True
    weight_init : str, default "he_uniform"
        ``he_uniform``, ``he_normal``, ``glorot_uniform`` or ``glorot_normal``; bias zeros.
    activation : str, optional
        Applied to the output, as Keras's ``activation=``: ``"relu"``, ``"sigmoid"``, ``"softmax"``, ... or
        None.
    padding_mode : {"zeros", "reflect", "replicate", "circular"}, default "zeros"
        What fills the padding: zeros, or copies of the image's boundary (torch's).
    name : str, optional
        The layer's name (a model's parameter keys use it); by default made from the class name.

    Raises
    ------
    ValueError
        If an argument is out of range (``groups`` not dividing ``out_channels``, an unknown name); at build,
        for input channels that ``groups`` does not divide or a kernel larger than the padded input.
    TypeError
        If an argument has the wrong type.

    Examples
    --------
    >>> from xpcnn.layers import Conv2D
    >>> x = xpcnn.asarray(np.zeros((2, 3, 32, 32)))
    >>> Conv2D(16, 3)(x).shape
    (2, 16, 30, 30)
    >>> Conv2D(16, 3, stride=2, padding="same")(x).shape
    (2, 16, 16, 16)
    >>> layer = Conv2D(16, 3, padding=1)
    >>> layer.build((3, 32, 32)), layer.params["weight"].shape
    ((16, 32, 32), (16, 3, 3, 3))
    """

    def __init__(
        self, out_channels: int, kernel_size: Any, stride: Any = 1, padding: Any = 0, dilation: Any = 1,
        groups: int = 1, bias: bool = True, weight_init: str = "he_uniform", activation: str | None = None, *,
        padding_mode: str = "zeros", name: str | None = None,
    ) -> None:
        super().__init__(out_channels, kernel_size, stride, padding, dilation, groups, bias, weight_init, activation,
                         name)
        self.padding = check_padding(padding, owner=self._name())
        if padding_mode not in resize_ops.PAD_MODES:
            raise ValueError(f"{self._name()}: padding_mode must be one of {resize_ops.PAD_MODES}, "
                             f"got {padding_mode!r}")
        self.padding_mode = padding_mode

    def _pads(self, in_hw: tuple[int, int]) -> tuple[int, int, int, int]:
        return resolve_padding(self.padding, in_hw, self.kernel_size, self.stride, self.dilation)

    def _output_hw(self, sample_shape: tuple[int, ...]) -> tuple[int, int]:
        in_hw = (sample_shape[1], sample_shape[2])
        pads = self._pads(in_hw)
        if self.padding_mode != "zeros":
            resize_ops.check_boundary_pads(in_hw, pads, self.padding_mode, owner=self._name())
        out_hw = conv_output_hw(in_hw, self.kernel_size, self.stride, self.dilation, pads)
        if min(out_hw) < 1:
            padded = (in_hw[0] + pads[0] + pads[1], in_hw[1] + pads[2] + pads[3])
            raise ValueError(
                f"{self._name()}: kernel {self.kernel_size} with dilation {self.dilation} is larger than the padded "
                f"input {padded} (per-sample input shape {sample_shape}, padding {self.padding!r})"
            )
        return out_hw

    def _build(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        self._create_params((self.out_channels, input_shape[0] // self.groups, *self.kernel_size))
        return (self.out_channels, *self._output_hw(input_shape))

    def _op_args(self) -> dict[str, Any]:
        padding = self.padding if self.padding_mode == "zeros" else 0  # else the input comes padded
        return {"stride": self.stride, "padding": padding, "dilation": self.dilation, "groups": self.groups}

    def get_config(self) -> dict[str, Any]:
        extra = {} if self.padding_mode == "zeros" else {"padding_mode": self.padding_mode}
        return {**super().get_config(), **extra}

    #: Whether ``backward`` computes the input gradient. A model may set this to False on a layer whose
    #: input gradient nobody reads (its first layer, fed with data): ``backward`` then returns None and
    #: skips a third of the layer's backward work (PyTorch skips it for inputs without ``requires_grad``).
    input_grad: bool = True

    def _forward(self, x: Any, training: bool) -> Any:
        weight = self._param("weight")
        in_hw = (int(x.shape[2]), int(x.shape[3]))
        if self.padding_mode != "zeros":
            x = resize_ops.boundary_pad2d(x, self._pads(in_hw), self.padding_mode)
        if not training:
            return conv_ops.conv2d(x, weight, self._param("bias"), **self._op_args())
        y, saved = conv_ops.conv2d(x, weight, self._param("bias"), **self._op_args(), return_saved=True)
        self._cache = (x, weight, saved, in_hw)
        return y

    def _backward(self, dy: Any) -> Any:
        x, weight, saved, in_hw = self._cache
        dx, dw, db = conv_ops.conv2d_backward(
            dy, x, weight, bias=self.use_bias, input_grad=self.input_grad, saved=saved, **self._op_args()
        )
        self._set_grads(dw, db)
        if dx is not None and self.padding_mode != "zeros":
            dx = resize_ops.boundary_pad2d_backward(dx, in_hw, self._pads(in_hw), self.padding_mode)
        return dx


class Conv2DTranspose(_ConvBase):
    """Transposed convolution (fractionally strided), PyTorch layout: weight ``(in, out/groups, kh, kw)``.

    Output size ``(H - 1)*stride - 2*padding + dilation*(k - 1) + output_padding + 1``.

    Parameters
    ----------
    out_channels : int
    kernel_size : int or (int, int)
    stride : int or (int, int), default 1
    padding : int, (int, int), "valid" or "same", default 0
        ``"valid"`` is 0; ``"same"`` is Keras's: output ``H*stride``, the padding placed as the "same"
        convolution it is the adjoint of.
    output_padding : int or (int, int), default 0
        Extra rows and columns at the bottom/right; smaller than the stride or the dilation.
    dilation : int or (int, int), default 1
    groups : int, default 1
    bias : bool, default True
    weight_init : str, default "he_uniform"
        As ``Conv2D``'s; bias zeros.
    activation : str, optional
        Applied to the output, as Keras's ``activation=``: ``"relu"``, ``"sigmoid"``, ``"softmax"``, ... or
        None.
    name : str, optional
        The layer's name (a model's parameter keys use it); by default made from the class name.

    Raises
    ------
    ValueError
        If an argument is out of range, or ``output_padding`` is given with ``padding="same"``.

    Examples
    --------
    >>> from xpcnn.layers import Conv2DTranspose
    >>> Conv2DTranspose(8, 2, stride=2)(xpcnn.asarray(np.zeros((1, 4, 7, 7)))).shape
    (1, 8, 14, 14)
    """

    def __init__(
        self, out_channels: int, kernel_size: Any, stride: Any = 1, padding: Any = 0, output_padding: Any = 0,
        dilation: Any = 1, groups: int = 1, bias: bool = True, weight_init: str = "he_uniform",
        activation: str | None = None, *, name: str | None = None,
    ) -> None:
        super().__init__(out_channels, kernel_size, stride, padding, dilation, groups, bias, weight_init, activation,
                         name)
        self.padding = check_padding(padding, owner="Conv2DTranspose")
        self.output_padding = as_pair(output_padding, "output_padding", minimum=0, owner="Conv2DTranspose")
        if self.padding == "same" and self.output_padding != (0, 0):
            raise ValueError(f"Conv2DTranspose: output_padding {self.output_padding} does not apply with "
                             "padding='same' (the output is the input's size times the stride)")
        for axis in range(2):
            if self.output_padding[axis] >= max(self.stride[axis], self.dilation[axis]):
                raise ValueError(
                    f"Conv2DTranspose: output_padding {self.output_padding} must be smaller than stride "
                    f"{self.stride} or dilation {self.dilation}"
                )

    def _output_hw(self, sample_shape: tuple[int, ...]) -> tuple[int, int]:
        if self.padding == "same":
            return (sample_shape[1] * self.stride[0], sample_shape[2] * self.stride[1])
        padding = (0, 0) if self.padding == "valid" else self.padding
        out_hw = conv_transpose_output_hw(tuple(sample_shape[1:3]), self.kernel_size, self.stride, self.dilation,
                                          padding, self.output_padding)
        if min(out_hw) < 1:
            raise ValueError(
                f"Conv2DTranspose: padding {self.padding} leaves no output for per-sample input {sample_shape}"
            )
        return out_hw  # type: ignore[return-value]

    def _build(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        self._create_params((input_shape[0], self.out_channels // self.groups, *self.kernel_size))
        return (self.out_channels, *self._output_hw(input_shape))

    def _op_args(self) -> dict[str, Any]:
        return {
            "stride": self.stride, "padding": self.padding, "output_padding": self.output_padding,
            "dilation": self.dilation, "groups": self.groups,
        }

    def _forward(self, x: Any, training: bool) -> Any:
        weight = self._param("weight")
        if training:
            self._cache = (x, weight)
        return conv_ops.conv2d_transpose(x, weight, self._param("bias"), **self._op_args())

    def _backward(self, dy: Any) -> Any:
        x, weight = self._cache
        dx, dw, db = conv_ops.conv2d_transpose_backward(dy, x, weight, bias=self.use_bias, **self._op_args())
        self._set_grads(dw, db)
        return dx

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "output_padding": self.output_padding}


class DepthwiseConv2D(Conv2D):
    """Depthwise convolution (Keras's layer): each input channel convolved with ``depth_multiplier`` filters of
    its own, a ``Conv2D`` with ``groups`` = the input channels; torch's ``Conv2d(C, C * depth_multiplier, k,
    groups=C)``, weight ``(C * depth_multiplier, 1, kh, kw)`` (output channel ``c * depth_multiplier + j`` reads
    input channel ``c``), bias ``(C * depth_multiplier,)``. The arguments are Conv2D's (PyTorch's names:
    Keras's ``strides``, ``dilation_rate``, ``use_bias`` are ``stride``, ``dilation``, ``bias``; padding 0 is
    ``"valid"``); ``out_channels`` and ``groups`` follow from the input at build.

    Parameters
    ----------
    kernel_size, stride, padding, dilation, bias, weight_init, activation, padding_mode, name
        As ``Conv2D``'s.
    depth_multiplier : int, default 1
        Filters per input channel.

    Examples
    --------
    >>> from xpcnn.layers import DepthwiseConv2D
    >>> layer = DepthwiseConv2D(3, padding="same", depth_multiplier=2)
    >>> layer(xpcnn.asarray(np.zeros((1, 4, 8, 8)))).shape, layer.params["weight"].shape
    ((1, 8, 8, 8), (8, 1, 3, 3))
    """

    def __init__(
        self, kernel_size: Any, stride: Any = 1, padding: Any = 0, depth_multiplier: int = 1, dilation: Any = 1,
        bias: bool = True, weight_init: str = "he_uniform", activation: str | None = None, *,
        padding_mode: str = "zeros", name: str | None = None,
    ) -> None:
        depth_multiplier = check_int(depth_multiplier, "depth_multiplier", 1, self._name())
        super().__init__(depth_multiplier, kernel_size, stride, padding, dilation, 1, bias, weight_init, activation,
                         padding_mode=padding_mode, name=name)
        self.depth_multiplier = depth_multiplier
        self.out_channels = self.groups = None  # type: ignore[assignment]  # set by the input's channels at build

    def _build(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        self.groups, self.out_channels = input_shape[0], input_shape[0] * self.depth_multiplier
        return super()._build(input_shape)

    def get_config(self) -> dict[str, Any]:
        config = {"kernel_size": self.kernel_size, "stride": self.stride, "padding": self.padding,
                  "depth_multiplier": self.depth_multiplier, "dilation": self.dilation, "bias": self.use_bias,
                  "weight_init": self.weight_init, **self._activation_config()}
        return {**config, **({} if self.padding_mode == "zeros" else {"padding_mode": self.padding_mode})}


class SeparableConv2D(Layer):
    """Depthwise separable convolution (Keras's layer): a ``DepthwiseConv2D`` (no bias), then a 1x1 ``Conv2D`` to
    ``out_channels`` (Keras's ``filters``) with the bias; the arguments are DepthwiseConv2D's.

    Parameters, torch layouts: ``depthwise_weight (C * depth_multiplier, 1, kh, kw)``, ``pointwise_weight
    (out_channels, C * depth_multiplier, 1, 1)``, ``bias (out_channels,)``. A PyTorch module with
    ``depthwise = Conv2d(C, C*m, k, groups=C, bias=False)`` and ``pointwise = Conv2d(C*m, out, 1)`` holds the same
    values under ``depthwise.weight``, ``pointwise.weight`` and ``pointwise.bias`` (a parameter's name here has
    no dot: a model's key splits at its last one). Weights are drawn as those two layers draw theirs.

    Parameters
    ----------
    out_channels : int
        Output channels of the pointwise convolution.
    kernel_size, stride, padding, depth_multiplier, dilation, bias, weight_init, activation, padding_mode, name
        As ``DepthwiseConv2D``'s (``bias`` and ``activation`` apply after the pointwise convolution).
    """

    input_ndim = 3

    def __init__(
        self, out_channels: int, kernel_size: Any, stride: Any = 1, padding: Any = 0, depth_multiplier: int = 1,
        dilation: Any = 1, bias: bool = True, weight_init: str = "he_uniform", activation: str | None = None, *,
        padding_mode: str = "zeros", name: str | None = None,
    ) -> None:
        super().__init__(name)
        self._set_activation(canonical_activation(activation, "SeparableConv2D"))
        self._depthwise = _SeparableDepthwise(kernel_size, stride, padding, depth_multiplier, dilation, False,
                                              weight_init, padding_mode=padding_mode, name=f"{self.name}_depthwise")
        self._pointwise = _SeparablePointwise(out_channels, 1, bias=bias, weight_init=weight_init,
                                              name=f"{self.name}_pointwise")
        self.out_channels = self._pointwise.out_channels
        self.use_bias = self._pointwise.use_bias

    #: As ``Conv2D.input_grad``: False skips the input gradient (the model's first layer).
    input_grad: bool = True

    def _check_input(self, sample_shape: tuple[int, ...]) -> None:
        self._depthwise._check_input(sample_shape)

    def _build(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        output_shape = self._pointwise.build(self._depthwise.build(input_shape))
        self.params["depthwise_weight"] = self._depthwise.params["weight"]
        self.params["pointwise_weight"] = self._pointwise.params["weight"]
        if self.use_bias:
            self.params["bias"] = self._pointwise.params["bias"]
        return output_shape

    def parts(self) -> tuple[DepthwiseConv2D, Conv2D]:
        """The depthwise and the pointwise convolution, holding this layer's current parameters."""
        self._depthwise.params["weight"] = self.params["depthwise_weight"]
        self._pointwise.params["weight"] = self.params["pointwise_weight"]
        if self.use_bias:
            self._pointwise.params["bias"] = self.params["bias"]
        return self._depthwise, self._pointwise

    def _forward(self, x: Any, training: bool) -> Any:
        depthwise, pointwise = self.parts()
        y = pointwise.forward(depthwise.forward(x, training), training)
        if training:
            self._cache = (depthwise.call_state(), pointwise.call_state())
        return y

    def _backward(self, dy: Any) -> Any:
        depthwise, pointwise = self._depthwise, self._pointwise
        depthwise.restore_call_state(self._cache[0])
        pointwise.restore_call_state(self._cache[1])
        depthwise.input_grad = self.input_grad
        dx = depthwise.backward(pointwise.backward(dy))
        self.grads["depthwise_weight"] = depthwise.grads["weight"]
        self.grads["pointwise_weight"] = pointwise.grads["weight"]
        if self.use_bias:
            self.grads["bias"] = pointwise.grads["bias"]
        return dx

    def get_config(self) -> dict[str, Any]:
        return {"out_channels": self.out_channels, **self._depthwise.get_config(), "bias": self.use_bias,
                **self._activation_config()}


class _SeparableDepthwise(DepthwiseConv2D):
    """The depthwise part of a ``SeparableConv2D``, whose messages name it."""

    _owner = "SeparableConv2D"


class _SeparablePointwise(Conv2D):
    """The pointwise part of a ``SeparableConv2D``, whose messages name it."""

    _owner = "SeparableConv2D"
