"""``EarlyStopping``: stop when a monitored value stops improving (Keras semantics)."""

from __future__ import annotations

from typing import Any

from .._checks import check_flag, check_int, check_number
from .base import _emit, _snapshot
from .monitor import MonitorCallback

__all__ = ["EarlyStopping"]


class EarlyStopping(MonitorCallback):
    """Stop training when ``monitor`` has not improved for ``patience`` epochs (Keras semantics).

    ``stopped_epoch`` and ``best_epoch`` are 0-based.

    Parameters
    ----------
    monitor : str, default "val_loss"
        The epoch-log value to watch.
    min_delta : float, default 0.0
        An improvement beats the best value so far by more than this (absolute).
    patience : int, default 0
        Epochs without improvement before training stops.
    mode : {"auto", "min", "max"}, default "auto"
        Whether lower or higher is better; ``"auto"`` takes higher for accuracy-like names.
    restore_best_weights : bool, default False
        At the end of training load the weights of the best epoch (a device-side copy taken at that epoch;
        the first epoch's weights if no epoch improved).
    baseline : float, optional
        The patience counter only resets once the value also beats the baseline.
    verbose : int, default 0
        Above 0, print a line when training stops or weights are restored.
    start_from_epoch : int, default 0
        Epochs (0-based) before this one are not watched (a warm-up).

    Raises
    ------
    ValueError
        If ``mode`` is unknown or a number is out of range.
    TypeError
        If an argument has the wrong type.

    Examples
    --------
    >>> from xpcnn.callbacks import EarlyStopping
    >>> stop = EarlyStopping(monitor="val_accuracy", patience=3, restore_best_weights=True)
    >>> stop.mode
    'max'
    """

    state_attributes = ("wait", "stopped_epoch", "best", "best_epoch", "best_weights")

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
        owner = "EarlyStopping"
        super().__init__(monitor, mode, owner)
        self.min_delta = check_number(min_delta, "min_delta", owner)
        self.patience = check_int(patience, "patience", 0, owner)
        self.restore_best_weights = check_flag(restore_best_weights, "restore_best_weights", type(self).__name__)
        self.baseline = None if baseline is None else check_number(baseline, "baseline", owner, minimum=None)
        self.verbose = verbose
        self.start_from_epoch = check_int(start_from_epoch, "start_from_epoch", 0, owner)
        self._reset()

    def _reset(self) -> None:
        self.wait = 0
        self.stopped_epoch = 0
        self.best = self._worst()
        self.best_epoch = 0
        self.best_weights: Any = None
        self._warned_missing = False

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        self._reset()

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        current = self._current(logs)
        if current is None or epoch < self.start_from_epoch:
            return
        if self.restore_best_weights and self.best_weights is None:
            self.best_weights = _snapshot(self.model.state_dict())
        self.wait += 1
        if self._improves(current, self.best, self.min_delta):
            self.best = current
            self.best_epoch = epoch
            if self.restore_best_weights:
                self.best_weights = _snapshot(self.model.state_dict())
            if self.baseline is None or self._improves(current, self.baseline, self.min_delta):
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
