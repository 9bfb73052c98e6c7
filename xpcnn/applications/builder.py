"""What every model family shares: Keras's arguments (``include_top``, ``pooling``, ``num_classes``,
``input_shape``, ``classifier_activation``), checked before anything is built, and the weights they load.

``weights`` is None (random initial weights), a path (a torchvision ``.pth`` file read without torch by
``xpcnn.io.load_torch_checkpoint``, a safetensors file with torchvision's keys, or an xpcnn weights file), or
``"DEFAULT"``: torchvision's ImageNet weights for that model, downloaded once into the cache
(``xpcnn.applications.weights``) and checked against the SHA-256 prefix in their name. Without the top, the
classifier's entries of the file are left out; with it, the file's classifier must have ``num_classes``
outputs. ``include_preprocessing=True`` puts ImageNet's normalisation inside the model (a ``Normalization``
layer, no weights), so that it takes images in [0, 1] as a loader gives them (Keras's MobileNetV3 and
EfficientNetV2 argument; torchvision's models take normalised images).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from .._checks import check_flag, check_int
from ..layers import Dense, Dropout, GlobalAvgPool2D, GlobalMaxPool2D, Input
from ..layers.preprocessing import Normalization
from ..model import Model

__all__ = ["backbone_model", "classifier"]


def classifier(num_classes: int, activation: str | None, dropout: float | None, name: str) -> Callable[[Any], Any]:
    """The top after the features: global average pooling, then (torchvision's names) ``fc``, or ``classifier``
    as ``Dropout`` at ``classifier.0`` and the linear layer at ``classifier.1`` when ``dropout`` is given."""

    def top(x: Any) -> Any:
        x = GlobalAvgPool2D(name="avgpool")(x)
        if dropout is None:
            return Dense(num_classes, activation=activation, name=name)(x)
        x = Dropout(dropout, name=f"{name}.0")(x)
        return Dense(num_classes, activation=activation, name=f"{name}.1")(x)

    return top


def backbone_model(arch: str, features: Callable[[Any], Any], *, weights: Any, include_top: bool, pooling: Any,
                   num_classes: Any, input_shape: Any, classifier_activation: str | None,
                   top: Callable[[int, str | None], Callable[[Any], Any]], include_preprocessing: bool) -> Model:
    """The model ``arch``: ``features`` on an input of ``input_shape`` (normalised with ImageNet's statistics
    first with ``include_preprocessing``), then the top (``top(num_classes, classifier_activation)`` builds
    it) or the ``pooling``; with ``weights`` loaded."""
    include_top = check_flag(include_top, "include_top", arch)
    include_preprocessing = check_flag(include_preprocessing, "include_preprocessing", arch)
    if pooling not in (None, "avg", "max"):
        raise ValueError(f"{arch}: pooling must be None, 'avg' or 'max', got {pooling!r}")
    num_classes = check_int(num_classes, "num_classes", 1, arch)
    if (not isinstance(input_shape, (tuple, list)) or len(input_shape) != 3
            or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 1 for d in input_shape)):
        raise ValueError(f"{arch}: input_shape is (channels, height, width) of positive ints, got {input_shape!r}")
    if weights is not None and not isinstance(weights, (str, os.PathLike)):
        raise TypeError(f"{arch}: weights is None, a path or 'DEFAULT', got {type(weights).__name__}")
    if weights is not None and input_shape[0] != 3:
        raise ValueError(f"{arch}: pretrained weights take 3 input channels (RGB), got input_shape {input_shape}")
    inputs = Input(tuple(input_shape), name="input")
    x = features(Normalization.imagenet(name="preprocessing")(inputs) if include_preprocessing else inputs)
    if include_top:
        x = top(num_classes, classifier_activation)(x)
    elif pooling is not None:
        x = (GlobalAvgPool2D if pooling == "avg" else GlobalMaxPool2D)(name="avgpool" if pooling == "avg"
                                                                         else "maxpool_top")(x)
    model = Model(inputs, x, name=arch)
    if weights is not None:
        from .weights import load_pretrained

        load_pretrained(model, arch, weights, include_top)
    return model
