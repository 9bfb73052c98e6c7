"""``MonitorCallback``: the shared base of callbacks that watch one epoch-log value and track its best.

It resolves ``mode`` ("auto" watches accuracy-like names upwards, everything else downwards), reads the value
from the epoch logs (warning once when it is missing), and holds the one comparison every such callback
uses: does a value beat a reference by more than a margin, absolute or relative to the reference.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from typing import Any

from .base import Callback, _as_float, _resolve_mode

__all__ = ["MonitorCallback"]


class MonitorCallback(Callback):
    """A callback watching ``monitor`` in the epoch logs, ``mode`` "min", "max" or "auto".

    Parameters
    ----------
    monitor : str
        The epoch-log value to watch.
    mode : {"auto", "min", "max"}
        Whether lower or higher is better; ``"auto"`` takes higher for accuracy-like names.
    owner : str
        The subclass's name, for messages.

    Raises
    ------
    ValueError
        If ``mode`` is unknown.
    """

    def __init__(self, monitor: str, mode: str, owner: str) -> None:
        super().__init__()
        self.monitor = monitor
        self.mode = _resolve_mode(mode, monitor, owner)
        self._warned_missing = False

    def _worst(self) -> float:
        """The starting ``best``: any value beats it."""
        return math.inf if self.mode == "min" else -math.inf

    def _improves(self, value: float, reference: float, delta: float = 0.0, relative: bool = False) -> bool:
        """Whether ``value`` beats ``reference`` by more than ``delta``: ``reference -/+ delta`` to beat, or
        with ``relative`` ``reference * (1 -/+ delta)`` (torch's ``threshold_mode="rel"``)."""
        if self.mode == "min":
            return value < (reference * (1 - delta) if relative else reference - delta)
        return value > (reference * (1 + delta) if relative else reference + delta)

    def _current(self, logs: Mapping[str, Any] | None) -> float | None:
        """``logs[monitor]`` as a float, or None with a warning (once per training) naming the keys present."""
        logs = logs or {}
        if logs.get(self.monitor) is not None:
            return _as_float(logs[self.monitor])
        if not self._warned_missing:
            self._warned_missing = True
            warnings.warn(
                f"{type(self).__name__}: the monitored metric {self.monitor!r} is not in the epoch logs "
                f"(available: {sorted(logs)}); this callback does nothing until it appears. "
                "Validation metrics need validation data.",
                RuntimeWarning,
                stacklevel=3,
            )
        return None
