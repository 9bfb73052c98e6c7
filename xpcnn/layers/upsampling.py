"""Upsampling of NCHW images by integer factors or to a size, thin over ``xpcnn.ops.resize``."""

from __future__ import annotations

from typing import Any

from .._checks import check_flag
from ..ops import resize as resize_ops
from .base import Layer

__all__ = ["UpSampling2D"]


class UpSampling2D(Layer):
    """``(N, C, H, W)`` -> ``(N, C, H*sh, W*sw)`` for ``scale_factor`` s (int or pair ``(sh, sw)``, default 2),
    or -> ``(N, C, *size)`` for ``size=(H, W)`` (any output size, as ``torch.nn.Upsample(size=)``).

    ``mode="nearest"`` takes the nearest pixel (repeats pixels for integer factors); ``"bilinear"``
    interpolates like ``F.interpolate(..., mode="bilinear", align_corners=align_corners)``. Keras's ``size=``
    factors are ``scale_factor`` here.

    Parameters
    ----------
    scale_factor : int or (int, int), optional
        The factors of height and width; 2 when neither it nor ``size`` is given.
    mode : {"nearest", "bilinear"}, default "nearest"
    size : (int, int), optional
        The output height and width instead of factors.
    align_corners : bool, default False
        For ``mode="bilinear"`` only, as torch's.
    name : str, optional
        The layer's name (a model's parameter keys use it); by default made from the class name.

    Raises
    ------
    ValueError
        If both ``scale_factor`` and ``size`` are given, ``align_corners`` comes without ``"bilinear"``, or a
        value is out of range.

    Examples
    --------
    >>> from xpcnn.layers import UpSampling2D
    >>> x = xpcnn.asarray(np.zeros((1, 3, 4, 4)))
    >>> UpSampling2D()(x).shape, UpSampling2D(size=(5, 7), mode="bilinear")(x).shape
    ((1, 3, 8, 8), (1, 3, 5, 7))
    """

    input_ndim = 3

    def __init__(self, scale_factor: Any = None, mode: str = "nearest", *, size: Any = None,
                 align_corners: bool = False, name: str | None = None) -> None:
        super().__init__(name)
        owner = self._name()
        if size is not None and scale_factor is not None:
            raise ValueError(f"{owner}: give scale_factor or size, not both (got {scale_factor!r} and {size!r})")
        align_corners = check_flag(align_corners, "align_corners", owner)
        if align_corners and mode != "bilinear":
            raise ValueError(f"{owner}: align_corners applies to mode='bilinear' only, got mode={mode!r}")
        self.scale_factor = None if size is not None else resize_ops.check_upsample_args(
            2 if scale_factor is None else scale_factor, mode, owner=owner)
        self.size = None if size is None else resize_ops.check_size(size, owner=owner)
        if size is not None:
            resize_ops.check_upsample_args(1, mode, owner=owner)  # the mode's own check
        self.mode, self.align_corners = mode, align_corners

    def _out_hw(self, h: int, w: int) -> tuple[int, int]:
        return self.size if self.size is not None else (h * self.scale_factor[0], w * self.scale_factor[1])

    def _build(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        c, h, w = input_shape
        return (c, *self._out_hw(h, w))

    def _forward(self, x: Any, training: bool) -> Any:
        in_hw = (int(x.shape[2]), int(x.shape[3]))
        if training:
            self._cache = in_hw
        return resize_ops.resize2d(x, self._out_hw(*in_hw), self.mode, self.align_corners)

    def _backward(self, dy: Any) -> Any:
        return resize_ops.resize2d_backward(dy, self._cache, self.mode, self.align_corners)

    def get_config(self) -> dict[str, Any]:
        config: dict[str, Any] = ({"scale_factor": self.scale_factor} if self.size is None
                                  else {"size": self.size})
        config["mode"] = self.mode
        if self.align_corners:
            config["align_corners"] = True
        return config
