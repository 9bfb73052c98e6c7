"""Export a trained model to ONNX: an inference graph for onnxruntime, TensorRT, OpenVINO and the rest.

``export_onnx(model, path, opset=17)`` walks the model's layer calls (``model.layer_calls()``, unfused) and
writes one ONNX operator per layer (two where an ``activation=`` follows): batch norm with its running
statistics, dropout removed, the batch axis symbolic (``"batch"``). Weights go in as float32 initializers
whatever the backend. A layer without an ONNX equivalent raises a ValueError naming it, before anything is
written. Needs the ``onnx`` extra (``pip install "xpcnn[onnx]"``: onnx and onnxruntime).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import numpy as np

from .backend import to_numpy
from .io.atomic import atomic_write
from .layers import (
    ELU, GELU, AdaptiveAvgPool2D, AdaptiveMaxPool2D, Add, AvgPool2D, Average, BatchNorm1D, BatchNorm2D, Concatenate,
    Conv2D, Conv2DTranspose, Dense, DepthwiseConv2D, Dropout, Flatten, GlobalAvgPool2D, GlobalMaxPool2D, Hardsigmoid,
    Hardswish, LeakyReLU, MaxPool2D, Maximum, Multiply, Normalization, ReLU, ReLU6, Rescaling, Reshape,
    SeparableConv2D, Sigmoid, SiLU, Softmax, SpatialDropout2D, StochasticDepth, Subtract, Tanh, UpSampling2D,
    ZeroPadding2D,
)
from .layers.activations import make_activation
from .layers.base import Layer
from .model.base import LayerGraph
from .ops import adaptive_pool as adaptive_ops
from .ops import pool as pool_ops
from .ops.conv import conv_transpose_geometry
from .ops.windows import resolve_padding

__all__ = ["IR_VERSION", "export_onnx"]

IR_VERSION = 10  # what onnxruntime 1.20 and later read; onnx itself writes newer by default
_INSTALL_HINT = 'export_onnx needs onnx: pip install "xpcnn[onnx]"'


def _onnx() -> Any:
    try:
        import onnx
    except ImportError as exc:
        raise ImportError(f"{_INSTALL_HINT} ({exc})") from exc
    return onnx


class _Graph:
    """The nodes and initializers being written, with fresh names for intermediate tensors."""

    def __init__(self, onnx: Any, opset: int) -> None:
        self.onnx, self.opset = onnx, opset
        self.nodes: list[Any] = []
        self.initializers: list[Any] = []
        self._count = 0

    def fresh(self, hint: str) -> str:
        self._count += 1
        return f"{hint}/{self._count}"

    def constant(self, hint: str, value: Any, dtype: Any = np.float32) -> str:
        name = self.fresh(hint)
        array = np.asarray(to_numpy(value) if not isinstance(value, (list, tuple, np.ndarray)) else value, dtype=dtype)
        self.initializers.append(self.onnx.numpy_helper.from_array(array, name))
        return name

    def node(self, op: str, inputs: list[str], output: str, **attributes: Any) -> str:
        self.nodes.append(self.onnx.helper.make_node(op, inputs, [output], name=self.fresh(op), **attributes))
        return output


def _onnx_pads(pads: tuple[int, int, int, int]) -> list[int]:
    """(top, bottom, left, right) -> ONNX's [top, left, bottom, right]."""
    return [pads[0], pads[2], pads[1], pads[3]]


def _conv(g: _Graph, layer: Conv2D, x: str, out: str, in_hw: tuple[int, int]) -> str:
    pads = resolve_padding(layer.padding, in_hw, layer.kernel_size, layer.stride, layer.dilation)
    if layer.padding_mode != "zeros":
        mode = {"reflect": "reflect", "replicate": "edge", "circular": "wrap"}[layer.padding_mode]
        if mode == "wrap" and g.opset < 19:
            raise ValueError(f"export_onnx: {layer.name!r} pads circularly, which ONNX has from opset 19 (Pad mode "
                             f"'wrap'); export with opset=19 or later")
        x = _pad(g, layer, x, _onnx_pads(pads), mode=mode)
        pads = (0, 0, 0, 0)
    inputs = [x, g.constant(f"{layer.name}/weight", layer.params["weight"])]
    if layer.use_bias:
        inputs.append(g.constant(f"{layer.name}/bias", layer.params["bias"]))
    return g.node("Conv", inputs, out, kernel_shape=list(layer.kernel_size), strides=list(layer.stride),
                  dilations=list(layer.dilation), group=layer.groups, pads=_onnx_pads(pads))


