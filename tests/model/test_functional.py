"""Graph models (``xpcnn.Input`` + ``xpcnn.Model``) against PyTorch ``nn.Module`` equivalents: forward, input
and parameter gradients of a residual block, one layer used twice, a two-input concatenation and a
two-output model; state dicts by layer name; training, save/load; and every error a bad graph gets."""

from __future__ import annotations

import numpy as np
import pytest

import xpcnn
from layer_checks import host, rtol_for
from xpcnn.layers import (
    Add, BatchNorm2D, Concatenate, Conv2D, Dense, Flatten, Input, MaxPool2D, ReLU,
)
from xpcnn.model import Model, Sequential

torch = pytest.importorskip("torch")
F = torch.nn.functional


def _compare(model: Model, module, xs: list[np.ndarray], backend, seed: int = 5) -> None:
    """Load the module's weights, then forward (training) and backward both; compare everything."""
    model.load_state_dict(module.state_dict())
    rtol = rtol_for(backend)
    arrays = [xpcnn.asarray(x) for x in xs]
    out = model.forward(arrays if len(xs) > 1 else arrays[0], training=True)
    outs = out if isinstance(out, list) else [out]
    rng = np.random.default_rng(seed)
    dys = [rng.standard_normal(tuple(o.shape)) for o in outs]
    dxs = model.backward([xpcnn.asarray(d) for d in dys] if len(outs) > 1 else xpcnn.asarray(dys[0]))
    dxs = dxs if isinstance(dxs, list) else [dxs]

    module.train()
    ts = [torch.tensor(x, dtype=torch.float64, requires_grad=True) for x in xs]
    module.double()
    touts = module(*ts)
    touts = touts if isinstance(touts, tuple) else (touts,)
    torch.autograd.backward(touts, [torch.tensor(d) for d in dys])
    for o, t in zip(outs, touts):
        np.testing.assert_allclose(host(o), t.detach().numpy(), rtol=rtol, atol=rtol)
    for dx, t in zip(dxs, ts):
        np.testing.assert_allclose(host(dx), t.grad.numpy(), rtol=rtol, atol=rtol)
    tgrads = {k: p.grad.numpy() for k, p in module.named_parameters()}
    assert set(model.grads) == set(tgrads)
    for key, grad in model.grads.items():
        np.testing.assert_allclose(host(grad), tgrads[key], rtol=rtol, atol=rtol, err_msg=key)


def _images(n: int, shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, *shape))


def residual_model() -> Model:
    x = Input((3, 6, 6), name="image")
    h = ReLU()(BatchNorm2D(name="bn")(Conv2D(4, 3, padding=1, name="c1")(x)))
    y = ReLU()(Add()([h, Conv2D(4, 3, padding=1, name="c2")(h)]))
    return Model(x, Dense(5, name="fc")(Flatten()(MaxPool2D(2)(y))), name="residual")


