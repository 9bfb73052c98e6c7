"""Callbacks driven by a tiny fake model and synthetic logs (independent of ``xpcnn.model``).

Per-batch logs hold 0-d arrays of the session's backend (or counting stand-ins that record every
``float()``), epoch logs hold Python floats, as the model's contract says. The learning-rate schedules
are compared with their ``torch.optim.lr_scheduler`` counterparts.
"""

from __future__ import annotations

import csv
import math
import sys

import array_api_compat
import numpy as np
import pytest

import xpcnn
from xpcnn.callbacks import (
    Callback,
    CallbackList,
    CosineAnnealingLR,
    CSVLogger,
    EarlyStopping,
    History,
    LearningRateScheduler,
    ModelCheckpoint,
    OneCycleLR,
    ProgressBar,
    ReduceLROnPlateau,
    StepLR,
    TerminateOnNaN,
)

# --- a fake model and a fake training loop ----------------------------------------------------------------


class FakeOptimizer:
    def __init__(self, lr: float) -> None:
        self.lr = lr


class FakeModel:
    """What callbacks may touch: stop_training, optimizer.lr, save, state_dict/load_state_dict."""

    def __init__(self, lr: float = 0.1) -> None:
        self.stop_training = False
        self.optimizer = FakeOptimizer(lr)
        self.weights = {"0.weight": xpcnn.asarray(np.zeros((2, 3))), "0.bias": xpcnn.asarray(np.zeros(2))}
        self.saved: list[str] = []
        self.loaded = 0

    def set_weights_to(self, value: float) -> None:
        self.weights = {k: xpcnn.asarray(np.full(tuple(v.shape), value)) for k, v in self.weights.items()}

    def save(self, path: str) -> None:
        self.saved.append(path)
        with open(path, "w") as f:
            f.write("model")

    def state_dict(self) -> dict:
        return dict(self.weights)  # the live arrays, as a model may hand them out

    def load_state_dict(self, state: dict) -> None:
        self.loaded += 1
        self.weights = dict(state)


def fit(callbacks, model, epoch_logs, steps=0, batch_logs=None, verbose=1):
    """Drive ``callbacks`` like ``Sequential.fit``; returns the number of epochs run."""
    cbs = CallbackList(callbacks, model=model,
                       params={"epochs": len(epoch_logs), "steps": steps, "verbose": verbose})
    cbs.on_train_begin({})
    run = 0
    for epoch, logs in enumerate(epoch_logs):
        cbs.on_epoch_begin(epoch, {})
        for batch in range(steps):
            cbs.on_train_batch_begin(batch, {})
            cbs.on_train_batch_end(batch, batch_logs(epoch, batch))
            if model.stop_training:
                break
        if callable(logs):
            logs = logs(epoch)
        cbs.on_epoch_end(epoch, dict(logs))
        run += 1
        if model.stop_training:
            break
    cbs.on_train_end({})
    return run


class Counting:
    """A stand-in for a 0-d device value: arithmetic stays lazy, every ``float()`` is counted."""

    def __init__(self, value: float, counter: list[int]) -> None:
        self.value, self.counter = value, counter

    def __float__(self) -> float:
        self.counter[0] += 1
        return float(self.value)

    def __mul__(self, other):
        return Counting(self.value * other, self.counter)

    __rmul__ = __mul__

    def __add__(self, other):
        other = other.value if isinstance(other, Counting) else other
        return Counting(self.value + other, self.counter)

    __radd__ = __add__


def device_scalar(value: float):
    b = xpcnn.get_backend()
    return b.xp.asarray(value, dtype=b.dtype, device=b.device)


def val_losses(values):
    return [{"loss": 1.0, "val_loss": v} for v in values]


# --- Callback and CallbackList ----------------------------------------------------------------------------


class Recorder(Callback):
    def __init__(self, name, calls):
        super().__init__()
        self.name, self.calls = name, calls

    def on_train_begin(self, logs=None):
        self.calls.append((self.name, "train_begin"))

    def on_epoch_end(self, epoch, logs=None):
        self.calls.append((self.name, "epoch_end", epoch))

    def on_train_batch_end(self, batch, logs=None):
        self.calls.append((self.name, "batch_end", batch))

    def on_test_end(self, logs=None):
        self.calls.append((self.name, "test_end"))