def _separable_conv(g: _Graph, layer: SeparableConv2D, x: str, out: str, in_hw: tuple[int, int]) -> str:
    """Two Conv nodes: the depthwise one (``group`` = the channels), then the 1x1 one with the bias."""
    depthwise, pointwise = layer.parts()
    mid = _conv(g, depthwise, x, g.fresh(f"{layer.name}/depthwise"), in_hw)
    return _conv(g, pointwise, mid, out, tuple(depthwise.output_shape[1:]))


def _conv_transpose(g: _Graph, layer: Conv2DTranspose, x: str, out: str, in_hw: tuple[int, int]) -> str:
    stride, pads, dilation, out_hw = conv_transpose_geometry(
        in_hw, layer.kernel_size, layer.stride, layer.padding, layer.output_padding, layer.dilation)
    reach = [dilation[a] * (layer.kernel_size[a] - 1) + 1 for a in range(2)]
    output_padding = [out_hw[a] - (stride[a] * (in_hw[a] - 1) + reach[a] - pads[2 * a] - pads[2 * a + 1])
                      for a in range(2)]
    inputs = [x, g.constant(f"{layer.name}/weight", layer.params["weight"])]
    if layer.use_bias:
        inputs.append(g.constant(f"{layer.name}/bias", layer.params["bias"]))
    return g.node("ConvTranspose", inputs, out, kernel_shape=list(layer.kernel_size), strides=list(stride),
                  dilations=list(dilation), group=layer.groups, pads=_onnx_pads(pads), output_padding=output_padding)


def _dense(g: _Graph, layer: Dense, x: str, out: str, in_hw: Any) -> str:
    inputs = [x, g.constant(f"{layer.name}/weight", layer.params["weight"])]
    if layer.use_bias:
        inputs.append(g.constant(f"{layer.name}/bias", layer.params["bias"]))
    return g.node("Gemm", inputs, out, transB=1)


def _batch_norm(g: _Graph, layer: BatchNorm2D, x: str, out: str, in_hw: Any) -> str:
    if not layer.track_running_stats:
        raise ValueError(f"export_onnx: {layer.name!r} normalises with each batch's own statistics "
                         "(track_running_stats=False), which an ONNX inference graph cannot express")
    channels = layer.input_shape[0]
    scale = layer.params["weight"] if layer.affine else np.ones(channels)
    shift = layer.params["bias"] if layer.affine else np.zeros(channels)
    inputs = [x] + [g.constant(f"{layer.name}/{what}", value) for what, value in (
        ("scale", scale), ("bias", shift), ("mean", layer.buffers["running_mean"]),
        ("var", layer.buffers["running_var"]))]
    return g.node("BatchNormalization", inputs, out, epsilon=layer.eps)


def _pool_geometry(layer: Any, in_hw: tuple[int, int]) -> pool_ops.PoolGeometry:
    return pool_ops.pool_geometry(in_hw, layer.kernel_size, layer.stride, layer.padding,
                                  getattr(layer, "dilation", 1), layer.ceil_mode)


def _max_pool(g: _Graph, layer: MaxPool2D, x: str, out: str, in_hw: tuple[int, int]) -> str:
    """Ceil mode is exported as the padding it amounts to (ONNX's shape inference, unlike PyTorch and
    onnxruntime, keeps a last window that starts in the padding); max-pool padding never wins a window."""
    pads = _onnx_pads(_pool_geometry(layer, in_hw).pads)
    if any(pad >= layer.kernel_size[i % 2] for i, pad in enumerate(pads)):  # onnxruntime refuses such pads
        x = _pad(g, layer, x, pads, fill=-np.inf)
        pads = [0, 0, 0, 0]
    return g.node("MaxPool", [x], out, kernel_shape=list(layer.kernel_size), strides=list(layer.stride), pads=pads,
                  dilations=list(layer.dilation))


def _avg_pool(g: _Graph, layer: AvgPool2D, x: str, out: str, in_hw: tuple[int, int]) -> str:
    """Ceil mode as padding, like max-pooling. A last window hanging over the declared padding is divided by
    what it covers of the padded input (PyTorch's rule), so with ``count_include_pad`` the declared padding
    becomes real zeros and only the overhang is left out of the count."""
    geometry = _pool_geometry(layer, in_hw)
    declared, pads = _onnx_pads(geometry.declared), _onnx_pads(geometry.pads)
    include = layer.count_include_pad and layer.padding != "same"
    if include and pads != declared:
        if any(declared):
            x = _pad(g, layer, x, declared)
            pads = [full - asked for full, asked in zip(pads, declared)]
        include = False
    return g.node("AveragePool", [x], out, kernel_shape=list(layer.kernel_size), strides=list(layer.stride),
                  pads=pads, count_include_pad=int(include))


