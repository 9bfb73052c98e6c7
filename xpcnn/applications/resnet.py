"""ResNet-18, -34 and -50 (He et al. 2015) as torchvision builds them, keys and shapes included.

The layers are named as torchvision's modules (``conv1``, ``layer2.0.downsample.0``, ``fc``), so a
torchvision state dict loads as it is. Blocks: torchvision's ``BasicBlock`` (two 3x3 convolutions) and
``Bottleneck`` (1x1, 3x3 with the stride, 1x1 to four times the width: the "ResNet v1.5" that torchvision and
most frameworks ship), each with a 1x1 projection where the shape changes.
"""

from __future__ import annotations

from typing import Any

from ..layers import Add, BatchNorm2D, Conv2D, MaxPool2D, ReLU
from ..model import Model
from .builder import backbone_model, classifier

__all__ = ["resnet18", "resnet34", "resnet50"]

_STAGES = {"resnet18": ("basic", (2, 2, 2, 2)), "resnet34": ("basic", (3, 4, 6, 3)),
           "resnet50": ("bottleneck", (3, 4, 6, 3))}


def _conv_bn(x: Any, filters: int, kernel: int, stride: int, conv: str, bn: str) -> Any:
    x = Conv2D(filters, kernel, stride=stride, padding=kernel // 2, bias=False, name=conv)(x)
    return BatchNorm2D(name=bn)(x)


def _block(x: Any, kind: str, width: int, stride: int, prefix: str, in_channels: int) -> tuple[Any, int]:
    """One residual block; its output and channel count."""
    out_channels = width * (4 if kind == "bottleneck" else 1)
    if kind == "basic":
        y = ReLU(name=f"{prefix}.relu1")(_conv_bn(x, width, 3, stride, f"{prefix}.conv1", f"{prefix}.bn1"))
        y = _conv_bn(y, width, 3, 1, f"{prefix}.conv2", f"{prefix}.bn2")
    else:
        y = ReLU(name=f"{prefix}.relu1")(_conv_bn(x, width, 1, 1, f"{prefix}.conv1", f"{prefix}.bn1"))
        y = ReLU(name=f"{prefix}.relu2")(_conv_bn(y, width, 3, stride, f"{prefix}.conv2", f"{prefix}.bn2"))
        y = _conv_bn(y, out_channels, 1, 1, f"{prefix}.conv3", f"{prefix}.bn3")
    shortcut = x
    if stride != 1 or in_channels != out_channels:
        shortcut = _conv_bn(x, out_channels, 1, stride, f"{prefix}.downsample.0", f"{prefix}.downsample.1")
    return ReLU(name=f"{prefix}.relu")(Add(name=f"{prefix}.add")([y, shortcut])), out_channels


def _resnet(arch: str, weights: Any, include_top: bool, pooling: str | None, num_classes: int,
            input_shape: tuple[int, int, int], classifier_activation: str | None, include_preprocessing: bool
            ) -> Model:
    kind, depths = _STAGES[arch]

    def features(x: Any) -> Any:
        x = ReLU(name="relu")(_conv_bn(x, 64, 7, 2, "conv1", "bn1"))
        x = MaxPool2D(3, stride=2, padding=1, name="maxpool")(x)
        channels = 64
        for stage, (width, depth) in enumerate(zip((64, 128, 256, 512), depths), start=1):
            for index in range(depth):
                stride = 2 if stage > 1 and index == 0 else 1
                x, channels = _block(x, kind, width, stride, f"layer{stage}.{index}", channels)
        return x

    return backbone_model(arch, features, weights=weights, include_top=include_top, pooling=pooling,
                          num_classes=num_classes, input_shape=input_shape,
                          classifier_activation=classifier_activation, include_preprocessing=include_preprocessing,
                          top=lambda classes, activation: classifier(classes, activation, None, "fc"))


def resnet18(weights: Any = None, include_top: bool = True, pooling: str | None = None, num_classes: int = 1000,
             input_shape: tuple[int, int, int] = (3, 224, 224), classifier_activation: str | None = None,
             include_preprocessing: bool = False) -> Model:
    """ResNet-18: 11,689,512 parameters with the 1000-class head (see ``xpcnn.applications``)."""
    return _resnet("resnet18", weights, include_top, pooling, num_classes, input_shape, classifier_activation,
                   include_preprocessing)


def resnet34(weights: Any = None, include_top: bool = True, pooling: str | None = None, num_classes: int = 1000,
             input_shape: tuple[int, int, int] = (3, 224, 224), classifier_activation: str | None = None,
             include_preprocessing: bool = False) -> Model:
    """ResNet-34: 21,797,672 parameters with the 1000-class head (see ``xpcnn.applications``)."""
    return _resnet("resnet34", weights, include_top, pooling, num_classes, input_shape, classifier_activation,
                   include_preprocessing)


def resnet50(weights: Any = None, include_top: bool = True, pooling: str | None = None, num_classes: int = 1000,
             input_shape: tuple[int, int, int] = (3, 224, 224), classifier_activation: str | None = None,
             include_preprocessing: bool = False) -> Model:
    """ResNet-50: 25,557,032 parameters with the 1000-class head (see ``xpcnn.applications``)."""
    return _resnet("resnet50", weights, include_top, pooling, num_classes, input_shape, classifier_activation,
                   include_preprocessing)
