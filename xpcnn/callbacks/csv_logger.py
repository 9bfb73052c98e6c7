"""``CSVLogger``: one CSV row of logs per epoch."""

from __future__ import annotations

import csv
import os
import warnings
from collections.abc import Mapping
from typing import Any

from .._checks import check_flag
from .base import Callback

__all__ = ["CSVLogger"]


class CSVLogger(Callback):
    """Write one row per epoch (``epoch`` 0-based, then the epoch logs) to a CSV file.

    With ``append=True`` rows go after an existing file's rows, under its header's columns. The file is
    opened at the first epoch's end, flushed after every row and closed at the end of training. Its state
    (``state_dict``) is the columns and the length of the file: a resumed run cuts off the rows written
    after the backup it resumes from, so the log reads as if the run had never stopped.

    Parameters
    ----------
    filename : str or os.PathLike
        The CSV file; missing folders are created.
    separator : str, default ","
        One character between fields.
    append : bool, default False
        Add rows after an existing file's instead of replacing it.

    Raises
    ------
    ValueError
        If ``separator`` is not a single character.
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
        self._length = 0  # bytes of the log after the last row written (or before the first)
        self._resumed = False

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        self.on_train_end()
        self.keys, self._resumed = None, False
        # what belongs to the log before this run's first row: an appended file's rows, else nothing
        self._length = os.path.getsize(self.filename) if self.append and os.path.isfile(self.filename) else 0

    def state_dict(self) -> dict[str, Any]:
        return {"keys": self.keys, "length": self._length}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        keys, length = state.get("keys"), state.get("length")
        if set(state) != {"keys", "length"} or not (isinstance(length, int) and length >= 0):
            raise ValueError(f"CSVLogger.load_state_dict takes {{'keys': list or None, 'length': int}}, got "
                             f"{dict(state)!r:.200}")
        self.on_train_end()
        self.keys, self._length, self._resumed = (None if keys is None else [str(k) for k in keys]), length, True

    def _open(self) -> None:
        folder = os.path.dirname(self.filename)
        if folder:
            os.makedirs(folder, exist_ok=True)
        existing: list[str] | None = None  # the header of the file appended to
        if self.append and os.path.isfile(self.filename):
            with open(self.filename, newline="") as f:
                existing = next(csv.reader(f, delimiter=self.separator), None)
        if self._resumed and os.path.isfile(self.filename):  # the rows up to the backup, then this run's
            self._file = open(self.filename, "r+", newline="")  # noqa: SIM115
            if self._file.seek(0, os.SEEK_END) >= self._length:
                self._file.truncate(self._length)
                self._file.seek(self._length)
            else:
                warnings.warn(f"CSVLogger: {self.filename} is shorter than when the run was backed up; the rows "
                              "of the resumed run go after what is there", RuntimeWarning, stacklevel=3)
        else:
            self._file = open(self.filename, "a" if self.append else "w", newline="")  # noqa: SIM115
        if self.keys is None and existing and existing[0] == "epoch":
            self.keys = existing[1:]
        if self.keys is not None:
            self._writer = csv.DictWriter(self._file, ["epoch", *self.keys], delimiter=self.separator,
                                          restval="NA", extrasaction="ignore")
            if self._file.tell() == 0:  # a resumed log whose file was removed starts again with its header
                self._writer.writeheader()

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        logs = logs or {}
        if self._file is None:
            self._open()
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
        self._length = self._file.tell()

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        if self._file is not None:
            self._file.close()
        self._file = None
        self._writer = None
