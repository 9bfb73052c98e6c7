"""Callback behaviours that mutation testing (``nox -s mutation``) found unchecked: every argument error names its
callback and argument, the documented defaults (torch's and Keras's), the ``verbose`` messages, what a terminal
shows when a message meets an open progress bar, the plain-text progress lines, CSVLogger's resume, append and
value handling, and the edges of the monitors (first values that are NaN, thresholds relative or absolute,
baselines with a margin)."""

from __future__ import annotations

import csv
import math
import re
import sys
import time
import warnings
from fractions import Fraction

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


class _Optimizer:
    def __init__(self, lr: float) -> None:
        self.lr, self.iterations = lr, 0


class _Model:
    """What callbacks touch: stop_training, optimizer (lr, iterations), save, state_dict/load_state_dict."""

    def __init__(self, lr: float = 0.1) -> None:
        self.stop_training = False
        self.optimizer = _Optimizer(lr)
        self.weights = {"w": xpcnn.asarray(np.zeros(3))}
        self.loaded: list[dict] = []

    def save(self, path: str) -> None:
        with open(path, "w") as f:
            f.write("model")

    def state_dict(self) -> dict:
        return dict(self.weights)

    def load_state_dict(self, state: dict) -> None:
        self.loaded.append(state)
        self.weights = dict(state)


def _drive(callbacks, epoch_logs, model=None, steps=0, batch_logs=None, params=None):
    """Drive ``callbacks`` as ``fit`` does (stopping when asked); returns the model."""
    model = model or _Model()
    cbs = CallbackList(callbacks, model=model,
                       params={"epochs": len(epoch_logs), "steps": steps, "verbose": 1} if params is None else params)
    cbs.on_train_begin({})
    for epoch, logs in enumerate(epoch_logs):
        cbs.on_epoch_begin(epoch, {})
        for batch in range(steps):
            cbs.on_train_batch_begin(batch, {})
            model.optimizer.iterations += 1
            cbs.on_train_batch_end(batch, batch_logs(epoch, batch) if batch_logs else {})
            if model.stop_training:
                break
        cbs.on_epoch_end(epoch, dict(logs(epoch) if callable(logs) else logs))
        if model.stop_training:
            break
    cbs.on_train_end({})
    return model


def _val(values):
    return [{"val_loss": v} for v in values]


def _screen(text: str) -> list[str]:
    """The lines a terminal shows for ``text``: each line as it stands after its last carriage return."""
    return [line.rsplit("\r", 1)[-1].rstrip() for line in text.split("\n")]


def _no_tqdm(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "tqdm", None)  # `from tqdm import tqdm` now raises ImportError


# --- argument errors name the callback and the argument ----------------------------------------------------

