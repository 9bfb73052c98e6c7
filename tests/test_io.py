"""Saving and loading: one file at exactly the given path, atomic writes, no pickle, clear errors that leave
the model untouched, and loading on another backend."""

from __future__ import annotations

import errno
import json
import os
import re
import zipfile

import array_api_compat
import numpy as np
import pytest

import xpcnn
from xpcnn import optimizers
from xpcnn.io import atomic, load_model, save_model
from xpcnn.layers.activations import ReLU
from xpcnn.layers.conv import Conv2D
from xpcnn.layers.dense import Dense
from xpcnn.layers.pool import MaxPool2D
from xpcnn.layers.reshape import Flatten
from xpcnn.metrics import TopKAccuracy
from xpcnn.model import Sequential


def host(a) -> np.ndarray:
    return np.array(xpcnn.to_numpy(a), dtype=np.float64, copy=True)


def snapshot(model: Sequential) -> dict[str, np.ndarray]:
    return {k: host(v) for k, v in model.state_dict().items()}


def optimizer_snapshot(optimizer) -> dict[str, np.ndarray]:
    """The optimizer's slots (``"<param>/<slot>"``) and step counts (``"<param>/steps"``) as host arrays."""
    state = optimizer.state_dict()
    slots = {f"{k}/{s}": host(v) for k, buffers in state["state"].items() for s, v in buffers.items()}
    return slots | {f"{k}/steps": np.asarray(int(v)) for k, v in state["steps"].items()}


def assert_same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def data(n: int = 24, seed: int = 0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, 1, 8, 8)).astype(np.float32), rng.integers(0, 3, size=n).astype(np.int64)


def make_model(classes: int = 3) -> Sequential:
    return Sequential([Conv2D(4, 3, padding="same"), ReLU(), MaxPool2D(2), Flatten(), Dense(classes)],
                      input_shape=(1, 8, 8))


def trained_model() -> Sequential:
    model = make_model()
    model.compile("cross_entropy", optimizers.Adam(0.01, betas=(0.8, 0.9)), metrics=["accuracy", TopKAccuracy(2)])
    model.fit(*data(), batch_size=8, epochs=2, verbose=0)
    return model


def test_save_and_load_model_round_trip(backend, tmp_path):
    model = trained_model()
    path = tmp_path / "model.xpcnn"
    model.save(path)
    assert sorted(os.listdir(tmp_path)) == ["model.xpcnn"]  # one file, no temp file left behind
    loaded = load_model(path)
    assert isinstance(loaded, Sequential) and loaded.input_shape == (1, 8, 8)
    assert [type(layer).__name__ for layer in loaded.layers] == [type(layer).__name__ for layer in model.layers]
    assert_same(snapshot(model), snapshot(loaded))
    x, y = data(10, seed=3)
    np.testing.assert_array_equal(host(loaded.predict(x)), host(model.predict(x)))
    assert loaded.loss.name == "cross_entropy"
    assert loaded.optimizer.get_config() == model.optimizer.get_config()
    assert loaded.metrics_names == ["loss", "accuracy", "top_2_accuracy"]
    assert loaded.epoch == 2 and loaded.optimizer.iterations == model.optimizer.iterations == 6
    a, b = model.optimizer.state_dict()["state"], loaded.optimizer.state_dict()["state"]
    assert a.keys() == b.keys()
    for k in a:
        assert_same({s: host(v) for s, v in a[k].items()}, {s: host(v) for s, v in b[k].items()})
    # training continues identically in both
    state = xpcnn.random.get_state()
    h1 = model.fit(*data(), batch_size=8, epochs=3, initial_epoch=2, verbose=0).history
    xpcnn.random.set_state(state)
    h2 = loaded.fit(*data(), batch_size=8, epochs=3, initial_epoch=2, verbose=0).history
    assert h1 == h2


def test_arrays_read_from_a_file_are_writable(tmp_path):
    """A backend may share the host buffer (torch.asarray does): it must not be a read-only bytes object."""
    import zipfile

    from xpcnn.io.archive import Archive

    path = tmp_path / "model.xpcnn"
    trained_model().save(path)
    names = [n[:-4] for n in zipfile.ZipFile(path).namelist() if n != "config.npy"]
    with Archive(path) as archive:
        arrays = [np.asarray(archive.member(name, "test")) for name in names]
    assert len(arrays) > 4 and all(a.flags.writeable for a in arrays)