def _adaptive_pool(plain: str, whole: str) -> Callable[..., str]:
    """An adaptive pooling whose windows tile the input: the plain pooling with kernel = stride (or the global
    one for a 1x1 output); other output sizes have windows of different sizes, which ONNX cannot express."""
    def export(g: _Graph, layer: Layer, x: str, out: str, in_hw: tuple[int, int]) -> str:
        out_hw = tuple(layer.output_shape[1:])
        if out_hw == (1, 1):
            return g.node(whole, [x], out)
        kernel = adaptive_ops.adaptive_uniform_kernel(in_hw, out_hw)
        if kernel is None:
            raise ValueError(f"export_onnx: {layer.name!r} ({type(layer).__name__}) pools {in_hw[0]}x{in_hw[1]} "
                             f"pixels to {out_hw[0]}x{out_hw[1]} with windows of different sizes (torch's adaptive "
                             "rule), which ONNX's pooling cannot express; an output size that divides the input's "
                             "exports")
        return g.node(plain, [x], out, kernel_shape=list(kernel), strides=list(kernel), pads=[0, 0, 0, 0])
    return export


def _pad(g: _Graph, layer: Any, x: str, pads: list[int], out: str | None = None, mode: str = "constant",
         fill: float | None = None) -> str:
    """A Pad node over the spatial axes, ``pads`` in ONNX's order (top, left, bottom, right); ``fill`` for
    ``mode="constant"`` (zeros when None)."""
    top, left, bottom, right = pads
    inputs = [x, g.constant(f"{layer.name}/pads", [0, 0, top, left, 0, 0, bottom, right], np.int64)]
    if fill is not None:
        inputs.append(g.constant(f"{layer.name}/fill", fill))
    return g.node("Pad", inputs, out or g.fresh(f"{layer.name}/padded"), mode=mode)


def _global_pool(op: str) -> Callable[..., str]:
    def export(g: _Graph, layer: Layer, x: str, out: str, in_hw: Any) -> str:
        return g.node("Flatten", [g.node(op, [x], g.fresh(f"{layer.name}/pooled"))], out, axis=1)
    return export


def _upsample(g: _Graph, layer: UpSampling2D, x: str, out: str, in_hw: tuple[int, int]) -> str:
    if layer.mode == "bilinear" and not layer.align_corners and 1 in layer.output_shape[1:]:
        raise ValueError(f"export_onnx: {layer.name!r} resizes bilinearly to an axis of one pixel, where ONNX's "
                         "'pytorch_half_pixel' reads the first pixel and PyTorch (and xpcnn) the middle")
    if layer.mode == "nearest":
        options = {"mode": "nearest", "coordinate_transformation_mode": "asymmetric", "nearest_mode": "floor"}
    else:
        options = {"mode": "linear", "coordinate_transformation_mode":
                   "align_corners" if layer.align_corners else "pytorch_half_pixel"}
    channels = layer.input_shape[0]
    if layer.size is not None:
        sizes = g.node("Concat", [g.node("Slice", [g.node("Shape", [x], g.fresh(f"{layer.name}/shape")),
                                                    g.constant("start", [0], np.int64), g.constant("end", [1], np.int64)],
                                           g.fresh(f"{layer.name}/batch")),
                                  g.constant(f"{layer.name}/size", [channels, *layer.size], np.int64)],
                       g.fresh(f"{layer.name}/sizes"), axis=0)
        return g.node("Resize", [x, "", "", sizes], out, **options)
    scales = g.constant(f"{layer.name}/scales", [1.0, 1.0, *map(float, layer.scale_factor)])
    return g.node("Resize", [x, "", scales], out, **options)


def _activation(op: str, **fixed: Any) -> Callable[..., str]:
    def export(g: _Graph, layer: Layer, x: str, out: str, in_hw: Any) -> str:
        attributes = {k: (getter(layer) if callable(getter) else getter) for k, getter in fixed.items()}
        return g.node(op, [x], out, **attributes)
    return export


def _relu6(g: _Graph, layer: ReLU6, x: str, out: str, in_hw: Any) -> str:
    return g.node("Clip", [x, g.constant(f"{layer.name}/min", np.asarray(0.0)),
                           g.constant(f"{layer.name}/max", np.asarray(6.0))], out)


