"""The issue-25 layers together, as a MobileNetV3/EfficientNet block in a graph model: it learns (compiled on
JAX), saves and loads with every layer's config (load_model gives the same predictions), a frozen batch norm
keeps its statistics through fit, and the state-dict keys are torchvision's."""

from __future__ import annotations

import numpy as np
import pytest

import xpcnn
from layer_checks import host
from xpcnn.layers import (
    GELU, AdaptiveAvgPool2D, AdaptiveMaxPool2D, Add, BatchNorm2D, Conv2D, Dense, DepthwiseConv2D, Flatten,
    Hardswish, Multiply, SeparableConv2D, SiLU, StochasticDepth,
)
from xpcnn.model import Model


def _block_model() -> Model:
    x = xpcnn.Input((3, 8, 8))
    h = Conv2D(8, 3, padding=1, bias=False, name="features.0.0")(x)
    h = BatchNorm2D(eps=1e-3, momentum=0.01, name="features.0.1")(h)
    h = Hardswish(name="features.0.2")(h)
    y = DepthwiseConv2D(3, padding=1, bias=False, activation="relu6", name="features.1.block.0")(h)
    s = AdaptiveAvgPool2D(1, name="features.1.block.1.avgpool")(y)
    s = Conv2D(4, 1, activation="relu", name="features.1.block.1.fc1")(s)
    s = Conv2D(8, 1, activation="hard_sigmoid", name="features.1.block.1.fc2")(s)
    y = Multiply(name="features.1.block.1.scale")([y, s])
    y = StochasticDepth(0.2, name="features.1.stochastic_depth")(y)
    h = Add()([h, y])
    h = SeparableConv2D(8, 3, stride=2, padding="same", activation="swish", name="features.2")(h)
    h = GELU("tanh")(SiLU()(GELU()(h)))
    h = Flatten()(AdaptiveMaxPool2D((2, None), name="pool")(h))
    return Model(x, Dense(3, name="classifier")(h))


def _data(n: int = 32):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, 3, 8, 8)).astype(np.float32)
    y = (x[:, 0].mean(axis=(1, 2)) > 0).astype(np.int64) + (x[:, 1].mean(axis=(1, 2)) > 0).astype(np.int64)
    return x, y


def test_block_learns_saves_and_loads(backend, tmp_path):
    model = _block_model()
    assert {"features.1.block.1.fc1.weight", "features.1.block.1.fc2.bias", "features.1.block.0.weight",
            "features.2.depthwise_weight", "features.2.pointwise_weight", "features.0.1.running_var"} <= set(
        model.state_dict())
    frozen = model.get_layer("features.0.1")
    frozen.trainable = False
    frozen.buffers["running_mean"] = xpcnn.asarray(np.linspace(-0.5, 0.5, 8))
    statistics = {k: host(v) for k, v in frozen.buffers.items()}
    model.compile("cross_entropy", xpcnn.optimizers.Adam(0.01))
    assert model.step_functions.jit == (backend.name == "jax"), "compiled on JAX (every layer traces)"
    x, y = _data()
    history = model.fit(x, y, batch_size=8, epochs=6, verbose=0).history["loss"]
    assert history[-1] < 0.7 * history[0], f"the loss did not fall: {history}"
    for name, value in statistics.items():
        np.testing.assert_array_equal(host(frozen.buffers[name]), value, err_msg=f"frozen {name} moved")

    model.save(tmp_path / "block.xpcnn")
    loaded = xpcnn.load_model(tmp_path / "block.xpcnn")
    assert loaded.get_config() == model.get_config()
    assert not loaded.get_layer("features.0.1").trainable
    norm = loaded.get_layer("features.0.1")
    assert (norm.eps, norm.momentum) == (1e-3, 0.01)
    assert loaded.get_layer("features.1.stochastic_depth").get_config() == {"p": 0.2, "mode": "row"}
    np.testing.assert_array_equal(host(loaded.predict(x)), host(model.predict(x)))


@pytest.mark.parametrize("layer", [
    GELU("tanh"), AdaptiveMaxPool2D((2, None)), DepthwiseConv2D(3, 2, "same", 2, activation="hardswish"),
    SeparableConv2D(4, (3, 1), padding=1, bias=False), StochasticDepth(0.1, "batch"), Hardswish(),
    BatchNorm2D(eps=1e-3, momentum=0.01),
], ids=lambda layer: type(layer).__name__)
def test_configs_rebuild_the_same_layer_through_the_registry(layer):
    from xpcnn.layers.base import get_layer_class

    rebuilt = get_layer_class(type(layer).__name__)(**layer.get_config())
    assert rebuilt.get_config() == layer.get_config() and repr(rebuilt) == repr(layer)


@pytest.mark.parametrize("opset", [17, 20])
def test_block_exports_to_onnx(backend, tmp_path, opset):
    pytest.importorskip("onnxruntime")
    from test_onnx_export import _check_against_onnxruntime, _randomise_statistics

    model = _block_model()
    _randomise_statistics(model)
    _check_against_onnxruntime(model, tmp_path / "block.onnx", opset=opset)