_REFUSED = [
    (lambda: TerminateOnNaN(check_every=0), ValueError, "TerminateOnNaN: check_every must be an integer >= 1, got 0"),
    (lambda: ProgressBar(refresh_every=0), ValueError, "ProgressBar: refresh_every must be an integer >= 1, got 0"),
    (lambda: ModelCheckpoint("m", mode="best"), ValueError,
     "ModelCheckpoint: mode must be 'auto', 'min' or 'max', got 'best'"),
    (lambda: ModelCheckpoint("m", initial_value_threshold="x"), TypeError,
     "ModelCheckpoint: initial_value_threshold must be a finite number, got str 'x'"),
    (lambda: StepLR(0), ValueError, "StepLR: step_size must be an integer >= 1, got 0"),
    (lambda: StepLR(2, gamma=-1.0), ValueError, "StepLR: gamma must be >= 0.0, got -1.0"),
    (lambda: StepLR(2, gamma=0), ValueError, "StepLR: gamma must be > 0, got 0"),
    (lambda: CosineAnnealingLR(0), ValueError, "CosineAnnealingLR: T_max must be an integer >= 1, got 0"),
    (lambda: CosineAnnealingLR(3, eta_min=-1.0), ValueError, "CosineAnnealingLR: eta_min must be >= 0.0, got -1.0"),
    (lambda: CosineAnnealingLR(3, base_lr=-1.0), ValueError, "CosineAnnealingLR: base_lr must be >= 0.0, got -1.0"),
    (lambda: ReduceLROnPlateau(mode="up"), ValueError,
     "ReduceLROnPlateau: mode must be 'auto', 'min' or 'max', got 'up'"),
    (lambda: ReduceLROnPlateau(factor="x"), TypeError,
     "ReduceLROnPlateau: factor must be a finite number, got str 'x'"),
    (lambda: ReduceLROnPlateau(patience=-1), ValueError,
     "ReduceLROnPlateau: patience must be an integer >= 0, got -1"),
    (lambda: ReduceLROnPlateau(min_delta=-1.0), ValueError, "ReduceLROnPlateau: min_delta must be >= 0.0, got -1.0"),
    (lambda: ReduceLROnPlateau(cooldown=-1), ValueError,
     "ReduceLROnPlateau: cooldown must be an integer >= 0, got -1"),
    (lambda: ReduceLROnPlateau(min_lr=-1.0), ValueError, "ReduceLROnPlateau: min_lr must be >= 0.0, got -1.0"),
    (lambda: ReduceLROnPlateau(eps=-1.0), ValueError, "ReduceLROnPlateau: eps must be >= 0.0, got -1.0"),
    (lambda: OneCycleLR(-1.0), ValueError, "OneCycleLR: max_lr must be >= 0.0, got -1.0"),
    (lambda: OneCycleLR(0.1, epochs=0), ValueError, "OneCycleLR: epochs must be an integer >= 1, got 0"),
    (lambda: OneCycleLR(0.1, steps_per_epoch=0), ValueError,
     "OneCycleLR: steps_per_epoch must be an integer >= 1, got 0"),
    (lambda: OneCycleLR(0.1, pct_start=-0.5), ValueError, "OneCycleLR: pct_start must be >= 0.0, got -0.5"),
    (lambda: OneCycleLR(0.1, pct_start=0.0), ValueError, "OneCycleLR: pct_start must lie in (0, 1), got 0.0"),
    (lambda: OneCycleLR(0.1, div_factor=-1.0), ValueError, "OneCycleLR: div_factor must be >= 0.0, got -1.0"),
    (lambda: OneCycleLR(0.1, final_div_factor=-1.0), ValueError,
     "OneCycleLR: final_div_factor must be >= 0.0, got -1.0"),
    (lambda: OneCycleLR(0.1, div_factor=0.0), ValueError, "OneCycleLR: div_factor and final_div_factor must be > 0"),
    (lambda: OneCycleLR(0.1, final_div_factor=0.0), ValueError,
     "OneCycleLR: div_factor and final_div_factor must be > 0"),
    (lambda: EarlyStopping(mode="bigger"), ValueError,
     "EarlyStopping: mode must be 'auto', 'min' or 'max', got 'bigger'"),
    (lambda: EarlyStopping(baseline="x"), TypeError, "EarlyStopping: baseline must be a finite number, got str 'x'"),
    (lambda: EarlyStopping(start_from_epoch=-2), ValueError,
     "EarlyStopping: start_from_epoch must be an integer >= 0, got -2"),
    (lambda: LearningRateScheduler(0.1), ValueError, "LearningRateScheduler: schedule must be callable, got 0.1"),
]


@pytest.mark.parametrize(("make", "error", "message"), _REFUSED, ids=[m for _, _, m in _REFUSED])
def test_argument_errors_name_the_callback_and_the_argument(make, error, message):
    with pytest.raises(error, match=f"^{re.escape(message)}$"):
        make()


def test_the_edges_of_the_ranges_are_accepted():
    """The smallest values the ranges allow, and the numbers that may be negative."""
    assert OneCycleLR(0.1, epochs=1, steps_per_epoch=4).lr_at(0) == pytest.approx(0.1 / 25)
    assert OneCycleLR(0.1, epochs=4, steps_per_epoch=1).lr_at(0) == pytest.approx(0.1 / 25)
    assert OneCycleLR(0.1, div_factor=0.5, final_div_factor=0.5, total_steps=10).lr_at(0) == pytest.approx(0.2)
    for verbose in (0, 1, 2):
        assert ProgressBar(verbose=verbose).verbose == verbose
    assert ModelCheckpoint("m", initial_value_threshold=-0.5).best == -0.5  # a score may be negative
    assert EarlyStopping(baseline=-2.0).baseline == -2.0


def test_schedule_errors_name_the_schedule():
    with pytest.raises(ValueError, match=r"^LearningRateScheduler: the schedule must return a number, got 'fast'$"):
        _drive([LearningRateScheduler(lambda e, lr: "fast")], [{}])
    with pytest.raises(ValueError, match=r"^LearningRateScheduler: the schedule returned an invalid learning rate "
                                         r"-1\.0 at epoch 0$"):
        _drive([LearningRateScheduler(lambda e, lr: -1.0)], [{}])


def test_unknown_state_entries_are_named_with_what_the_callback_saves():
    with pytest.raises(ValueError, match=re.escape(
            "EarlyStopping.load_state_dict: unknown entries ['patience']; this callback saves "
            "['best', 'best_epoch', 'best_weights', 'stopped_epoch', 'wait']")):
        EarlyStopping().load_state_dict({"wait": 1, "patience": 3})
    with pytest.raises(TypeError, match="^callbacks must be xpcnn.callbacks.Callback instances, got function$"):
        CallbackList([lambda: None])


# --- Callback, CallbackList and the shared helpers ---------------------------------------------------------

def test_a_new_callback_has_no_model_and_empty_params():
    cb = Callback()
    assert cb.model is None and cb.params == {}


def test_callbacks_of_one_class_are_keyed_by_their_rank():
    a, b, c = History(), History(), History()
    cbs = CallbackList([a, EarlyStopping(), b, c])
    assert list(cbs.keyed()) == ["History", "EarlyStopping", "History#2", "History#3"]
    assert cbs.keyed()["History#3"] is c
    c.on_epoch_end(0, {"loss": 1.0})
    assert cbs.state_dict()["History#3"] == {"history": {"loss": [1.0]}, "epoch": [0]}


