"""Stateful layers: parameters and gradients in dicts, an explicit ``forward`` and ``backward``.

Keras spellings (``MaxPooling2D``, ``AveragePooling2D``, ...) are aliases of the same classes.
"""

from .activations import ELU, GELU, Hardsigmoid, Hardswish, LeakyReLU, ReLU, ReLU6, Sigmoid, SiLU, Softmax, Tanh
from .base import Layer
from .conv import Conv2D, Conv2DTranspose, DepthwiseConv2D, SeparableConv2D
from .dense import Dense
from .dropout import Dropout, SpatialDropout2D, StochasticDepth
from .merge import Add, Average, Concatenate, Maximum, Multiply, Subtract
from .node import Input, InputLayer
from .normalization import BatchNorm1D, BatchNorm2D
from .pool import AdaptiveAvgPool2D, AdaptiveMaxPool2D, AvgPool2D, GlobalAvgPool2D, GlobalMaxPool2D, MaxPool2D
from .preprocessing import Normalization, Rescaling
from .reshape import Flatten, Reshape, ZeroPadding2D
from .upsampling import UpSampling2D

# Keras names users know, as aliases (one semantics: PyTorch's).
MaxPooling2D = MaxPool2D
AveragePooling2D = AvgPool2D
GlobalAveragePooling2D = GlobalAvgPool2D
GlobalMaxPooling2D = GlobalMaxPool2D

__all__ = [
    "AdaptiveAvgPool2D", "AdaptiveMaxPool2D", "Add", "Average", "AveragePooling2D", "AvgPool2D", "BatchNorm1D",
    "BatchNorm2D", "Concatenate", "Conv2D", "Conv2DTranspose", "Dense", "DepthwiseConv2D", "Dropout", "ELU", "Flatten",
    "GELU", "GlobalAveragePooling2D", "GlobalAvgPool2D", "GlobalMaxPool2D", "GlobalMaxPooling2D", "Hardsigmoid",
    "Hardswish", "Input", "InputLayer", "Layer", "LeakyReLU", "MaxPool2D", "MaxPooling2D", "Maximum", "Multiply",
    "Normalization", "ReLU", "ReLU6", "Rescaling", "Reshape", "SeparableConv2D", "SiLU", "Sigmoid", "Softmax",
    "SpatialDropout2D", "StochasticDepth", "Subtract", "Tanh", "UpSampling2D", "ZeroPadding2D",
]
