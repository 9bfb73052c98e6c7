"""EfficientNet-B0 (Tan & Le 2019) as torchvision builds it: MBConv blocks (expand 1x1, depthwise,
squeeze-and-excitation with SiLU and a sigmoid gate, project 1x1), stochastic depth on the residual branches
rising linearly to 0.2 over the blocks, torchvision's module names (``features.2.1.block.3.0``)."""

from __future__ import annotations

from typing import Any

from ..layers import Add, Sigmoid, SiLU, StochasticDepth
from ..model import Model
from .blocks import conv_norm_act, squeeze_excitation
from .builder import backbone_model, classifier

__all__ = ["efficientnet_b0"]

# (expansion, kernel, first stride, input channels, output channels, blocks) per stage
_B0_STAGES = ((1, 3, 1, 32, 16, 1), (6, 3, 2, 16, 24, 2), (6, 5, 2, 24, 40, 2), (6, 3, 2, 40, 80, 3),
              (6, 5, 1, 80, 112, 3), (6, 5, 2, 112, 192, 4), (6, 3, 1, 192, 320, 1))
_STOCHASTIC_DEPTH = 0.2


def _mbconv(x: Any, expansion: int, kernel: int, stride: int, channels: int, out: int, drop: float,
            name: str) -> Any:
    expanded, y, part = channels * expansion, x, 0
    if expanded != channels:
        y = conv_norm_act(y, expanded, 1, f"{name}.block.0", activation=SiLU)
        part = 1
    y = conv_norm_act(y, expanded, kernel, f"{name}.block.{part}", stride=stride, groups=expanded, activation=SiLU)
    y = squeeze_excitation(y, expanded, max(1, channels // 4), f"{name}.block.{part + 1}", SiLU, Sigmoid)
    y = conv_norm_act(y, out, 1, f"{name}.block.{part + 2}")
    if stride != 1 or channels != out:
        return y
    return Add(name=f"{name}.add")([StochasticDepth(drop, "row", name=f"{name}.stochastic_depth")(y), x])


def efficientnet_b0(weights: Any = None, include_top: bool = True, pooling: str | None = None,
                    num_classes: int = 1000, input_shape: tuple[int, int, int] = (3, 224, 224),
                    classifier_activation: str | None = None, include_preprocessing: bool = False) -> Model:
    """EfficientNet-B0: 5,288,548 parameters with the 1000-class head (see ``xpcnn.applications``)."""

    def features(x: Any) -> Any:
        x = conv_norm_act(x, 32, 3, "features.0", stride=2, activation=SiLU)
        total, block = sum(stage[-1] for stage in _B0_STAGES), 0
        for stage, (expansion, kernel, first_stride, channels, out, blocks) in enumerate(_B0_STAGES, start=1):
            for i in range(blocks):
                x = _mbconv(x, expansion, kernel, first_stride if i == 0 else 1, channels if i == 0 else out, out,
                            _STOCHASTIC_DEPTH * block / total, f"features.{stage}.{i}")
                block += 1
        return conv_norm_act(x, 1280, 1, f"features.{len(_B0_STAGES) + 1}", activation=SiLU)

    return backbone_model("efficientnet_b0", features, weights=weights, include_top=include_top, pooling=pooling,
                          num_classes=num_classes, input_shape=input_shape,
                          classifier_activation=classifier_activation, include_preprocessing=include_preprocessing,
                          top=lambda classes, activation: classifier(classes, activation, 0.2, "classifier"))