def test_callback_list_dispatches_in_order_and_sets_model_and_params():
    calls: list = []
    a, b = Recorder("a", calls), Recorder("b", calls)
    model = FakeModel()
    cbs = CallbackList([a, b], model=model, params={"epochs": 1, "steps": 2, "verbose": 0})
    assert a.model is model and b.model is model
    assert b.params == {"epochs": 1, "steps": 2, "verbose": 0}
    assert len(cbs) == 2 and list(cbs) == [a, b] and cbs[1] is b
    cbs.on_train_begin({})
    cbs.on_train_batch_end(0, {})
    cbs.on_epoch_end(0, {})
    cbs.on_test_end({})
    cbs.on_predict_end({})  # a hook nobody overrides is a no-op
    assert calls == [("a", "train_begin"), ("b", "train_begin"), ("a", "batch_end", 0), ("b", "batch_end", 0),
                     ("a", "epoch_end", 0), ("b", "epoch_end", 0), ("a", "test_end"), ("b", "test_end")]
    c = Recorder("c", calls)
    cbs.append(c)
    assert c.model is model and c.params["steps"] == 2


def test_callback_list_rejects_non_callbacks():
    with pytest.raises(TypeError, match="Callback instances"):
        CallbackList([lambda: None])


def test_history_records_epoch_logs():
    history = History()
    fit([history], FakeModel(), [{"loss": 2.0, "val_loss": 3.0, "lr": 0.1}, {"loss": 1.0, "val_loss": 2.5, "lr": 0.1}])
    assert history.epoch == [0, 1]
    assert history.history == {"loss": [2.0, 1.0], "val_loss": [3.0, 2.5], "lr": [0.1, 0.1]}


# --- EarlyStopping ----------------------------------------------------------------------------------------


def test_early_stopping_patience():
    model = FakeModel()
    stopper = EarlyStopping(patience=2)
    run = fit([stopper], model, val_losses([1.0, 0.9, 0.95, 0.94, 0.93, 0.92]))
    assert run == 4 and model.stop_training
    assert stopper.stopped_epoch == 3 and stopper.best == 0.9 and stopper.best_epoch == 1


def test_early_stopping_patience_zero_stops_at_first_non_improvement():
    model = FakeModel()
    stopper = EarlyStopping()
    assert fit([stopper], model, val_losses([1.0, 0.9, 0.9, 0.5])) == 3
    assert stopper.stopped_epoch == 2


def test_early_stopping_min_delta():
    losses = [1.0, 0.95, 0.92, 0.90, 0.88]
    assert fit([EarlyStopping(patience=2)], FakeModel(), val_losses(losses)) == 5
    stopper = EarlyStopping(patience=2, min_delta=0.1)
    assert fit([stopper], FakeModel(), val_losses(losses)) == 3
    assert stopper.best == 1.0


def test_early_stopping_auto_mode_maximises_accuracy():
    stopper = EarlyStopping(monitor="val_accuracy", patience=1)
    assert stopper.mode == "max"
    logs = [{"val_accuracy": a} for a in (0.5, 0.6, 0.7, 0.65, 0.69)]
    assert fit([stopper], FakeModel(), logs) == 4
    assert stopper.best == 0.7


def test_early_stopping_baseline():
    losses = [0.9, 0.8, 0.85, 0.84]
    assert fit([EarlyStopping(patience=2)], FakeModel(), val_losses(losses)) == 4
    stopper = EarlyStopping(patience=2, baseline=0.5)
    assert fit([stopper], FakeModel(), val_losses(losses)) == 3  # never beat the baseline


@pytest.mark.parametrize("stops", [True, False])
def test_early_stopping_restores_best_weights(backend, stops):
    model = FakeModel()
    losses = [3.0, 1.0, 2.0, 2.5] if stops else [3.0, 1.0, 2.0]

    def logs(epoch):
        model.set_weights_to(float(epoch))  # "training" changed the weights during this epoch
        return {"val_loss": losses[epoch]}

    stopper = EarlyStopping(patience=2, restore_best_weights=True)
    assert fit([stopper], model, [logs] * len(losses)) == len(losses)
    assert model.stop_training is stops and model.loaded == 1
    for v in model.weights.values():
        assert array_api_compat.device(v) == backend.device
        np.testing.assert_array_equal(xpcnn.to_numpy(v), 1.0)


