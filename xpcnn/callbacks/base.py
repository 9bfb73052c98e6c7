"""The callback contract: ``Callback``, ``CallbackList`` and the helpers every callback shares."""

from __future__ import annotations

import re
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import array_api_compat

from ..backend import copy_array

__all__ = ["Callback", "CallbackList"]


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

    #: Whether the callback writes files: in a data-parallel fit only rank 0 runs those.
    writes_files = False
    #: Whether the callback runs after all the others (a backup must see every other callback's epoch end).
    runs_last = False
    #: The attributes ``state_dict`` saves and ``load_state_dict`` puts back.
    state_attributes: tuple[str, ...] = ()

    def __init__(self) -> None:
        self.model: Any = None
        self.params: dict[str, Any] = {}

    def set_model(self, model: Any) -> None:
        """Attach the model being trained (``fit`` calls it before ``on_train_begin``); kept as ``self.model``."""
        self.model = model

    def set_params(self, params: Mapping[str, Any]) -> None:
        """Receive the run's settings (``epochs``, ``steps``, ``verbose``, ...), kept as a copy in ``self.params``."""
        self.params = dict(params)

    def state_dict(self) -> dict[str, Any]:
        """What this callback needs to go on exactly in a resumed run (``BackupAndRestore`` saves it).

        By default a copy of the attributes named in ``state_attributes``. Override this and
        ``load_state_dict`` together for other state; values may be numbers, strings, None, lists, dicts with
        string keys, and arrays.
        """
        return {name: _snapshot(getattr(self, name)) for name in self.state_attributes}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Put back what ``state_dict`` returned: in a resumed ``fit``, after ``on_train_begin`` (a backup taken
        between epochs) or after the ``on_epoch_begin`` of the epoch a backup was taken in."""
        unknown = sorted(set(state) - set(self.state_attributes))
        if unknown:
            raise ValueError(f"{type(self).__name__}.load_state_dict: unknown entries {unknown}; this callback "
                             f"saves {sorted(self.state_attributes)}")
        for name, value in state.items():
            setattr(self, name, value)

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
    """Calls every hook on each of ``callbacks`` in order; the model talks to this one object.

    Parameters
    ----------
    callbacks : iterable of Callback, optional
        The callbacks, in the order their hooks run (``runs_last`` ones, such as ``BackupAndRestore``, after
        the others).
    model : model, optional
        Handed to each callback's ``set_model``.
    params : mapping, optional
        Handed to each callback's ``set_params`` (``fit``'s epochs, steps and verbosity).

    Raises
    ------
    TypeError
        If an item is not a ``Callback``.

    Examples
    --------
    >>> from xpcnn.callbacks import CallbackList, EarlyStopping, History
    >>> [type(cb).__name__ for cb in CallbackList([History(), EarlyStopping(patience=2)]).callbacks]
    ['History', 'EarlyStopping']
    """

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
        """Add ``callback``; it runs after those added before it, except that ``runs_last`` ones stay last."""
        if not isinstance(callback, Callback):
            raise TypeError(
                f"callbacks must be xpcnn.callbacks.Callback instances, got {type(callback).__name__}"
            )
        self.callbacks.append(callback)
        self.callbacks.sort(key=lambda cb: cb.runs_last)  # stable: the given order otherwise
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
        """Attach the model to this list and to every callback in it."""
        super().set_model(model)
        for cb in self.callbacks:
            cb.set_model(model)

    def set_params(self, params: Mapping[str, Any]) -> None:
        """Give the run's settings to this list and to every callback in it."""
        super().set_params(params)
        for cb in self.callbacks:
            cb.set_params(params)

    def keyed(self) -> dict[str, Callback]:
        """The callbacks by class name, ``#2``, ``#3``... after the name of a second, third one of a class:
        keys that stay the same when a run is started again with the same callbacks."""
        keyed: dict[str, Callback] = {}
        counts: dict[str, int] = {}
        for cb in self.callbacks:
            name = type(cb).__name__
            counts[name] = counts.get(name, 0) + 1
            keyed[name if counts[name] == 1 else f"{name}#{counts[name]}"] = cb
        return keyed

    def state_dict(self) -> dict[str, Any]:
        """Every callback's ``state_dict`` by its ``keyed`` name (those with nothing to save left out)."""
        return {key: state for key, cb in self.keyed().items() if (state := cb.state_dict())}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Each callback's part of ``state``; a callback the state does not name keeps its own."""
        for key, cb in self.keyed().items():
            if key in state:
                cb.load_state_dict(state[key])


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