@pytest.mark.parametrize("name", ["model", "model.h5", "weights.pt", "m.npz"])
def test_file_lands_at_exactly_the_given_path(backend, tmp_path, name):
    model = make_model()
    model.save(tmp_path / name)
    assert os.listdir(tmp_path) == [name]
    model.save_weights(tmp_path / f"w-{name}")
    assert sorted(os.listdir(tmp_path)) == sorted([name, f"w-{name}"])
    with zipfile.ZipFile(tmp_path / name) as zf:  # a plain zip of .npy entries with a JSON config
        assert "config.npy" in zf.namelist()
    with np.load(tmp_path / name, allow_pickle=False) as npz:
        config = json.loads(npz["config"].tobytes().decode())
    assert config["format"] == "xpcnn.model"
    assert config["architecture"]["layers"][0] == {
        "class_name": "Conv2D", "config": json.loads(json.dumps(model.layers[0].get_config())),
    }
    assert config["architecture"]["input_shape"] == [1, 8, 8]
    assert config["random_state"] == xpcnn.random.get_state()


def test_uncompiled_model_and_weights_files(backend, tmp_path):
    model = make_model()
    model.save(tmp_path / "m")
    loaded = load_model(tmp_path / "m")
    assert not loaded.compiled
    assert_same(snapshot(model), snapshot(loaded))
    model.save_weights(tmp_path / "w")
    other = make_model()
    other.load_weights(tmp_path / "w")
    assert_same(snapshot(model), snapshot(other))
    third = make_model()
    third.load_weights(tmp_path / "m")  # a full model file holds the weights too
    assert_same(snapshot(model), snapshot(third))
    with pytest.raises(ValueError, match="weights only"):
        load_model(tmp_path / "w")
    unbuilt = Sequential([Conv2D(4, 3, padding="same"), ReLU(), MaxPool2D(2), Flatten(), Dense(3)])
    unbuilt.load_weights(tmp_path / "w")  # built from the recorded input shape
    assert_same(snapshot(model), snapshot(unbuilt))


def test_load_model_leaves_the_random_stream_unless_asked(backend, tmp_path):
    model = make_model()
    xpcnn.manual_seed(123)
    xpcnn.random.uniform((3,))
    saved_state = xpcnn.random.get_state()
    model.save(tmp_path / "m")
    xpcnn.manual_seed(7)
    before = xpcnn.random.get_state()
    load_model(tmp_path / "m")
    assert xpcnn.random.get_state() == before
    load_model(tmp_path / "m", restore_random_state=True)
    assert xpcnn.random.get_state() == saved_state


def test_model_saved_on_numpy_resumes_on_the_session_backend_as_if_never_interrupted(backend, tmp_path):
    """Weights and optimizer state cross backends: a model trained two epochs on NumPy, saved, loaded here and
    trained a third epoch ends where the NumPy model ends its own third epoch in memory (to float32 rounding:
    another backend's arithmetic). A lost Adam moment or step count moves the weights by about the learning
    rate. No shuffling in the third epoch: each backend draws its own permutations."""
    x, _ = data(9, seed=5)
    resume = {"batch_size": 8, "epochs": 3, "initial_epoch": 2, "shuffle": False, "verbose": 0}
    with xpcnn.use_backend("numpy"):
        model = trained_model()
        expected = host(model.predict(x))
        model.save(tmp_path / "numpy-model")
        model.fit(*data(), **resume)
        uninterrupted = snapshot(model), optimizer_snapshot(model.optimizer)
    loaded = load_model(tmp_path / "numpy-model")
    for v in loaded.params.values():
        assert array_api_compat.device(v) == backend.device and v.dtype == backend.dtype
    np.testing.assert_allclose(host(loaded.predict(x)), expected, rtol=1e-5, atol=1e-5)
    loaded.fit(*data(), **resume)
    assert loaded.epoch == 3 and loaded.optimizer.iterations == 9
    for ours, theirs in zip((snapshot(loaded), optimizer_snapshot(loaded.optimizer)), uninterrupted):
        assert ours.keys() == theirs.keys()
        for k in ours:
            np.testing.assert_allclose(ours[k], theirs[k], rtol=1e-4, atol=1e-6, err_msg=k)


