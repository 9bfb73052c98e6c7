"""``ModelCheckpoint``: save the model (or its weights) during training, the best only on request."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from .._checks import check_flag, check_number
from .base import _emit
from .monitor import MonitorCallback

__all__ = ["ModelCheckpoint"]


class ModelCheckpoint(MonitorCallback):
    """Save the model (or only its weights) at the end of each epoch, or only when ``monitor`` improves.

    ``best`` holds the best monitored value, ``last_saved`` the last path written.

    Parameters
    ----------
    filepath : str or os.PathLike
        May hold format fields: ``{epoch}`` (1-based) and any epoch-log key, e.g.
        ``"ckpt/model-{epoch:02d}-{val_loss:.4f}.npz"``; missing folders are created.
    monitor : str, default "val_loss"
        The epoch-log value that ``save_best_only`` watches.
    save_best_only : bool, default False
        Save only at the epochs where ``monitor`` improves.
    mode : {"auto", "min", "max"}, default "auto"
        Whether lower or higher is better; ``"auto"`` takes higher for accuracy-like names.
    save_weights_only : bool, default False
        Call ``model.save_weights(path)`` when the model has it, else write the state dict as ``.npz``;
        otherwise ``model.save(path)``.
    verbose : int, default 0
        Above 0, print what it saves (and, with ``save_best_only``, when it does not).
    initial_value_threshold : float, optional
        The value to beat before the first save (``save_best_only``).

    Raises
    ------
    ValueError
        If ``filepath`` is empty or ``mode`` is unknown.
    """

    writes_files = True
    state_attributes = ("best", "last_saved")

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
        owner = "ModelCheckpoint"
        super().__init__(monitor, mode, owner)
        self.filepath = os.fspath(filepath)
        if not self.filepath:
            raise ValueError(f"{owner}: filepath must not be empty")
        self.save_best_only = check_flag(save_best_only, "save_best_only", type(self).__name__)
        self.save_weights_only = check_flag(save_weights_only, "save_weights_only", type(self).__name__)
        self.verbose = verbose
        if initial_value_threshold is not None:
            initial_value_threshold = check_number(initial_value_threshold, "initial_value_threshold", owner,
                                                    minimum=None)
        self.initial_value_threshold = initial_value_threshold
        self.best = self._initial_best()
        self.last_saved: str | None = None

    def _initial_best(self) -> float:
        return self._worst() if self.initial_value_threshold is None else self.initial_value_threshold

    def format_path(self, epoch: int, logs: Mapping[str, Any] | None = None) -> str:
        """The file name for epoch ``epoch`` (0-based; written 1-based) with its logs.

        Parameters
        ----------
        epoch : int
            The 0-based epoch.
        logs : mapping, optional
            The epoch logs, for the other fields.

        Returns
        -------
        str

        Raises
        ------
        KeyError
            If ``filepath`` names a field the logs lack.

        Examples
        --------
        >>> from xpcnn.callbacks import ModelCheckpoint
        >>> ModelCheckpoint("ckpt/model-{epoch:02d}-{val_loss:.4f}.npz").format_path(2, {"val_loss": 0.25})
        'ckpt/model-03-0.2500.npz'
        """
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
            current = self._current(logs)
            if current is None:
                return
            if not self._improves(current, self.best):
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

            from ..backend import to_numpy

            state = self.model.state_dict()
            with open(path, "wb") as f:  # a file object: np.savez keeps the name as given
                np.savez(f, **{k: to_numpy(v) for k, v in state.items()})
        self.last_saved = path
