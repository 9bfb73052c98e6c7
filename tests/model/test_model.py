"""Sequential on the session's backend: building, keys, summary, compile/fit/evaluate/predict, host checks,
state dicts (including PyTorch's), reproducibility and exact resumption from a checkpoint."""

from __future__ import annotations

import os

import array_api_compat
import numpy as np
import pytest

import xpcnn
from xpcnn import optimizers
from xpcnn.callbacks import Callback
from xpcnn.layers.activations import ReLU
from xpcnn.layers.conv import Conv2D
from xpcnn.layers.dense import Dense
from xpcnn.layers.pool import MaxPool2D
from xpcnn.layers.reshape import Flatten
from xpcnn.io import load_model
from xpcnn.metrics import BinaryAccuracy, TopKAccuracy
from xpcnn.model import Sequential


def host(a) -> np.ndarray:
    return np.array(xpcnn.to_numpy(a), dtype=np.float64, copy=True)


def snapshot(model: Sequential) -> dict[str, np.ndarray]:
    return {k: host(v) for k, v in model.state_dict().items()}


def optimizer_snapshot(opt) -> dict:
    sd = opt.state_dict()
    return {
        "iterations": sd["iterations"],
        "state": {k: {s: host(a) for s, a in slots.items()} for k, slots in sd["state"].items()},
    }


