"""A running ``fit`` as state: where it stands, what a backup of it holds, and how that is put back.

A backup is taken at the end of a training batch or of an epoch, after every other callback has seen it
(``BackupAndRestore`` runs last). It holds the model's parameters and buffers, the optimizer's state (slots,
step numbers, learning rate), the random stream, the training input's position (a ``DataLoader``'s
``state_dict``), the epoch's partial sums of the batch logs, the epoch and batch counters, ``stop_training``,
and each callback's ``state_dict`` (``History`` among them).

The validation input's position is kept too (a shuffled validation ``DataLoader`` with its own seed draws
its orders by epoch). Put back, the run goes on as if it had never stopped: a backup taken between epochs is
restored at once (when ``on_train_begin`` of the resumed ``fit`` has run), one taken within an epoch after
that epoch's ``on_epoch_begin``, which is where it was taken; that epoch then goes on with the batch after the
last one done. In a data-parallel fit every rank takes the backup at the same step, and it holds each rank's
partial sums, sample count and random counter (``ranks``): every rank goes on from its own.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np

from . import random
from .backend import asarray, get_backend, to_numpy

__all__ = ["FitRun", "Progress"]


@dataclasses.dataclass
class Progress:
    """Where a fit stands: ``batch`` batches of epoch ``epoch`` (0-based) done, with the device ``sums`` of
    their logs over ``seen`` samples; at an epoch's end, the next epoch with ``batch`` 0."""

    epoch: int
    batch: int = 0
    sums: dict[str, Any] | None = None
    seen: int = 0


class FitRun:
    """One ``fit`` while it runs: ``progress`` (the engine moves it on), ``state()`` for a backup,
    ``load_state(state)`` to go on from one, applied at the right point by ``enter_epoch``."""

    def __init__(self, model: Any, train: Any, val: Any, callbacks: Any, parallel: Any, initial_epoch: int) -> None:
        self.model, self.train, self.val, self.callbacks, self.parallel = model, train, val, callbacks, parallel
        self.progress = Progress(initial_epoch)
        self._pending: Mapping[str, Any] | None = None  # a state taken within an epoch, applied at its begin
        self._started = False
        self._warned_position = False

    # --- a backup -------------------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        """Everything needed to go on exactly from here; arrays stay on the device (the live ones for the
        optimizer's slots: write them out before the next step). Collective in a data-parallel fit."""
        model, progress = self.model, self.progress
        data = self.train.state_dict()
        if data is None and not self._warned_position:
            self._warned_position = True
            warnings.warn(f"{model.name}: the position in a {type(self.train.loader).__name__} cannot be saved; a "
                          "resumed run reads it from its start (an xpcnn.DataLoader resumes exactly)", UserWarning,
                          stacklevel=3)
        return {
            "model": model.state_dict(),
            "optimizer": model.optimizer.state_dict(),
            "random": random.get_state(),
            "data": data,
            "validation": None if self.val is None else self.val.state_dict(),
            "ranks": None if self.parallel is None else self._ranks(),
            "progress": {"epoch": progress.epoch, "batch": progress.batch, "seen": progress.seen,
                         "completed_epochs": int(model.epoch), "stop_training": bool(model.stop_training),
                         "epochs": self.callbacks.params.get("epochs"), "steps": self.callbacks.params.get("steps")},
            "sums": progress.sums,
            "callbacks": self.callbacks.state_dict(),
        }

    def _ranks(self) -> dict[str, Any]:
        """Each rank's partial sums, sample count and random counter (they differ: each rank reads its share of
        every batch, and a rank whose share of the last batch is empty draws no dropout mask)."""
        xp, sums = get_backend().xp, self.progress.sums
        keys = self.parallel.comm.broadcast_object(None if sums is None else list(sums))
        counts = to_numpy(self.parallel.gather(np.asarray([self.progress.seen, random.get_state()["counter"]],
                                                          dtype=np.int64)))
        ranks: dict[str, Any] = {"seen": [int(v) for v in counts[:, 0]], "counters": [int(v) for v in counts[:, 1]],
                                 "sums": None}
        if keys is not None:
            row = xp.stack([xp.reshape(asarray(sums[k]), ()) if sums is not None else asarray(0.0) for k in keys])
            table = self.parallel.gather(row)
            ranks["sums"] = {k: table[:, i] for i, k in enumerate(keys)}
        return ranks

    # --- going on from one ----------------------------------------------------------------------------
    def load_state(self, state: Mapping[str, Any]) -> None:
        """Go on from ``state`` (what ``state()`` gave, or a backup read back): at once when it was taken
        between epochs, else when its epoch begins. Only before the first epoch begins."""
        if self._started:
            raise RuntimeError(f"{self.model.name}: a fit's state can only be loaded in on_train_begin, before the "
                               "first epoch begins")
        progress = state["progress"]
        self.progress = Progress(int(progress["epoch"]))
        if int(progress["batch"]) == 0:
            self._apply(state)
        else:
            self._pending = state

    def enter_epoch(self, epoch: int) -> Progress:
        """Called after ``on_epoch_begin(epoch)``: the progress to go on from (a pending state's, or none)."""
        self._started = True
        if self._pending is not None and int(self._pending["progress"]["epoch"]) == epoch:
            self._apply(self._pending)
        else:
            self.progress = Progress(epoch)
        self._pending = None
        return self.progress

    def _apply(self, state: Mapping[str, Any]) -> None:
        model, progress = self.model, state["progress"]
        model.load_state_dict(state["model"])
        model.optimizer.load_state_dict(state["optimizer"], params=model.params)
        random.set_state(state["random"])
        if state.get("data") is not None:
            self.train.load_state_dict(state["data"])
        if state.get("validation") is not None and self.val is not None:
            self.val.load_state_dict(state["validation"])
        self.callbacks.load_state_dict(state.get("callbacks") or {})
        model.epoch = int(progress["completed_epochs"])
        model.stop_training = bool(progress["stop_training"])
        sums, seen = state.get("sums"), int(progress["seen"])
        if self.parallel is not None:  # this rank's own
            rank, ranks = self.parallel.comm.rank, state["ranks"]
            random.set_state({"seed": state["random"]["seed"], "counter": int(ranks["counters"][rank])})
            seen = int(ranks["seen"][rank])
            sums = None if ranks["sums"] is None else {k: v[rank] for k, v in ranks["sums"].items()}
        self.progress = Progress(int(progress["epoch"]), int(progress["batch"]),
                                 None if sums is None else {k: asarray(v) for k, v in sums.items()}, seen)
