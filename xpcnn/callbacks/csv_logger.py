"""``CSVLogger``: one CSV row of logs per epoch."""

from __future__ import annotations

import csv
import os
from typing import Any

from .._checks import check_flag
from .base import Callback

__all__ = ["CSVLogger"]


class CSVLogger(Callback):
    """Write one row per epoch (``epoch`` 0-based, then the epoch logs) to a CSV file.

    With ``append=True`` rows go after an existing file's rows, under its header's columns. The file is
    flushed after every row and closed at the end of training.
    """

    writes_files = True

    def __init__(self, filename: str | os.PathLike[str], separator: str = ",", append: bool = False) -> None:
        super().__init__()
        if not isinstance(separator, str) or len(separator) != 1:
            raise ValueError(f"CSVLogger: separator must be a single character, got {separator!r}")
        self.filename = os.fspath(filename)
        self.separator = separator
        self.append = check_flag(append, "append", type(self).__name__)
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