def _silu(g: _Graph, layer: SiLU, x: str, out: str, in_hw: Any) -> str:
    return g.node("Mul", [x, g.node("Sigmoid", [x], g.fresh(f"{layer.name}/sigmoid"))], out)


def _gelu(g: _Graph, layer: GELU, x: str, out: str, in_hw: Any) -> str:
    """ONNX's Gelu from opset 20; before, its formula in Erf (or Tanh), Mul and Add."""
    if g.opset >= 20:
        return g.node("Gelu", [x], out, approximate=layer.approximate)

    def times(a: str, value: float, hint: str) -> str:
        factor = g.constant(f"{layer.name}/{hint}", np.asarray(value))
        return g.node("Mul", [a, factor], g.fresh(f"{layer.name}/{hint}"))

    if layer.approximate == "tanh":
        square = g.node("Mul", [x, x], g.fresh(f"{layer.name}/square"))
        cube = g.node("Mul", [x, square], g.fresh(f"{layer.name}/cube"))
        inner = g.node("Add", [x, times(cube, 0.044715, "kappa")], g.fresh(f"{layer.name}/inner"))
        curve = g.node("Tanh", [times(inner, float(np.sqrt(2.0 / np.pi)), "beta")], g.fresh(f"{layer.name}/tanh"))
    else:
        curve = g.node("Erf", [times(x, float(np.sqrt(0.5)), "scaled")], g.fresh(f"{layer.name}/erf"))
    one_plus = g.node("Add", [curve, g.constant(f"{layer.name}/one", np.asarray(1.0))], g.fresh(f"{layer.name}/sum"))
    return g.node("Mul", [times(x, 0.5, "half"), one_plus], out)


def _affine(g: _Graph, layer: Layer, x: str, out: str, scale: Any, offset: Any) -> str:
    """``x * scale + offset`` with constants that broadcast over the batch (a fixed preprocessing layer)."""
    scaled = g.node("Mul", [x, g.constant(f"{layer.name}/scale", scale)], g.fresh(f"{layer.name}/scaled"))
    return g.node("Add", [scaled, g.constant(f"{layer.name}/offset", offset)], out)


def _rescaling(g: _Graph, layer: Rescaling, x: str, out: str, in_hw: Any) -> str:
    return _affine(g, layer, x, out, np.asarray(layer.scale), np.asarray(layer.offset))


def _normalization(g: _Graph, layer: Normalization, x: str, out: str, in_hw: Any) -> str:
    """``(x - mean) / std`` as ``x * (1 / std) + (-mean / std)`` per channel (axis 1)."""
    shape = (len(layer.mean),) + (1,) * (len(layer.input_shape) - 1)
    inverse = 1.0 / np.sqrt(np.asarray(layer.variance, dtype=np.float64))
    return _affine(g, layer, x, out, inverse.reshape(shape), (-np.asarray(layer.mean) * inverse).reshape(shape))


def _reshape(g: _Graph, layer: Reshape, x: str, out: str, in_hw: Any) -> str:
    if type(layer) is Flatten:
        return g.node("Flatten", [x], out, axis=1)
    return g.node("Reshape", [x, g.constant(f"{layer.name}/shape", [0, *layer.target_shape], np.int64)], out)


def _zero_pad(g: _Graph, layer: ZeroPadding2D, x: str, out: str, in_hw: Any) -> str:
    (top, bottom), (left, right) = layer.padding
    return _pad(g, layer, x, [top, left, bottom, right], out)


def _merge(op: str) -> Callable[..., str]:
    def export(g: _Graph, layer: Layer, xs: list[str], out: str, in_hw: Any) -> str:
        if isinstance(layer, Concatenate):
            return g.node("Concat", xs, out, axis=layer.axis)
        if op in ("Sum", "Max"):  # variadic in ONNX
            return g.node(op, xs, out)
        result = xs[0]
        for i, other in enumerate(xs[1:], 1):
            result = g.node(op, [result, other], out if i == len(xs) - 1 else g.fresh(f"{layer.name}/partial"))
        return result
    return export


def _average(g: _Graph, layer: Average, xs: list[str], out: str, in_hw: Any) -> str:
    total = g.node("Sum", xs, g.fresh(f"{layer.name}/sum"))
    return g.node("Div", [total, g.constant(f"{layer.name}/count", float(len(xs)))], out)


