"""A training script as users write one, with BackupAndRestore, that kills itself (SIGKILL) at chosen points.

``RESUME_RUN_KILLS=KILLS python resume_run.py BACKEND DEVICE OUT INPUT JIT``: INPUT ``arrays`` (8 batches an epoch),
``stream`` (a DataLoader over a dataset read by worker threads, epochs of 5 of its 8 batches) or ``processes``
(the same read by worker processes), JIT ``eager`` or ``jit``. KILLS is a file of kill points, one per
line, consumed in order: the process kills itself the first time it reaches the first point left, after
removing it from the file, so that relaunching the same command until it exits 0 meets every point once.
A point is ``SIGNAL EVENT EPOCH BATCH``: SIGNAL ``KILL1`` (SIGKILL), ``TERM1`` or ``TERM2`` (SIGTERM once or
twice), ``GROUPTERM1`` (SIGTERM to the process group), EPOCH and BATCH 0-based and absolute in the run, EVENT
one of:

- ``step``: inside the optimizer update of that batch (eager steps only);
- ``batch``: after that batch's step, before the batch's backup;
- ``write``: in the middle of writing the backup taken at that batch (BATCH -1: at the epoch's end);
- ``epoch``: at the begin of that epoch (BATCH ignored);
- ``val``: after validation batch BATCH of that epoch;
- ``epoch_end``: in that epoch's ``on_epoch_end`` (BATCH ignored), before the backup's;
- ``read``: while a worker reads sample BATCH (EPOCH 0: the first time it is read).

Writes ``OUT/final.npz`` (the weights), ``OUT/history.json`` and ``OUT/log.csv``, and a SIGTERM leaves with
exit status 3 (``xpcnn.TrainingPreempted``).
"""

from __future__ import annotations

import json
import os
import signal
import sys

import numpy as np

import xpcnn
from xpcnn.callbacks import (BackupAndRestore, Callback, CSVLogger, EarlyStopping, ModelCheckpoint,
                             ReduceLROnPlateau, TerminateOnNaN)
from xpcnn.layers import BatchNorm2D, Conv2D, Dense, Dropout, Flatten, ReLU

where = {"epoch": 0, "batch": -1}
backend, device, out, kind, jit = (sys.argv[1:6] + ["-"] * 5)[:5]  # worker processes import this file bare
kills_path = os.environ.get("RESUME_RUN_KILLS")  # in the environment: worker processes read it too


def kill_if(event: str, epoch: int, batch: int) -> None:
    if kills_path is None:
        return
    with open(kills_path) as f:
        points = [line.split() for line in f if line.strip()]
    if points and points[0][1:] == [event, str(epoch), str(batch)]:
        with open(kills_path, "w") as f:
            f.writelines(" ".join(p) + "\n" for p in points[1:])
        kind, times = points[0][0][:-1], int(points[0][0][-1])
        for _ in range(times):  # KILL1, TERM1 or TERM2: the signal, once or twice; GROUPTERM1: to the group
            if kind == "GROUPTERM":  # as a scheduler ends a job: every process of the group, workers too
                os.killpg(os.getpgrp(), signal.SIGTERM)
            else:
                os.kill(os.getpid(), getattr(signal, "SIG" + kind))


class Killer(Callback):
    def on_epoch_begin(self, epoch, logs=None):
        where.update(epoch=epoch, batch=-1)
        kill_if("epoch", epoch, 0)

    def on_train_batch_begin(self, batch, logs=None):
        where["batch"] = batch

    def on_train_batch_end(self, batch, logs=None):
        kill_if("batch", where["epoch"], batch)

    def on_test_batch_end(self, batch, logs=None):
        kill_if("val", where["epoch"], batch)

    def on_epoch_end(self, epoch, logs=None):
        where["batch"] = -1
        kill_if("epoch_end", epoch, 0)


class SignallingDataset(xpcnn.data.ArrayDataset):
    """The samples, read by the loader's workers; one of them may signal the job while the owner waits."""

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        kill_if("read", 0, int(index))
        return super().__getitem__(index)


fsync = os.fsync


def fsync_or_die(fd: int) -> None:  # the backup's temp file is written, not yet renamed into place
    kill_if("write", where["epoch"], where["batch"])
    fsync(fd)


def main() -> None:
    """The training script: run it with ``if __name__ == "__main__"`` (worker processes import this file)."""
    xpcnn.set_backend(backend, device=None if device == "-" else device, dtype="float32")
    os.fsync = fsync_or_die

    xpcnn.manual_seed(0)
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (60, 3, 8, 8), dtype=np.uint8)
    y = rng.integers(0, 4, 60)
    model = xpcnn.Sequential([Conv2D(6, 3, padding=1), BatchNorm2D(), ReLU(), Flatten(), Dropout(0.25), Dense(4)],
                             input_shape=(3, 8, 8))
    model.compile("cross_entropy", xpcnn.optimizers.Adam(0.01, use_ema=True), metrics=["accuracy"], jit=jit == "jit")
    if jit == "eager":
        apply = model.optimizer.apply

        def apply_or_die(*args, **kwargs):
            result = apply(*args, **kwargs)
            kill_if("step", where["epoch"], where["batch"])
            return result

        model.optimizer.apply = apply_or_die

    if kind in ("stream", "processes"):
        train = xpcnn.DataLoader(SignallingDataset(x, y), batch_size=8, num_workers=2, shuffle=True,
                                 transform=xpcnn.transforms.RandomFlip(), use_multiprocessing=kind == "processes")
        fit_args = {"x": train, "steps_per_epoch": 5}  # an epoch of 5 batches, the loader's passes of 8 go on
    else:
        fit_args = {"x": x.astype(np.float32) / 255, "y": y, "batch_size": 8,
                    "transform": xpcnn.transforms.RandomFlip()}
    callbacks = [Killer(), EarlyStopping(monitor="val_loss", patience=2, restore_best_weights=True),
                 ReduceLROnPlateau(monitor="val_loss", patience=0, factor=0.5, min_delta=0.15, threshold_mode="abs"),
                 TerminateOnNaN(check_every=2),
                 ModelCheckpoint(os.path.join(out, "best.xpcnn"), save_best_only=True),
                 CSVLogger(os.path.join(out, "log.csv")), BackupAndRestore(os.path.join(out, "backup"), save_freq=3)]
    try:
        history = model.fit(**fit_args, epochs=5, validation_data=(x[:20].astype(np.float32) / 255, y[:20]),
                            callbacks=callbacks, verbose=0)
    except xpcnn.TrainingPreempted as exc:
        print(exc, file=sys.stderr)
        sys.exit(3)
    np.savez(os.path.join(out, "final.npz"), **{k: xpcnn.to_numpy(v) for k, v in model.state_dict().items()})
    with open(os.path.join(out, "history.json"), "w") as f:
        json.dump({"history": history.history, "epoch": history.epoch}, f)


if __name__ == "__main__":
    main()
