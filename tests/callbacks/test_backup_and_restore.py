"""``BackupAndRestore``: a run killed anywhere and started again ends with the bytes of a run never killed.

The kill tests start ``resume_run.py`` (a user's training script) as a subprocess that SIGKILLs itself at
chosen points (inside a step, during a backup write, between epochs, during validation) and relaunch it until
it completes; the weights, the history and the CSV log must equal those of the same script never killed.
The in-process tests stop a fit with an exception from a callback, which leaves what a kill leaves on disk.
"""

from __future__ import annotations

import json
import os
import pathlib
import signal
import subprocess
import sys
import warnings
import zipfile

import numpy as np
import pytest

import xpcnn
from conftest import BACKEND, DEVICE, REPO_ROOT
from xpcnn import mixed_precision
from xpcnn.callbacks import BackupAndRestore, Callback, EarlyStopping, ReduceLROnPlateau
from xpcnn.layers import Dense, Dropout

SCRIPT = pathlib.Path(__file__).with_name("resume_run.py")
TIMEOUT_S = 300
EPOCHS = 5


def _launch(out: pathlib.Path, points: list[str] | None = None, jit: str = "eager",
            kind: str = "arrays") -> subprocess.CompletedProcess:
    command = [sys.executable, str(SCRIPT), BACKEND, DEVICE or "-", str(out), kind, jit]
    kills = {}
    if points is not None:
        kills = {"RESUME_RUN_KILLS": str(out / "kills")}
        if not (out / "kills").exists():
            (out / "kills").write_text("".join(p + "\n" for p in points))
    # one persistent XLA cache for the launches of a test worker: a fresh JAX process would compile every eager
    # op again (a launch takes 3 s instead of 8)
    env = {**{k: v for k, v in os.environ.items() if k != "RESUME_RUN_KILLS"}, **kills, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join(p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH")) if p),
           "JAX_COMPILATION_CACHE_DIR": str(out.parent.parent / "xla-cache"),
           "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0", "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0"}
    # a session of its own: a SIGTERM to its process group reaches it and its workers, not pytest
    return subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT_S, env=env, start_new_session=True)


def _until_done(out: pathlib.Path, points: list[str] | None = None, **kw: str) -> int:
    """Relaunch until the script completes; the number of times it was killed."""
    out.mkdir(exist_ok=True)
    for kills in range(len(points or ()) + 1):
        done = _launch(out, points, **kw)
        if done.returncode == 0:
            return kills
        assert done.returncode == -signal.SIGKILL, done.stderr[-3000:]
    raise AssertionError(f"still killed after {kills} relaunches")


def _kill_points(kind: str, per_epoch_extra: bool = True) -> list[str]:
    """Points spread over the 5 epochs, in the order the run meets them: each epoch's begin, inside a step,
    during the epoch's first backup write, after a step before its backup, during validation."""
    batches = 8 if kind == "arrays" else 5
    points = []
    for epoch in range(EPOCHS):
        first_save = next(b for b in range(batches) if (epoch * batches + b + 1) % 3 == 0)  # save_freq=3
        events = [(0, 0, "epoch", 0), (1, 0, "step", 1), (first_save, 1, "write", first_save),
                  (batches, 0, "val", 1)]
        if per_epoch_extra:
            events.append((3, 2, "batch", 3))
        points += [f"KILL1 {event} {epoch} {batch}" for *_, event, batch in sorted(events)]
    return points


def _same_run(a: pathlib.Path, b: pathlib.Path, exact: bool = True) -> None:
    with np.load(a / "final.npz") as fa, np.load(b / "final.npz") as fb:
        assert fa.files == fb.files
        for key in fa.files:
            if exact:
                assert fa[key].tobytes() == fb[key].tobytes(), key
            else:
                np.testing.assert_allclose(fa[key], fb[key], rtol=1e-5, atol=1e-6, err_msg=key)
    history_a, history_b = (json.loads((p / "history.json").read_text()) for p in (a, b))
    if exact:
        assert history_a == history_b
        assert (a / "log.csv").read_text() == (b / "log.csv").read_text()
    else:
        assert history_a["epoch"] == history_b["epoch"]
        np.testing.assert_allclose(history_a["history"]["loss"], history_b["history"]["loss"], rtol=1e-5)


