"""``TerminateOnNaN``: stop training when the loss becomes NaN or infinite."""

from __future__ import annotations

import math
from typing import Any

from .._checks import check_int
from .base import Callback, _as_float, _emit

__all__ = ["TerminateOnNaN"]


class TerminateOnNaN(Callback):
    """Stop training once the loss is NaN or infinite.

    The batch loss (a device array) is read every ``check_every`` batches, and the epoch loss at every
    epoch end, so a bad loss is caught within ``check_every`` batches at most, without a host sync per
    batch. The message (printed to stderr, also kept in ``message``) names the epoch, batch and value.

    Parameters
    ----------
    check_every : int, default 10
        Batches between two reads of the batch loss.
    monitor : str, default "loss"
        The log value to check.

    Raises
    ------
    ValueError
        If ``check_every`` < 1.
    """

    state_attributes = ("stopped_epoch", "stopped_batch", "message", "_epoch", "_last", "_last_batch", "_checked")

    def __init__(self, check_every: int = 10, monitor: str = "loss") -> None:
        super().__init__()
        self.check_every = check_int(check_every, "check_every", 1, "TerminateOnNaN")
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
