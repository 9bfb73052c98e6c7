"""Pooling layers over NCHW input, thin over ``xpcnn.ops.pool``; none has parameters."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

from .._checks import check_flag
from ..ops import adaptive_pool as adaptive_ops
from ..ops import pool as pool_ops
from .base import Layer

__all__ = ["AdaptiveAvgPool2D", "AdaptiveMaxPool2D", "AvgPool2D", "GlobalAvgPool2D", "GlobalMaxPool2D", "MaxPool2D"]


class _Pooling(Layer):
    """Forward keeps the input for backward; subclasses name the op pair and its keyword arguments."""

    input_ndim = 3
    _pool: ClassVar[Callable[..., Any]]
    _pool_backward: ClassVar[Callable[..., Any]]

    def _op_args(self) -> dict[str, Any]:
        return {}

    def _forward(self, x: Any, training: bool) -> Any:
        if training:
            self._cache = x
        return self._pool(x, **self._op_args())

    def _backward(self, dy: Any) -> Any:
        return self._pool_backward(dy, self._cache, **self._op_args())


class _WindowPool2D(_Pooling):
    """Pooling over ``kernel_size`` windows every ``stride`` pixels (default: the kernel size), PyTorch
    numerics: floor mode (``ceil_mode=True`` keeps a last, partial window), symmetric ``padding`` of at most
    half the kernel, or ``padding="same"`` (Keras's placement: output ceil(size / stride), the odd pixel of
    padding last)."""

    def __init__(self, kernel_size: Any, stride: Any = None, padding: Any = 0, *, dilation: Any = 1,
                 ceil_mode: bool = False, name: str | None = None) -> None:
        super().__init__(name)
        self.kernel_size, self.stride, self.padding, self.dilation = pool_ops.check_pool_args(
            kernel_size, stride, padding, dilation, owner=type(self).__name__
        )
        self.ceil_mode = check_flag(ceil_mode, "ceil_mode", type(self).__name__)

    def _geometry_args(self) -> dict[str, Any]:
        return {"kernel_size": self.kernel_size, "stride": self.stride, "padding": self.padding,
                "dilation": self.dilation, "ceil_mode": self.ceil_mode}

    def _output_hw(self, sample_shape: tuple[int, ...]) -> tuple[int, int]:
        in_hw = (sample_shape[1], sample_shape[2])
        return pool_ops.pool_geometry(in_hw, **self._geometry_args(), owner=self._name()).out_hw

    def _check_input(self, sample_shape: tuple[int, ...]) -> None:
        self._output_hw(sample_shape)

    def _build(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        return (input_shape[0], *self._output_hw(input_shape))

    def get_config(self) -> dict[str, Any]:
        config = {"kernel_size": self.kernel_size, "stride": self.stride, "padding": self.padding}
        return {**config, **{k: v for k, v in self._op_args().items() if k not in config and v != self._DEFAULTS[k]}}

    _DEFAULTS: ClassVar[dict[str, Any]] = {"dilation": (1, 1), "ceil_mode": False, "count_include_pad": True}


class MaxPool2D(_WindowPool2D):
    """Window maxima ``(N, C, H, W)`` -> ``(N, C, OH, OW)``; padding counts as -inf and each window's gradient
    goes to its first maximum, as in ``torch.nn.MaxPool2d``; ``dilation`` spaces the window's taps.

    Parameters
    ----------
    kernel_size : int or (int, int)
        The window's height and width.
    stride : int or (int, int), optional
        Pixels between windows; by default the kernel size (windows that tile the input).
    padding : int, (int, int), "valid" or "same", default 0
        Pixels added on each side (at most half the kernel), or Keras's ``"same"`` (output ``ceil(size /
        stride)``, the odd pixel of padding after the image).
    dilation : int or (int, int), default 1
        Pixels between a window's taps.
    ceil_mode : bool, default False
        Keep a last, partial window (PyTorch's rule).
    name : str, optional
        The layer's name; by default made from the class name.

    Raises
    ------
    ValueError
        If a size is not a positive int, the padding exceeds half the kernel, or (when called) the window is
        larger than the padded input.

    Examples
    --------
    >>> from xpcnn.layers import MaxPool2D
    >>> x = xpcnn.asarray(np.ones((1, 3, 7, 7)))
    >>> MaxPool2D(2)(x).shape, MaxPool2D(3, stride=2, padding="same")(x).shape
    ((1, 3, 3, 3), (1, 3, 4, 4))
    """

    _pool = staticmethod(pool_ops.max_pool2d)
    _pool_backward = staticmethod(pool_ops.max_pool2d_backward)

    def _op_args(self) -> dict[str, Any]:
        return self._geometry_args()

    def _forward(self, x: Any, training: bool) -> Any:
        if not training:
            return self._pool(x, **self._op_args())
        # the positions of the maxima, found while x is hot: backward then never reads x again
        y, saved = self._pool(x, **self._op_args(), return_saved=True)
        self._cache = (x, saved)
        return y

    def _backward(self, dy: Any) -> Any:
        x, saved = self._cache
        return self._pool_backward(dy, x, **self._op_args(), saved=saved)


class AvgPool2D(_WindowPool2D):
    """Window means ``(N, C, H, W)`` -> ``(N, C, OH, OW)``; zero padding counts in the mean, as in
    ``torch.nn.AvgPool2d``, unless ``count_include_pad=False`` or ``padding="same"`` (Keras's mean over the
    real pixels).

    Parameters
    ----------
    kernel_size : int or (int, int)
        The window's height and width.
    stride : int or (int, int), optional
        Pixels between windows; by default the kernel size (windows that tile the input).
    padding : int, (int, int), "valid" or "same", default 0
        Pixels added on each side (at most half the kernel), or Keras's ``"same"`` (output ``ceil(size /
        stride)``, the odd pixel of padding after the image).
    ceil_mode : bool, default False
        Keep a last, partial window (PyTorch's rule).
    count_include_pad : bool, default True
        Count the zero padding in each window's mean.
    name : str, optional
        The layer's name; by default made from the class name.

    Raises
    ------
    ValueError
        If a size is not a positive int, the padding exceeds half the kernel, or (when called) the window is
        larger than the padded input.

    Examples
    --------
    >>> from xpcnn.layers import AvgPool2D
    >>> ones = xpcnn.asarray(np.ones((1, 1, 2, 2)))
    >>> xpcnn.to_numpy(AvgPool2D(2, stride=1, padding=1)(ones))[0, 0, 0].tolist()   # padding in the mean
    [0.25, 0.5, 0.25]
    >>> xpcnn.to_numpy(AvgPool2D(2, stride=1, padding=1, count_include_pad=False)(ones))[0, 0, 0].tolist()
    [1.0, 1.0, 1.0]
    """

    _pool = staticmethod(pool_ops.avg_pool2d)
    _pool_backward = staticmethod(pool_ops.avg_pool2d_backward)

    def __init__(self, kernel_size: Any, stride: Any = None, padding: Any = 0, *, ceil_mode: bool = False,
                 count_include_pad: bool = True, name: str | None = None) -> None:
        super().__init__(kernel_size, stride, padding, ceil_mode=ceil_mode, name=name)
        self.count_include_pad = check_flag(count_include_pad, "count_include_pad", "AvgPool2D")

    def _op_args(self) -> dict[str, Any]:
        args = self._geometry_args()
        del args["dilation"]
        return {**args, "count_include_pad": self.count_include_pad}


class _GlobalPool2D(_Pooling):
    """Pooling over the whole image: ``(N, C, H, W)`` -> ``(N, C)``, any H and W."""

    def _build(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        return (input_shape[0],)


class GlobalAvgPool2D(_GlobalPool2D):
    """Mean of each channel: ``(N, C, H, W)`` -> ``(N, C)``.

    Parameters
    ----------
    name : str, optional
        The layer's name; by default made from the class name.

    Examples
    --------
    >>> from xpcnn.layers import GlobalAvgPool2D
    >>> GlobalAvgPool2D()(xpcnn.asarray(np.ones((2, 3, 5, 7)))).shape
    (2, 3)
    """

    _pool = staticmethod(pool_ops.global_avg_pool2d)
    _pool_backward = staticmethod(pool_ops.global_avg_pool2d_backward)


class GlobalMaxPool2D(_GlobalPool2D):
    """Maximum of each channel: ``(N, C, H, W)`` -> ``(N, C)``; the gradient goes to the first maximum.

    Parameters
    ----------
    name : str, optional
        The layer's name; by default made from the class name.
    """

    _pool = staticmethod(pool_ops.global_max_pool2d)
    _pool_backward = staticmethod(pool_ops.global_max_pool2d_backward)


class _AdaptivePool2D(_Pooling):
    """Pooling to a fixed ``output_size`` whatever the input's (torch's ``AdaptiveAvgPool2d``/``AdaptiveMaxPool2d``):
    ``(N, C, H, W)`` -> ``(N, C, oh, ow)``, window i along an axis covering ``[floor(i*H/oh), ceil((i+1)*H/oh))``.
    """

    def __init__(self, output_size: Any, *, name: str | None = None) -> None:
        super().__init__(name)
        self.output_size = adaptive_ops.check_adaptive_size(output_size, owner=type(self).__name__)

    def _op_args(self) -> dict[str, Any]:
        return {"output_size": self.output_size}

    def _build(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        return (input_shape[0], *adaptive_ops.adaptive_output_hw(input_shape[1:3], self.output_size))

    def get_config(self) -> dict[str, Any]:
        return {"output_size": self.output_size}


class AdaptiveAvgPool2D(_AdaptivePool2D):
    """Window means to a fixed output size; ``AdaptiveAvgPool2D(1)`` is the global average that keeps the
    ``(N, C, 1, 1)`` shape (torchvision's ``avgpool``).

    Parameters
    ----------
    output_size : int or (int or None, int or None)
        The output's height and width; None keeps that axis's size.
    name : str, optional
        The layer's name; by default made from the class name.

    Raises
    ------
    ValueError
        If a size is not a positive int (or None in a pair).

    Examples
    --------
    >>> from xpcnn.layers import AdaptiveAvgPool2D
    >>> x = xpcnn.asarray(np.ones((1, 3, 7, 7)))
    >>> AdaptiveAvgPool2D(1)(x).shape, AdaptiveAvgPool2D((2, None))(x).shape
    ((1, 3, 1, 1), (1, 3, 2, 7))
    """

    _pool = staticmethod(adaptive_ops.adaptive_avg_pool2d)
    _pool_backward = staticmethod(adaptive_ops.adaptive_avg_pool2d_backward)


class AdaptiveMaxPool2D(_AdaptivePool2D):
    """Window maxima to a fixed output size; each window's gradient goes to its first maximum (row-major), as
    torch's.

    Parameters
    ----------
    output_size : int or (int or None, int or None)
        The output's height and width; None keeps that axis's size.
    name : str, optional
        The layer's name; by default made from the class name.

    Raises
    ------
    ValueError
        If a size is not a positive int (or None in a pair).
    """

    _pool = staticmethod(adaptive_ops.adaptive_max_pool2d)
    _pool_backward = staticmethod(adaptive_ops.adaptive_max_pool2d_backward)