@pytest.mark.parametrize("kind", ["arrays", "stream"])
def test_a_run_killed_at_twenty_points_ends_with_the_bytes_of_one_never_killed(tmp_path, kind):
    """SIGKILL inside a step, during a backup write, between epochs and during validation, 25 times."""
    _until_done(tmp_path / "never", kind=kind)
    points = _kill_points(kind)
    kills = _until_done(tmp_path / "killed", points, kind=kind)
    assert kills == len(points) >= 20, (tmp_path / "killed" / "kills").read_text()
    assert not (tmp_path / "killed" / "backup").exists()  # deleted once the run completed
    _same_run(tmp_path / "never", tmp_path / "killed")
    assert len((tmp_path / "never" / "log.csv").read_text().splitlines()) == EPOCHS + 1  # no duplicate rows


@pytest.mark.skipif(BACKEND != "jax", reason="compiled steps exist on JAX only")
def test_compiled_jax_resumes_to_rounding(tmp_path):
    _until_done(tmp_path / "never", jit="jit")
    points = [p for p in _kill_points("arrays", per_epoch_extra=False) if " step " not in p][:8]  # no eager hook
    assert _until_done(tmp_path / "killed", points, jit="jit") == len(points)
    _same_run(tmp_path / "never", tmp_path / "killed", exact=False)


def test_sigterm_finishes_the_step_backs_up_and_leaves_with_training_preempted(tmp_path):
    _until_done(tmp_path / "never")
    out = tmp_path / "term"
    out.mkdir()
    stopped = _launch(out, ["TERM1 step 1 4"])  # in the middle of epoch 2's fifth step
    assert stopped.returncode == 3, stopped.stderr[-3000:]
    assert "fit stopped on SIGTERM after epoch 2, batch 5; the newest backup in" in stopped.stderr
    assert sorted(p.name for p in (out / "backup").iterdir())[-1].startswith("backup-")
    with zipfile.ZipFile(sorted((out / "backup").iterdir())[-1]) as backup:
        assert backup.testzip() is None
    assert _launch(out).returncode == 0  # the same command again goes on from the backup
    _same_run(tmp_path / "never", out)


def test_a_sigterm_after_the_last_step_stops_fit_before_the_backups_go(tmp_path):
    """At the last epoch's end there is no step left to finish: fit stops there, keeping the backups (else
    on_train_end would delete them and the relaunch would start from scratch)."""
    _until_done(tmp_path / "never")
    out = tmp_path / "term"
    out.mkdir()
    stopped = _launch(out, [f"TERM1 epoch_end {EPOCHS - 1} 0"])
    assert stopped.returncode == 3, stopped.stderr[-3000:]
    assert "fit stopped on SIGTERM after the last epoch; the newest backup in" in stopped.stderr
    assert any((out / "backup").iterdir())
    assert _launch(out).returncode == 0
    _same_run(tmp_path / "never", out)


def test_a_sigterm_to_the_process_group_leaves_worker_processes_to_the_loader(tmp_path):
    """A scheduler signals the whole group: the worker processes ignore it, so fit still backs up and leaves."""
    out = tmp_path / "group"
    out.mkdir()
    stopped = _launch(out, ["GROUPTERM1 read 0 7"], kind="processes")  # by a worker, while fit waits for a batch
    assert stopped.returncode == 3, stopped.stderr[-3000:]
    assert "fit stopped on SIGTERM after epoch 1, batch" in stopped.stderr
    assert _launch(out, kind="processes").returncode == 0


def test_a_second_sigterm_stops_at_once(tmp_path):
    done = _launch(tmp_path, ["TERM2 step 0 2"])
    assert done.returncode == -signal.SIGTERM, done.stderr[-3000:]
    assert not (tmp_path / "final.npz").exists()


# --- in process -------------------------------------------------------------------------------------------

