"""Integer-factor upsampling of NCHW images, thin over ``xpcnn.ops.resize``."""

from __future__ import annotations

from typing import Any

from ..ops import resize as resize_ops
from .base import Layer

__all__ = ["UpSampling2D"]


class UpSampling2D(Layer):
    """``(N, C, H, W)`` -> ``(N, C, H*sh, W*sw)`` for ``scale_factor`` s (int or pair ``(sh, sw)``).

    ``mode="nearest"`` repeats pixels; ``"bilinear"`` interpolates like ``F.interpolate(...,
    mode="bilinear", align_corners=False)``.
    """

    input_ndim = 3

    def __init__(self, scale_factor: Any = 2, mode: str = "nearest", *, name: str | None = None) -> None:
        super().__init__(name)
        self.scale_factor = resize_ops.check_upsample_args(scale_factor, mode, owner=self._name())
        self.mode = mode

    def _build(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        c, h, w = input_shape
        return (c, h * self.scale_factor[0], w * self.scale_factor[1])

    def _forward(self, x: Any, training: bool) -> Any:
        return resize_ops.upsample2d(x, self.scale_factor, self.mode)

    def _backward(self, dy: Any) -> Any:
        return resize_ops.upsample2d_backward(dy, self.scale_factor, self.mode)

    def get_config(self) -> dict[str, Any]:
        return {"scale_factor": self.scale_factor, "mode": self.mode}