def test_state_dict_copies_arrays_inside_tuples(backend):
    class Pair(Callback):
        state_attributes = ("pair",)

    cb = Pair()
    cb.pair = (xpcnn.asarray(np.array([1.0, 2.0])), 3)
    saved = cb.state_dict()["pair"]
    assert type(saved) is tuple and saved[1] == 3 and saved[0] is not cb.pair[0]
    np.testing.assert_array_equal(xpcnn.to_numpy(saved[0]), [1.0, 2.0])


@pytest.mark.parametrize(("monitor", "mode"), [("val_mae", "min"), ("mse", "min"), ("val_dice_loss", "min"),
                                               ("val_f1", "max"), ("auc", "max")])
def test_auto_mode_maximises_scores_and_minimises_everything_else(monitor, mode):
    assert EarlyStopping(monitor=monitor).mode == mode


def test_an_explicit_mode_wins_over_the_name():
    assert EarlyStopping(monitor="val_accuracy", mode="min").mode == "min"
    assert ModelCheckpoint("m", monitor="val_loss", mode="max").mode == "max"


def test_messages_go_to_stderr_without_tqdm(monkeypatch, capsys):
    _no_tqdm(monkeypatch)
    _drive([EarlyStopping(verbose=1)], _val([1.0, 2.0]))
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == "Epoch 2: early stopping (val_loss did not improve for 1 epochs; best 1 at epoch 1)\n"


def test_a_message_during_an_open_bar_starts_its_own_line(capsys):
    """Messages go through tqdm.write: on a terminal the bar is cleared, the message written, the bar redrawn."""
    pytest.importorskip("tqdm")
    _drive([ReduceLROnPlateau(patience=0, verbose=1), ProgressBar(verbose=1)], _val([1.0, 2.0]), steps=2)
    screen = _screen(capsys.readouterr().err)
    assert "Epoch 2: ReduceLROnPlateau reducing learning rate to 0.01." in screen


# --- verbose messages and quiet defaults -------------------------------------------------------------------

def test_quiet_by_default(tmp_path, capsys):
    model = _Model()
    _drive([EarlyStopping(restore_best_weights=True)], _val([1.0, 2.0]), model=model)
    assert len(model.loaded) == 1 and capsys.readouterr().err == ""  # restored without a word
    model = _Model()
    callbacks = [EarlyStopping(), ModelCheckpoint(str(tmp_path / "m{epoch}")),
                 ModelCheckpoint(str(tmp_path / "b{epoch}"), save_best_only=True), ReduceLROnPlateau(patience=0),
                 LearningRateScheduler(lambda e, lr: lr), StepLR(1), CosineAnnealingLR(2)]
    _drive(callbacks, _val([1.0, 2.0, 3.0]), model=model)
    assert capsys.readouterr().err == ""
    assert model.loaded == []  # restore_best_weights is off by default


def test_verbose_messages(tmp_path, capsys):
    _drive([ModelCheckpoint(str(tmp_path / "m{epoch}"), verbose=1),
            ModelCheckpoint(str(tmp_path / "b{epoch}"), save_best_only=True, verbose=1),
            ReduceLROnPlateau(patience=0, verbose=1)], _val([0.5, 0.75]))
    _drive([LearningRateScheduler(lambda e, lr: lr / 2, verbose=1), StepLR(1, verbose=1),
            CosineAnnealingLR(4, verbose=1)], _val([1.0, 1.0]), model=_Model(0.4))
    lines = _screen(capsys.readouterr().err)
    expected = [
        f"Epoch 1: saving model to {tmp_path / 'm1'}",
        f"Epoch 1: val_loss improved from inf to 0.50000, saving model to {tmp_path / 'b1'}",
        f"Epoch 2: saving model to {tmp_path / 'm2'}",
        "Epoch 2: val_loss did not improve from 0.50000",
        "Epoch 2: ReduceLROnPlateau reducing learning rate to 0.01.",
        "Epoch 1: LearningRateScheduler setting learning rate to 0.2.",
        "Epoch 1: StepLR setting learning rate to 0.2.",
        "Epoch 1: CosineAnnealingLR setting learning rate to 0.4.",
        "Epoch 2: LearningRateScheduler setting learning rate to 0.2.",
        "Epoch 2: StepLR setting learning rate to 0.02.",
        "Epoch 2: CosineAnnealingLR setting learning rate to 0.341421.",
    ]
    assert [line for line in lines if line] == expected


def test_early_stopping_messages_when_it_stops_and_restores(capsys):
    model = _Model()
    _drive([EarlyStopping(restore_best_weights=True, verbose=1)], _val([1.0, 2.0, 3.0]), model=model)
    assert _screen(capsys.readouterr().err) == [
        "Epoch 2: early stopping (val_loss did not improve for 1 epochs; best 1 at epoch 1)",
        "Restoring model weights from the end of the best epoch: 1.", ""]
    _drive([EarlyStopping(verbose=1)], _val([3.0, 2.0, 1.0]))
    assert capsys.readouterr().err == ""  # not stopped: nothing to say