class Stop(Exception):
    pass


class StopAt(Callback):
    """Raise at the ``at``-th training batch of this fit: what a kill leaves on disk (the backups so far)."""

    def __init__(self, at: int) -> None:
        super().__init__()
        self.at, self.seen = at, 0

    def on_train_batch_end(self, batch, logs=None):
        self.seen += 1
        if self.seen == self.at:
            raise Stop


class CountingCallback(Callback):
    """A user's callback with state of its own, kept through a resume by the documented pair of methods."""

    def __init__(self) -> None:
        super().__init__()
        self.batches = 0

    def on_train_batch_end(self, batch, logs=None):
        self.batches += 1

    def state_dict(self):
        return {"batches": self.batches}

    def load_state_dict(self, state):
        self.batches = state["batches"]


def _data():
    rng = np.random.default_rng(1)
    return rng.standard_normal((40, 6)).astype(np.float32), rng.integers(0, 3, 40)


def _model():
    xpcnn.manual_seed(3)
    model = xpcnn.Sequential([Dense(12), Dropout(0.2), Dense(3)], input_shape=(6,))
    model.compile("cross_entropy", "adam", metrics=["accuracy"])
    return model


def _fit(model, folder, *extra, save_freq=2, **kw):
    x, y = _data()
    return model.fit(x, y, batch_size=8, epochs=3, validation_data=(x[:8], y[:8]), verbose=0,
                     callbacks=[*extra, BackupAndRestore(folder, save_freq=save_freq, **kw)])


def _weights(model):
    return {k: xpcnn.to_numpy(v).tobytes() for k, v in model.state_dict().items()}


