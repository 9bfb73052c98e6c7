"""export_onnx: each layer type and the example networks, checked by onnx.checker and run in onnxruntime, give
``model.predict``'s outputs within 1e-5; what cannot be exported is refused by name."""

from __future__ import annotations

import pathlib
import sys

import numpy as np
import pytest

import xpcnn
from layer_checks import host
from xpcnn.layers import (
    ELU, GELU, AdaptiveAvgPool2D, AdaptiveMaxPool2D, Add, AvgPool2D, Average, BatchNorm1D, BatchNorm2D, Concatenate,
    Conv2D, Conv2DTranspose, Dense, DepthwiseConv2D, Dropout, Flatten, GlobalAvgPool2D, GlobalMaxPool2D, Hardsigmoid,
    Hardswish, Layer, LeakyReLU, MaxPool2D, Maximum, Multiply, ReLU, ReLU6, Reshape, SeparableConv2D, Sigmoid, SiLU,
    Softmax, SpatialDropout2D, StochasticDepth, Subtract, Tanh, UpSampling2D, ZeroPadding2D,
)
from xpcnn.model import Model, Sequential

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

EXAMPLES = pathlib.Path(__file__).resolve().parents[1] / "examples"


def _seq(*layers, shape=(2, 8, 8)):
    return lambda: Sequential(list(layers), input_shape=shape)


def _merges() -> Model:
    a, b = xpcnn.Input((3, 6, 6), name="left"), xpcnn.Input((3, 6, 6), name="right")
    shared = Conv2D(3, 3, padding="same", name="shared")
    ha, hb = shared(a), shared(b)  # one layer called twice
    merged = [Add()([ha, hb]), Subtract()([ha, hb]), Multiply()([ha, hb, a]), Average()([ha, hb, b]),
              Maximum()([ha, hb])]
    joined = Concatenate(axis=1)(merged)
    return Model([a, b], [GlobalAvgPool2D()(joined), Flatten()(Concatenate(axis=3)([ha, hb]))])


def _squeeze_excitation() -> Model:
    """torchvision's SqueezeExcitation from public layers: a (N, C, 1, 1) gate broadcast over (N, C, H, W)."""
    x = xpcnn.Input((4, 5, 5))
    h = Conv2D(4, 3, padding=1)(x)
    s = AdaptiveAvgPool2D(1, name="se.avgpool")(h)
    s = Conv2D(4, 1, activation="hard_sigmoid", name="se.fc2")(Conv2D(2, 1, activation="relu", name="se.fc1")(s))
    return Model(x, [Multiply()([h, s]), Add()([s, Conv2D(1, 1)(h)])])  # (4, 1, 1) + (1, 5, 5)