def test_early_stopping_snapshot_is_a_copy(backend):
    """The optimizers write weights in place wherever arrays are writeable (torch, NumPy, array-api-strict), so
    a snapshot that is a view of the live weights would follow training. JAX arrays never change in place:
    there the snapshot must still not be the live buffer under another name (as ``from_dlpack`` gives)."""
    model = FakeModel()
    stopper = EarlyStopping(restore_best_weights=True)
    stopper.set_model(model)
    stopper.on_train_begin()
    stopper.on_epoch_end(0, {"val_loss": 1.0})
    live, snap = model.weights["0.weight"], stopper.best_weights["0.weight"]
    assert snap is not live
    assert array_api_compat.device(snap) == backend.device and snap.dtype == backend.dtype
    if backend.name == "jax":
        assert snap.unsafe_buffer_pointer() != live.unsafe_buffer_pointer()
    else:
        live[...] = 7.0  # what an in-place optimizer step does
        np.testing.assert_array_equal(xpcnn.to_numpy(snap), 0.0)


def test_early_stopping_restores_the_best_epoch_of_a_real_fit(backend):
    """Gradient descent on mean((w x - 2)^2) with x = 1 from w = 0 at lr 0.25 halves the distance to 2 each
    epoch: w = 1, 1.5, 1.75, ... (exact in float32). Validation targets 1.6 score best after epoch 1 and worse
    after epoch 2, so training stops there and must come back to exactly the weights epoch 1 ended with."""
    from xpcnn.layers import Dense
    from xpcnn.optimizers import SGD

    model = xpcnn.Sequential([Dense(1, bias=False)], input_shape=(1,))
    model.load_state_dict({key: np.zeros(tuple(v.shape)) for key, v in model.state_dict().items()})
    model.compile("mse", SGD(lr=0.25))
    ones = np.ones((4, 1), dtype=np.float32)
    ended: dict[int, dict[str, np.ndarray]] = {}

    class WeightsAtEpochEnd(Callback):
        def on_epoch_end(self, epoch, logs=None):
            ended[epoch] = {k: np.array(xpcnn.to_numpy(v)) for k, v in self.model.state_dict().items()}

    stopper = EarlyStopping(patience=1, restore_best_weights=True)
    history = model.fit(ones, 2 * ones, batch_size=4, epochs=6, validation_data=(ones, 1.6 * ones), verbose=0,
                        callbacks=[WeightsAtEpochEnd(), stopper])
    np.testing.assert_allclose(history.history["val_loss"], [0.36, 0.01, 0.0225], rtol=1e-5)
    assert (stopper.best_epoch, stopper.stopped_epoch) == (1, 2)
    assert [float(ended[e]["0.weight"][0, 0]) for e in ended] == [1.0, 1.5, 1.75]
    restored = model.state_dict()
    assert restored.keys() == ended[1].keys()
    for key, weights in ended[1].items():
        assert array_api_compat.device(restored[key]) == backend.device
        np.testing.assert_array_equal(xpcnn.to_numpy(restored[key]), weights)


def test_early_stopping_warns_when_monitor_missing():
    model = FakeModel()
    with pytest.warns(RuntimeWarning, match=r"'val_loss' is not in the epoch logs.*'loss'"):
        assert fit([EarlyStopping()], model, [{"loss": 1.0}] * 3) == 3
    assert not model.stop_training


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"patience": -1}, "patience must be an integer >= 0"),
        ({"mode": "bigger"}, "mode must be 'auto', 'min' or 'max'"),
        ({"min_delta": -0.1}, "min_delta must be >= 0"),
        ({"min_delta": math.nan}, "min_delta must be a finite number"),
        ({"start_from_epoch": -2}, "start_from_epoch"),
    ],
)
def test_early_stopping_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        EarlyStopping(**kwargs)


def test_early_stopping_refuses_wrong_types_with_type_errors():
    with pytest.raises(TypeError, match="EarlyStopping: patience must be an integer, got float 1.5"):
        EarlyStopping(patience=1.5)
    with pytest.raises(TypeError, match="EarlyStopping: min_delta must be a finite number, got str '0.1'"):
        EarlyStopping(min_delta="0.1")


# --- ModelCheckpoint --------------------------------------------------------------------------------------


def test_model_checkpoint_best_only_and_formatting(tmp_path):
    model = FakeModel()
    ckpt = ModelCheckpoint(tmp_path / "m-{epoch:02d}-{val_loss:.4f}.ckpt", save_best_only=True)
    fit([ckpt], model, val_losses([0.5, 0.6, 0.4, 0.45]))
    expected = [str(tmp_path / "m-01-0.5000.ckpt"), str(tmp_path / "m-03-0.4000.ckpt")]
    assert model.saved == expected and ckpt.last_saved == expected[-1] and ckpt.best == 0.4
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m-01-0.5000.ckpt", "m-03-0.4000.ckpt"]


