"""SIGTERM during ``fit``: finish the step under way, let the callbacks save (``BackupAndRestore``), then leave.

Schedulers (Slurm, Kubernetes, spot instances) announce the end of a job with SIGTERM and kill it a little
later. While ``fit`` runs, the first SIGTERM only raises a flag: the engine looks at it after each training
step and at each epoch's end, lets the callbacks see ``model.preempted`` there, and raises
``TrainingPreempted``; after the last epoch it still stops ``fit`` before the backups are deleted, until the
training is complete (a SIGTERM during ``on_train_end`` then leaves ``model.preempted`` True and a warning). A
second SIGTERM stops the process at once, as if nothing had been installed. The handler exists only while
``fit`` runs (and only in the main thread, where Python delivers signals); the one before it is put back
after.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Iterator
from typing import Any

__all__ = ["SigtermFlag", "TrainingPreempted", "sigterm_flag"]


class TrainingPreempted(RuntimeError):
    """``fit`` stopped on SIGTERM after a step (and after a backup, with ``BackupAndRestore``): run the same
    command again to go on. Uncaught, Python exits with status 1; catch it to choose another status."""


class SigtermFlag:
    """Whether a SIGTERM arrived (``raised``) while ``fit`` runs."""

    def __init__(self) -> None:
        self.raised = False


def _stop_now(signum: int, frame: Any) -> None:
    """The second SIGTERM: the default action (the process ends by the signal)."""
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)


@contextlib.contextmanager
def sigterm_flag() -> Iterator[SigtermFlag]:
    """While the block runs, SIGTERM raises ``flag.raised`` instead of ending the process."""
    flag = SigtermFlag()
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "SIGTERM"):
        yield flag  # no handler can be installed here: SIGTERM keeps its usual effect
        return

    def first(signum: int, frame: Any) -> None:
        flag.raised = True
        signal.signal(signum, _stop_now)

    previous = signal.signal(signal.SIGTERM, first)
    try:
        yield flag
    finally:
        signal.signal(signal.SIGTERM, previous)
