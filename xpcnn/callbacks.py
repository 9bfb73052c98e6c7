"""Keras-style callbacks: hooks the training loop calls, and the ready-made ones most users want.

The contract with the model (``xpcnn.model.Sequential.fit`` drives it):

* Before training the model sets ``callback.model`` (``set_model``) and
  ``callback.params = {"epochs": E, "steps": steps_per_epoch, "verbose": v}``.
* Per-batch logs hold 0-d **device** arrays, ``{"loss": arr, "accuracy": arr, ..., "size": batch_size}``.
  Reading one (``float``) is a host sync, so callbacks read them only at their own interval
  (``ProgressBar.refresh_every``, ``TerminateOnNaN.check_every``), never every batch.
* Epoch-end logs hold Python floats: ``"loss"``, ``"accuracy"``, ``"val_loss"``, ``"val_accuracy"``, ...,
  and ``"lr"``.
* The model has ``stop_training`` (checked after every batch and every epoch), ``optimizer.lr`` (a float),
  ``save(path)``, ``state_dict()`` and ``load_state_dict(d)``.

Epochs and batches are 0-based in hooks (as in Keras); messages and ``{epoch}`` in file names are 1-based.
"""

from __future__ import annotations

import csv
import inspect
import math
import os
import re
import sys
import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import array_api_compat

from .backend import copy_array

__all__ = [
    "CSVLogger",
    "Callback",
    "CallbackList",
    "CosineAnnealingLR",
    "EarlyStopping",
    "History",
    "LearningRateScheduler",
    "ModelCheckpoint",
    "ProgressBar",
    "ReduceLROnPlateau",
    "StepLR",
    "TerminateOnNaN",
]

_HOOKS = (
    "on_train_begin",
    "on_train_end",
    "on_epoch_begin",
    "on_epoch_end",
    "on_train_batch_begin",
    "on_train_batch_end",
    "on_test_begin",
    "on_test_end",
    "on_test_batch_begin",
    "on_test_batch_end",
    "on_predict_begin",
    "on_predict_end",
    "on_predict_batch_begin",
    "on_predict_batch_end",
)

# keys of the per-batch logs that are bookkeeping, not metrics
_NOT_METRICS = frozenset({"size", "batch", "lr", "steps"})