def assert_same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def blobs(n: int = 96, classes: int = 3, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """8x8 images whose class is the quadrant holding a bright patch: learnable in a few steps."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, classes, size=n).astype(np.int64)
    x = 0.1 * rng.standard_normal((n, 1, 8, 8)).astype(np.float32)
    for i, c in enumerate(y):
        r, s = divmod(int(c), 2)
        x[i, 0, 4 * r:4 * r + 3, 4 * s:4 * s + 3] += 1.0
    return x, y


def tiny_cnn(classes: int = 3, input_shape=(1, 8, 8), extra=()) -> Sequential:
    return Sequential(
        [Conv2D(4, 3, padding="same"), ReLU(), MaxPool2D(2), *extra, Flatten(), Dense(classes)],
        input_shape=input_shape,
    )


# --- structure -------------------------------------------------------------------------------------------

def test_keys_follow_torch_sequential_and_build_with_input_shape(backend):
    model = tiny_cnn()
    assert model.built and model.output_shape == (3,)
    assert list(model.params) == ["0.weight", "0.bias", "4.weight", "4.bias"]
    assert tuple(model.params["0.weight"].shape) == (4, 1, 3, 3)
    assert tuple(model.params["4.weight"].shape) == (3, 64)
    for v in model.params.values():
        assert array_api_compat.device(v) == backend.device and v.dtype == backend.dtype


def test_builds_on_first_forward_and_backward_fills_grads(backend):
    model = Sequential([Conv2D(2, 3), ReLU(), Flatten(), Dense(4)])
    assert not model.built
    x = xpcnn.asarray(np.random.default_rng(0).standard_normal((5, 1, 6, 6)))
    y = model.forward(x, training=True)
    assert tuple(y.shape) == (5, 4) and model.input_shape == (1, 6, 6)
    dx = model.backward(backend.xp.ones_like(y))
    assert tuple(dx.shape) == (5, 1, 6, 6)
    assert model.grads.keys() == model.params.keys()
    for k, g in model.grads.items():
        assert tuple(g.shape) == tuple(model.params[k].shape)


def test_bad_layers_and_shapes_are_refused(backend):
    relu = ReLU()
    with pytest.raises(ValueError, match="same ReLU object"):
        Sequential([Conv2D(2, 3), relu, relu])
    with pytest.raises(TypeError, match="not a Layer"):
        Sequential([Conv2D(2, 3), "relu"])
    state = xpcnn.random.get_state()
    layers = [Conv2D(2, 3), Flatten(), Dense(3)]
    with pytest.raises(ValueError, match="layer 0"):
        Sequential(layers, input_shape=(1, 2, 2))  # 3x3 kernel on 2x2 input
    assert xpcnn.random.get_state() == state and not any(layer.built for layer in layers)


def test_add_appends_and_builds(backend):
    model = Sequential([Conv2D(2, 3, padding=1), ReLU()], input_shape=(1, 6, 6))
    model.add(Flatten())
    model.add(Dense(4))
    assert model.output_shape == (4,) and list(model.params) == ["0.weight", "0.bias", "3.weight", "3.bias"]
    lazy = Sequential()
    lazy.add(Dense(2))
    assert not lazy.built and tuple(lazy.predict(np.ones((3, 5), np.float32)).shape) == (3, 2)


def test_integer_inputs_are_refused_clearly(backend):
    model = tiny_cnn()
    model.compile("cross_entropy", "adam")
    x, y = blobs(8)
    with pytest.raises(ValueError, match="must hold floating-point values or uint8 images, got dtype int32"):
        model.fit((x * 255).astype(np.int32), y, verbose=0)
    with pytest.raises(ValueError, match="must hold floating-point values or uint8 images, got dtype int32"):
        model.predict((x * 255).astype(np.int32))


def test_uint8_images_are_scaled_to_floats_on_the_device(backend):
    """uint8 inputs become floats in [0, 1] batch by batch: the same outputs as the floats divided by 255."""
    model = tiny_cnn()
    model.compile("cross_entropy", "adam")
    x, _ = blobs(8)
    images = np.clip(np.rint(x * 40 + 128), 0, 255).astype(np.uint8)
    np.testing.assert_allclose(xpcnn.to_numpy(model.predict(images, batch_size=3)),
                               xpcnn.to_numpy(model.predict(images.astype(np.float32) / 255, batch_size=3)),
                               rtol=1e-5, atol=1e-6)


def test_summary_prints_and_returns_the_table(backend, capsys):
    model = tiny_cnn()
    text = model.summary()
    assert capsys.readouterr().out.strip() == text.strip()
    assert "Conv2D" in text and "(None, 4, 8, 8)" in text and "(None, 3)" in text
    total = 4 * 9 + 4 + 3 * 64 + 3
    assert model.num_params == total
    assert f"Total params: {total:,}" in text
    assert f"Trainable params: {total:,}" in text and "Non-trainable params: 0" in text
    with pytest.raises(ValueError, match="built"):
        Sequential([Dense(2)]).summary()


# --- compile / metrics -----------------------------------------------------------------------------------

def test_compile_resolves_names_and_metric_keys(backend):
    model = tiny_cnn()
    model.compile("cross_entropy", "adam", metrics=["accuracy", "top_k_accuracy", TopKAccuracy(2)])
    assert model.loss.name == "cross_entropy" and isinstance(model.optimizer, optimizers.Adam)
    assert model.metrics_names == ["loss", "accuracy", "top_5_accuracy", "top_2_accuracy"]
    with pytest.raises(ValueError, match="unknown metric"):
        model.compile("cross_entropy", "adam", metrics=["f2"])
    with pytest.raises(ValueError, match="unknown loss"):
        model.compile("hinge", "adam")
    with pytest.raises(RuntimeError, match="compile"):
        tiny_cnn().fit(*blobs(8), verbose=0)
    model.compile("binary_cross_entropy", "sgd", metrics=["accuracy"])
    assert isinstance(model.metrics[0], BinaryAccuracy) and model.metrics[0].threshold == 0.0  # logits


# --- fit / evaluate / predict ----------------------------------------------------------------------------

class Recorder(Callback):
    def __init__(self):
        super().__init__()
        self.batches, self.epochs, self.calls = [], [], []

    def on_train_begin(self, logs=None):
        self.calls.append("train_begin")

    def on_epoch_begin(self, epoch, logs=None):
        self.calls.append(f"epoch_begin {epoch}")

    def on_train_batch_end(self, batch, logs=None):
        self.batches.append(dict(logs))

    def on_epoch_end(self, epoch, logs=None):
        self.calls.append(f"epoch_end {epoch}")
        self.epochs.append(dict(logs))

    def on_train_end(self, logs=None):
        self.calls.append("train_end")


def test_fit_learns_and_fills_history(backend):
    x, y = blobs(96)
    model = tiny_cnn()
    model.compile("cross_entropy", optimizers.Adam(0.02), metrics=["accuracy"])
    rec = Recorder()
    history = model.fit(x, y, batch_size=16, epochs=4, validation_data=blobs(48, seed=1), verbose=0,
                        callbacks=[rec])
    h = history.history
    assert history is model.history
    assert set(h) == {"loss", "accuracy", "val_loss", "val_accuracy", "lr"}
    assert all(len(v) == 4 for v in h.values())
    assert all(isinstance(v, float) for vs in h.values() for v in vs)
    assert h["loss"][-1] < h["loss"][0] and h["val_accuracy"][-1] >= 0.9
    assert h["lr"] == [0.02] * 4
    assert rec.calls == ["train_begin", *[f"epoch_{w} {e}" for e in range(4) for w in ("begin", "end")],
                         "train_end"]
    # per-batch logs: 0-d device arrays (never read by the model) and the batch size
    assert len(rec.batches) == 4 * 6
    for logs in rec.batches:
        assert logs["size"] == 16
        for key in ("loss", "accuracy"):
            assert array_api_compat.is_array_api_obj(logs[key]) and logs[key].ndim == 0
            assert array_api_compat.device(logs[key]) == backend.device
    # the epoch mean is the size-weighted mean of the batch values
    first = rec.batches[:6]
    assert h["loss"][0] == pytest.approx(np.mean([float(b["loss"]) for b in first]), rel=1e-5)
    assert model.epoch == 4 and model.optimizer.iterations == 24


class ParamsAtTrainEnd(Callback):
    def on_train_end(self, logs=None):
        self.params = {k: host(v) for k, v in self.model.params.items()}


def test_fit_with_use_ema_trains_the_raw_weights_and_ends_with_the_average(backend, tmp_path):
    def run(use_ema: bool):
        xpcnn.manual_seed(3)
        model = tiny_cnn()
        model.compile("cross_entropy", optimizers.Adam(0.02, use_ema=use_ema, ema_momentum=0.9),
                      metrics=["accuracy"])
        at_end = ParamsAtTrainEnd()
        history = model.fit(*blobs(64), batch_size=16, epochs=2, validation_data=blobs(32, seed=1), verbose=0,
                            callbacks=[at_end])
        return model, history.history, at_end.params

    raw, raw_history, _ = run(use_ema=False)
    averaged, history, at_train_end = run(use_ema=True)
    assert history == raw_history  # the epochs train and validate the raw weights, as in Keras
    ema = {k: host(slots["ema"]) for k, slots in averaged.optimizer.state.items()}
    assert_same(at_train_end, ema)  # in the model before on_train_end (EarlyStopping may still restore)
    assert_same({k: host(v) for k, v in averaged.params.items()}, ema)
    assert any(not np.array_equal(ema[k], host(v)) for k, v in raw.params.items())
    averaged.train_on_batch(*blobs(16, seed=2))  # the next step writes into the weights, not into the average
    for key, value in averaged.params.items():
        want = 0.9 * ema[key] + 0.1 * host(value)
        np.testing.assert_allclose(host(averaged.optimizer.state[key]["ema"]), want, rtol=1e-5, atol=1e-6)
    averaged.save(tmp_path / "ema.xpcnn")
    loaded = load_model(tmp_path / "ema.xpcnn")
    assert loaded.optimizer.use_ema and loaded.optimizer.ema_momentum == 0.9
    saved_state, loaded_state = (optimizer_snapshot(m.optimizer)["state"] for m in (averaged, loaded))
    assert saved_state.keys() == loaded_state.keys()
    for key, slots in saved_state.items():
        assert_same(loaded_state[key], slots)
    before = snapshot(loaded)
    loaded.fit(*blobs(16), epochs=loaded.epoch, initial_epoch=loaded.epoch, verbose=0)  # no step: no swap
    assert_same(snapshot(loaded), before)


def test_early_stopping_restores_its_raw_best_weights_after_the_average(backend):
    from xpcnn.callbacks import EarlyStopping

    def run(use_ema: bool) -> dict:
        xpcnn.manual_seed(4)
        model = tiny_cnn()
        model.compile("cross_entropy", optimizers.Adam(0.02, use_ema=use_ema), metrics=["accuracy"])
        model.fit(*blobs(64), batch_size=16, epochs=3, verbose=0,
                  callbacks=[EarlyStopping(monitor="loss", patience=5, restore_best_weights=True)])
        return snapshot(model)

    assert_same(run(use_ema=True), run(use_ema=False))


def test_epoch_values_are_read_once_per_epoch(backend, monkeypatch):
    import xpcnn.data.checks
    import xpcnn.inference

    calls = []
    real = xpcnn.backend.to_numpy
    for module in (xpcnn.data.checks, xpcnn.inference):  # the label checks, and the epoch sums
        monkeypatch.setattr(module, "to_numpy", lambda a: calls.append(1) or real(a))
    x, y = blobs(64)
    model = tiny_cnn()
    model.compile("cross_entropy", "adam", metrics=["accuracy"])
    model.fit(x, y, batch_size=4, epochs=2, validation_data=blobs(16, seed=1), verbose=0)
    # one host read of the labels per data set (before training), then ONE read per epoch for 16 batches
    assert len(calls) == 2 + 2


def test_fit_weights_epoch_means_by_batch_size(backend):
    x, y = blobs(20)
    model = tiny_cnn()
    model.compile("cross_entropy", optimizers.SGD(0.0), metrics=["accuracy"])  # lr 0: weights fixed
    h = model.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0).history  # batches 8, 8, 4
    ev = model.evaluate(x, y, batch_size=20)
    assert h["loss"][0] == pytest.approx(ev["loss"], rel=1e-5)
    assert h["accuracy"][0] == pytest.approx(ev["accuracy"])


def test_validation_split_takes_the_last_fraction(backend):
    x, y = blobs(40)
    model = tiny_cnn()
    model.compile("cross_entropy", "adam", metrics=["accuracy"])
    h = model.fit(x, y, batch_size=8, epochs=1, validation_split=0.25, verbose=0).history
    ev = model.evaluate(x[30:], y[30:])
    assert h["val_loss"][0] == pytest.approx(ev["loss"], rel=1e-5)
    assert h["val_accuracy"][0] == pytest.approx(ev["accuracy"])
    assert model.optimizer.iterations == 4  # 30 training samples in batches of 8


def test_fit_transform_augments_training_batches_only(backend):
    """Training through a mirroring transform is training on mirrored data; validation data stay as given."""
    x, y = blobs(40)
    seen = []

    def mirror(xb):
        seen.append((tuple(xb.shape), array_api_compat.device(xb)))
        return array_api_compat.array_namespace(xb).flip(xb, axis=-1)

    def trained(x_fit, **kwargs):
        xpcnn.manual_seed(3)
        model = tiny_cnn()
        model.compile("cross_entropy", "adam", metrics=["accuracy"])
        history = model.fit(x_fit, y, batch_size=8, epochs=2, shuffle=False, validation_data=blobs(16, seed=1),
                            verbose=0, **kwargs)
        return model, history.history

    model, h = trained(x, transform=mirror)
    assert seen == [((8, 1, 8, 8), backend.device)] * 10  # 5 training batches an epoch, no validation batch
    reference, h_ref = trained(np.ascontiguousarray(x[..., ::-1]))
    assert_same(snapshot(model), snapshot(reference))
    assert h["val_loss"] == pytest.approx(h_ref["val_loss"], rel=1e-6)
    with pytest.raises(TypeError, match="transform must be a callable"):
        model.fit(x, y, batch_size=8, verbose=0, transform="flip")
    assert model.epoch == 2


@pytest.mark.parametrize("bad", ["length", "negative", "too_large", "val_labels"])
def test_rejected_fit_changes_nothing(backend, bad):
    x, y = blobs(32)
    model = tiny_cnn()
    model.compile("cross_entropy", "adam", metrics=["accuracy"])
    model.fit(x, y, batch_size=8, epochs=1, verbose=0)  # optimizer state exists now
    weights, opt, rng_state = snapshot(model), optimizer_snapshot(model.optimizer), xpcnn.random.get_state()
    y_bad, kwargs = y.copy(), {}
    if bad == "length":
        args, match = (x, y[:-1]), "same length"
    elif bad == "negative":
        y_bad[5] = -1
        args, match = (x, y_bad), r"\[0, 3\)"
    elif bad == "too_large":
        y_bad[7] = 3
        args, match = (x, y_bad), r"\[0, 3\)"
    else:
        args, match = (x, y), r"\[0, 3\)"
        kwargs = {"validation_data": (x[:4], np.array([0, 1, 2, 9]))}
    with pytest.raises(ValueError, match=match):
        model.fit(*args, batch_size=8, epochs=2, verbose=0, **kwargs)
    assert_same(weights, snapshot(model))
    after = optimizer_snapshot(model.optimizer)
    assert after["iterations"] == opt["iterations"]
    for k in opt["state"]:
        assert_same(opt["state"][k], after["state"][k])
    assert xpcnn.random.get_state() == rng_state
    assert model.epoch == 1


def test_rejected_fit_on_unbuilt_model_leaves_it_unbuilt(backend):
    x, y = blobs(16)
    model = Sequential([Conv2D(2, 3), ReLU(), Flatten(), Dense(3)])
    model.compile("cross_entropy", "adam")
    state = xpcnn.random.get_state()
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        model.fit(x, y + 1, verbose=0)
    assert not model.built and not any(layer.built for layer in model.layers)
    assert xpcnn.random.get_state() == state


def test_one_hot_targets_train_as_the_integer_labels_they_encode(backend):
    """Backend arrays are accepted, and one-hot rows are the labels they encode: from one seed, the same losses,
    accuracies and weights as the integer labels (the loss and the metric read them by their own code path)."""
    x, y = blobs(32)
    runs = []
    for targets in (y, np.eye(3, dtype=np.float32)[y]):
        xpcnn.manual_seed(0)
        model = tiny_cnn()
        model.compile("cross_entropy", optimizers.Adam(0.02), metrics=["accuracy"])
        history = model.fit(xpcnn.asarray(x), xpcnn.asarray(targets), batch_size=8, epochs=2, verbose=0).history
        runs.append((history, snapshot(model)))
    (labels, weights), (one_hot, one_hot_weights) = runs
    assert labels.keys() == one_hot.keys() and len(labels["accuracy"]) == 2
    for k in labels:
        np.testing.assert_allclose(one_hot[k], labels[k], rtol=1e-5, err_msg=k)
    for k in weights:
        np.testing.assert_allclose(one_hot_weights[k], weights[k], rtol=1e-5, atol=1e-6, err_msg=k)
    with pytest.raises(ValueError, match="one-hot"):
        model.fit(x, np.eye(3, dtype=np.float32)[y][:, :2], verbose=0)


def test_evaluate_and_predict(backend):
    x, y = blobs(37)
    model = tiny_cnn()
    model.compile("cross_entropy", "adam", metrics=["accuracy", "top_k_accuracy"])
    pred = model.predict(x, batch_size=10)
    assert array_api_compat.array_namespace(pred) is backend.xp
    assert array_api_compat.device(pred) == backend.device and tuple(pred.shape) == (37, 3)
    np.testing.assert_allclose(host(pred), host(model.forward(xpcnn.asarray(x))), rtol=1e-5, atol=1e-6)
    result = model.evaluate(x, y, batch_size=10)
    assert set(result) == {"loss", "accuracy", "top_5_accuracy"}
    assert all(isinstance(v, float) for v in result.values())
    logits = host(pred)
    shifted = logits - logits.max(1, keepdims=True)
    nll = -(shifted[np.arange(37), y] - np.log(np.exp(shifted).sum(1)))
    assert result["loss"] == pytest.approx(nll.mean(), rel=1e-4)
    assert result["accuracy"] == pytest.approx(np.mean(logits.argmax(1) == y))
    assert result["top_5_accuracy"] == 1.0


def test_train_on_batch_returns_device_values(backend):
    x, y = blobs(16)
    model = tiny_cnn()
    model.compile("cross_entropy", optimizers.Adam(0.05), metrics=["accuracy"])
    first = model.train_on_batch(x, y)
    for v in first.values():
        assert array_api_compat.device(v) == backend.device and v.ndim == 0
    for _ in range(15):
        logs = model.train_on_batch(x, y)
    assert float(logs["loss"]) < float(first["loss"])
    test = model.test_on_batch(x, y)
    assert set(test) == {"loss", "accuracy"}
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        model.train_on_batch(x, y + 3)


def test_stop_training_ends_the_epoch(backend):
    class StopAfterTwo(Callback):
        def on_train_batch_end(self, batch, logs=None):
            if batch == 1:
                self.model.stop_training = True

    x, y = blobs(64)
    model = tiny_cnn()
    model.compile("cross_entropy", "adam")
    h = model.fit(x, y, batch_size=8, epochs=5, callbacks=[StopAfterTwo()], verbose=0)
    assert len(h.history["loss"]) == 1 and model.optimizer.iterations == 2


def test_binary_cross_entropy_with_flat_targets(backend):
    x, y = blobs(48, classes=2)
    model = tiny_cnn(classes=1)
    model.compile("binary_cross_entropy", optimizers.Adam(0.02), metrics=["accuracy"])
    h = model.fit(x, y, batch_size=8, epochs=3, verbose=0).history  # y (N,) -> (N, 1)
    assert h["accuracy"][-1] >= 0.9
    with pytest.raises(ValueError, match="0/1"):
        model.fit(x, y * 2, verbose=0)



def test_fit_refuses_nan_or_infinity_unless_told_not_to_check(backend):
    model = tiny_cnn()
    model.compile("cross_entropy", "adam")
    x, y = blobs(40)
    bad = x.copy()
    bad[17, 0, 2, 3] = np.nan
    before = snapshot(model)
    with pytest.raises(ValueError, match=r"x holds NaN or infinity \(first in sample 17\).*check_finite=False"):
        model.fit(bad, y, verbose=0)
    val = x[:8].copy()
    val[3, 0, 0, 0] = np.inf
    with pytest.raises(ValueError, match=r"x_val holds NaN or infinity \(first in sample 3\)"):
        model.fit(x, y, validation_data=(val, y[:8]), verbose=0)
    with pytest.raises(ValueError, match="x holds NaN or infinity"):  # an array of the backend: one reduction
        model.fit(xpcnn.asarray(bad), y, verbose=0)
    assert_same(snapshot(model), before)
    assert model.optimizer.iterations == 0
    regression = Sequential([Flatten(), Dense(2)], input_shape=(1, 8, 8))
    regression.compile("mse", "sgd")
    targets = np.zeros((40, 2), np.float32)
    targets[5, 1] = -np.inf
    with pytest.raises(ValueError, match=r"y holds NaN or infinity \(first in sample 5\)"):
        regression.fit(x, targets, verbose=0)
    model.fit(bad, y, epochs=1, verbose=0, check_finite=False)  # told: trains (into NaN weights)
    assert model.optimizer.iterations > 0


def test_flipped_numpy_views_train_on_every_backend(backend):
    x, y = blobs(32)
    flipped = np.flip(x, axis=-1)  # negative strides
    assert flipped.strides[-1] < 0
    results = []
    for data in (flipped, np.ascontiguousarray(flipped)):
        xpcnn.manual_seed(0)
        model = tiny_cnn()
        model.compile("cross_entropy", "sgd")
        model.fit(data, y, batch_size=8, epochs=1, verbose=0)
        results.append(host(model.predict(data)))
    np.testing.assert_array_equal(*results)

# --- state dicts -----------------------------------------------------------------------------------------

def test_state_dict_round_trip_and_errors(backend):
    model, other = tiny_cnn(), tiny_cnn()
    sd = model.state_dict()
    assert list(sd) == ["0.weight", "0.bias", "4.weight", "4.bias"]
    other.load_state_dict({k: xpcnn.to_numpy(v) for k, v in sd.items()})
    assert_same(snapshot(model), snapshot(other))
    before = snapshot(other)
    bad_shape = dict(sd, **{"4.weight": np.zeros((4, 64), np.float32)})
    with pytest.raises(ValueError, match=r"4\.weight: expected \(3, 64\), got \(4, 64\)"):
        other.load_state_dict(bad_shape)
    missing = {k: v for k, v in sd.items() if k != "0.bias"}
    with pytest.raises(ValueError, match=r"missing keys \['0\.bias'\]"):
        other.load_state_dict(missing)
    with pytest.raises(ValueError, match=r"unexpected keys \['7\.weight'\]"):
        other.load_state_dict({**sd, "7.weight": np.zeros(3, np.float32)})
    assert_same(before, snapshot(other))
    # state_dict values are copies: training does not change a dict taken before
    model.compile("cross_entropy", "adam")
    model.fit(*blobs(16), verbose=0)
    assert_same(before, {k: host(v) for k, v in sd.items()})


def _torch_models():
    torch = pytest.importorskip("torch")
    nn = torch.nn
    torch.manual_seed(0)
    plain = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(4, 6, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(6 * 2 * 2, 5),
    )
    return torch, plain


def test_torch_state_dict_loads_and_predicts_the_same(backend):
    torch, tmodel = _torch_models()
    model = Sequential(
        [Conv2D(4, 3, padding=1), ReLU(), MaxPool2D(2), Conv2D(6, 3, padding=1), ReLU(), MaxPool2D(2),
         Flatten(), Dense(5)],
        input_shape=(1, 8, 8),
    )
    model.load_state_dict(tmodel.state_dict())
    x = np.random.default_rng(0).standard_normal((7, 1, 8, 8)).astype(np.float32)
    with torch.no_grad():
        expected = tmodel(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(host(model.predict(x)), expected, rtol=1e-4, atol=1e-5)
    assert list(model.state_dict()) == list(tmodel.state_dict())



@pytest.mark.parametrize("half", ["bfloat16", "float16"])
def test_half_precision_torch_state_dict_loads_cast_to_the_models_dtype(backend, half):
    torch, tmodel = _torch_models()
    tmodel = tmodel.to(getattr(torch, half))
    model = Sequential(
        [Conv2D(4, 3, padding=1), ReLU(), MaxPool2D(2), Conv2D(6, 3, padding=1), ReLU(), MaxPool2D(2),
         Flatten(), Dense(5)],
        input_shape=(1, 8, 8),
    )
    model.load_state_dict(tmodel.state_dict())
    for key, value in model.state_dict().items():
        assert value.dtype == backend.dtype
        np.testing.assert_array_equal(host(value), tmodel.state_dict()[key].float().numpy())  # exact: widening

def test_torch_state_dict_with_batchnorm(backend):
    torch, _ = _torch_models()
    from xpcnn.layers.normalization import BatchNorm2D

    nn = torch.nn
    tmodel = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(4 * 4 * 4, 3),
    )
    tmodel.train()
    with torch.no_grad():  # non-trivial running statistics and affine parameters
        for i in range(3):
            tmodel(torch.randn(16, 1, 8, 8) * (i + 1) + i)
        tmodel[1].weight.uniform_(0.5, 1.5)
        tmodel[1].bias.uniform_(-0.5, 0.5)
    tmodel.eval()
    model = Sequential([Conv2D(4, 3, padding=1), BatchNorm2D(), ReLU(), MaxPool2D(2), Flatten(), Dense(3)],
                       input_shape=(1, 8, 8))
    sd = tmodel.state_dict()
    assert "1.num_batches_tracked" in sd
    model.load_state_dict(sd)
    assert list(model.state_dict()) == [k for k in sd if not k.endswith("num_batches_tracked")]
    x = np.random.default_rng(1).standard_normal((6, 1, 8, 8)).astype(np.float32)
    with torch.no_grad():
        expected = tmodel(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(host(model.predict(x)), expected, rtol=1e-4, atol=1e-5)
    text = model.summary(print_fn=lambda s: None)
    assert "Non-trainable params: 8" in text


# --- reproducibility -------------------------------------------------------------------------------------

def _dropout_layers():
    try:
        from xpcnn.layers.dropout import Dropout
    except ImportError:
        return ()
    return (Dropout(0.25),)


def _run(seed: int, epochs: int = 2):
    xpcnn.manual_seed(seed)
    model = tiny_cnn(extra=_dropout_layers())
    model.compile("cross_entropy", optimizers.Adam(0.01), metrics=["accuracy"])
    history = model.fit(*blobs(40), batch_size=8, epochs=epochs, validation_split=0.2, verbose=0)
    return model, history.history


def test_same_seed_same_run(backend):
    m1, h1 = _run(5)
    m2, h2 = _run(5)
    assert h1 == h2
    assert_same(snapshot(m1), snapshot(m2))
    m3, h3 = _run(6)
    assert h3["loss"] != h1["loss"]


def test_resumed_run_continues_exactly(backend, tmp_path):
    full, h_full = _run(11, epochs=2)
    # the same run, interrupted after epoch 1 and resumed from its checkpoint
    xpcnn.manual_seed(11)
    model = tiny_cnn(extra=_dropout_layers())
    model.compile("cross_entropy", optimizers.Adam(0.01), metrics=["accuracy"])
    x, y = blobs(40)
    h1 = model.fit(x, y, batch_size=8, epochs=1, validation_split=0.2, verbose=0).history
    model.save(tmp_path / "ckpt.xpcnn")
    xpcnn.manual_seed(999)  # whatever happens in between
    resumed = load_model(tmp_path / "ckpt.xpcnn", restore_random_state=True)
    assert resumed.epoch == 1
    h2 = resumed.fit(x, y, batch_size=8, epochs=2, validation_split=0.2, verbose=0, initial_epoch=1).history
    assert {k: v[0] for k, v in h1.items()} == {k: v[0] for k, v in h_full.items()}
    assert {k: v[0] for k, v in h2.items()} == {k: v[1] for k, v in h_full.items()}
    assert_same(snapshot(full), snapshot(resumed))
    assert resumed.optimizer.iterations == full.optimizer.iterations == 8


def test_library_callbacks_drive_a_real_fit(backend, tmp_path):
    from xpcnn.callbacks import CSVLogger, EarlyStopping, ModelCheckpoint, StepLR, TerminateOnNaN

    x, y = blobs(48)
    model = tiny_cnn()
    model.compile("cross_entropy", optimizers.Adam(0.02), metrics=["accuracy"])
    stop = EarlyStopping(monitor="val_loss", patience=0, restore_best_weights=True)
    ckpt = ModelCheckpoint(tmp_path / "ckpt-{epoch:02d}.xpcnn", monitor="val_loss")
    h = model.fit(x, y, batch_size=8, epochs=4, validation_split=0.25, verbose=0, callbacks=[
        stop, ckpt, CSVLogger(tmp_path / "log.csv"), StepLR(step_size=1, gamma=0.5), TerminateOnNaN(check_every=2),
    ]).history
    epochs = len(h["loss"])
    assert h["lr"] == [0.02 * 0.5**e for e in range(epochs)]
    assert sorted(os.listdir(tmp_path)) == sorted([f"ckpt-{e + 1:02d}.xpcnn" for e in range(epochs)] + ["log.csv"])
    last = load_model(tmp_path / f"ckpt-{epochs:02d}.xpcnn")
    assert last.epoch == epochs and last.optimizer.iterations == 5 * epochs
    assert len((tmp_path / "log.csv").read_text().splitlines()) == epochs + 1


def test_backward_without_the_input_gradient_gives_the_same_parameter_gradients(backend):
    """Training skips the data's gradient (the first convolution's dx, the layers before it): same grads."""
    from xpcnn.layers.dropout import Dropout

    model = tiny_cnn(extra=())
    model.layers.insert(0, Dropout(0.0))  # a layer without parameters before the first convolution
    model = Sequential(model.layers, input_shape=(1, 8, 8))
    x, _ = blobs(6)
    xb = xpcnn.asarray(x)
    dy = xpcnn.asarray(np.random.default_rng(1).standard_normal((6, 3)))
    model.forward(xb, training=True)
    dx = model.backward(dy)
    full = {k: host(v) for k, v in model.grads.items()}
    assert tuple(dx.shape) == (6, 1, 8, 8)
    model.forward(xb, training=True)
    assert model.backward(dy, input_grad=False) is None
    assert_same({k: host(v) for k, v in model.grads.items()}, full)
    assert model.layers[1].input_grad is True, "the layer's own setting is restored"


@pytest.mark.parametrize("activation, loss, plain_loss, targets", [
    ("softmax", "sparse_categorical_crossentropy", "cross_entropy", "labels"),
    ("softmax", "categorical_crossentropy", "cross_entropy", "one_hot"),
    ("sigmoid", "binary_crossentropy", "binary_cross_entropy", "binary"),
])
def test_a_softmax_or_sigmoid_output_trains_as_its_logits_would(backend64, activation, loss, plain_loss, targets):
    """The tutorials' spelling, ``Dense(k, activation="softmax")`` with a Keras cross-entropy name, takes the
    output as probabilities: one SGD step moves the weights as the logits model with the logits loss does."""
    from xpcnn.layers.activations import Softmax

    rng = np.random.default_rng(0)
    x = rng.standard_normal((8, 4))
    units = 1 if activation == "sigmoid" else 3
    y = {"labels": rng.integers(0, 3, 8), "one_hot": np.eye(3)[rng.integers(0, 3, 8)],
         "binary": rng.integers(0, 2, (8, 1)).astype(np.float64)}[targets]
    runs = []
    for act, name in ((activation, loss), (None, plain_loss)):
        xpcnn.manual_seed(5)
        model = Sequential([Dense(units, activation=act)], input_shape=(4,))
        model.compile(name, optimizers.SGD(0.5))
        assert getattr(model.loss, "from_logits", True) is (act is None)
        model.train_on_batch(x, y)
        runs.append(snapshot(model))
    for key in runs[0]:
        np.testing.assert_allclose(runs[0][key], runs[1][key], rtol=1e-9, atol=1e-12, err_msg=key)
    # a Softmax layer at the end counts too; a logits loss object with it is called out
    model = Sequential([Dense(3), Softmax()], input_shape=(4,))
    model.compile("cross_entropy", "sgd")
    assert model.loss.from_logits is False
    with pytest.warns(UserWarning, match="comes out of a softmax, but the loss object takes logits"):
        model.compile(xpcnn.losses.CrossEntropy(), "sgd")