def test_model_checkpoint_every_epoch_creates_folders(tmp_path):
    model = FakeModel()
    fit([ModelCheckpoint(str(tmp_path / "a" / "b" / "e{epoch}.ckpt"))], model, val_losses([0.5, 0.6]))
    assert [p.name for p in sorted((tmp_path / "a" / "b").iterdir())] == ["e1.ckpt", "e2.ckpt"]


def test_model_checkpoint_max_mode_and_threshold(tmp_path):
    model = FakeModel()
    ckpt = ModelCheckpoint(tmp_path / "best.ckpt", monitor="val_accuracy", save_best_only=True,
                           initial_value_threshold=0.55)
    fit([ckpt], model, [{"val_accuracy": a} for a in (0.5, 0.6, 0.58, 0.7)])
    assert len(model.saved) == 2 and ckpt.best == 0.7


def test_model_checkpoint_weights_only_writes_npz_state(tmp_path, backend):
    model = FakeModel()
    model.set_weights_to(2.0)
    path = tmp_path / "w.npz"
    fit([ModelCheckpoint(path, save_weights_only=True)], model, val_losses([0.5]))
    assert model.saved == []
    with np.load(path) as data:
        assert sorted(data.files) == ["0.bias", "0.weight"]
        np.testing.assert_array_equal(data["0.weight"], np.full((2, 3), 2.0, dtype=np.float32))


def test_model_checkpoint_weights_only_prefers_model_save_weights(tmp_path):
    model = FakeModel()
    model.save_weights = lambda path: model.saved.append(("weights", path))
    fit([ModelCheckpoint(tmp_path / "w.bin", save_weights_only=True)], model, val_losses([0.5]))
    assert model.saved == [("weights", str(tmp_path / "w.bin"))]


def test_model_checkpoint_unknown_field_names_the_logs(tmp_path):
    with pytest.raises(KeyError, match="val_acc.*val_loss"):
        fit([ModelCheckpoint(tmp_path / "{val_acc}.ckpt")], FakeModel(), val_losses([0.5]))


def test_model_checkpoint_rejects_bad_arguments():
    with pytest.raises(ValueError, match="mode must be"):
        ModelCheckpoint("x", mode="best")
    with pytest.raises(ValueError, match="filepath must not be empty"):
        ModelCheckpoint("")


# --- CSVLogger --------------------------------------------------------------------------------------------


def _read_csv(path, sep=","):
    with open(path, newline="") as f:
        return list(csv.reader(f, delimiter=sep))


def test_csv_logger_writes_header_and_rows(tmp_path):
    path = tmp_path / "log.csv"
    logs = [{"loss": 0.5, "accuracy": 0.75, "val_loss": 0.25, "lr": 0.01},
            {"loss": 0.125, "accuracy": 0.875, "val_loss": 0.2, "lr": 0.001}]
    fit([CSVLogger(path, separator=";")], FakeModel(), logs)
    assert _read_csv(path, ";") == [["epoch", "loss", "accuracy", "val_loss", "lr"],
                                    ["0", "0.5", "0.75", "0.25", "0.01"],
                                    ["1", "0.125", "0.875", "0.2", "0.001"]]


def test_csv_logger_append_and_overwrite(tmp_path):
    path = tmp_path / "log.csv"
    fit([CSVLogger(path)], FakeModel(), [{"loss": 1.0, "val_loss": 2.0}])
    fit([CSVLogger(path, append=True)], FakeModel(), [{"val_loss": 1.5, "loss": 0.5}])  # columns by header
    assert _read_csv(path) == [["epoch", "loss", "val_loss"], ["0", "1.0", "2.0"], ["0", "0.5", "1.5"]]
    fit([CSVLogger(path)], FakeModel(), [{"loss": 0.25}])
    assert _read_csv(path) == [["epoch", "loss"], ["0", "0.25"]]


def test_csv_logger_missing_values_and_bad_separator(tmp_path):
    path = tmp_path / "log.csv"
    fit([CSVLogger(path)], FakeModel(), [{"loss": 1.0, "val_loss": 2.0}, {"loss": 0.5}])
    assert _read_csv(path)[2] == ["1", "0.5", "NA"]
    with pytest.raises(ValueError, match="separator must be a single character"):
        CSVLogger(path, separator=", ")