class Callback:
    """Base class: every hook is a no-op; subclasses override the ones they need.

    ``model`` is set by ``set_model`` and ``params`` (``{"epochs", "steps", "verbose"}``) by the model
    before training.
    """

    def __init__(self) -> None:
        self.model: Any = None
        self.params: dict[str, Any] = {}

    def set_model(self, model: Any) -> None:
        self.model = model

    def set_params(self, params: Mapping[str, Any]) -> None:
        self.params = dict(params)

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        """Before the first epoch."""

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        """After the last epoch (also when training stopped early)."""

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        """Before epoch ``epoch`` (0-based)."""

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        """After epoch ``epoch``; ``logs`` holds Python floats (train and val metrics, ``lr``)."""

    def on_train_batch_begin(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        """Before training batch ``batch`` (0-based, within the epoch)."""

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        """After training batch ``batch``; ``logs`` holds 0-d device arrays and ``"size"`` (an int)."""

    def on_test_begin(self, logs: dict[str, Any] | None = None) -> None:
        """Before evaluation (validation inside ``fit``, or ``evaluate``)."""

    def on_test_end(self, logs: dict[str, Any] | None = None) -> None:
        """After evaluation; ``logs`` holds Python floats."""

    def on_test_batch_begin(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        """Before evaluation batch ``batch``."""

    def on_test_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        """After evaluation batch ``batch``; ``logs`` as for training batches."""

    def on_predict_begin(self, logs: dict[str, Any] | None = None) -> None:
        """Before prediction."""

    def on_predict_end(self, logs: dict[str, Any] | None = None) -> None:
        """After prediction."""

    def on_predict_batch_begin(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        """Before prediction batch ``batch``."""

    def on_predict_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        """After prediction batch ``batch``."""


class CallbackList(Callback):
    """Calls every hook on each of ``callbacks`` in order; the model talks to this one object."""

    def __init__(
        self,
        callbacks: Iterable[Callback] | None = None,
        model: Any = None,
        params: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.callbacks: list[Callback] = []
        for cb in callbacks or ():
            self.append(cb)
        if model is not None:
            self.set_model(model)
        if params is not None:
            self.set_params(params)

    def append(self, callback: Callback) -> None:
        if not isinstance(callback, Callback):
            raise TypeError(
                f"callbacks must be xpcnn.callbacks.Callback instances, got {type(callback).__name__}"
            )
        self.callbacks.append(callback)
        if self.model is not None:
            callback.set_model(self.model)
        if self.params:
            callback.set_params(self.params)

    def __iter__(self) -> Iterator[Callback]:
        return iter(self.callbacks)

    def __len__(self) -> int:
        return len(self.callbacks)

    def __getitem__(self, index: int) -> Callback:
        return self.callbacks[index]

    def set_model(self, model: Any) -> None:
        super().set_model(model)
        for cb in self.callbacks:
            cb.set_model(model)

    def set_params(self, params: Mapping[str, Any]) -> None:
        super().set_params(params)
        for cb in self.callbacks:
            cb.set_params(params)


def _make_dispatch(name: str) -> Callable[..., None]:
    def dispatch(self: CallbackList, *args: Any) -> None:
        for cb in self.callbacks:
            getattr(cb, name)(*args)

    dispatch.__name__ = name
    dispatch.__doc__ = f"Call ``{name}`` on every callback, in order."
    return dispatch


for _name in _HOOKS:
    setattr(CallbackList, _name, _make_dispatch(_name))
del _name


# --- helpers ------------------------------------------------------------------------------------------

def _import_tqdm() -> Any:
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm


def _check_int(name: str, value: Any, minimum: int, owner: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{owner}: {name} must be an integer >= {minimum}, got {value!r}")
    return value


def _check_number(name: str, value: Any, owner: str, minimum: float | None = 0.0) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{owner}: {name} must be a finite number, got {value!r}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{owner}: {name} must be >= {minimum}, got {value!r}")
    return float(value)


_MAX_METRIC = re.compile(r"acc|auc|precision|recall|f1|iou|dice")


def _resolve_mode(mode: str, monitor: str, owner: str) -> str:
    """'min' or 'max'; 'auto' picks 'max' for accuracy-like names, 'min' otherwise (losses, errors)."""
    if mode not in ("auto", "min", "max"):
        raise ValueError(f"{owner}: mode must be 'auto', 'min' or 'max', got {mode!r}")
    if mode != "auto":
        return mode
    name = monitor.removeprefix("val_")
    return "max" if _MAX_METRIC.search(name) and "loss" not in name else "min"


def _as_float(value: Any) -> float:
    """A host float from a Python number or a 0-d device array (a host sync for the latter)."""
    return float(value)


def _is_metric(key: str, value: Any) -> bool:
    return key not in _NOT_METRICS and not isinstance(value, (str, bool)) and value is not None


def _monitor_value(cb: Callback, logs: Mapping[str, Any] | None, monitor: str) -> float | None:
    """``logs[monitor]`` as a float, or None with a warning (once per training) naming the keys present."""
    logs = logs or {}
    if monitor in logs and logs[monitor] is not None:
        return _as_float(logs[monitor])
    if not getattr(cb, "_warned_missing", False):
        cb._warned_missing = True
        warnings.warn(
            f"{type(cb).__name__}: the monitored metric {monitor!r} is not in the epoch logs "
            f"(available: {sorted(logs)}); this callback does nothing until it appears. "
            "Validation metrics need validation data.",
            RuntimeWarning,
            stacklevel=3,
        )
    return None


def _snapshot(state: Any) -> Any:
    """A copy of a (nested) state dict whose arrays stay on their device: no host sync, no aliasing."""
    if isinstance(state, Mapping):
        return {k: _snapshot(v) for k, v in state.items()}
    if isinstance(state, (list, tuple)):
        return type(state)(_snapshot(v) for v in state)
    if array_api_compat.is_array_api_obj(state):
        return copy_array(state)
    return state


def _emit(text: str) -> None:
    """Print a message line to stderr; through ``tqdm.write`` when tqdm is there, so open bars stay intact."""
    tqdm = _import_tqdm()
    if tqdm is not None:
        tqdm.write(text, file=sys.stderr)
    else:
        print(text, file=sys.stderr, flush=True)


def _format_logs(logs: Mapping[str, Any], keys: Iterable[str]) -> str:
    parts = []
    for k in keys:
        v = logs[k]
        parts.append(f"{k}: {v:.3g}" if k == "lr" else f"{k}: {v:.4f}")
    return " - ".join(parts)


# --- History --------------------------------------------------------------------------------------------

class History(Callback):
    """Records the epoch-end logs: ``history["loss"]`` is the list of epoch losses, ``epoch`` the epochs.

    A History passed to several ``fit`` calls keeps appending (``epoch`` holds absolute epoch numbers).
    """

    def __init__(self) -> None:
        super().__init__()
        self.history: dict[str, list[Any]] = {}
        self.epoch: list[int] = []

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self.epoch.append(epoch)
        for k, v in (logs or {}).items():
            self.history.setdefault(k, []).append(v)


# --- ProgressBar ----------------------------------------------------------------------------------------

class _RunningMeans:
    """Size-weighted running sums of per-batch metrics, kept on the device until read."""

    def __init__(self) -> None:
        self.sums: dict[str, Any] = {}
        self.count = 0

    def add(self, logs: Mapping[str, Any]) -> None:
        n = logs.get("size", 1)
        n = 1 if n is None else int(n)
        for k, v in logs.items():
            if not _is_metric(k, v):
                continue
            term = v * n  # device arithmetic, no sync
            self.sums[k] = term if k not in self.sums else self.sums[k] + term
        self.count += n

    def read(self, keys: Iterable[str] | None = None) -> dict[str, float]:
        """The means as host floats: one ``float()`` per metric (a host sync each)."""
        keys = self.sums if keys is None else keys
        return {k: _as_float(self.sums[k]) / max(self.count, 1) for k in keys}


class ProgressBar(Callback):
    """A tqdm bar per epoch with the running loss/metrics, writing to stderr.

    The device values are read (``float``) only every ``refresh_every`` batches, never every batch; at
    the end of an epoch the bar shows the epoch's logs (already host floats) and a line with the
    validation metrics and learning rate. ``verbose`` (default: ``params["verbose"]``, else 1):
    0 silent, 1 a bar per epoch, 2 one line per epoch. Without tqdm it falls back to plain lines.
    Outside ``fit`` (``evaluate``) it shows one bar over the test batches.
    """

    def __init__(self, refresh_every: int = 10, verbose: int | None = None, file: Any = None) -> None:
        super().__init__()
        self.refresh_every = _check_int("refresh_every", refresh_every, 1, "ProgressBar")
        if verbose is not None and verbose not in (0, 1, 2):
            raise ValueError(f"ProgressBar: verbose must be 0, 1 or 2, got {verbose!r}")
        self.verbose = verbose
        self.file = file
        self._bar: Any = None
        self._means = _RunningMeans()
        self._in_fit = False
        self._epoch = 0
        self._seen = 0
        self._t0 = 0.0

    # -- plumbing --
    def _verbosity(self) -> int:
        if self.verbose is not None:
            return self.verbose
        return int(self.params.get("verbose", 1))

    def _out(self) -> Any:
        return self.file if self.file is not None else sys.stderr  # looked up late: capture-friendly

    def _print(self, text: str) -> None:
        tqdm = _import_tqdm() if self._bar is not None else None
        if tqdm is not None:
            tqdm.write(text, file=self._out())
        else:
            print(text, file=self._out(), flush=True)

    def _desc(self) -> str:
        epochs = self.params.get("epochs")
        return f"Epoch {self._epoch + 1}/{epochs}" if epochs else f"Epoch {self._epoch + 1}"

    def _open(self, desc: str, total: int | None) -> None:
        self._close()
        self._means = _RunningMeans()
        self._seen = 0
        self._t0 = time.perf_counter()
        tqdm = _import_tqdm() if self._verbosity() == 1 else None
        if tqdm is not None:
            self._bar = tqdm(total=total, desc=desc, unit="batch", file=self._out(), leave=True,
                             dynamic_ncols=True)

    def _close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def _batch(self, logs: Mapping[str, Any] | None) -> None:
        self._means.add(logs or {})
        self._seen += 1
        if self._bar is not None:
            self._bar.update(1)
        if self._seen % self.refresh_every == 0 and self._verbosity() == 1:
            self._show(self._means.read(), final=False)

    def _show(self, values: Mapping[str, float], final: bool) -> None:
        text = ", ".join(f"{k}={v:.4f}" for k, v in values.items())
        if self._bar is not None:
            self._bar.set_postfix_str(text, refresh=final)
        elif not final:  # plain fallback: a line per refresh
            steps = self.params.get("steps")
            where = f"{self._seen}/{steps}" if steps else f"{self._seen}"
            self._print(f"{self._desc()} - {where} - " + _format_logs(values, values))

    def _final_train_values(self, logs: Mapping[str, Any]) -> dict[str, float]:
        """The epoch's train metrics: from the (host) epoch logs where present, else read once."""
        values: dict[str, float] = {}
        for k in self._means.sums:
            values[k] = float(logs[k]) if k in logs else self._means.read([k])[k]
        for k, v in logs.items():
            if k not in values and k != "lr" and not k.startswith("val_") and _is_metric(k, v):
                values[k] = float(v)
        return values

    # -- hooks --
    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        self._in_fit = True

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        self._close()
        self._in_fit = False

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self._epoch = epoch
        if self._verbosity() > 0:
            self._open(self._desc(), self.params.get("steps"))

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        if self._verbosity() > 0:
            self._batch(logs)

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        if self._verbosity() == 0:
            return
        logs = logs or {}
        train = self._final_train_values(logs)
        extra = {k: float(v) for k, v in logs.items()
                 if (k.startswith("val_") or k == "lr") and v is not None and not isinstance(v, (str, bool))}
        elapsed = time.perf_counter() - self._t0
        if self._bar is not None:
            self._show(train, final=True)
            self._close()
            if extra:
                self._print(f"{self._desc()} - " + _format_logs(extra, extra))
        else:
            steps = self.params.get("steps") or self._seen
            values = {**train, **extra}
            self._print(f"{self._desc()} - {self._seen}/{steps} - {elapsed:.1f}s - " + _format_logs(values, values))
        self._means = _RunningMeans()

    def on_test_begin(self, logs: dict[str, Any] | None = None) -> None:
        if not self._in_fit and self._verbosity() > 0:
            self._epoch = 0
            self._open("Evaluate", self.params.get("steps"))

    def on_test_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        if not self._in_fit and self._verbosity() > 0:
            self._batch(logs)

    def on_test_end(self, logs: dict[str, Any] | None = None) -> None:
        if self._in_fit or self._verbosity() == 0:
            return
        logs = logs or {}
        values = {k: float(v) for k, v in logs.items() if _is_metric(k, v)} or self._means.read()
        if self._bar is not None:
            self._show(values, final=True)
            self._close()
        else:
            self._print(f"Evaluate - {self._seen} batches - " + _format_logs(values, values))
        self._means = _RunningMeans()


# --- EarlyStopping --------------------------------------------------------------------------------------

class EarlyStopping(Callback):
    """Stop training when ``monitor`` has not improved for ``patience`` epochs (Keras semantics).

    An improvement beats the best value so far by more than ``min_delta`` (absolute). ``baseline``: the
    patience counter only resets once the value also beats the baseline. ``restore_best_weights``: at the
    end of training load the weights of the best epoch (a device-side copy taken at that epoch; the
    first epoch's weights if no epoch improved). ``stopped_epoch`` and ``best_epoch`` are 0-based.
    """

    def __init__(
        self,
        monitor: str = "val_loss",
        min_delta: float = 0.0,
        patience: int = 0,
        mode: str = "auto",
        restore_best_weights: bool = False,
        baseline: float | None = None,
        verbose: int = 0,
        start_from_epoch: int = 0,
    ) -> None:
        super().__init__()
        owner = "EarlyStopping"
        self.monitor = monitor
        self.min_delta = _check_number("min_delta", min_delta, owner)
        self.patience = _check_int("patience", patience, 0, owner)
        self.mode = _resolve_mode(mode, monitor, owner)
        self.restore_best_weights = bool(restore_best_weights)
        self.baseline = None if baseline is None else _check_number("baseline", baseline, owner, minimum=None)
        self.verbose = verbose
        self.start_from_epoch = _check_int("start_from_epoch", start_from_epoch, 0, owner)
        self._reset()

    def _reset(self) -> None:
        self.wait = 0
        self.stopped_epoch = 0
        self.best = math.inf if self.mode == "min" else -math.inf
        self.best_epoch = 0
        self.best_weights: Any = None
        self._warned_missing = False

    def _improves(self, value: float, reference: float) -> bool:
        if self.mode == "min":
            return value + self.min_delta < reference
        return value - self.min_delta > reference

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        self._reset()

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        current = _monitor_value(self, logs, self.monitor)
        if current is None or epoch < self.start_from_epoch:
            return
        if self.restore_best_weights and self.best_weights is None:
            self.best_weights = _snapshot(self.model.state_dict())
        self.wait += 1
        if self._improves(current, self.best):
            self.best = current
            self.best_epoch = epoch
            if self.restore_best_weights:
                self.best_weights = _snapshot(self.model.state_dict())
            if self.baseline is None or self._improves(current, self.baseline):
                self.wait = 0
            return
        if self.wait >= self.patience and epoch > 0:
            self.stopped_epoch = epoch
            self.model.stop_training = True

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        if self.stopped_epoch > 0 and self.verbose > 0:
            _emit(f"Epoch {self.stopped_epoch + 1}: early stopping ({self.monitor} did not improve "
                  f"for {self.wait} epochs; best {self.best:.6g} at epoch {self.best_epoch + 1})")
        if self.restore_best_weights and self.best_weights is not None:
            if self.verbose > 0:
                _emit(f"Restoring model weights from the end of the best epoch: {self.best_epoch + 1}.")
            self.model.load_state_dict(self.best_weights)


# --- ModelCheckpoint ------------------------------------------------------------------------------------

class ModelCheckpoint(Callback):
    """Save the model (or only its weights) at the end of each epoch, or only when ``monitor`` improves.

    ``filepath`` may hold format fields: ``{epoch}`` (1-based) and any epoch-log key, e.g.
    ``"ckpt/model-{epoch:02d}-{val_loss:.4f}.npz"``; missing folders are created. With
    ``save_weights_only`` it calls ``model.save_weights(path)`` when the model has it, else writes the
    state dict as ``.npz``. ``best`` holds the best monitored value, ``last_saved`` the last path written.
    """

    def __init__(
        self,
        filepath: str | os.PathLike[str],
        monitor: str = "val_loss",
        save_best_only: bool = False,
        mode: str = "auto",
        save_weights_only: bool = False,
        verbose: int = 0,
        initial_value_threshold: float | None = None,
    ) -> None:
        super().__init__()
        owner = "ModelCheckpoint"
        self.filepath = os.fspath(filepath)
        if not self.filepath:
            raise ValueError(f"{owner}: filepath must not be empty")
        self.monitor = monitor
        self.save_best_only = bool(save_best_only)
        self.mode = _resolve_mode(mode, monitor, owner)
        self.save_weights_only = bool(save_weights_only)
        self.verbose = verbose
        if initial_value_threshold is not None:
            initial_value_threshold = _check_number("initial_value_threshold", initial_value_threshold, owner,
                                                    minimum=None)
        self.initial_value_threshold = initial_value_threshold
        self.best = self._initial_best()
        self.last_saved: str | None = None
        self._warned_missing = False

    def _initial_best(self) -> float:
        if self.initial_value_threshold is not None:
            return self.initial_value_threshold
        return math.inf if self.mode == "min" else -math.inf

    def _better(self, value: float) -> bool:
        return value < self.best if self.mode == "min" else value > self.best

    def format_path(self, epoch: int, logs: Mapping[str, Any] | None = None) -> str:
        """The file name for epoch ``epoch`` (0-based; written 1-based) with its logs."""
        fields = dict(logs or {})
        fields["epoch"] = epoch + 1
        try:
            return self.filepath.format(**fields)
        except KeyError as exc:
            raise KeyError(
                f"ModelCheckpoint: filepath {self.filepath!r} names the field {exc.args[0]!r}, but the epoch "
                f"logs hold only {sorted(fields)}"
            ) from None

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        logs = logs or {}
        if self.save_best_only:
            current = _monitor_value(self, logs, self.monitor)
            if current is None:
                return
            if not self._better(current):
                if self.verbose > 0:
                    _emit(f"Epoch {epoch + 1}: {self.monitor} did not improve from {self.best:.5f}")
                return
            path = self.format_path(epoch, logs)
            if self.verbose > 0:
                _emit(f"Epoch {epoch + 1}: {self.monitor} improved from {self.best:.5f} to {current:.5f}, "
                      f"saving model to {path}")
            self.best = current
        else:
            path = self.format_path(epoch, logs)
            if self.verbose > 0:
                _emit(f"Epoch {epoch + 1}: saving model to {path}")
        self._save(path)

    def _save(self, path: str) -> None:
        folder = os.path.dirname(path)
        if folder:
            os.makedirs(folder, exist_ok=True)
        if not self.save_weights_only:
            self.model.save(path)
        elif hasattr(self.model, "save_weights"):
            self.model.save_weights(path)
        else:
            import numpy as np

            from .backend import to_numpy

            state = self.model.state_dict()
            with open(path, "wb") as f:  # a file object: np.savez keeps the name as given
                np.savez(f, **{k: to_numpy(v) for k, v in state.items()})
        self.last_saved = path


# --- CSVLogger ------------------------------------------------------------------------------------------

class CSVLogger(Callback):
    """Write one row per epoch (``epoch`` 0-based, then the epoch logs) to a CSV file.

    With ``append=True`` rows go after an existing file's rows, under its header's columns. The file is
    flushed after every row and closed at the end of training.
    """

    def __init__(self, filename: str | os.PathLike[str], separator: str = ",", append: bool = False) -> None:
        super().__init__()
        if not isinstance(separator, str) or len(separator) != 1:
            raise ValueError(f"CSVLogger: separator must be a single character, got {separator!r}")
        self.filename = os.fspath(filename)
        self.separator = separator
        self.append = bool(append)
        self.keys: list[str] | None = None
        self._file: Any = None
        self._writer: Any = None

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        self.keys = None
        existing: list[str] | None = None
        if self.append and os.path.isfile(self.filename):
            with open(self.filename, newline="") as f:
                existing = next(csv.reader(f, delimiter=self.separator), None)
        folder = os.path.dirname(self.filename)
        if folder:
            os.makedirs(folder, exist_ok=True)
        self._file = open(self.filename, "a" if self.append else "w", newline="")  # noqa: SIM115
        if existing and existing[0] == "epoch":
            self.keys = existing[1:]
            self._writer = csv.DictWriter(self._file, ["epoch", *self.keys], delimiter=self.separator,
                                          restval="NA", extrasaction="ignore")

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        logs = logs or {}
        if self.keys is None:
            self.keys = list(logs)
            self._writer = csv.DictWriter(self._file, ["epoch", *self.keys], delimiter=self.separator,
                                          restval="NA", extrasaction="ignore")
            self._writer.writeheader()
        row: dict[str, Any] = {"epoch": epoch}
        for k in self.keys:
            if k in logs and logs[k] is not None:
                v = logs[k]
                row[k] = v if isinstance(v, (int, float, str)) else float(v)
        self._writer.writerow(row)
        self._file.flush()

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        if self._file is not None:
            self._file.close()
        self._file = None
        self._writer = None


# --- TerminateOnNaN -------------------------------------------------------------------------------------

class TerminateOnNaN(Callback):
    """Stop training once the loss is NaN or infinite.

    The batch loss (a device array) is read every ``check_every`` batches, and the epoch loss at every
    epoch end, so a bad loss is caught within ``check_every`` batches at most, without a host sync per
    batch. The message (printed to stderr, also kept in ``message``) names the epoch, batch and value.
    """

    def __init__(self, check_every: int = 10, monitor: str = "loss") -> None:
        super().__init__()
        self.check_every = _check_int("check_every", check_every, 1, "TerminateOnNaN")
        self.monitor = monitor
        self._reset()

    def _reset(self) -> None:
        self.stopped_epoch: int | None = None
        self.stopped_batch: int | None = None
        self.message: str | None = None
        self._epoch = 0
        self._last: Any = None
        self._last_batch: int | None = None
        self._checked = True

    def _stop(self, value: float, where: str) -> None:
        self.message = (f"TerminateOnNaN: {self.monitor} is {value} at {where}; stopping training "
                        "(lower the learning rate, check the data for NaN/inf, or clip gradients)")
        _emit(self.message)
        self.model.stop_training = True

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        self._reset()

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self._epoch = epoch
        self._last = None
        self._checked = True

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        if self.message is not None or not logs or logs.get(self.monitor) is None:
            return
        self._last, self._last_batch, self._checked = logs[self.monitor], batch, False
        if (batch + 1) % self.check_every == 0:
            self._check_last()

    def _check_last(self) -> None:
        value = _as_float(self._last)
        self._checked = True
        if not math.isfinite(value):
            self.stopped_epoch, self.stopped_batch = self._epoch, self._last_batch
            steps = self.params.get("steps")
            batch = f"{self._last_batch + 1}/{steps}" if steps else f"{self._last_batch + 1}"
            self._stop(value, f"epoch {self._epoch + 1}, batch {batch}")

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        if self.message is not None:
            return
        logs = logs or {}
        if logs.get(self.monitor) is not None:
            value = _as_float(logs[self.monitor])
            if not math.isfinite(value):
                self.stopped_epoch = epoch
                self._stop(value, f"the end of epoch {epoch + 1} (epoch mean)")
        elif self._last is not None and not self._checked:
            self._check_last()


# --- learning-rate schedules ----------------------------------------------------------------------------

def _get_lr(model: Any) -> float:
    return float(model.optimizer.lr)


def _set_lr(model: Any, lr: float) -> None:
    model.optimizer.lr = lr


class LearningRateScheduler(Callback):
    """Set ``model.optimizer.lr = schedule(epoch, lr)`` at the beginning of every epoch.

    ``schedule`` takes the 0-based epoch and the current learning rate (a one-argument ``schedule(epoch)``
    is accepted too) and returns the new rate. At epoch end ``logs["lr"]`` is set to the epoch's rate.
    """

    def __init__(self, schedule: Callable[..., float], verbose: int = 0) -> None:
        super().__init__()
        if not callable(schedule):
            raise ValueError(f"{type(self).__name__}: schedule must be callable, got {schedule!r}")
        self.schedule = schedule
        self.verbose = verbose
        self._takes_lr = self._arity(schedule) != 1

    @staticmethod
    def _arity(fn: Callable[..., Any]) -> int:
        try:
            params = inspect.signature(fn).parameters.values()
        except (TypeError, ValueError):
            return 2
        if any(p.kind is p.VAR_POSITIONAL for p in params):
            return 2
        return sum(p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty
                   for p in params)

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        lr = _get_lr(self.model)
        new = self.schedule(epoch, lr) if self._takes_lr else self.schedule(epoch)
        try:
            new = float(new)
        except (TypeError, ValueError):
            raise ValueError(f"{type(self).__name__}: the schedule must return a number, got {new!r}") from None
        if not math.isfinite(new) or new < 0:
            raise ValueError(f"{type(self).__name__}: the schedule returned an invalid learning rate {new!r} "
                             f"at epoch {epoch}")
        _set_lr(self.model, new)
        if self.verbose > 0:
            _emit(f"Epoch {epoch + 1}: {type(self).__name__} setting learning rate to {new:.6g}.")

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        if logs is not None:
            logs["lr"] = _get_lr(self.model)


class StepLR(LearningRateScheduler):
    """Multiply the learning rate by ``gamma`` every ``step_size`` epochs (``torch.optim.lr_scheduler.StepLR``).

    Epoch ``e`` trains with ``lr0 * gamma ** (e // step_size)``, computed step by step as torch does.
    """

    def __init__(self, step_size: int, gamma: float = 0.1, verbose: int = 0) -> None:
        self.step_size = _check_int("step_size", step_size, 1, "StepLR")
        self.gamma = _check_number("gamma", gamma, "StepLR")
        if self.gamma == 0:
            raise ValueError("StepLR: gamma must be > 0, got 0")
        super().__init__(self._step, verbose=verbose)

    def _step(self, epoch: int, lr: float) -> float:
        return lr * self.gamma if epoch > 0 and epoch % self.step_size == 0 else lr


class CosineAnnealingLR(LearningRateScheduler):
    """Cosine annealing from the initial rate to ``eta_min`` over ``T_max`` epochs (torch's closed form).

    Epoch ``e`` trains with ``eta_min + (lr0 - eta_min) * (1 + cos(pi * e / T_max)) / 2``; past ``T_max``
    the cosine rises again, as in torch. ``lr0`` (``base_lr``) is the optimizer's rate when training
    first begins, unless given.
    """

    def __init__(self, T_max: int, eta_min: float = 0.0, base_lr: float | None = None, verbose: int = 0) -> None:
        self.T_max = _check_int("T_max", T_max, 1, "CosineAnnealingLR")
        self.eta_min = _check_number("eta_min", eta_min, "CosineAnnealingLR")
        self.base_lr = None if base_lr is None else _check_number("base_lr", base_lr, "CosineAnnealingLR")
        super().__init__(self._cosine, verbose=verbose)

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        if self.base_lr is None:
            self.base_lr = _get_lr(self.model)

    def _cosine(self, epoch: int, lr: float) -> float:
        if self.base_lr is None:  # driven without on_train_begin: the first rate seen is the initial one
            self.base_lr = lr
        return self.eta_min + (self.base_lr - self.eta_min) * (1 + math.cos(math.pi * epoch / self.T_max)) / 2


class ReduceLROnPlateau(Callback):
    """Multiply the learning rate by ``factor`` when ``monitor`` stops improving (torch semantics).

    As ``torch.optim.lr_scheduler.ReduceLROnPlateau(mode, factor, patience, threshold=min_delta,
    threshold_mode, cooldown, min_lr, eps)`` stepped with the monitored value at every epoch end: after
    more than ``patience`` epochs without improvement the rate becomes ``max(lr * factor, min_lr)`` (for
    the next epoch; skipped when the change is below ``eps``), then ``cooldown`` epochs pass before bad
    epochs count again. With ``threshold_mode="rel"`` (torch's default) an improvement beats
    ``best * (1 - min_delta)`` (mode min) or ``best * (1 + min_delta)`` (mode max); with ``"abs"`` it beats
    ``best -/+ min_delta``.
    """

    def __init__(
        self,
        monitor: str = "val_loss",
        factor: float = 0.1,
        patience: int = 10,
        min_delta: float = 1e-4,
        cooldown: int = 0,
        min_lr: float = 0.0,
        mode: str = "auto",
        threshold_mode: str = "rel",
        eps: float = 1e-8,
        verbose: int = 0,
    ) -> None:
        super().__init__()
        owner = "ReduceLROnPlateau"
        self.monitor = monitor
        factor = _check_number("factor", factor, owner)
        if not 0 < factor < 1:
            raise ValueError(f"{owner}: factor must be in (0, 1) to reduce the learning rate, got {factor!r}")
        self.factor = factor
        self.patience = _check_int("patience", patience, 0, owner)
        self.min_delta = _check_number("min_delta", min_delta, owner)
        self.cooldown = _check_int("cooldown", cooldown, 0, owner)
        self.min_lr = _check_number("min_lr", min_lr, owner)
        self.mode = _resolve_mode(mode, monitor, owner)
        if threshold_mode not in ("rel", "abs"):
            raise ValueError(f"{owner}: threshold_mode must be 'rel' or 'abs', got {threshold_mode!r}")
        self.threshold_mode = threshold_mode
        self.eps = _check_number("eps", eps, owner)
        self.verbose = verbose
        self._reset()

    def _reset(self) -> None:
        self.best = math.inf if self.mode == "min" else -math.inf
        self.num_bad_epochs = 0
        self.cooldown_counter = 0
        self._warned_missing = False

    @property
    def in_cooldown(self) -> bool:
        return self.cooldown_counter > 0

    def _is_better(self, a: float) -> bool:
        best, d = self.best, self.min_delta
        if self.mode == "min":
            return a < (best * (1 - d) if self.threshold_mode == "rel" else best - d)
        return a > (best * (1 + d) if self.threshold_mode == "rel" else best + d)

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        self._reset()

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        current = _monitor_value(self, logs, self.monitor)
        if current is None:
            return
        if self._is_better(current):
            self.best = current
            self.num_bad_epochs = 0
        else:
            self.num_bad_epochs += 1
        if self.in_cooldown:
            self.cooldown_counter -= 1
            self.num_bad_epochs = 0
        if self.num_bad_epochs > self.patience:
            old = _get_lr(self.model)
            new = max(old * self.factor, self.min_lr)
            if old - new > self.eps:
                _set_lr(self.model, new)
                if self.verbose > 0:
                    _emit(f"Epoch {epoch + 1}: ReduceLROnPlateau reducing learning rate to {new:.6g}.")
            self.cooldown_counter = self.cooldown
            self.num_bad_epochs = 0
