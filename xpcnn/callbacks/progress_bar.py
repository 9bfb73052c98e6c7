"""``ProgressBar``: a tqdm bar per epoch that reads device values only every few batches."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Mapping
from typing import Any

from .._checks import check_int
from .base import Callback, _as_float, _format_logs, _import_tqdm, _is_metric

__all__ = ["ProgressBar"]


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
    validation metrics and learning rate. Without tqdm it falls back to plain lines. Outside ``fit``
    (``evaluate``) it shows one bar over the test batches. ``fit(verbose=1)`` adds one itself.

    Parameters
    ----------
    refresh_every : int, default 10
        Batches between two reads of the running values.
    verbose : {0, 1, 2}, optional
        0 silent, 1 a bar per epoch, 2 one line per epoch; by default ``params["verbose"]``, else 1.
    file : file-like, optional
        Where to write; ``sys.stderr`` by default.

    Raises
    ------
    ValueError
        If ``refresh_every`` < 1 or ``verbose`` is not 0, 1 or 2.
    """

    def __init__(self, refresh_every: int = 10, verbose: int | None = None, file: Any = None) -> None:
        super().__init__()
        self.refresh_every = check_int(refresh_every, "refresh_every", 1, "ProgressBar")
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