# --- TerminateOnNaN ---------------------------------------------------------------------------------------


def test_terminate_on_nan_with_device_loss(backend, capsys):
    model = FakeModel()
    guard = TerminateOnNaN(check_every=5)

    def batch_logs(epoch, batch):
        bad = epoch == 1 and batch >= 12
        return {"loss": device_scalar(math.nan if bad else 0.5), "size": 4}

    run = fit([guard], model, [{"loss": 0.5}] * 3, steps=20, batch_logs=batch_logs)
    assert run == 2 and model.stop_training
    assert (guard.stopped_epoch, guard.stopped_batch) == (1, 14)
    err = capsys.readouterr().err
    assert "TerminateOnNaN: loss is nan at epoch 2, batch 15/20" in err
    assert err.count("TerminateOnNaN") == 1  # the epoch end after the stop does not repeat it


def test_terminate_on_nan_reads_at_its_interval_only():
    counter = [0]
    guard = TerminateOnNaN(check_every=4)
    fit([guard], FakeModel(), [{"loss": 0.5}], steps=10, batch_logs=lambda e, b: {"loss": Counting(0.5, counter)})
    assert counter[0] == 2  # batches 4 and 8; the epoch end uses the epoch's float loss


def test_terminate_on_nan_at_epoch_end():
    model = FakeModel()
    guard = TerminateOnNaN()
    assert fit([guard], model, [{"loss": 0.5}, {"loss": math.inf}, {"loss": 0.5}]) == 2
    assert model.stop_training and guard.stopped_epoch == 1 and "inf" in guard.message
    # without an epoch loss, the last batch's loss is read once at the epoch end
    counter = [0]
    model, guard = FakeModel(), TerminateOnNaN(check_every=4)
    fit([guard], model, [{}], steps=6, batch_logs=lambda e, b: {"loss": Counting(math.nan if b == 5 else 1.0, counter)})
    assert model.stop_training and counter[0] == 2 and guard.stopped_batch == 5


def test_terminate_on_nan_rejects_bad_interval():
    with pytest.raises(ValueError, match="check_every must be an integer >= 1"):
        TerminateOnNaN(check_every=0)


# --- ProgressBar ------------------------------------------------------------------------------------------


def _metric_logs(counter, steps):
    return lambda e, b: {"loss": Counting(1.0 + b, counter), "accuracy": Counting(0.5, counter), "size": 2}


def test_progress_bar_reads_device_values_every_refresh_only(capsys):
    pytest.importorskip("tqdm")
    counter = [0]
    seen = []

    class Spy(Callback):
        def on_train_batch_end(self, batch, logs=None):
            seen.append(counter[0])

    logs = [{"loss": 1.0, "accuracy": 0.5, "val_loss": 0.75, "val_accuracy": 0.625, "lr": 0.01}]
    fit([ProgressBar(refresh_every=10), Spy()], FakeModel(), logs, steps=25,
        batch_logs=_metric_logs(counter, 25))
    # two metrics read at batches 10 and 20, nothing in between; the epoch end uses the float logs
    assert seen == [0] * 9 + [2] * 10 + [4] * 6
    assert counter[0] == 4
    out = capsys.readouterr()
    assert out.out == ""
    assert "Epoch 1/1" in out.err and "25/25" in out.err
    assert "loss=1.0000, accuracy=0.5000" in out.err
    assert "val_loss: 0.7500 - val_accuracy: 0.6250 - lr: 0.01" in out.err


def test_progress_bar_reads_running_means_at_epoch_end_when_logs_lack_them(capsys):
    counter = [0]
    fit([ProgressBar(refresh_every=10)], FakeModel(), [{}], steps=25, batch_logs=_metric_logs(counter, 25))
    assert counter[0] == 6
    assert "loss=13.0000" in capsys.readouterr().err  # mean of 1..25


def test_progress_bar_plain_fallback_without_tqdm(monkeypatch, capsys, backend):
    monkeypatch.setitem(sys.modules, "tqdm", None)  # `import tqdm` now raises ImportError
    sizes = [4, 4, 2]
    losses = [1.0, 2.0, 4.0]
    batch_logs = lambda e, b: {"loss": device_scalar(losses[b]), "size": sizes[b]}  # noqa: E731
    fit([ProgressBar(refresh_every=2)], FakeModel(), [{"val_loss": 0.5, "lr": 0.1}] * 2, steps=3,
        batch_logs=batch_logs)
    lines = capsys.readouterr().err.splitlines()
    assert lines[0] == "Epoch 1/2 - 2/3 - loss: 1.5000"  # size-weighted running mean
    assert lines[1].startswith("Epoch 1/2 - 3/3 - ")
    assert lines[1].endswith("s - loss: 2.0000 - val_loss: 0.5000 - lr: 0.1")  # (4+8+8)/10
    assert lines[2] == "Epoch 2/2 - 2/3 - loss: 1.5000" and len(lines) == 4


