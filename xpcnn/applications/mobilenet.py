"""MobileNetV2 (Sandler et al. 2018) and MobileNetV3 large and small (Howard et al. 2019), as torchvision
builds them: inverted residual blocks (expand 1x1, depthwise, project 1x1; V3 adds squeeze-and-excitation
and hard-swish), torchvision's module names (``features.3.conv.1.0``, ``features.4.block.2.fc1``,
``classifier.3``) and batch norm settings (V3: ``eps=1e-3``, ``momentum=0.01``).
"""

from __future__ import annotations

from typing import Any

from ..layers import Add, BatchNorm2D, Conv2D, Dense, Dropout, GlobalAvgPool2D, Hardsigmoid, Hardswish, ReLU, ReLU6
from ..model import Model
from .blocks import conv_norm_act, make_divisible, squeeze_excitation
from .builder import backbone_model, classifier

__all__ = ["mobilenet_v2", "mobilenet_v3_large", "mobilenet_v3_small"]

# MobileNetV2: (expansion, output channels, blocks, first stride)
_V2_STAGES = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2),
              (6, 320, 1, 1))
# MobileNetV3: (kernel, expanded channels, output channels, squeeze-excitation, hard-swish, stride)
_V3_LARGE = ((3, 16, 16, False, False, 1), (3, 64, 24, False, False, 2), (3, 72, 24, False, False, 1),
             (5, 72, 40, True, False, 2), (5, 120, 40, True, False, 1), (5, 120, 40, True, False, 1),
             (3, 240, 80, False, True, 2), (3, 200, 80, False, True, 1), (3, 184, 80, False, True, 1),
             (3, 184, 80, False, True, 1), (3, 480, 112, True, True, 1), (3, 672, 112, True, True, 1),
             (5, 672, 160, True, True, 2), (5, 960, 160, True, True, 1), (5, 960, 160, True, True, 1))
_V3_SMALL = ((3, 16, 16, True, False, 2), (3, 72, 24, False, False, 2), (3, 88, 24, False, False, 1),
             (5, 96, 40, True, True, 2), (5, 240, 40, True, True, 1), (5, 240, 40, True, True, 1),
             (5, 120, 48, True, True, 1), (5, 144, 48, True, True, 1), (5, 288, 96, True, True, 2),
             (5, 576, 96, True, True, 1), (5, 576, 96, True, True, 1))
_V3_NORM = {"eps": 1e-3, "momentum": 0.01}


def mobilenet_v2(weights: Any = None, include_top: bool = True, pooling: str | None = None,
                 num_classes: int = 1000, input_shape: tuple[int, int, int] = (3, 224, 224),
                 classifier_activation: str | None = None, include_preprocessing: bool = False) -> Model:
    """MobileNetV2: 3,504,872 parameters with the 1000-class head (see ``xpcnn.applications``)."""

    def features(x: Any) -> Any:
        x = conv_norm_act(x, 32, 3, "features.0", stride=2, activation=ReLU6)
        channels, index = 32, 1
        for expansion, out, blocks, first_stride in _V2_STAGES:
            for i in range(blocks):
                stride, name = first_stride if i == 0 else 1, f"features.{index}.conv"
                hidden, y, part = channels * expansion, x, 0
                if expansion != 1:
                    y = conv_norm_act(y, hidden, 1, f"{name}.0", activation=ReLU6)
                    part = 1
                y = conv_norm_act(y, hidden, 3, f"{name}.{part}", stride=stride, groups=hidden, activation=ReLU6)
                y = Conv2D(out, 1, bias=False, name=f"{name}.{part + 1}")(y)  # the projection, unnested
                y = BatchNorm2D(name=f"{name}.{part + 2}")(y)
                x = Add(name=f"features.{index}.add")([x, y]) if stride == 1 and channels == out else y
                channels, index = out, index + 1
        return conv_norm_act(x, 1280, 1, f"features.{index}", activation=ReLU6)

    return backbone_model("mobilenet_v2", features, weights=weights, include_top=include_top, pooling=pooling,
                          num_classes=num_classes, input_shape=input_shape,
                          classifier_activation=classifier_activation, include_preprocessing=include_preprocessing,
                          top=lambda classes, activation: classifier(classes, activation, 0.2, "classifier"))


def _mobilenet_v3(arch: str, setting: tuple[tuple[Any, ...], ...], last_channel: int, weights: Any,
                  include_top: bool, pooling: str | None, num_classes: int, input_shape: tuple[int, int, int],
                  classifier_activation: str | None, include_preprocessing: bool) -> Model:
    def features(x: Any) -> Any:
        x = conv_norm_act(x, 16, 3, "features.0", stride=2, activation=Hardswish, norm=_V3_NORM)
        channels = 16
        for index, (kernel, expanded, out, se, hard_swish, stride) in enumerate(setting, start=1):
            act, name, y, part = (Hardswish if hard_swish else ReLU), f"features.{index}.block", x, 0
            if expanded != channels:
                y = conv_norm_act(y, expanded, 1, f"{name}.0", activation=act, norm=_V3_NORM)
                part = 1
            y = conv_norm_act(y, expanded, kernel, f"{name}.{part}", stride=stride, groups=expanded, activation=act,
                              norm=_V3_NORM)
            if se:
                part += 1
                y = squeeze_excitation(y, expanded, make_divisible(expanded // 4), f"{name}.{part}", ReLU, Hardsigmoid)
            y = conv_norm_act(y, out, 1, f"{name}.{part + 1}", norm=_V3_NORM)
            x = Add(name=f"features.{index}.add")([y, x]) if stride == 1 and channels == out else y
            channels = out
        return conv_norm_act(x, 6 * channels, 1, f"features.{len(setting) + 1}", activation=Hardswish, norm=_V3_NORM)

    def top(classes: int, activation: str | None) -> Any:
        def head(x: Any) -> Any:
            x = GlobalAvgPool2D(name="avgpool")(x)
            x = Hardswish(name="classifier.1")(Dense(last_channel, name="classifier.0")(x))
            x = Dropout(0.2, name="classifier.2")(x)
            return Dense(classes, activation=activation, name="classifier.3")(x)

        return head

    return backbone_model(arch, features, weights=weights, include_top=include_top, pooling=pooling,
                          num_classes=num_classes, input_shape=input_shape,
                          classifier_activation=classifier_activation, include_preprocessing=include_preprocessing,
                          top=top)


def mobilenet_v3_large(weights: Any = None, include_top: bool = True, pooling: str | None = None,
                       num_classes: int = 1000, input_shape: tuple[int, int, int] = (3, 224, 224),
                       classifier_activation: str | None = None, include_preprocessing: bool = False) -> Model:
    """MobileNetV3-Large: 5,483,032 parameters with the 1000-class head (see ``xpcnn.applications``)."""
    return _mobilenet_v3("mobilenet_v3_large", _V3_LARGE, 1280, weights, include_top, pooling, num_classes,
                         input_shape, classifier_activation, include_preprocessing)


def mobilenet_v3_small(weights: Any = None, include_top: bool = True, pooling: str | None = None,
                       num_classes: int = 1000, input_shape: tuple[int, int, int] = (3, 224, 224),
                       classifier_activation: str | None = None, include_preprocessing: bool = False) -> Model:
    """MobileNetV3-Small: 2,542,856 parameters with the 1000-class head (see ``xpcnn.applications``)."""
    return _mobilenet_v3("mobilenet_v3_small", _V3_SMALL, 1024, weights, include_top, pooling, num_classes,
                         input_shape, classifier_activation, include_preprocessing)
