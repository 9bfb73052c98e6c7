"""Model families as torchvision builds them (keys, shapes and parameter counts), with Keras's arguments.

``resnet50(weights=None, include_top=True, pooling=None, num_classes=1000, input_shape=(3, 224, 224),
classifier_activation=None)``: ``weights`` None (random), a path (a torchvision ``.pth`` or a safetensors
file with torchvision's keys, or an xpcnn weights file) or ``"DEFAULT"`` (torchvision's ImageNet weights,
downloaded once); without the top, ``pooling`` "avg" or "max" pools the features. The outputs are logits
unless ``classifier_activation`` names an activation (Keras's default is "softmax", torchvision's none).
"""

from .efficientnet import efficientnet_b0
from .mobilenet import mobilenet_v2, mobilenet_v3_large, mobilenet_v3_small
from .resnet import resnet18, resnet34, resnet50

__all__ = ["efficientnet_b0", "mobilenet_v2", "mobilenet_v3_large", "mobilenet_v3_small", "resnet18", "resnet34", "resnet50"]