def test_a_damaged_newest_backup_is_refused_by_name_and_the_one_before_is_used(backend, tmp_path):
    reference = _model()
    _fit(reference, tmp_path / "ref")
    model = _model()
    with pytest.raises(Stop):
        _fit(model, tmp_path / "b", StopAt(7))  # backups after batches 2, 4 and 6 of 15: the last two kept
    backups = sorted((tmp_path / "b").iterdir())
    assert [p.name for p in backups] == ["backup-000002.xpcnn", "backup-000003.xpcnn"]
    data = bytearray(backups[-1].read_bytes())
    with zipfile.ZipFile(backups[-1]) as archive:  # a byte in the middle of the largest array's data
        info = max(archive.infolist(), key=lambda i: i.file_size)
    name_length, extra_length = (int.from_bytes(data[info.header_offset + k:info.header_offset + k + 2], "little")
                                 for k in (26, 28))
    data[info.header_offset + 30 + name_length + extra_length + info.file_size // 2] ^= 0xFF
    backups[-1].write_bytes(bytes(data))
    model = _model()
    with pytest.warns(RuntimeWarning, match=r"backup-000003\.xpcnn cannot be used .*trying the one before"):
        history = _fit(model, tmp_path / "b")
    assert _weights(model) == _weights(reference)
    assert history.history == reference.history.history


def test_callbacks_go_on_with_their_state(backend, tmp_path):
    def callbacks():
        return [EarlyStopping(monitor="val_loss", patience=5),
                ReduceLROnPlateau(monitor="loss", patience=0, factor=0.5, min_delta=0.5), CountingCallback()]

    reference, ref_callbacks = _model(), callbacks()
    _fit(reference, tmp_path / "ref", *ref_callbacks)
    with pytest.raises(Stop):
        _fit(_model(), tmp_path / "b", *callbacks(), StopAt(9))
    model, resumed = _model(), callbacks()
    _fit(model, tmp_path / "b", *resumed)
    assert _weights(model) == _weights(reference)
    assert resumed[2].batches == ref_callbacks[2].batches == 15  # the user's callback: the batches of the run
    assert (resumed[0].best, resumed[0].wait) == (ref_callbacks[0].best, ref_callbacks[0].wait)
    assert resumed[1].best == ref_callbacks[1].best
    assert float(model.optimizer.lr) == float(reference.optimizer.lr) < 1e-3  # reduced, kept through the resume


def test_a_mixed_float16_run_resumes_with_its_loss_scale(backend, tmp_path):
    """Under mixed_float16 the loss scale and the count of skipped steps are state like the optimizer's
    slots: rows of huge values overflow float16 in some batches (those steps are skipped, the scale halved),
    and the resumed run ends with the bytes and the scale of the run never stopped."""
    try:
        xpcnn.backend.half_dtype("float16")
    except ValueError as exc:
        pytest.skip(str(exc))
    x, y = _data()
    x[::13] *= 1e5  # float16 holds up to 65504: three batches of each epoch overflow

    def run(folder, *extra):
        mixed_precision.set_global_policy("mixed_float16")
        try:
            model = _model()
        finally:
            mixed_precision.set_global_policy("float32")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # NumPy's float16 warning, overflow in casts
            model.fit(x, y, batch_size=8, epochs=3, verbose=0,
                      callbacks=[*extra, BackupAndRestore(folder, save_freq=2)])
        return model

    reference = run(tmp_path / "ref")
    skipped = float(xpcnn.to_numpy(reference.optimizer.state["loss_scale"]["skipped"]))
    assert skipped > 0
    with pytest.raises(Stop):
        run(tmp_path / "b", StopAt(8))
    model = run(tmp_path / "b")
    assert _weights(model) == _weights(reference)
    for name in ("scale", "good_steps", "skipped"):
        assert (xpcnn.to_numpy(model.optimizer.state["loss_scale"][name])
                == xpcnn.to_numpy(reference.optimizer.state["loss_scale"][name])), name


def test_backups_are_kept_or_deleted_at_the_end(backend, tmp_path):
    _fit(_model(), tmp_path / "kept", delete_checkpoint=False)
    assert [p.name for p in sorted((tmp_path / "kept").iterdir())] == ["backup-000006.xpcnn", "backup-000007.xpcnn"]
    model = xpcnn.load_model(tmp_path / "kept" / "backup-000007.xpcnn")  # a backup is a model file too
    assert (model.epoch, model.optimizer.iterations) == (2, 14)  # after batch 14 of 15 (save_freq=2)
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("the user's")
    _fit(_model(), tmp_path / "mine")
    assert [p.name for p in (tmp_path / "mine").iterdir()] == ["notes.txt"]  # only the backups went


def test_the_temp_file_of_a_killed_backup_write_goes_with_the_backups(backend, tmp_path):
    from xpcnn.io.atomic import _host

    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    folder = tmp_path / "b"
    folder.mkdir()
    # the write of the backup after the last one killed (a SIGKILL after a SIGTERM's backup began, say)
    stale = folder / f".backup-000008.xpcnn.{int(gone.stdout)}@{_host()}.x1y2.xpcnn-tmp"
    stale.write_bytes(b"half a backup")
    _fit(_model(), folder)  # backups 1 to 7, then deleted
    assert not folder.exists()


def test_a_backup_of_another_model_is_refused_and_not_used(backend, tmp_path):
    _fit(_model(), tmp_path / "b", delete_checkpoint=False)
    xpcnn.manual_seed(3)
    other = xpcnn.Sequential([Dense(5), Dense(3)], input_shape=(6,))
    other.compile("cross_entropy", "adam")
    x, y = _data()
    with pytest.warns(RuntimeWarning, match="backup of another model"):
        other.fit(x, y, epochs=1, verbose=0, callbacks=[BackupAndRestore(tmp_path / "b")])
    assert other.epoch == 1


def test_the_sigterm_handler_is_there_only_while_fit_runs(backend, tmp_path):
    seen = []

    class Look(Callback):
        def on_train_batch_end(self, batch, logs=None):
            seen.append(signal.getsignal(signal.SIGTERM))

    def mine(signum, frame):
        pass

    previous = signal.signal(signal.SIGTERM, mine)
    try:
        x, y = _data()
        _model().fit(x, y, epochs=1, verbose=0, callbacks=[Look()])
        assert signal.getsignal(signal.SIGTERM) is mine
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert seen and all(handler is not mine for handler in seen)


def test_sigterm_without_a_backup_says_that_nothing_was_saved(backend):
    class Term(Callback):
        def on_train_batch_begin(self, batch, logs=None):
            if batch == 1:
                os.kill(os.getpid(), signal.SIGTERM)

    model = _model()
    x, y = _data()
    with pytest.raises(xpcnn.TrainingPreempted, match=r"after epoch 1, batch 2; nothing was saved"):
        model.fit(x, y, batch_size=8, epochs=2, verbose=0, callbacks=[Term()])
    assert model.optimizer.iterations == 2  # the step under way was finished


@pytest.mark.parametrize("save_freq, problem", [("batch", "save_freq must be 'epoch' or a number of batches"),
                                                (0, "save_freq"), (2.5, "save_freq")])
def test_bad_arguments_are_refused(tmp_path, save_freq, problem):
    with pytest.raises((ValueError, TypeError), match=problem):
        BackupAndRestore(tmp_path, save_freq=save_freq)
    with pytest.raises(ValueError, match="backup_dir must not be empty"):
        BackupAndRestore("")


def test_a_fits_state_is_for_callbacks_while_fit_runs(backend):
    model = _model()
    with pytest.raises(RuntimeError, match="while fit runs"):
        model.training_state()
    with pytest.raises(RuntimeError, match="in on_train_begin of a fit"):
        model.load_training_state({})


def test_an_appended_csv_log_gets_no_duplicate_rows_and_a_removed_one_starts_again(backend, tmp_path):
    from xpcnn.callbacks import CSVLogger

    def logger():
        return CSVLogger(tmp_path / "log.csv", append=True)

    (tmp_path / "log.csv").write_text("epoch,loss\n0,9.0\n")  # an earlier run's row
    with pytest.raises(Stop):
        _fit(_model(), tmp_path / "b", logger(), StopAt(6))  # after epoch 1's row, before a backup holds it
    _fit(_model(), tmp_path / "b", logger())
    rows = (tmp_path / "log.csv").read_text().splitlines()
    assert rows[:2] == ["epoch,loss", "0,9.0"] and [r.split(",")[0] for r in rows[2:]] == ["0", "1", "2"]
    with pytest.raises(Stop):
        _fit(_model(), tmp_path / "c", CSVLogger(tmp_path / "new.csv"), StopAt(12))
    (tmp_path / "new.csv").unlink()
    _fit(_model(), tmp_path / "c", CSVLogger(tmp_path / "new.csv"))
    assert (tmp_path / "new.csv").read_text().splitlines()[0].startswith("epoch,")  # its header again


def test_a_backup_of_a_fit_of_other_length_is_not_used(backend, tmp_path):
    x, y = _data()
    with pytest.raises(Stop):
        _model().fit(x, y, batch_size=8, epochs=2, verbose=0,
                     callbacks=[StopAt(7), BackupAndRestore(tmp_path / "b", save_freq=2)])
    model = _model()
    with pytest.warns(RuntimeWarning, match=r"a fit of 2 epochs of 5 steps, this fit runs 3 of 5 \(one backup folder"):
        model.fit(x, y, batch_size=8, epochs=3, verbose=0, callbacks=[BackupAndRestore(tmp_path / "b")])
    assert model.optimizer.iterations == 15  # from the start


def test_a_shuffled_validation_loader_goes_on_with_its_orders(backend, tmp_path):
    x, y = _data()

    def run(folder, *extra):
        model = _model()
        val = xpcnn.DataLoader(x, y, batch_size=8, shuffle=True, seed=7)  # orders by its own epoch count
        history = model.fit(x, y, batch_size=8, epochs=3, validation_data=val, validation_steps=1, verbose=0,
                            callbacks=[*extra, BackupAndRestore(folder, save_freq=2)])
        return model, history

    reference, expected = run(tmp_path / "ref")
    with pytest.raises(Stop):
        run(tmp_path / "b", StopAt(12))  # in epoch 3, after two validations
    model, history = run(tmp_path / "b")
    assert history.history == expected.history
    assert _weights(model) == _weights(reference)