_EXPORTERS: dict[type, Callable[..., str]] = {
    Conv2D: _conv, DepthwiseConv2D: _conv, SeparableConv2D: _separable_conv, Conv2DTranspose: _conv_transpose,
    Dense: _dense, BatchNorm1D: _batch_norm, BatchNorm2D: _batch_norm, MaxPool2D: _max_pool, AvgPool2D: _avg_pool,
    GlobalAvgPool2D: _global_pool("GlobalAveragePool"), GlobalMaxPool2D: _global_pool("GlobalMaxPool"),
    AdaptiveAvgPool2D: _adaptive_pool("AveragePool", "GlobalAveragePool"),
    AdaptiveMaxPool2D: _adaptive_pool("MaxPool", "GlobalMaxPool"),
    UpSampling2D: _upsample, Flatten: _reshape, Reshape: _reshape, ZeroPadding2D: _zero_pad,
    ReLU: _activation("Relu"), Sigmoid: _activation("Sigmoid"), Tanh: _activation("Tanh"),
    LeakyReLU: _activation("LeakyRelu", alpha=lambda layer: layer.negative_slope),
    ELU: _activation("Elu", alpha=lambda layer: layer.alpha), Softmax: _activation("Softmax", axis=lambda layer: layer.axis),
    ReLU6: _relu6, Hardsigmoid: _activation("HardSigmoid", alpha=1.0 / 6.0, beta=0.5),
    Hardswish: _activation("HardSwish"), SiLU: _silu, GELU: _gelu, Rescaling: _rescaling,
    Normalization: _normalization,
    Add: _merge("Sum"), Subtract: _merge("Sub"), Multiply: _merge("Mul"), Maximum: _merge("Max"),
    Average: _average, Concatenate: _merge("Concat"),
}
_IDENTITY = (Dropout, SpatialDropout2D, StochasticDepth)  # inference: nothing to do


def _export_call(g: _Graph, layer: Layer, inputs: list[str], out: str) -> str:
    """The nodes of one layer call, its ``activation=`` included; returns the name of its output."""
    if isinstance(layer, _IDENTITY):
        return g.node("Identity", inputs, out)
    export = _EXPORTERS.get(type(layer))
    if export is None:
        raise ValueError(f"export_onnx: layer {layer.name!r} ({type(layer).__name__}) has no ONNX equivalent here; "
                         f"layers that export: {sorted(cls.__name__ for cls in _EXPORTERS)}")
    shape = layer.input_shape
    in_hw = tuple(shape[1:3]) if shape is not None and len(shape) == 3 else None
    several = getattr(layer, "takes_several_inputs", False)
    activation = None if layer.activation is None else make_activation(layer.activation, owner=layer.name,
                                                                        name=f"{layer.name}_activation")
    target = g.fresh(f"{layer.name}/linear") if activation is not None else out
    result = export(g, layer, inputs if several else inputs[0], target, in_hw)
    if activation is not None:
        result = _export_call(g, activation, [result], out)
    return result


def export_onnx(model: LayerGraph, path: Any, opset: int = 17) -> None:
    """Write ``model`` (built, any backend) as an ONNX inference graph to ``path`` (atomically), checked with
    ``onnx.checker``; its inputs and outputs carry the model's input and output names, the batch axis named
    ``"batch"``. Opset 17 or later (``padding_mode="circular"`` needs 19)."""
    onnx = _onnx()
    if not isinstance(model, LayerGraph):
        raise TypeError(f"export_onnx takes an xpcnn model (Sequential or Model), got {type(model).__name__}")
    if not model.built:
        raise ValueError("export_onnx: the model is not built yet; pass input_shape=... or run a batch through it")
    if not isinstance(opset, int) or isinstance(opset, bool) or not 17 <= opset <= onnx.defs.onnx_opset_version():
        raise ValueError(f"export_onnx: opset must be an int from 17 to {onnx.defs.onnx_opset_version()}, "
                         f"got {opset!r}")
    path = os.fspath(path)
    graph = model.layer_calls()
    g = _Graph(onnx, opset)
    for layer, inputs, out in graph.calls:
        _export_call(g, layer, inputs, out)
    float32 = onnx.TensorProto.FLOAT
    inputs = [onnx.helper.make_tensor_value_info(name, float32, ["batch", *shape]) for name, shape in graph.inputs]
    outputs = [onnx.helper.make_tensor_value_info(name, float32, ["batch", *shape]) for name, shape in graph.outputs]
    onnx_graph = onnx.helper.make_graph(g.nodes, model.name, inputs, outputs, g.initializers)
    onnx_model = onnx.helper.make_model(onnx_graph, opset_imports=[onnx.helper.make_opsetid("", opset)],
                                        producer_name="xpcnn", ir_version=IR_VERSION)
    onnx.checker.check_model(onnx_model)
    data = onnx_model.SerializeToString()
    atomic_write(path, lambda f: f.write(data))
