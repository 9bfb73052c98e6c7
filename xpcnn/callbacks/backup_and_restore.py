"""``BackupAndRestore``: a run killed at any moment goes on, with the same command, where its last backup was."""

from __future__ import annotations

import os
import re
import warnings
from typing import Any

from .._checks import check_flag, check_int
from .base import Callback

__all__ = ["BackupAndRestore"]

_BACKUP = re.compile(r"backup-(\d{6,12})\.xpcnn")
_TEMP = re.compile(r"\.(backup-\d{6,12}\.xpcnn)\..*\.xpcnn-tmp")  # a write killed before its rename (io.atomic)
_KEPT = 2  # the newest backup and the one before it, in case the newest is damaged


class BackupAndRestore(Callback):
    """Back up the running ``fit`` into ``backup_dir``, and go on from the newest backup there when ``fit``
    starts again (Keras's names and meaning).

    A backup holds everything needed to go on exactly: ``xpcnn.run_state``. It runs after every other
    callback, and is written atomically; the one before it is kept until it is whole, and a damaged newest
    backup is refused, with a warning naming it, for the one before. A SIGTERM during ``fit`` makes a backup
    after the step under way (``xpcnn.preemption``). In a data-parallel fit rank 0 writes, and every rank goes
    on from the backup rank 0 chose.

    Parameters
    ----------
    backup_dir : str or os.PathLike
        The folder of the backups; one folder per run.
    save_freq : "epoch" or int, default "epoch"
        ``"epoch"`` backs up at each epoch's end, an integer every that many training batches (and the
        epoch's end is then no extra save point).
    delete_checkpoint : bool, default True
        Remove the backups when ``fit`` ends normally (the folder too, once empty).

    Raises
    ------
    ValueError
        If ``backup_dir`` is empty, or ``save_freq`` is neither ``"epoch"`` nor a positive int.
    TypeError
        If ``save_freq`` or ``delete_checkpoint`` has the wrong type.
    """

    runs_last = True
    state_attributes = ("batches",)

    def __init__(self, backup_dir: str | os.PathLike[str], save_freq: str | int = "epoch",
                 delete_checkpoint: bool = True) -> None:
        super().__init__()
        owner = "BackupAndRestore"
        self.backup_dir = os.fspath(backup_dir)
        if not self.backup_dir:
            raise ValueError(f"{owner}: backup_dir must not be empty")
        if save_freq != "epoch":
            if isinstance(save_freq, str):
                raise ValueError(f"{owner}: save_freq must be 'epoch' or a number of batches, got {save_freq!r}")
            save_freq = check_int(save_freq, "save_freq", 1, owner)
        self.save_freq = save_freq
        self.delete_checkpoint = check_flag(delete_checkpoint, "delete_checkpoint", owner)
        self.batches = 0  # training batches since the fit began (across a resume: a backup restores it)
        self.restored_from: str | None = None  # the backup the last fit went on from

    # --- the files ----------------------------------------------------------------------------------------
    def backups(self) -> list[str]:
        """The backups in ``backup_dir``, oldest first."""
        if not os.path.isdir(self.backup_dir):
            return []
        found = [(int(m.group(1)), m.group(0)) for m in map(_BACKUP.fullmatch, os.listdir(self.backup_dir)) if m]
        return [os.path.join(self.backup_dir, name) for _, name in sorted(found)]

    def _is_main(self) -> bool:
        comm = self.model.distributed
        return comm is None or comm.is_main

    def _newest_good(self) -> tuple[str | None, dict[str, Any] | None]:
        from ..io.backups import read_backup

        for path in reversed(self.backups()):
            try:
                state = read_backup(path, self.model)
                progress, run = state["progress"], (self.params.get("epochs"), self.params.get("steps"))
                if (progress.get("epochs"), progress.get("steps")) != run:
                    raise ValueError(f"it is a backup of a fit of {progress.get('epochs')} epochs of "
                                     f"{progress.get('steps')} steps, this fit runs {run[0]} of {run[1]} (one "
                                     "backup folder per fit)")
                return path, state
            except (ValueError, OSError, MemoryError) as exc:
                warnings.warn(f"BackupAndRestore: the backup {path} cannot be used ({exc}); trying the one before it",
                              RuntimeWarning, stacklevel=3)
        return None, None

    # --- hooks --------------------------------------------------------------------------------------------
    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        self.batches, self.restored_from = 0, None
        comm, state = self.model.distributed, None
        if comm is None:
            path, state = self._newest_good()
        else:  # every rank reads the backup rank 0 found good
            path = comm.broadcast_object(self._newest_good()[0] if comm.is_main else None)
            if path is not None:
                from ..io.backups import read_backup

                state = read_backup(path, self.model)
        if path is not None:
            self.restored_from = path
            self.model.load_training_state(state)

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        self.batches += 1
        if self.model.preempted or self.save_freq != "epoch" and self.batches % self.save_freq == 0:
            self._backup()

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        if self.save_freq == "epoch" or self.model.preempted:
            self._backup()

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        if not self.delete_checkpoint or not self._is_main():
            return
        from ..io.atomic import remove_stale_temporaries

        for path in self.backups():
            os.remove(path)
        killed_writes = {m.group(1) for m in map(_TEMP.fullmatch, os.listdir(self.backup_dir)) if m}
        for name in killed_writes:  # (a preemption's backup write cut short by the SIGKILL after it, say)
            remove_stale_temporaries(self.backup_dir, name)
        try:
            os.rmdir(self.backup_dir)
        except OSError:
            pass  # not empty (the user's files) or gone

    def _backup(self) -> None:
        from ..io.backups import write_backup

        state = self.model.training_state()  # on every rank: the sums are summed over the ranks
        if not self._is_main():
            return
        os.makedirs(self.backup_dir, exist_ok=True)
        existing = self.backups()
        write_backup(os.path.join(self.backup_dir, _name(self._next_number())), self.model, state)
        for path in existing[:len(existing) + 1 - _KEPT]:
            os.remove(path)

    def _next_number(self) -> int:
        """The number of the next backup: after the newest there (a write killed before its rename is made
        again under the same name, which removes its temp file)."""
        existing = self.backups()
        return int(_BACKUP.fullmatch(os.path.basename(existing[-1])).group(1)) + 1 if existing else 1


def _name(number: int) -> str:
    return f"backup-{number:06d}.xpcnn"