# --- damaged, foreign and mismatched files ---------------------------------------------------------------

def _foreign_files(tmp_path) -> dict:
    """Files that are not xpcnn files, each with what its refusal must say after naming it."""
    text = tmp_path / "notes.txt"
    text.write_text("hello, not a model\n")
    npy = tmp_path / "array.npy"
    np.save(npy, np.arange(5))
    plain_npz = tmp_path / "plain.npz"
    np.savez(plain_npz, weights=np.ones(3))
    bad_json = tmp_path / "badjson"
    with open(bad_json, "wb") as f:
        np.savez(f, config=np.frombuffer(b"{not json", dtype=np.uint8))
    other_zip = tmp_path / "other.zip"
    with zipfile.ZipFile(other_zip, "w") as zf:
        zf.writestr("readme.txt", "a zip, but not ours")
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    not_ours = r" is not an xpcnn model/weights file \(not a zip archive written by xpcnn; it starts with "
    return {
        text: not_ours + "b'hello,'",
        npy: r" holds a single NumPy array \(\.npy\), not an xpcnn model/weights file",
        plain_npz: r" is a NumPy \.npz archive but not an xpcnn file \(it has no xpcnn config entry\)",
        bad_json: ": the config entry is not valid JSON; the file is damaged",
        other_zip: r" is a NumPy \.npz archive but not an xpcnn file",
        empty: not_ours + "b''",
    }


def test_foreign_files_are_refused_clearly(backend, tmp_path):
    model = make_model()
    before = snapshot(model)
    for path, message in _foreign_files(tmp_path).items():
        for load in (load_model, model.load_weights):
            with pytest.raises(ValueError, match=re.escape(str(path)) + message):
                load(path)
    assert_same(before, snapshot(model))
    for load in (load_model, model.load_weights):
        with pytest.raises(FileNotFoundError, match="no such file: " + re.escape(str(tmp_path / "missing"))):
            load(tmp_path / "missing")


@pytest.mark.parametrize("keep", [0.3, 0.6, 0.95])
def test_truncated_file_is_refused_and_model_untouched(backend, tmp_path, keep):
    model = trained_model()
    path = tmp_path / "m.xpcnn"
    model.save(path)
    raw = path.read_bytes()
    cut = tmp_path / "cut.xpcnn"
    cut.write_bytes(raw[: int(len(raw) * keep)])
    target = make_model()
    before = snapshot(target)
    for load in (load_model, target.load_weights):
        with pytest.raises(ValueError, match=re.escape(str(cut)) + " is damaged or truncated"):
            load(cut)
    assert_same(before, snapshot(target))


def test_pickled_content_is_never_executed(backend, tmp_path):
    marker = tmp_path / "executed"

    class Evil:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    path = tmp_path / "evil"
    with open(path, "wb") as f:
        np.savez(f, config=np.array([Evil()], dtype=object))
    with pytest.raises(ValueError, match="holds object values; xpcnn files hold numbers only"):
        load_model(path)
    assert not marker.exists()


def test_weights_of_another_architecture_are_refused(backend, tmp_path):
    source = make_model(classes=5)
    source.save(tmp_path / "five")
    source.save_weights(tmp_path / "five-w")
    target = make_model(classes=3)
    before = snapshot(target)
    for path in ("five", "five-w"):
        with pytest.raises(ValueError, match=r"another architecture.*4\.weight: expected \(3, 64\), got \(5, 64\)"):
            target.load_weights(tmp_path / path)
    assert_same(before, snapshot(target))
    # same keys and shapes, but a different layer type holding them
    square = Sequential([Flatten(), Dense(16), ReLU(), Dense(3)], input_shape=(16,))
    square.save_weights(tmp_path / "dense")
    conv_like = Sequential([Flatten(), Dense(16), ReLU(), Dense(3)], input_shape=(16,))
    conv_like.load_weights(tmp_path / "dense")  # the same architecture loads
    deeper = Sequential([Flatten(), Dense(16), ReLU(), Dense(3), ReLU(), Dense(2)], input_shape=(16,))
    before = snapshot(deeper)
    with pytest.raises(ValueError, match="another architecture"):
        deeper.load_weights(tmp_path / "dense")
    assert_same(before, snapshot(deeper))


