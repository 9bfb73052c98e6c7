"""``History``: every epoch's logs, what ``fit`` returns."""

from __future__ import annotations

from typing import Any

from .base import Callback

__all__ = ["History"]


class History(Callback):
    """Records the epoch-end logs: ``history["loss"]`` is the list of epoch losses, ``epoch`` the epochs.

    A History passed to several ``fit`` calls keeps appending (``epoch`` holds absolute epoch numbers).
    ``fit`` makes one and returns it (also kept as ``model.history``); it takes no arguments.

    Attributes
    ----------
    history : dict of str to list of float
        Each epoch-log name (``"loss"``, the metrics, ``"val_..."``, ``"lr"``) with its value per epoch.
    epoch : list of int
        The 0-based epochs recorded.
    """

    state_attributes = ("history", "epoch")

    def __init__(self) -> None:
        super().__init__()
        self.history: dict[str, list[Any]] = {}
        self.epoch: list[int] = []

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self.epoch.append(epoch)
        for k, v in (logs or {}).items():
            self.history.setdefault(k, []).append(v)