CASES = {
    "conv": _seq(Conv2D(4, 3, stride=2, padding=1), Conv2D(4, (3, 1), padding="same", groups=2, bias=False),
                 Conv2D(3, 3, dilation=2, padding=2, activation="relu")),
    "depthwise-separable": _seq(DepthwiseConv2D(3, stride=2, padding="same", depth_multiplier=2),
                                DepthwiseConv2D(3, padding=1, bias=False, activation="relu6", padding_mode="reflect"),
                                SeparableConv2D(3, 3, padding="same", depth_multiplier=2, activation="hard_swish"),
                                SeparableConv2D(2, (3, 1), stride=2, dilation=2, bias=False), shape=(2, 9, 9)),
    "conv-reflect-replicate": _seq(Conv2D(3, 3, padding=1, padding_mode="reflect"),
                                   Conv2D(2, 3, padding=(2, 1), padding_mode="replicate", activation="tanh")),
    "conv-transpose": _seq(Conv2DTranspose(3, 3, stride=2, padding=1, output_padding=1),
                           Conv2DTranspose(2, 4, stride=2, padding="same"), Conv2DTranspose(2, 3, stride=2,
                                                                                           padding="same"),
                           Conv2DTranspose(2, 1, stride=2, padding="same"),
                           Conv2DTranspose(4, 3, dilation=2, groups=2, activation="sigmoid"), shape=(2, 3, 3)),
    "max-pools": _seq(MaxPool2D(3, 2, 1), MaxPool2D(2, ceil_mode=True), MaxPool2D(3, 1, "same", dilation=2),
                      MaxPool2D(3, 1, "same", dilation=3), shape=(2, 11, 10)),
    "clashing-names": _seq(Conv2D(2, 3, name="input"), ReLU(name="twice"), ReLU(name="twice")),
    "avg-pools": _seq(AvgPool2D(3, 2, 1, count_include_pad=False), AvgPool2D(3, 1, 1), AvgPool2D(2, 2, "same"),
                      shape=(2, 11, 10)),
    "avg-ceil": _seq(AvgPool2D(2, ceil_mode=True), AvgPool2D(3, 2, 1, ceil_mode=True), shape=(2, 9, 11)),
    # Ceil mode where PyTorch drops a last window that would start in the padding (height) while it adds one
    # hanging over the padding (width): one ONNX attribute cannot say both, explicit padding can.
    "ceil-drops-and-adds": lambda: Model(*_branches((2, 5, 6), MaxPool2D(3, 3, 1, ceil_mode=True),
                                                    AvgPool2D(3, 3, 1, ceil_mode=True),
                                                    AvgPool2D(3, 3, 1, ceil_mode=True, count_include_pad=False),
                                                    MaxPool2D(2, 2, 1, ceil_mode=True))),
    "global-dense": _seq(Conv2D(4, 3), GlobalAvgPool2D(), Dense(5), BatchNorm1D(), ReLU(), Dense(3)),
    "global-max": _seq(GlobalMaxPool2D(), Dense(2, activation="softmax")),
    "adaptive-pools": lambda: Model(*_branches((2, 6, 8), AdaptiveAvgPool2D(1), AdaptiveMaxPool2D(1),
                                              AdaptiveAvgPool2D((3, 2)), AdaptiveMaxPool2D((None, 4)),
                                              AdaptiveAvgPool2D((6, 8)))),
    "activations": _seq(LeakyReLU(0.2), ELU(0.5), Conv2D(2, 1), Sigmoid(), Tanh(), ReLU(), Softmax(axis=1)),
    "mobile-activations": lambda: _scaled_input_model(ReLU6(), Hardsigmoid(), Hardswish(), SiLU(), GELU(),
                                                      GELU("tanh"), Conv2D(2, 1, activation="hard_swish"),
                                                      Conv2D(2, 1, activation="swish"), Conv2D(2, 1, activation="gelu"),
                                                      Conv2D(2, 1, activation="relu6")),
    "norms-dropout": _seq(BatchNorm2D(), Dropout(0.5), SpatialDropout2D(0.5), StochasticDepth(0.2),
                          BatchNorm2D(affine=False), Conv2D(2, 3, activation="elu")),
    "reshape-pad": _seq(ZeroPadding2D(((1, 0), (2, 1))), Reshape((2, -1)), Reshape((-1,)), Dense(3)),
    "upsampling": _seq(UpSampling2D((2, 3)), UpSampling2D(2, "bilinear"), shape=(2, 3, 4)),
    "resize-to-size": _seq(UpSampling2D(size=(7, 5)), UpSampling2D(size=(9, 11), mode="bilinear"),
                           UpSampling2D(size=(12, 12), mode="bilinear", align_corners=True), shape=(2, 4, 3)),
    "merges-shared": _merges,
    "squeeze-excitation": _squeeze_excitation,
}


def _scaled_input_model(*layers):
    """Each layer on the input times 4 (every linear piece of ReLU6 and the hard functions is reached), one
    output per layer."""
    x = xpcnn.Input((2, 4, 4))
    times4 = Conv2D(2, 1, bias=False)
    wide = times4(x)
    model = Model(x, [Flatten()(layer(wide)) for layer in layers])
    times4.params["weight"] = xpcnn.asarray(4.0 * np.eye(2).reshape(2, 2, 1, 1))
    return model


def _branches(shape, *layers):
    """One input, one output per layer (each applied to the input)."""
    x = xpcnn.Input(shape)
    return x, [Flatten()(layer(x)) for layer in layers]


def _randomise_statistics(model) -> None:
    """Running statistics away from 0 and 1, so that an export ignoring them would show."""
    rng = np.random.default_rng(5)
    for layer in model.layers:
        if "running_mean" in layer.buffers:
            c = layer.buffers["running_mean"].shape[0]
            layer.buffers["running_mean"] = xpcnn.asarray(rng.standard_normal(c))
            layer.buffers["running_var"] = xpcnn.asarray(rng.uniform(0.5, 2.0, c))