def test_failed_save_leaves_the_existing_file_intact(backend, tmp_path, monkeypatch):
    model = make_model()
    path = tmp_path / "m.xpcnn"
    model.save(path)
    original = path.read_bytes()

    def broken_savez(f, **arrays):
        f.write(b"PK\x03\x04 half a zip")
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", broken_savez)
    with pytest.raises(OSError, match="disk full"):
        make_model().save(path)
    with pytest.raises(OSError, match="disk full"):
        make_model().save_weights(path)
    monkeypatch.undo()
    assert path.read_bytes() == original
    assert os.listdir(tmp_path) == ["m.xpcnn"]
    # a configuration that cannot be written fails before the file is touched
    bad = make_model()
    bad.layers[0].get_config = lambda: {"kernel": object()}
    with pytest.raises(ValueError, match="JSON"):
        save_model(bad, path)
    assert path.read_bytes() == original and os.listdir(tmp_path) == ["m.xpcnn"]
    assert_same(snapshot(model), snapshot(load_model(path)))


def test_save_needs_a_built_model_and_an_existing_folder(backend, tmp_path):
    with pytest.raises(ValueError, match="not built"):
        Sequential([Dense(3)]).save(tmp_path / "m")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        make_model().save(tmp_path / "no" / "such" / "m")




_KILLED_SAVE = """
import os, signal, sys
import numpy as np
import xpcnn
from xpcnn.layers import Dense
model = xpcnn.Sequential([Dense(3)], input_shape=(4,))
real_savez = np.savez
def savez_then_die(f, **entries):
    f.write(b"PK half an archive")
    f.flush()
    os.kill(os.getpid(), signal.SIGKILL)
np.savez = savez_then_die
model.save(sys.argv[1])
"""


@pytest.mark.skipif(os.name != "posix", reason="SIGKILL and the stale-file check are POSIX")
def test_a_save_killed_mid_write_keeps_the_old_file_and_the_next_save_removes_its_temporary(backend, tmp_path):
    import subprocess
    import sys

    path = tmp_path / "m.xpcnn"
    make_model().save(path)
    original = path.read_bytes()
    script = tmp_path / "killed_save.py"
    script.write_text(_KILLED_SAVE)
    result = subprocess.run([sys.executable, str(script), str(path)], capture_output=True, timeout=120)
    assert result.returncode == -9, result.stderr.decode()[-2000:]
    assert path.read_bytes() == original  # the old file is whole
    left = [name for name in os.listdir(tmp_path) if name.endswith(".xpcnn-tmp")]
    assert len(left) == 1 and left[0].startswith(".m.xpcnn.")  # named after its target
    assert "@" in left[0]  # and its writer's host
    host = left[0].split("@")[1].split(".")[0]
    live = tmp_path / f".m.xpcnn.{os.getppid()}@{host}.abc.xpcnn-tmp"  # a save still running in another process
    other = tmp_path / f".n.xpcnn.999999999@{host}.abc.xpcnn-tmp"  # a dead writer, but of another target: kept
    remote = tmp_path / ".m.xpcnn.999999999@elsewhere.abc.xpcnn-tmp"  # a pid on another host means nothing here
    similar = tmp_path / f".m.xpcnn.999999999@{host[:-1]}x.abc.xpcnn-tmp"  # another host with a name alike
    unnamed = tmp_path / ".m.xpcnn.999999999.abc.xpcnn-tmp"  # no host (as earlier versions named them): here
    for kept in (live, other, remote, similar, unnamed):
        kept.write_bytes(b"")
    make_model().save(path)
    assert sorted(os.listdir(tmp_path)) == sorted(["m.xpcnn", "killed_save.py", live.name, other.name, remote.name,
                                                   similar.name])
    load_model(path)