class TorchResidual(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.c1, self.bn = torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.BatchNorm2d(4)
        self.c2, self.fc = torch.nn.Conv2d(4, 4, 3, padding=1), torch.nn.Linear(36, 5)

    def forward(self, x):
        h = F.relu(self.bn(self.c1(x)))
        y = F.relu(h + self.c2(h))
        return self.fc(torch.flatten(F.max_pool2d(y, 2), 1))


def test_residual_block_matches_torch(backend64):
    _compare(residual_model(), TorchResidual(), [_images(4, (3, 6, 6))], backend64)


def test_residual_block_matches_torch_in_float32(backend):
    _compare(residual_model(), TorchResidual(), [_images(4, (3, 6, 6)).astype(np.float32)], backend)


def test_a_layer_called_twice_shares_its_weights_and_sums_its_gradients(backend64):
    x = Input((2, 5, 5))
    conv = Conv2D(2, 3, padding=1, name="conv")
    y = conv(ReLU()(conv(x)))
    model = Model(x, Dense(3, name="fc")(Flatten()(y)))
    assert list(model.params) == ["conv.weight", "conv.bias", "fc.weight", "fc.bias"]

    class Twice(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv, self.fc = torch.nn.Conv2d(2, 2, 3, padding=1), torch.nn.Linear(50, 3)

        def forward(self, x):
            return self.fc(torch.flatten(self.conv(F.relu(self.conv(x))), 1))

    _compare(model, Twice(), [_images(3, (2, 5, 5))], backend64)


def test_two_inputs_concatenated_match_torch(backend64):
    a, b = Input((2, 4, 4), name="a"), Input((3, 4, 4), name="b")
    y = Conv2D(4, 3, padding=1, name="conv")(Concatenate()([a, b]))
    model = Model([a, b], Dense(2, name="fc")(Flatten()(y)))

    class Joined(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv, self.fc = torch.nn.Conv2d(5, 4, 3, padding=1), torch.nn.Linear(64, 2)

        def forward(self, a, b):
            return self.fc(torch.flatten(self.conv(torch.cat([a, b], 1)), 1))

    _compare(model, Joined(), [_images(3, (2, 4, 4)), _images(3, (3, 4, 4), 1)], backend64)


def test_two_outputs_match_torch(backend64):
    x = Input((6,))
    h = Dense(8, activation="tanh", name="trunk")(x)
    model = Model(x, [Dense(3, name="left")(h), Dense(2, activation="sigmoid", name="right")(h)])

    class TwoHeads(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.trunk, self.left, self.right = torch.nn.Linear(6, 8), torch.nn.Linear(8, 3), torch.nn.Linear(8, 2)

        def forward(self, x):
            h = torch.tanh(self.trunk(x))
            return self.left(h), torch.sigmoid(self.right(h))

    _compare(model, TwoHeads(), [_images(5, (6,))], backend64)


def test_a_chain_trains_exactly_as_the_same_sequential(backend):
    """One executor for both: the same layers and weights give the same history and weights."""
    def layers():
        return [Conv2D(3, 3, padding="same"), ReLU(), MaxPool2D(2), Flatten(), Dense(3)]

    xpcnn.manual_seed(1)
    seq = Sequential(layers(), input_shape=(1, 8, 8))
    x = Input((1, 8, 8))
    y = x
    graph_layers = layers()
    for layer in graph_layers:
        y = layer(y)
    graph = Model(x, y)
    for (_, a), b in zip(seq.keyed_layers(), graph_layers):
        for k, v in a.params.items():
            b.params[k] = xpcnn.asarray(host(v))
    rng = np.random.default_rng(0)
    data = rng.standard_normal((24, 1, 8, 8)).astype(np.float32), rng.integers(0, 3, 24)
    runs = []
    for model in (seq, graph):
        model.compile("cross_entropy", "adam", metrics=["accuracy"])
        xpcnn.manual_seed(2)
        runs.append((model.fit(*data, batch_size=8, epochs=2, verbose=0).history,
                     [host(v) for v in model.params.values()]))
    assert runs[0][0] == runs[1][0]
    for a, b in zip(runs[0][1], runs[1][1]):
        np.testing.assert_array_equal(a, b)


def test_graph_model_saves_loads_and_predicts_the_same(backend, tmp_path):
    model = residual_model()
    model.compile("cross_entropy", "adam")
    x = _images(4, (3, 6, 6)).astype(np.float32)
    model.fit(x, np.arange(4) % 5, batch_size=2, epochs=1, verbose=0)
    model.save(tmp_path / "residual.xpcnn")
    loaded = xpcnn.load_model(tmp_path / "residual.xpcnn")
    assert isinstance(loaded, Model) and loaded.name == "residual"
    assert [layer.name for layer in loaded.layers] == [layer.name for layer in model.layers]
    expected = host(model.predict(x))
    # (to rounding: on JAX an uncompiled model predicts through jax.jit, a compiled one as compiled)
    np.testing.assert_allclose(host(loaded.predict(x)), expected, rtol=1e-5, atol=1e-6)
    assert loaded.optimizer.iterations == model.optimizer.iterations
    other = residual_model()
    other.load_weights(tmp_path / "residual.xpcnn")
    np.testing.assert_allclose(host(other.predict(x)), expected, rtol=1e-5, atol=1e-6)



def test_graph_model_saved_on_numpy_loads_and_predicts_the_same_on_the_session_backend(backend, tmp_path):
    x = _images(5, (3, 6, 6)).astype(np.float32)
    with xpcnn.use_backend("numpy"):
        model = residual_model()
        model.compile("cross_entropy", "adam")
        model.fit(x, np.arange(5) % 5, batch_size=2, epochs=1, verbose=0)
        expected = host(model.predict(x))
        model.save(tmp_path / "numpy-residual.xpcnn")
    loaded = xpcnn.load_model(tmp_path / "numpy-residual.xpcnn")
    assert isinstance(loaded, Model) and all(v.dtype == backend.dtype for v in loaded.params.values())
    np.testing.assert_allclose(host(loaded.predict(x)), expected, rtol=1e-5, atol=1e-5)

def test_summary_shows_what_each_layer_is_connected_to(backend):
    text = residual_model().summary(print_fn=lambda s: None)
    assert "Connected to" in text
    assert any(line.startswith("add") and "c2[0]" in line for line in text.splitlines())


# --- bad graphs -------------------------------------------------------------------------------------

def test_an_output_that_needs_another_input_is_refused(backend):
    a, b = Input((3,), name="a"), Input((3,), name="b")
    y = Add()([Dense(3)(a), Dense(3)(b)])
    with pytest.raises(ValueError, match=r"the outputs depend on input 'b', which is not among the model's inputs"):
        Model(a, y)


def test_an_input_that_reaches_no_output_is_refused(backend):
    a, b = Input((3,), name="a2"), Input((3,), name="b2")
    with pytest.raises(ValueError, match=r"input\(s\) \['b2'\] reach no output"):
        Model([a, b], Dense(2)(a))


def test_shapes_that_cannot_be_merged_name_both_layers(backend):
    x = Input((3, 8, 8))
    left, right = Conv2D(4, 3, name="left3")(x), Conv2D(4, 1, name="right1")(x)
    with pytest.raises(ValueError, match=r"layer 'add_bad' \(Add\) cannot take 'left3' \(None, 4, 6, 6\), "
                                         r"'right1' \(None, 4, 8, 8\)"):
        Add(name="add_bad")([left, right])


def test_a_layer_called_on_an_incompatible_shape(backend):
    dense = Dense(4, name="fc4")
    dense(Input((6,)))
    with pytest.raises(ValueError, match=r"layer 'fc4' \(Dense\) cannot take .* built for per-sample input \(6,\)"):
        dense(Input((5,)))
    with pytest.raises(ValueError, match=r"layer 'conv_on_flat' \(Conv2D\) cannot take .*expected 4-D input"):
        Conv2D(2, 3, name="conv_on_flat")(Input((5,)))


def test_two_layers_with_one_name_are_refused(backend):
    x = Input((4,))
    y = Dense(3, name="same")(Dense(4, name="same")(x))
    with pytest.raises(ValueError, match=r"layer names must be unique in a model, \['same'\]"):
        Model(x, y)


def test_missing_or_extra_inputs_in_predict(backend):
    a, b = Input((2,), name="left_in"), Input((2,), name="right_in")
    model = Model([a, b], Dense(1)(Add()([a, b])))
    ones = np.ones((3, 2), np.float32)
    with pytest.raises(ValueError, match=r"expected a list of 2 input arrays \(\['left_in', 'right_in'\]\)"):
        model.forward([ones])
    with pytest.raises(ValueError, match=r"missing \['right_in'\], unknown \['typo'\]"):
        model.forward({"left_in": ones, "typo": ones})
    with pytest.raises(ValueError, match=r"input 'left_in' takes per-sample shape \(2,\), got an array of shape"):
        model.forward([np.ones((3, 4), np.float32), ones])
    assert tuple(model.forward({"left_in": ones, "right_in": ones}).shape) == (3, 1)


def test_layer_names_are_generated_and_checked(backend):
    first, second = Dense(2), Dense(2)
    assert first.name.startswith("dense") and first.name != second.name
    for bad in ("has space", "1st", "trailing.", ".leading", "two..dots", "a.b-c"):
        with pytest.raises(ValueError, match="a layer name is letters, digits and underscores"):
            Dense(2, name=bad)
    with pytest.raises(TypeError, match="called on a mix of symbolic tensors and arrays"):
        Add()([Input((2,)), xpcnn.asarray(np.ones((1, 2), np.float32))])



def test_dotted_names_give_torch_nested_module_keys(backend, tmp_path):
    """``layer1.0.conv1`` as in a torchvision ResNet: the keys are torch's, and they load back."""
    x = Input((3,))
    hidden = Dense(4, name="layer1.0.fc")
    model = Model(x, Dense(2, name="head")(hidden(x)))
    model.compile("mse", "sgd")
    assert list(model.state_dict()) == ["layer1.0.fc.weight", "layer1.0.fc.bias", "head.weight", "head.bias"]
    model.set_params({"layer1.0.fc.bias": xpcnn.asarray(np.ones(4, np.float32))})
    assert xpcnn.to_numpy(hidden.params["bias"]).tolist() == [1.0] * 4
    model.save(tmp_path / "m.xpcnn")
    loaded = xpcnn.load_model(tmp_path / "m.xpcnn")
    assert loaded.get_layer("layer1.0.fc").name == "layer1.0.fc"
    model.save_weights(tmp_path / "w.xpcnn")
    model.load_weights(tmp_path / "w.xpcnn")


def test_get_layer_by_name_or_index(backend):
    x = Input((3,))
    hidden = Dense(4, name="hidden")
    model = Model(x, Dense(2, name="out")(hidden(x)))
    assert model.get_layer("hidden") is hidden and model.get_layer(index=-1).name == "out"
    with pytest.raises(ValueError, match=r"no layer named 'missing'; the layers are \['hidden', 'out'\]"):
        model.get_layer("missing")
    with pytest.raises(ValueError, match="exactly one"):
        model.get_layer("hidden", index=0)
    with pytest.raises(ValueError, match="out of range"):
        model.get_layer(index=2)

# --- several inputs and outputs in fit / evaluate / predict -----------------------------------------------

def two_in_two_out() -> Model:
    a, b = Input((4,), name="left_in"), Input((3,), name="right_in")
    h = Dense(6, activation="tanh", name="trunk")(Concatenate()([a, b]))
    return Model([a, b], [Dense(3, name="label")(h), Dense(2, name="value")(h)], name="two_heads")


def _two_data(n: int = 12, seed: int = 0):
    rng = np.random.default_rng(seed)
    x = [rng.standard_normal((n, 4)).astype(np.float32), rng.standard_normal((n, 3)).astype(np.float32)]
    y = {"label": rng.integers(0, 3, n), "value": rng.standard_normal((n, 2)).astype(np.float32)}
    return x, y


def test_one_weighted_step_of_two_losses_matches_torch(backend64):
    model = two_in_two_out()
    model.compile(["cross_entropy", "mse"], xpcnn.optimizers.SGD(0.1), loss_weights={"label": 0.5, "value": 2.0})

    class TwoHeads(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.trunk, self.label, self.value = torch.nn.Linear(7, 6), torch.nn.Linear(6, 3), torch.nn.Linear(6, 2)

        def forward(self, a, b):
            h = torch.tanh(self.trunk(torch.cat([a, b], 1)))
            return self.label(h), self.value(h)

    module = TwoHeads().double()
    model.load_state_dict(module.state_dict())
    x, y = _two_data()
    logs = model.train_on_batch([xpcnn.asarray(a.astype(np.float64)) for a in x], y)
    opt = torch.optim.SGD(module.parameters(), lr=0.1)
    label, value = module(*(torch.tensor(a, dtype=torch.float64) for a in x))
    total = 0.5 * F.cross_entropy(label, torch.tensor(y["label"])) + 2.0 * F.mse_loss(
        value, torch.tensor(y["value"], dtype=torch.float64))
    total.backward()
    opt.step()
    np.testing.assert_allclose(float(logs["loss"]), total.item(), rtol=1e-10)
    assert set(logs) == {"loss", "label_loss", "value_loss"}
    for key, param in module.state_dict().items():
        np.testing.assert_allclose(host(model.params[key]), param.numpy(), rtol=1e-10, atol=1e-12, err_msg=key)


def test_fit_evaluate_predict_with_two_inputs_and_two_outputs(backend, tmp_path):
    model = two_in_two_out()
    model.compile({"label": "cross_entropy", "value": "mse"}, "adam", metrics={"label": ["accuracy"], "value": []},
                  loss_weights=[1.0, 0.5])
    x, y = _two_data(24)
    history = model.fit({"left_in": x[0], "right_in": x[1]}, y, batch_size=8, epochs=2, verbose=0,
                        validation_split=0.25).history
    assert set(history) == {"loss", "label_loss", "value_loss", "label_accuracy", "val_loss", "val_label_loss",
                            "val_value_loss", "val_label_accuracy", "lr"}
    result = model.evaluate(x, [y["label"], y["value"]], batch_size=5)
    assert result["loss"] == pytest.approx(result["label_loss"] + 0.5 * result["value_loss"], rel=1e-5)
    label, value = model.predict(x, batch_size=5)
    assert tuple(label.shape) == (24, 3) and tuple(value.shape) == (24, 2)
    model.save(tmp_path / "two.xpcnn")
    loaded = xpcnn.load_model(tmp_path / "two.xpcnn")
    assert [loss.name for loss in loaded.loss] == ["cross_entropy", "mse"]
    assert loaded.objectives.weights == [1.0, 0.5] and loaded.metrics_names == model.metrics_names
    again = loaded.evaluate(x, [y["label"], y["value"]], batch_size=5)
    for key in result:
        assert again[key] == pytest.approx(result[key], rel=1e-5, abs=1e-6), key


def test_several_inputs_and_outputs_are_checked_before_training(backend):
    model = two_in_two_out()
    model.compile(["cross_entropy", "mse"], "sgd")
    x, y = _two_data()
    before = {k: host(v) for k, v in model.params.items()}
    with pytest.raises(ValueError, match=r"y by name must be exactly \['label', 'value'\]; missing \['value'\]"):
        model.fit(x, {"label": y["label"]}, verbose=0)
    with pytest.raises(ValueError, match=r"the inputs hold different numbers of samples: \{'left_in': 12, "
                                         r"'right_in': 11\}"):
        model.fit([x[0], x[1][:11]], y, verbose=0)
    with pytest.raises(ValueError, match=r"y\['label'\]: integer labels must lie in \[0, 3\)"):
        model.fit(x, {**y, "label": y["label"] + 3}, verbose=0)
    with pytest.raises(ValueError, match=r"x must be a list of 2 arrays \(\['left_in', 'right_in'\]\)"):
        model.predict(x[0])
    assert all(np.array_equal(host(v), before[k]) for k, v in model.params.items())
    with pytest.raises(ValueError, match="loss_weights weigh the losses of several outputs; this model has one"):
        residual_model().compile("cross_entropy", "sgd", loss_weights=[1.0])
    with pytest.raises(ValueError, match=r"loss: expected one entry per output \(2: \['label', 'value'\]\), got 3"):
        model.compile(["mse"] * 3, "sgd")