# --- EarlyStopping -----------------------------------------------------------------------------------------

def test_early_stopping_min_delta_is_absolute():
    """Keras: an improvement beats best - min_delta (2.0 - 0.1 = 1.9), not best * (1 - min_delta) (1.8)."""
    stopper = EarlyStopping(min_delta=0.1)
    _drive([stopper], _val([2.0, 1.85, 1.84]))
    assert (stopper.best, stopper.best_epoch, stopper.stopped_epoch) == (1.85, 1, 2)


def test_early_stopping_baseline_beaten_by_the_margin_resets_patience():
    """wait counts from the first epoch (0 in Keras) and is reset only by a value beating baseline - min_delta."""
    never = EarlyStopping(patience=3, baseline=0.5)
    _drive([never], _val([0.9, 0.95, 0.96, 0.97, 0.98]))
    assert never.stopped_epoch == 2  # the first value never beat the baseline: its epoch counts
    beaten = EarlyStopping(patience=2, baseline=0.5)
    _drive([beaten], _val([0.9, 0.4, 0.45, 0.44, 0.46]))
    assert beaten.stopped_epoch == 3  # reset at epoch 1
    margin = EarlyStopping(patience=2, baseline=0.5, min_delta=0.05)
    _drive([margin], _val([0.9, 0.47, 0.46, 0.46]))
    assert margin.stopped_epoch == 2  # 0.47 beat the best by 0.05, not the baseline


def test_early_stopping_first_epoch_never_stops_and_stops_at_the_second():
    stopper = EarlyStopping()
    _drive([stopper], _val([math.nan, 1.0, 2.0, 3.0]))
    assert stopper.stopped_epoch == 2
    stopper = EarlyStopping()
    _drive([stopper], _val([1.0, 1.5, 0.5]))
    assert stopper.stopped_epoch == 1


def test_early_stopping_restores_the_first_epoch_when_nothing_improved(backend, capsys):
    model = _Model()

    def logs(epoch):
        model.weights = {"w": xpcnn.asarray(np.full(3, float(epoch + 1)))}  # what training did this epoch
        return {"val_loss": math.nan}

    stopper = EarlyStopping(restore_best_weights=True, verbose=1)
    _drive([stopper], [logs] * 3, model=model)
    assert (stopper.stopped_epoch, stopper.best_epoch) == (1, 0)
    np.testing.assert_array_equal(xpcnn.to_numpy(model.weights["w"]), [1.0, 1.0, 1.0])
    assert "Restoring model weights from the end of the best epoch: 1." in capsys.readouterr().err


# --- monitors: warnings and thresholds ---------------------------------------------------------------------

@pytest.mark.parametrize("make", [EarlyStopping, ReduceLROnPlateau,
                                  lambda: ModelCheckpoint("never-{epoch}", save_best_only=True)])
def test_a_missing_monitor_warns_once_per_fit(make):
    cb = make()
    for _ in range(2):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            _drive([cb], [{"loss": 1.0}] * 3)
        assert [str(w.message) for w in caught] == [(
            f"{type(cb).__name__}: the monitored metric 'val_loss' is not in the epoch logs (available: ['loss']); "
            "this callback does nothing until it appears. Validation metrics need validation data.")]
        if isinstance(cb, ModelCheckpoint):
            break  # no on_train_begin reset: it warned for good


def _torch_plateau(metrics, lr=0.1, **kwargs):
    torch = pytest.importorskip("torch")
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr)
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, **kwargs)
    lrs = []
    for m in metrics:
        sched.step(m)
        lrs.append(opt.param_groups[0]["lr"])
    return lrs


def _our_plateau(metrics, lr=0.1, **kwargs):
    model = _Model(lr)
    lrs = []

    def logs(epoch):
        return {"val_loss": metrics[epoch]}

    class Look(Callback):
        def on_epoch_end(self, epoch, logs=None):
            lrs.append(self.model.optimizer.lr)

    _drive([ReduceLROnPlateau(**kwargs), Look()], [logs] * len(metrics), model=model)
    return lrs