def test_progress_bar_verbose_levels(capsys):
    counter = [0]
    fit([ProgressBar()], FakeModel(), [{"loss": 1.0}], steps=25, batch_logs=_metric_logs(counter, 25), verbose=0)
    assert counter[0] == 0 and capsys.readouterr().err == ""
    fit([ProgressBar()], FakeModel(), [{"loss": 1.0, "accuracy": 0.5, "val_loss": 2.0}] * 2, steps=25,
        batch_logs=_metric_logs(counter, 25), verbose=2)
    lines = capsys.readouterr().err.splitlines()
    assert counter[0] == 0 and len(lines) == 2
    assert lines[1].startswith("Epoch 2/2 - 25/25 - ")
    assert lines[1].endswith("loss: 1.0000 - accuracy: 0.5000 - val_loss: 2.0000")


def test_progress_bar_evaluate_outside_fit(capsys):
    pytest.importorskip("tqdm")
    counter = [0]
    bar = ProgressBar(refresh_every=3)
    bar.set_params({"steps": 4, "verbose": 1})
    bar.on_test_begin({})
    for b in range(4):
        bar.on_test_batch_end(b, {"loss": Counting(2.0, counter), "size": 8})
    bar.on_test_end({"loss": 2.0})
    assert counter[0] == 1
    err = capsys.readouterr().err
    assert "Evaluate" in err and "4/4" in err and "loss=2.0000" in err


def test_progress_bar_rejects_bad_arguments():
    with pytest.raises(ValueError, match="refresh_every must be an integer >= 1"):
        ProgressBar(refresh_every=0)
    with pytest.raises(ValueError, match="verbose must be 0, 1 or 2"):
        ProgressBar(verbose=3)


# --- learning-rate schedules against torch ----------------------------------------------------------------


def _torch_lrs(make_scheduler, lr, epochs, metrics=None):
    torch = pytest.importorskip("torch")
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr)
    sched = make_scheduler(torch.optim.lr_scheduler, opt)
    lrs = []
    for epoch in range(epochs):
        if metrics is None:
            lrs.append(opt.param_groups[0]["lr"])  # the rate epoch `epoch` trains with
            opt.step()
            sched.step()
        else:
            sched.step(metrics[epoch])
            lrs.append(opt.param_groups[0]["lr"])  # the rate after the epoch-end step
    return lrs


def _our_lrs(callback, lr, epochs, metrics=None, monitor="val_loss"):
    model = FakeModel(lr)
    cbs = CallbackList([callback], model=model, params={"epochs": epochs, "steps": 0, "verbose": 0})
    cbs.on_train_begin({})
    lrs = []
    for epoch in range(epochs):
        cbs.on_epoch_begin(epoch, {})
        if metrics is None:
            lrs.append(model.optimizer.lr)
        logs = {"loss": 1.0} if metrics is None else {monitor: metrics[epoch]}
        cbs.on_epoch_end(epoch, logs)
        if metrics is not None:
            lrs.append(model.optimizer.lr)
    cbs.on_train_end({})
    return lrs


@pytest.mark.parametrize(("step_size", "gamma"), [(1, 0.5), (3, 0.1), (7, 0.9)])
def test_step_lr_matches_torch(step_size, gamma):
    expected = _torch_lrs(lambda s, opt: s.StepLR(opt, step_size=step_size, gamma=gamma), 0.1, 20)
    ours = _our_lrs(StepLR(step_size, gamma=gamma), 0.1, 20)
    np.testing.assert_allclose(ours, expected, rtol=1e-12, atol=0)


@pytest.mark.parametrize(("t_max", "eta_min"), [(10, 0.0), (7, 1e-3), (1, 0.01)])
def test_cosine_annealing_matches_torch(t_max, eta_min):
    epochs = 3 * t_max + 2  # past T_max the cosine rises again
    expected = _torch_lrs(lambda s, opt: s.CosineAnnealingLR(opt, T_max=t_max, eta_min=eta_min), 0.05, epochs)
    ours = _our_lrs(CosineAnnealingLR(t_max, eta_min=eta_min), 0.05, epochs)
    np.testing.assert_allclose(ours, expected, rtol=1e-9, atol=1e-15)