def _check_against_onnxruntime(model, path, opset: int = 17) -> None:
    xpcnn.export_onnx(model, path, opset=opset)
    onnx.checker.check_model(onnx.load(str(path)))
    # ONNX's own shape inference must agree with every shape the file declares (strict: a clash raises)
    onnx.shape_inference.infer_shapes(onnx.load(str(path)), check_type=True, strict_mode=True)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    calls = model.layer_calls()
    feeds = {name: rng.standard_normal((3, *shape)).astype(np.float32) for name, shape in calls.inputs}
    outputs = session.run(None, feeds)
    x = [feeds[name] for name, _ in calls.inputs]
    expected = model.predict(x if len(x) > 1 else x[0])
    for got, want in zip(outputs, expected if isinstance(expected, list) else [expected]):
        assert got.shape == tuple(want.shape)
        np.testing.assert_allclose(got, host(want), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("case", list(CASES))
def test_layers_export_and_run_in_onnxruntime(backend, tmp_path, case):
    model = CASES[case]()
    _randomise_statistics(model)
    _check_against_onnxruntime(model, tmp_path / f"{case}.onnx")


@pytest.mark.parametrize("opset", [17, 20])
def test_gelu_as_its_formula_or_as_onnx_gelu(backend, tmp_path, opset):
    model = _seq(GELU(), Conv2D(2, 1), GELU("tanh"), Conv2D(2, 1, activation="gelu"))()
    _check_against_onnxruntime(model, tmp_path / "gelu.onnx", opset=opset)
    ops = {node.op_type for node in onnx.load(str(tmp_path / "gelu.onnx")).graph.node}
    assert ("Gelu" in ops) == (opset >= 20) and ("Erf" in ops) == (opset < 20)


def test_circular_padding_needs_opset_19(backend, tmp_path):
    model = _seq(Conv2D(2, 3, padding=1, padding_mode="circular"))()
    with pytest.raises(ValueError, match="pads circularly, which ONNX has from opset 19"):
        xpcnn.export_onnx(model, tmp_path / "m.onnx")
    assert not (tmp_path / "m.onnx").exists()
    _check_against_onnxruntime(model, tmp_path / "m.onnx", opset=19)


@pytest.mark.parametrize("example", ["resnet", "unet_segmentation"])
def test_example_networks_export(backend, tmp_path, example, monkeypatch):
    monkeypatch.syspath_prepend(str(EXAMPLES))
    module = __import__(example)
    model = module.build_resnet(widths=(4, 8, 8)) if example == "resnet" else module.build_unet(width=4)
    model.compile("cross_entropy" if example == "resnet" else "binary_crossentropy", "adam")
    shape = model.layer_calls().inputs[0][1]
    rng = np.random.default_rng(1)
    x = rng.standard_normal((8, *shape)).astype(np.float32)
    y = rng.integers(0, 10, 8) if example == "resnet" else (rng.random((8, *model.output_shape)) > 0.5).astype(
        np.float32)
    model.fit(x, y, batch_size=4, epochs=1, verbose=0)  # trained weights and running statistics
    _check_against_onnxruntime(model, tmp_path / f"{example}.onnx")
    sys.modules.pop(example, None)


class Squash(Layer):
    def _forward(self, x, training):
        return x / (1.0 + abs(x))


def test_what_cannot_be_exported_is_named(backend, tmp_path):
    with pytest.raises(ValueError, match=r"layer 'squash\w*' \(Squash\) has no ONNX equivalent"):
        xpcnn.export_onnx(_seq(Conv2D(2, 3), Squash())(), tmp_path / "m.onnx")
    with pytest.raises(ValueError, match="resizes bilinearly to an axis of one pixel"):
        xpcnn.export_onnx(_seq(UpSampling2D(size=(1, 4), mode="bilinear"))(), tmp_path / "m.onnx")
    with pytest.raises(ValueError, match=r"'pool' \(AdaptiveMaxPool2D\) pools 8x6 pixels to 3x4 with windows of "
                                         r"different sizes .*ONNX's pooling cannot express"):
        xpcnn.export_onnx(_seq(AdaptiveMaxPool2D((3, 4), name="pool"), shape=(2, 8, 6))(), tmp_path / "m.onnx")
    with pytest.raises(ValueError, match="track_running_stats=False"):
        xpcnn.export_onnx(_seq(BatchNorm2D(track_running_stats=False))(), tmp_path / "m.onnx")
    with pytest.raises(ValueError, match="opset must be an int from 17"):
        xpcnn.export_onnx(_seq(ReLU())(), tmp_path / "m.onnx", opset=13)
    with pytest.raises(ValueError, match="not built"):
        xpcnn.export_onnx(Sequential([Dense(2)]), tmp_path / "m.onnx")
    with pytest.raises(TypeError, match="takes an xpcnn model"):
        xpcnn.export_onnx([Dense(2)], tmp_path / "m.onnx")
    assert not list(tmp_path.iterdir())