@pytest.mark.parametrize("kwargs", [
    {"patience": 1, "min_delta": 0.01},
    {"patience": 1, "min_delta": 0.01, "threshold_mode": "abs"},
    {"patience": 1, "min_delta": 0.01, "mode": "max"},
    {"patience": 1, "min_delta": 0.01, "mode": "max", "threshold_mode": "abs"},
    {"patience": 1, "min_delta": 0.0, "mode": "max"},
    {"patience": 1, "min_delta": 0.0, "mode": "max", "threshold_mode": "abs"},
    {"patience": 1, "cooldown": 2},
    {"patience": 0, "factor": 0.5, "eps": 0.05},
])
@pytest.mark.parametrize("metrics", [
    [100.0, 99.5, 99.2, 98.0, 98.5, 100.5, 101.0, 101.5, 101.2, 101.2, 101.2, 103.0],  # rel and abs differ
    [math.nan, math.nan, 5.0, 5.0, 5.0, 4.0, math.nan, 4.0, 4.0],  # the first epochs bad
])
def test_reduce_lr_on_plateau_thresholds_and_first_epochs_match_torch(kwargs, metrics):
    torch_kwargs = {("threshold" if k == "min_delta" else k): v for k, v in kwargs.items()}
    np.testing.assert_allclose(_our_plateau(metrics, **kwargs), _torch_plateau(metrics, **torch_kwargs), rtol=1e-12)


# --- learning-rate schedules -------------------------------------------------------------------------------

def _epoch_lrs(callback, epochs, model=None):
    model = model or _Model(0.1)
    lrs = []

    class Look(Callback):
        def on_epoch_begin(self, epoch, logs=None):
            lrs.append(self.model.optimizer.lr)

    _drive([callback, Look()], [{"loss": 1.0}] * epochs, model=model)
    return lrs


def test_schedule_defaults_are_torchs():
    torch = pytest.importorskip("torch")

    def torch_lrs(make, epochs):
        opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
        sched, lrs = make(opt), []
        for _ in range(epochs):
            lrs.append(opt.param_groups[0]["lr"])
            opt.step()
            sched.step()
        return lrs

    np.testing.assert_allclose(_epoch_lrs(StepLR(2), 7), torch_lrs(lambda o: torch.optim.lr_scheduler.StepLR(o, 2), 7),
                               rtol=1e-12)
    np.testing.assert_allclose(_epoch_lrs(CosineAnnealingLR(4), 6),
                               torch_lrs(lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, 4), 6), rtol=1e-12,
                               atol=1e-15)


def test_cosine_annealing_base_lr_given_or_taken_once():
    assert _epoch_lrs(CosineAnnealingLR(2, base_lr=0.4), 1) == [0.4]
    schedule, model = CosineAnnealingLR(4), _Model(0.1)
    first = _epoch_lrs(schedule, 2, model)
    again = _epoch_lrs(schedule, 2, model)  # a second fit goes on from the rate of the first fit's start
    assert first == again == pytest.approx([0.1, 0.1 * (1 + math.cos(math.pi / 4)) / 2])
    driven = CosineAnnealingLR(2)  # hooks called without on_train_begin: the first rate seen is lr0
    driven.set_model(_Model(0.3))
    driven.on_epoch_begin(1, {})
    assert driven.model.optimizer.lr == pytest.approx(0.15)


def test_a_schedule_with_a_defaulted_second_parameter_gets_the_epoch_only():
    def schedule(epoch, scale=2.0):
        return 0.01 * scale * (epoch + 1)

    assert _epoch_lrs(LearningRateScheduler(schedule), 2) == pytest.approx([0.02, 0.04])


def test_one_cycle_counts_steps_from_its_first_fit():
    model = _Model()
    model.optimizer.iterations = 100  # steps an earlier fit made without this schedule
    schedule = OneCycleLR(0.2, total_steps=4)
    seen = []

    class Look(Callback):
        def on_train_batch_begin(self, batch, logs=None):
            seen.append(self.model.optimizer.lr)

    _drive([schedule, Look()], [{}], model=model, steps=4)
    np.testing.assert_allclose(seen, [schedule.lr_at(i) for i in range(4)], rtol=1e-12)
    assert seen[0] == pytest.approx(0.2 / 25)


def test_one_cycle_needs_both_epochs_and_steps_and_takes_an_explicit_total():
    schedule = OneCycleLR(0.1, epochs=2)
    message = "OneCycleLR: give total_steps, or epochs and steps_per_epoch (fit supplies both)"
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        schedule.lr_at(0)
    assert schedule.lr_at(0, total_steps=10) == pytest.approx(0.1 / 25)


# --- TerminateOnNaN ----------------------------------------------------------------------------------------

def test_terminate_on_nan_defaults_and_clean_state(capsys):
    guard = TerminateOnNaN()
    _drive([guard], [{"loss": 1.0}], steps=12, batch_logs=lambda e, b: {"loss": math.nan if b == 9 else 1.0})
    assert (guard.stopped_epoch, guard.stopped_batch) == (0, 9)  # read every 10 batches by default
    clean = TerminateOnNaN()
    _drive([clean], [{"loss": 1.0}], steps=3, batch_logs=lambda e, b: {"loss": 1.0})
    assert (clean.stopped_epoch, clean.stopped_batch, clean.message) == (None, None, None)


def test_terminate_on_nan_without_steps_or_params_names_the_batch(capsys):
    guard = TerminateOnNaN(check_every=1)
    guard.set_model(_Model())  # no set_params: no steps known
    guard.on_train_begin()
    guard.on_epoch_begin(0)
    guard.on_train_batch_end(2, {"loss": math.inf})
    assert guard.message.startswith("TerminateOnNaN: loss is inf at epoch 1, batch 3; stopping")


