"""Keras-style callbacks: hooks the training loop calls, and the ready-made ones most users want.

The contract with the model (``fit`` of ``xpcnn.training.Trainer`` drives it); one callback per module:

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

from .backup_and_restore import BackupAndRestore
from .base import Callback, CallbackList
from .csv_logger import CSVLogger
from .early_stopping import EarlyStopping
from .history import History
from .lr_schedulers import CosineAnnealingLR, LearningRateScheduler, OneCycleLR, ReduceLROnPlateau, StepLR
from .model_checkpoint import ModelCheckpoint
from .monitor import MonitorCallback
from .progress_bar import ProgressBar
from .terminate_on_nan import TerminateOnNaN

__all__ = [
    "BackupAndRestore",
    "CSVLogger",
    "Callback",
    "CallbackList",
    "CosineAnnealingLR",
    "EarlyStopping",
    "History",
    "LearningRateScheduler",
    "ModelCheckpoint",
    "MonitorCallback",
    "OneCycleLR",
    "ProgressBar",
    "ReduceLROnPlateau",
    "StepLR",
    "TerminateOnNaN",
]
