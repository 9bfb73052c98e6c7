"""The blocks the mobile families share, named as torchvision names their modules.

``conv_norm_act`` is torchvision's ``Conv2dNormActivation`` (a convolution without bias, padded to keep the
size at stride 1, batch norm, an optional activation: keys ``<name>.0`` and ``<name>.1``);
``squeeze_excitation`` its ``SqueezeExcitation`` (keys ``<name>.fc1`` and ``<name>.fc2``, 1x1 convolutions).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..layers import BatchNorm2D, Conv2D, GlobalAvgPool2D, Multiply, Reshape

__all__ = ["conv_norm_act", "make_divisible", "squeeze_excitation"]


def make_divisible(value: float, divisor: int = 8) -> int:
    """``value`` rounded to a multiple of ``divisor``, never more than 10% below it (the channel rule of the
    MobileNet papers, as torchvision applies it)."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


def conv_norm_act(x: Any, filters: int, kernel: int, name: str, *, stride: int = 1, groups: int = 1,
                  activation: Callable[..., Any] | None = None, norm: dict[str, float] | None = None) -> Any:
    """Convolution (no bias), batch norm (``norm``: its ``eps`` and ``momentum``), then ``activation``."""
    x = Conv2D(filters, kernel, stride=stride, padding=(kernel - 1) // 2, groups=groups, bias=False,
               name=f"{name}.0")(x)
    x = BatchNorm2D(**(norm or {}), name=f"{name}.1")(x)
    return x if activation is None else activation(name=f"{name}.2")(x)


def squeeze_excitation(x: Any, channels: int, squeeze: int, name: str, activation: Callable[..., Any],
                       gate: Callable[..., Any]) -> Any:
    """Each channel of ``x`` scaled by a gate computed from the means of all channels: global average pooling,
    1x1 convolutions down to ``squeeze`` channels (``activation``) and back (``gate``)."""
    s = GlobalAvgPool2D(name=f"{name}.avgpool")(x)
    s = Reshape((channels, 1, 1), name=f"{name}.reshape")(s)
    s = activation(name=f"{name}.activation")(Conv2D(squeeze, 1, name=f"{name}.fc1")(s))
    s = gate(name=f"{name}.scale_activation")(Conv2D(channels, 1, name=f"{name}.fc2")(s))
    return Multiply(name=f"{name}.scale")([x, s])
