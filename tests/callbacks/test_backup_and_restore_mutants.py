"""``BackupAndRestore`` behaviours that mutation testing (``nox -s mutation``) found unchecked: its argument errors,
the backups of ``save_freq="epoch"``, the batches it counts, the backup a resumed fit names, and the temp file of a
killed first backup."""

from __future__ import annotations

import re
import subprocess
import sys

import numpy as np
import pytest
from test_backup_and_restore import Stop, StopAt

import xpcnn
from xpcnn.callbacks import BackupAndRestore
from xpcnn.layers import Dense


def _fit(folder, *extra, epochs=3, **kwargs):
    xpcnn.manual_seed(5)
    model = xpcnn.Sequential([Dense(3)], input_shape=(4,))
    model.compile("cross_entropy", "sgd")
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((12, 4)).astype(np.float32), rng.integers(0, 3, 12)
    backup = BackupAndRestore(folder, **kwargs)
    model.fit(x, y, batch_size=4, epochs=epochs, verbose=0, callbacks=[*extra, backup])
    return backup


@pytest.mark.parametrize(("kwargs", "error", "message"), [
    ({"save_freq": 0}, ValueError, "BackupAndRestore: save_freq must be an integer >= 1, got 0"),
    ({"save_freq": 2.5}, TypeError, "BackupAndRestore: save_freq must be an integer, got float 2.5"),
    ({"save_freq": "batch"}, ValueError,
     "BackupAndRestore: save_freq must be 'epoch' or a number of batches, got 'batch'"),
    ({"delete_checkpoint": "yes"}, TypeError,
     "BackupAndRestore: delete_checkpoint must be True or False, got str 'yes'"),
])
def test_argument_errors_name_the_callback_and_the_argument(tmp_path, kwargs, error, message):
    with pytest.raises(error, match=f"^{re.escape(message)}$"):
        BackupAndRestore(tmp_path, **kwargs)
    assert BackupAndRestore(tmp_path, save_freq=1).save_freq == 1


def test_epoch_backups_the_batches_counted_and_the_backup_gone_on_from(backend, tmp_path):
    folder = tmp_path / "b"
    fresh = BackupAndRestore(folder)
    assert fresh.restored_from is None
    done = _fit(folder, delete_checkpoint=False)  # save_freq="epoch": one backup per epoch, the last two kept
    assert sorted(p.name for p in folder.iterdir()) == ["backup-000002.xpcnn", "backup-000003.xpcnn"]
    assert (done.batches, done.restored_from) == (9, None)  # 3 epochs of 3 batches
    with pytest.raises(Stop):
        _fit(tmp_path / "k", StopAt(5), save_freq=2)  # backups after batches 2 and 4
    resumed = _fit(tmp_path / "k", save_freq=2)
    assert resumed.restored_from == str(tmp_path / "k" / "backup-000002.xpcnn")
    assert resumed.batches == 9  # 4 before the kill (restored), 5 after


def test_the_temp_file_of_a_killed_first_backup_goes_even_when_no_backup_is_written(backend, tmp_path):
    from xpcnn.io.atomic import _host

    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                          check=True)
    folder = tmp_path / "b"
    folder.mkdir()
    (folder / f".backup-000001.xpcnn.{int(gone.stdout)}@{_host()}.a1b2.xpcnn-tmp").write_bytes(b"half a backup")
    _fit(folder, epochs=1, save_freq=1000)  # a run that makes no backup
    assert not folder.exists()