def test_terminate_on_nan_message_at_the_epoch_end():
    guard = TerminateOnNaN()
    _drive([guard], [{"loss": 1.0}, {"loss": math.inf}])
    assert guard.message == ("TerminateOnNaN: loss is inf at the end of epoch 2 (epoch mean); stopping training "
                             "(lower the learning rate, check the data for NaN/inf, or clip gradients)")


def test_terminate_on_nan_reports_the_first_bad_value_once(capsys):
    guard = TerminateOnNaN(check_every=1)
    guard.set_model(_Model())
    guard.on_train_begin()
    guard.on_epoch_begin(0)
    guard.on_train_batch_end(0, {"accuracy": 0.5})  # no loss in these logs: nothing to read
    guard.on_train_batch_end(1, {"loss": math.nan})
    guard.on_train_batch_end(2, {"loss": math.inf})  # a hook after the stop: the first report stands
    assert guard.stopped_batch == 1 and capsys.readouterr().err.count("TerminateOnNaN") == 1


def test_terminate_on_nan_reads_the_last_batch_once():
    """Without an epoch loss, the epoch end reads the last batch's loss only if no interval read it."""
    reads = []

    class Loss:
        def __float__(self):
            reads.append(1)
            return 1.0

    _drive([TerminateOnNaN(check_every=4)], [{}], steps=8, batch_logs=lambda e, b: {"loss": Loss()})
    assert len(reads) == 2


# --- ProgressBar -------------------------------------------------------------------------------------------

class _Loss:
    """A 0-d device value as the running means see it: arithmetic stays lazy, every ``float()`` is counted."""

    def __init__(self, value: float, reads: list) -> None:
        self.value, self.reads = value, reads

    def __float__(self) -> float:
        self.reads.append(self.value)
        return float(self.value)

    def __mul__(self, other):
        return _Loss(self.value * other, self.reads)

    def __add__(self, other):
        return _Loss(self.value + other.value, self.reads)


def test_progress_bar_defaults(capsys):
    """A bar per epoch (verbose defaults to 1 when fit gives none) whose running means are read every 10
    batches; the bar stays on screen with its unit and the epoch's values."""
    pytest.importorskip("tqdm")
    reads: list = []
    _drive([ProgressBar()], [{"loss": 1.0}], steps=10, batch_logs=lambda e, b: {"loss": _Loss(1.0, reads)},
           params={"epochs": 1, "steps": 10})
    assert reads == [10.0]  # once, after the tenth batch: the sum of ten
    screen = [line for line in _screen(capsys.readouterr().err) if line]
    assert len(screen) == 1 and screen[0].startswith("Epoch 1/1: 100%|") and "10/10 [" in screen[0]
    assert screen[0].endswith("batch/s, loss=1.0000]")


def test_progress_bar_writes_to_its_file_and_verbose_wins_over_params(monkeypatch, capsys):
    import io

    _no_tqdm(monkeypatch)
    out = io.StringIO()
    _drive([ProgressBar(verbose=2, file=out)], [{"loss": 1.0}], steps=2, params={"epochs": 1, "steps": 2, "verbose": 0})
    assert re.fullmatch(r"Epoch 1/1 - 2/2 - \d+\.\ds - loss: 1\.0000\n", out.getvalue())
    _drive([ProgressBar(verbose=0)], [{"loss": 1.0}], steps=2, params={"epochs": 1, "steps": 2, "verbose": 2})
    assert capsys.readouterr().err == ""


def test_progress_bar_plain_lines_without_epochs_or_steps(monkeypatch, capsys):
    _no_tqdm(monkeypatch)
    before = time.perf_counter()
    _drive([ProgressBar(refresh_every=1)], [{"loss": 1.0}], steps=2, batch_logs=lambda e, b: {"size": 4, "loss": 3.0},
           params={})
    took = time.perf_counter() - before
    lines = capsys.readouterr().err.splitlines()
    assert lines[:2] == ["Epoch 1 - 1 - loss: 3.0000", "Epoch 1 - 2 - loss: 3.0000"]
    match = re.fullmatch(r"Epoch 1 - 2/2 - (\d+\.\d)s - loss: 1\.0000", lines[2])
    assert match and float(match.group(1)) <= took + 0.05  # the epoch's own time


def test_progress_bar_epoch_line_counts_batches_run_of_steps(monkeypatch, capsys):
    _no_tqdm(monkeypatch)
    model = _Model()

    class StopAtTwo(Callback):
        def on_train_batch_end(self, batch, logs=None):
            self.model.stop_training = batch == 1

    _drive([ProgressBar(verbose=2), StopAtTwo()], [{"loss": 1.0}], model=model, steps=5,
           params={"epochs": 3, "steps": 5})
    assert capsys.readouterr().err.startswith("Epoch 1/3 - 2/5 - ")


