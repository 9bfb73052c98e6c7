"""Frozen layers (``trainable=False``): no update, no optimizer slots, counted apart, saved with the model."""

from __future__ import annotations

import io
import json
import zipfile

import numpy as np
import pytest

import xpcnn
from xpcnn.layers import BatchNorm2D, Conv2D, Dense, Flatten, MaxPool2D, ReLU
from xpcnn.model import Sequential


def _data(n: int = 64):
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, n)
    x = 0.1 * rng.standard_normal((n, 1, 8, 8)).astype(np.float32)
    for i, c in enumerate(y):  # a bright patch in the quadrant of the class: learnable in a few steps
        r, s = divmod(int(c), 2)
        x[i, 0, 4 * r:4 * r + 3, 4 * s:4 * s + 3] += 1.0
    return x, y


def _model(norm: bool = False) -> Sequential:
    xpcnn.manual_seed(0)
    middle = [BatchNorm2D(name="bn")] if norm else []
    return Sequential([Conv2D(4, 3, padding="same", name="conv"), *middle, ReLU(name="relu"), MaxPool2D(2, name="pool"),
                       Flatten(name="flat"), Dense(3, name="head")], input_shape=(1, 8, 8))


def _host(model: Sequential) -> dict[str, bytes]:
    return {k: xpcnn.to_numpy(v).tobytes() for k, v in model.state_dict().items()}


def test_a_frozen_backbone_keeps_its_bytes_and_statistics_while_the_head_learns(backend):
    model = _model(norm=True)
    frozen = model.freeze(up_to="flat")
    assert [layer.name for layer in frozen] == ["conv", "bn", "relu", "pool", "flat"]
    model.get_layer("bn").buffers["running_var"] = xpcnn.asarray(np.full(4, 2.0, np.float32))  # not the default 1
    model.compile("cross_entropy", xpcnn.optimizers.Adam(0.05), metrics=["accuracy"])
    x, y = _data()
    before = _host(model)
    history = model.fit(x, y, batch_size=16, epochs=5, verbose=0)  # 20 steps
    after = _host(model)
    backbone = [key for key in before if key.startswith(("0.", "1."))]
    assert len(backbone) == 6  # conv weight and bias, the norm's weight, bias, running mean and variance
    assert all(after[key] == before[key] for key in backbone)
    assert after["5.weight"] != before["5.weight"]
    assert history.history["loss"][-1] < history.history["loss"][0]
    assert model.optimizer.iterations == 20
    assert sorted(model.optimizer.state) == ["5.bias", "5.weight"]  # no slots for the frozen layers


def test_freezing_after_compiled_steps_stops_the_updates(backend):
    model = _model()
    model.compile("cross_entropy", xpcnn.optimizers.SGD(0.1, momentum=0.9))
    x, y = _data()
    model.fit(x, y, batch_size=16, epochs=1, verbose=0)  # the conv trains (a compiled step on JAX)
    model.get_layer("conv").trainable = False  # the step is traced again without it
    before = _host(model)
    model.fit(x, y, batch_size=16, epochs=1, verbose=0)
    after = _host(model)
    assert after["0.weight"] == before["0.weight"]  # its momentum no longer moves it either
    assert after["4.weight"] != before["4.weight"]
    model.trainable = True
    model.fit(x, y, batch_size=16, epochs=1, verbose=0)
    assert _host(model)["0.weight"] != after["0.weight"]


def test_no_gradient_is_computed_for_a_frozen_prefix(backend, monkeypatch):
    """A frozen backbone in front of the head costs its forward only, as in PyTorch (no requires_grad)."""
    model = _model()
    model.freeze(up_to="flat")
    model.compile("cross_entropy", "adam")
    calls = []
    conv = model.get_layer("conv")
    real = conv._backward
    monkeypatch.setattr(conv, "_backward", lambda dy: calls.append(1) or real(dy))
    x, y = _data(16)
    model.fit(x, y, batch_size=16, epochs=1, verbose=0)
    assert calls == []
    model.trainable = True
    model.fit(x, y, batch_size=16, epochs=1, verbose=0)
    assert calls == [1]


def test_summary_counts_frozen_parameters_as_non_trainable(backend):
    model = _model()
    model.get_layer("conv").trainable = False
    text = model.summary(print_fn=lambda s: None)
    assert "Trainable params: 195" in text  # the head: 64 * 3 + 3
    assert "Non-trainable params: 40" in text  # the conv: 4 * 9 + 4
    assert "Total params: 235" in text


def test_the_flags_are_saved_with_the_model(backend, tmp_path):
    model = _model()
    model.freeze(up_to="conv")
    model.compile("cross_entropy", "adam")
    model.save(tmp_path / "m.xpcnn")
    loaded = xpcnn.load_model(tmp_path / "m.xpcnn")
    assert [layer.trainable for layer in loaded.layers] == [False, True, True, True, True]
    assert "trainable" not in loaded.get_config()["layers"][1]  # configs of unfrozen layers as they were


def test_model_trainable_sets_every_layer_and_bad_values_are_refused():
    model = _model()
    model.trainable = False
    assert not model.trainable and not any(layer.trainable for layer in model.layers)
    model.trainable = True
    assert all(layer.trainable for layer in model.layers)
    with pytest.raises(TypeError, match="trainable must be True or False, got 'no'"):
        model.get_layer("conv").trainable = "no"
    with pytest.raises(ValueError, match="no layer named 'backbone'"):
        model.freeze(up_to="backbone")
    assert model.trainable  # nothing was frozen by the refused call


def test_a_config_with_a_bad_trainable_flag_is_refused_by_its_field(backend, tmp_path):
    model = _model()
    model.freeze(up_to="conv")
    model.compile("cross_entropy", "adam")
    path = tmp_path / "m.xpcnn"
    model.save(path)
    with zipfile.ZipFile(path) as z:
        members = {name: z.read(name) for name in z.namelist()}
    config = json.loads(np.lib.format.read_array(io.BytesIO(members["config.npy"])).tobytes())
    config["architecture"]["layers"][0]["trainable"] = "false"
    buffer = io.BytesIO()
    np.lib.format.write_array(buffer, np.frombuffer(json.dumps(config).encode(), dtype=np.uint8))
    members["config.npy"] = buffer.getvalue()
    with zipfile.ZipFile(path, "w") as z:
        for name, data in members.items():
            z.writestr(name, data)
    with pytest.raises(ValueError, match=r"field architecture\.layers\[0\]\.trainable must be true or false"):
        xpcnn.load_model(path)