_PLATEAU_METRICS = [1.0, 0.9, 0.9, 0.89995, 0.9, 0.95, 0.8, 0.8, 0.8, 0.8, 0.8, 0.79, 0.85, 0.85, 0.85,
                    0.85, 0.7, 0.7, 0.7, 0.7, 0.7, 0.7, 0.7, 0.7, 0.7, 0.7, math.nan, 0.6, 0.6, 0.6]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"patience": 1},
        {"patience": 2, "factor": 0.5, "cooldown": 2},
        {"patience": 0, "factor": 0.5, "min_lr": 0.02},
        {"patience": 1, "threshold_mode": "abs", "min_delta": 0.05},
        {"patience": 1, "mode": "max"},
        {"patience": 2, "mode": "max", "threshold_mode": "abs", "min_delta": 0.01, "cooldown": 1},
    ],
)
def test_reduce_lr_on_plateau_matches_torch(kwargs):
    torch_kwargs = {("threshold" if k == "min_delta" else k): v for k, v in kwargs.items()}
    expected = _torch_lrs(lambda s, opt: s.ReduceLROnPlateau(opt, **torch_kwargs), 0.1, len(_PLATEAU_METRICS),
                          metrics=_PLATEAU_METRICS)
    ours = _our_lrs(ReduceLROnPlateau(**kwargs), 0.1, len(_PLATEAU_METRICS), metrics=_PLATEAU_METRICS)
    assert len(set(expected)) > 1  # the case does reduce
    np.testing.assert_allclose(ours, expected, rtol=1e-12, atol=0)


def test_reduce_lr_on_plateau_defaults_match_torch():
    metrics = [1.0] * 40
    expected = _torch_lrs(lambda s, opt: s.ReduceLROnPlateau(opt), 0.1, 40, metrics=metrics)
    ours = _our_lrs(ReduceLROnPlateau(), 0.1, 40, metrics=metrics)
    np.testing.assert_allclose(ours, expected, rtol=1e-12, atol=0)


def test_reduce_lr_on_plateau_auto_mode():
    assert ReduceLROnPlateau(monitor="val_accuracy").mode == "max"
    assert ReduceLROnPlateau(monitor="loss").mode == "min"


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"factor": 1.0}, r"factor must be in \(0, 1\)"),
        ({"factor": 0.0}, r"factor must be in \(0, 1\)"),
        ({"patience": -1}, "patience must be an integer >= 0"),
        ({"cooldown": -1}, "cooldown must be an integer >= 0"),
        ({"min_lr": -1e-3}, "min_lr must be >= 0"),
        ({"mode": "up"}, "mode must be 'auto', 'min' or 'max'"),
        ({"threshold_mode": "relative"}, "threshold_mode must be 'rel' or 'abs'"),
    ],
)
def test_reduce_lr_on_plateau_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ReduceLROnPlateau(**kwargs)


def test_learning_rate_scheduler_sets_lr_and_logs_it():
    model = FakeModel(0.1)
    sched = LearningRateScheduler(lambda epoch, lr: lr * 0.5 if epoch else lr)
    history = History()
    fit([sched, history], model, [{"loss": 1.0}] * 3)
    assert history.history["lr"] == [0.1, 0.05, 0.025] and model.optimizer.lr == 0.025
    one_arg = LearningRateScheduler(lambda epoch: 0.01 * (epoch + 1))
    fit([one_arg], model, [{"loss": 1.0}] * 2)
    assert model.optimizer.lr == 0.02


def test_learning_rate_scheduler_rejects_bad_schedules():
    with pytest.raises(ValueError, match="schedule must be callable"):
        LearningRateScheduler(0.1)
    with pytest.raises(ValueError, match="must return a number"):
        fit([LearningRateScheduler(lambda e, lr: "fast")], FakeModel(), [{}])
    with pytest.raises(ValueError, match="invalid learning rate"):
        fit([LearningRateScheduler(lambda e, lr: -1.0)], FakeModel(), [{}])


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: StepLR(0), "step_size must be an integer >= 1"),
        (lambda: StepLR(2, gamma=0), "gamma must be > 0"),
        (lambda: CosineAnnealingLR(0), "T_max must be an integer >= 1"),
        (lambda: CosineAnnealingLR(5, eta_min=-1.0), "eta_min must be >= 0"),
    ],
)
def test_schedules_reject_bad_arguments(make, match):
    with pytest.raises(ValueError, match=match):
        make()