def test_a_bad_destination_is_named_as_given(backend, tmp_path):
    model = make_model()
    with pytest.raises(ValueError, match="the path is empty"):
        model.save("")
    with pytest.raises(IsADirectoryError, match=f"cannot save to {tmp_path}: it is a directory"):
        model.save(tmp_path)
    with pytest.raises(FileNotFoundError, match="cannot save to .*missing.*m: the folder .* does not exist"):
        model.save_weights(tmp_path / "missing" / "m")
    blocked = tmp_path / "file"
    blocked.write_text("not a folder")
    with pytest.raises(OSError) as info:
        model.save(blocked / "m")  # a path through a file: the folder is unreachable
    assert str(blocked / "m") in str(info.value) and ".xpcnn-tmp" not in str(info.value)
    with pytest.raises(NotADirectoryError, match="is not a folder"):
        model.save(blocked / "m")
    with pytest.raises(NotADirectoryError, match="the folder .*file.*deeper cannot be reached: Not a directory"):
        model.save(blocked / "deeper" / "m")


def _without_search_permission(monkeypatch, folder) -> None:
    """Make ``folder`` behave as a folder without search (x) permission does for a user who is not root: it can
    be listed from outside, but nothing inside it can be reached (stat refuses with EACCES)."""
    real_stat, inside = os.stat, str(folder) + os.sep

    def stat(path, *args, **kwargs):
        if os.fspath(path).startswith(inside):
            raise PermissionError(errno.EACCES, "Permission denied", os.fspath(path))
        return real_stat(path, *args, **kwargs)

    monkeypatch.setattr(atomic.os, "stat", stat)


def test_a_folder_that_cannot_be_reached_is_reported_as_such_not_as_missing(backend, tmp_path, monkeypatch):
    (tmp_path / "locked" / "models").mkdir(parents=True)
    target = tmp_path / "locked" / "models" / "m"
    _without_search_permission(monkeypatch, tmp_path / "locked")
    with pytest.raises(PermissionError, match=f"^cannot save to {re.escape(str(target))}: permission denied: the "
                                              f"folder {re.escape(str(target.parent))} cannot be reached"):
        make_model().save(target)
    monkeypatch.undo()
    assert os.listdir(tmp_path / "locked" / "models") == []


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0,
                    reason="root reaches into a folder without search permission: no refusal")
def test_a_folder_behind_one_without_search_permission_is_reported_as_such(backend, tmp_path):
    (tmp_path / "locked" / "models").mkdir(parents=True)
    (tmp_path / "locked").chmod(0o600)
    try:
        with pytest.raises(PermissionError, match="permission denied: the folder .*models cannot be reached"):
            make_model().save(tmp_path / "locked" / "models" / "m")
    finally:
        (tmp_path / "locked").chmod(0o700)


def _refuse(monkeypatch, refusal: str, folder) -> None:
    """Make the file system refuse a save into ``folder`` as it would: the folder read-only (really), the temp
    file's creation refused, or its rename over the target refused (a PermissionError naming the temp file)."""
    if refusal == "folder":
        folder.chmod(0o500)
    elif refusal == "create":
        def mkstemp(prefix="", suffix="", dir=None):
            raise PermissionError(errno.EACCES, "Permission denied", os.path.join(dir, f"{prefix}abc{suffix}"))

        monkeypatch.setattr(atomic.tempfile, "mkstemp", mkstemp)
    else:
        def replace(src, dst):
            raise PermissionError(errno.EACCES, "Permission denied", src, None, dst)

        monkeypatch.setattr(atomic.os, "replace", replace)


@pytest.mark.parametrize("refusal", [
    pytest.param("folder", marks=pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0,
                                                    reason="root writes into a read-only folder: no refusal")),
    "create", "rename",
])
def test_a_refused_save_names_the_destination_and_leaves_no_temporary(backend, tmp_path, monkeypatch, refusal):
    """The user's path in the message, never the temp file the refusal was about; the temp file removed."""
    folder = tmp_path / "locked"
    folder.mkdir()
    _refuse(monkeypatch, refusal, folder)
    with pytest.raises(PermissionError, match=f"^cannot save to {re.escape(str(folder / 'm'))}: Permission denied$"):
        make_model().save(folder / "m")
    assert os.listdir(folder) == []