def test_progress_bar_epoch_values(monkeypatch, capsys):
    """Train values from the epoch logs, batch-only ones from the running means; then val_* and lr; strings,
    booleans and None left out."""
    _no_tqdm(monkeypatch)
    logs = {"loss": 1.0, "accuracy": 0.5, "val_loss": 2.0, "lr": 0.1, "note": "x", "flag": True, "val_acc": None,
            "count": 3}
    _drive([ProgressBar(verbose=2)], [logs], steps=2, batch_logs=lambda e, b: {"loss": 9.0, "mae": 0.25, "size": 2})
    line = capsys.readouterr().err.strip()
    assert re.fullmatch(r"Epoch 1/1 - 2/2 - \d+\.\ds - loss: 1\.0000 - mae: 0\.2500 - accuracy: 0\.5000 - "
                        r"count: 3\.0000 - val_loss: 2\.0000 - lr: 0\.1", line), line


def test_progress_bar_postfix_and_extra_line_with_tqdm(capsys):
    pytest.importorskip("tqdm")
    logs = {"loss": 1.0, "accuracy": 0.5, "val_loss": 0.75, "lr": 0.01}
    _drive([ProgressBar()], [logs], steps=2, batch_logs=lambda e, b: {"loss": 1.0, "size": 2})
    screen = [line for line in _screen(capsys.readouterr().err) if line]
    assert screen[0].startswith("Epoch 1/1: 100%|") and screen[0].endswith(", loss=1.0000, accuracy=0.5000]")
    assert screen[1:] == ["Epoch 1/1 - val_loss: 0.7500 - lr: 0.01"]


def test_progress_bar_sizes_may_be_missing_or_come_first(monkeypatch, capsys):
    _no_tqdm(monkeypatch)
    batches = [{"size": None, "loss": 2.0}, {"loss": 4.0}, {"size": 3, "loss": 1.0}]
    _drive([ProgressBar(refresh_every=2)], [{}], steps=3, batch_logs=lambda e, b: batches[b], params={"verbose": 1})
    lines = capsys.readouterr().err.splitlines()
    assert lines[0] == "Epoch 1 - 2 - loss: 3.0000"  # a missing size counts as one
    assert lines[1].endswith("s - loss: 1.8000")  # (2 + 4 + 3 * 1) / 5


def test_progress_bar_validation_inside_fit_draws_nothing_and_evaluate_after_fit_does(capsys):
    pytest.importorskip("tqdm")
    bar = ProgressBar()

    class Validate(Callback):
        def on_epoch_end(self, epoch, logs=None):
            bar.on_test_begin({})
            bar.on_test_batch_end(0, {"loss": 5.0, "size": 1})
            bar.on_test_end({"loss": 5.0})

    _drive([Validate(), bar], [{"loss": 1.0}], steps=1, batch_logs=lambda e, b: {"loss": 1.0})
    screen = [line for line in _screen(capsys.readouterr().err) if line]
    assert len(screen) == 1 and " 1/1 [" in screen[0] and screen[0].endswith(", loss=1.0000]")  # the epoch's bar only
    bar.on_test_begin({})
    bar.on_test_batch_end(0, {"loss": 2.0})
    bar.on_test_end({"loss": 2.0})
    screen = [line for line in _screen(capsys.readouterr().err) if line]
    assert len(screen) == 1 and screen[0].startswith("Evaluate: ") and screen[0].endswith("loss=2.0000]")


def test_progress_bar_evaluate_plain(monkeypatch, capsys):
    _no_tqdm(monkeypatch)
    for refresh_every in (5, 1):
        bar = ProgressBar(refresh_every=refresh_every)
        bar.set_params({"steps": 1, "verbose": 1})
        bar.on_test_begin({})
        bar.on_test_batch_end(0, {"loss": 2.5})
        bar.on_test_end({})  # no end logs: the running means, of one batch
        lines = capsys.readouterr().err.splitlines()
        assert lines[-1] == "Evaluate - 1 batches - loss: 2.5000" and len(lines) == 1 + (refresh_every == 1)


def test_progress_bar_draws_its_bar_in_its_file(capsys):
    import io

    pytest.importorskip("tqdm")
    out = io.StringIO()
    _drive([ProgressBar(file=out)], [{"loss": 1.0}], steps=2)
    assert capsys.readouterr().err == ""
    assert next(line for line in _screen(out.getvalue()) if line).startswith("Epoch 1/1: 100%|")


# --- ModelCheckpoint ---------------------------------------------------------------------------------------

def test_model_checkpoint_has_saved_nothing_before_training():
    assert ModelCheckpoint("m").last_saved is None


# --- CSVLogger ---------------------------------------------------------------------------------------------

def _rows(path, sep=","):
    with open(path, newline="") as f:
        return list(csv.reader(f, delimiter=sep))