# --- per-step schedules ---------------------------------------------------------------------------------

def _torch_step_lrs(steps: int, **kwargs) -> list[float]:
    torch = pytest.importorskip("torch")
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, cycle_momentum=False, **kwargs)
    lrs = []
    for _ in range(steps):
        lrs.append(opt.param_groups[0]["lr"])  # the rate this step trains with
        opt.step()
        sched.step()
    return lrs


@pytest.mark.parametrize("kwargs", [
    {"max_lr": 0.01, "total_steps": 100},
    {"max_lr": 0.5, "total_steps": 37, "pct_start": 0.1, "anneal_strategy": "linear"},
    {"max_lr": 3e-3, "epochs": 4, "steps_per_epoch": 25, "div_factor": 10.0, "final_div_factor": 100.0},
    {"max_lr": 0.1, "total_steps": 60, "three_phase": True, "pct_start": 0.25},
    {"max_lr": 0.1, "total_steps": 51, "three_phase": True, "anneal_strategy": "linear"},
])
def test_one_cycle_matches_torch_step_by_step(kwargs):
    total = kwargs.get("total_steps") or kwargs["epochs"] * kwargs["steps_per_epoch"]
    expected = _torch_step_lrs(total, **kwargs)
    schedule = OneCycleLR(**kwargs)
    schedule.params = {}
    np.testing.assert_allclose([schedule.lr_at(step) for step in range(total)], expected, rtol=1e-12, atol=0)
    assert schedule.lr_at(total + 50) == schedule.lr_at(total), "past the end the last rate holds"


def test_one_cycle_sets_the_rate_before_every_step_of_fit(backend):
    from xpcnn.layers import Dense

    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((40, 3)).astype(np.float32), rng.integers(0, 2, 40)
    model = xpcnn.Sequential([Dense(2)], input_shape=(3,))
    model.compile("cross_entropy", "sgd")
    seen = []

    class Spy(Callback):
        def on_train_batch_begin(self, batch, logs=None):
            seen.append(self.model.optimizer.lr)

    schedule = OneCycleLR(max_lr=0.2)  # epochs and steps per epoch come from fit: 2 x 5
    model.fit(x, y, batch_size=8, epochs=2, verbose=0, callbacks=[schedule, Spy()])
    np.testing.assert_allclose(seen, [schedule.lr_at(i, total_steps=10) for i in range(10)], rtol=1e-12)
    assert schedule.total_steps == 10 and seen[0] == pytest.approx(0.2 / 25) and max(seen) == pytest.approx(0.2)
    if model.step_functions.jit:
        assert model.step_functions.traces["train"] == 1, "a new rate every step, one trace"


@pytest.mark.parametrize("kwargs, match", [
    ({"max_lr": 0.1, "pct_start": 1.0}, "pct_start must lie in \\(0, 1\\)"),
    ({"max_lr": 0.1, "anneal_strategy": "exp"}, "anneal_strategy must be 'cos' or 'linear'"),
    ({"max_lr": 0.1, "total_steps": 0}, "total_steps must be an integer >= 1"),
])
def test_one_cycle_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=f"OneCycleLR: {match}"):
        OneCycleLR(**kwargs)


def test_predict_calls_the_predict_hooks(backend):
    from xpcnn.layers import Dense

    model = xpcnn.Sequential([Dense(2)], input_shape=(3,))
    events = []

    class Recorder(Callback):
        def on_predict_begin(self, logs=None):
            events.append("begin")

        def on_predict_batch_begin(self, batch, logs=None):
            events.append(("batch", batch, logs["size"]))

        def on_predict_batch_end(self, batch, logs=None):
            events.append(("outputs", tuple(logs["outputs"].shape)))

        def on_predict_end(self, logs=None):
            events.append("end")

    out = model.predict(np.ones((5, 3), dtype=np.float32), batch_size=2, callbacks=[Recorder()])
    assert tuple(out.shape) == (5, 2)
    assert events == ["begin", ("batch", 0, 2), ("outputs", (2, 2)), ("batch", 1, 2), ("outputs", (2, 2)),
                      ("batch", 2, 1), ("outputs", (1, 2)), "end"]
