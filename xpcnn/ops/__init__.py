"""Stateless array functions behind the layers: arrays in, arrays out, each forward with its backward.

For users who want no layer objects: ``y = conv2d(x, w, b, padding="same")`` and
``dx, dw, db = conv2d_backward(dy, x, w, padding="same")`` on any Array API namespace.
"""

from .activations import (
    elu, elu_backward, erf, gelu, gelu_backward, hardsigmoid, hardsigmoid_backward, hardswish, hardswish_backward,
    leaky_relu, leaky_relu_backward, log_softmax, relu, relu6, relu6_backward, relu_backward, sigmoid,
    sigmoid_backward, silu, silu_backward, softmax, softmax_backward, tanh, tanh_backward,
)
from .conv import conv2d, conv2d_backward, conv2d_transpose, conv2d_transpose_backward
from .linear import dense, dense_backward
from .losses import (
    binary_cross_entropy, binary_cross_entropy_backward, cross_entropy, cross_entropy_backward, mse,
    mse_backward,
)
from .normalization import batch_norm, batch_norm_backward
from .adaptive_pool import (
    adaptive_avg_pool2d, adaptive_avg_pool2d_backward, adaptive_max_pool2d, adaptive_max_pool2d_backward,
)
from .pool import (
    avg_pool2d, avg_pool2d_backward, global_avg_pool2d, global_avg_pool2d_backward, global_max_pool2d,
    global_max_pool2d_backward, max_pool2d, max_pool2d_backward,
)
from .resize import upsample2d, upsample2d_backward, zero_pad2d, zero_pad2d_backward
from .windows import col2im, im2col

__all__ = [
    "adaptive_avg_pool2d", "adaptive_avg_pool2d_backward", "adaptive_max_pool2d", "adaptive_max_pool2d_backward",
    "avg_pool2d", "avg_pool2d_backward", "batch_norm", "batch_norm_backward", "binary_cross_entropy",
    "binary_cross_entropy_backward", "col2im", "conv2d", "conv2d_backward", "conv2d_transpose",
    "conv2d_transpose_backward", "cross_entropy", "cross_entropy_backward", "dense", "dense_backward", "elu",
    "elu_backward", "erf", "gelu", "gelu_backward", "global_avg_pool2d", "global_avg_pool2d_backward",
    "global_max_pool2d", "global_max_pool2d_backward", "hardsigmoid", "hardsigmoid_backward", "hardswish",
    "hardswish_backward", "im2col", "leaky_relu", "leaky_relu_backward", "log_softmax", "max_pool2d",
    "max_pool2d_backward", "mse", "mse_backward", "relu", "relu6", "relu6_backward", "relu_backward", "sigmoid",
    "sigmoid_backward", "silu", "silu_backward", "softmax", "softmax_backward", "tanh", "tanh_backward",
    "upsample2d", "upsample2d_backward", "zero_pad2d", "zero_pad2d_backward",
]