def test_csv_logger_resumes_from_its_state(tmp_path):
    """A resumed run cuts the rows written after the backup and goes on under the same columns."""
    path = tmp_path / "log.csv"
    logger = CSVLogger(path, separator=";")
    model = _Model()
    cbs = CallbackList([logger], model=model, params={})
    cbs.on_train_begin({})
    logger.on_epoch_end(0, {"loss": 1.0, "val_loss": 2.0})
    state = logger.state_dict()
    logger.on_epoch_end(1, {"loss": 0.123456789, "val_loss": 1.5})  # written after the backup, then killed
    logger.on_train_end()
    assert set(state) == {"keys", "length"}
    resumed = CSVLogger(path, separator=";")
    resumed.on_train_begin()
    resumed.load_state_dict(state)
    resumed.on_epoch_end(1, {"loss": 0.25, "val_loss": 1.25})
    resumed.on_train_end()
    assert _rows(path, ";") == [["epoch", "loss", "val_loss"], ["0", "1.0", "2.0"], ["1", "0.25", "1.25"]]


def test_csv_logger_length_before_the_first_row_and_resumes_of_a_whole_or_cut_log(tmp_path):
    """The log's bytes before this run's first row: an appended file's, else none (it is rewritten). A resume whose
    log is as long as the backup says goes on quietly; one whose log was cut warns and writes after what is there."""
    path = tmp_path / "log.csv"
    path.write_text("epoch,loss\r\n0,1.0\r\n")
    for append, length in ((False, 0), (True, path.stat().st_size)):
        logger = CSVLogger(path, append=append)
        logger.on_train_begin()
        assert logger.state_dict() == {"keys": None, "length": length}
        logger.on_train_end()
    fresh = CSVLogger(tmp_path / "new.csv")
    fresh.on_train_begin()
    assert fresh.state_dict() == {"keys": None, "length": 0}
    state = {"keys": ["loss"], "length": path.stat().st_size}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _resume(path, state, 1, 0.5)
    assert _rows(path) == [["epoch", "loss"], ["0", "1.0"], ["1", "0.5"]]
    path.write_text("epoch,loss\r\n")  # cut below the backup's length
    cut = (f"CSVLogger: {path} is shorter than when the run was backed up; the rows of the resumed run go after what "
           "is there")
    with pytest.warns(RuntimeWarning, match=f"^{re.escape(cut)}$"):
        _resume(path, state, 2, 0.25)
    assert _rows(path) == [["epoch", "loss"], ["2", "0.25"]]


def _resume(path, state, epoch, loss):
    logger = CSVLogger(path)
    logger.on_train_begin()
    logger.load_state_dict(state)
    logger.on_epoch_end(epoch, {"loss": loss})
    logger.on_train_end()


def test_csv_logger_state_that_is_not_its_own_is_refused():
    logger = CSVLogger("log.csv")
    for state in ({"keys": None}, {"keys": None, "length": -1}, {"keys": None, "length": "3"},
                  {"keys": None, "length": 0, "rows": 2}, {"keys": None, "length": None}):
        with pytest.raises(ValueError, match=re.escape("CSVLogger.load_state_dict takes {'keys': list or None, "
                                                       "'length': int}, got " + repr(state))):
            logger.load_state_dict(state)
    logger.load_state_dict({"keys": ("a", 1), "length": 0})
    assert logger.state_dict() == {"keys": ["a", "1"], "length": 0}
    logger.load_state_dict({"keys": None, "length": 12})
    assert logger.state_dict() == {"keys": None, "length": 12}


def test_csv_logger_creates_folders_and_appends_to_an_empty_file(tmp_path):
    path = tmp_path / "a" / "b" / "log.csv"
    _drive([CSVLogger(path)], [{"loss": 1.0}])
    assert _rows(path) == [["epoch", "loss"], ["0", "1.0"]]
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    _drive([CSVLogger(empty, append=True)], [{"loss": 1.0}])
    assert _rows(empty) == [["epoch", "loss"], ["0", "1.0"]]


def test_csv_logger_appends_under_the_files_columns(tmp_path):
    path = tmp_path / "log.csv"
    path.write_text("epoch;loss;val_loss\r\n0;1.0;2.0\r\n")
    _drive([CSVLogger(path, separator=";", append=True)], [{"val_loss": 1.5, "loss": 0.5, "lr": 0.1}, {"loss": 0.25}])
    assert _rows(path, ";") == [["epoch", "loss", "val_loss"], ["0", "1.0", "2.0"], ["0", "0.5", "1.5"],
                                ["1", "0.25", "NA"]]


def test_csv_logger_values_and_late_keys(tmp_path, backend):
    path = tmp_path / "log.csv"
    logs = [{"loss": Fraction(1, 4), "steps": 3, "tag": "warm", "acc": xpcnn.asarray(np.float32(0.5))},
            {"loss": 0.5, "steps": 3, "tag": "x", "acc": 1.0, "val_loss": 1.0}]  # a key the header lacks
    _drive([CSVLogger(path)], logs)
    assert _rows(path) == [["epoch", "loss", "steps", "tag", "acc"], ["0", "0.25", "3", "warm", "0.5"],
                           ["1", "0.5", "3", "x", "1.0"]]
