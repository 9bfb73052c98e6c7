"""Model files read within a budget: only the arrays the config names are inflated, each after its header;
absurd layers refused before allocation; every field checked, every refusal a ValueError naming the file and
the field; only public, concrete classes can be named; the model given to load_weights left unchanged."""

from __future__ import annotations

import io
import json
import re
import sys
import tracemalloc
import zipfile

import numpy as np
import pytest

import xpcnn
from xpcnn import optimizers
from xpcnn.io import load_model
from xpcnn.layers import Conv2D, Dense, Flatten, MaxPool2D, ReLU
from xpcnn.model import Sequential


def _model() -> Sequential:
    model = Sequential([Conv2D(4, 3, padding="same"), ReLU(), MaxPool2D(2), Flatten(), Dense(3)],
                       input_shape=(1, 8, 8))
    model.compile("cross_entropy", optimizers.Adam(0.01), metrics=["accuracy"])
    rng = np.random.default_rng(0)
    model.fit(rng.standard_normal((16, 1, 8, 8)).astype(np.float32), rng.integers(0, 3, 16), batch_size=8,
              epochs=1, verbose=0)
    return model


def _snapshot(model) -> dict[str, np.ndarray]:
    return {k: np.array(xpcnn.to_numpy(v), copy=True) for k, v in model.state_dict().items()}


def _npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def _rewrite(source, target, edit=None, members=None, zeros: dict[str, int] | None = None) -> None:
    """Copy an xpcnn file, editing its config (``edit(config)``), replacing or adding ``members`` (name -> bytes),
    and adding members of ``zeros[name]`` zero bytes, written in chunks (a zip bomb: tiny compressed)."""
    with zipfile.ZipFile(source) as zin:
        entries = {name: zin.read(name) for name in zin.namelist()}
    config = json.loads(np.load(io.BytesIO(entries["config.npy"])).tobytes())
    if edit is not None:
        edit(config)
    entries["config.npy"] = _npy(np.frombuffer(json.dumps(config).encode(), dtype=np.uint8))
    entries.update(members or {})
    with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_DEFLATED) as zout:
        for name, content in entries.items():
            zout.writestr(name, content)
        for name, size in (zeros or {}).items():
            with zout.open(name, "w", force_zip64=True) as f:
                chunk = bytes(2**20)
                for _ in range(size // len(chunk)):
                    f.write(chunk)


def _saved_member(path, key: str) -> str:
    """Save a trained model at ``path``; the zip member holding its weight ``key``."""
    _model().save(path)
    with zipfile.ZipFile(path) as zf:
        config = json.loads(np.load(io.BytesIO(zf.read("config.npy"))).tobytes())
    return config["weights"][key] + ".npy"


def _peak_mib(action) -> float:
    tracemalloc.start()
    try:
        action()
        return tracemalloc.get_traced_memory()[1] / 2**20
    finally:
        tracemalloc.stop()


def test_members_the_config_does_not_name_are_never_inflated(backend, tmp_path):
    model = _model()
    model.save(tmp_path / "m")
    _rewrite(tmp_path / "m", tmp_path / "bomb", zeros={"junk.npy": 200 * 2**20})
    assert (tmp_path / "bomb").stat().st_size < 2 * 2**20  # 200 MiB of zeros, compressed
    loaded = []
    peak = _peak_mib(lambda: loaded.append(load_model(tmp_path / "bomb")))
    assert peak < 50, f"loading inflated {peak:.0f} MiB"
    for key, value in _snapshot(model).items():
        np.testing.assert_array_equal(_snapshot(loaded[0])[key], value)


def test_an_array_of_the_wrong_shape_is_refused_before_its_data_is_read(backend, tmp_path):
    member = _saved_member(tmp_path / "m", "4.weight")
    big = np.zeros((6000, 6000), np.float32)  # 137 MiB inflated, a few hundred KiB compressed
    _rewrite(tmp_path / "m", tmp_path / "big", members={member: _npy(big)})
    del big
    target = Sequential([Conv2D(4, 3, padding="same"), ReLU(), MaxPool2D(2), Flatten(), Dense(3)],
                        input_shape=(1, 8, 8))
    before = _snapshot(target)

    def refuse():
        with pytest.raises(ValueError, match=r"4\.weight: expected \(3, 64\), got \(6000, 6000\)"):
            load_model(tmp_path / "big")
        with pytest.raises(ValueError, match=r"4\.weight: expected \(3, 64\), got \(6000, 6000\)"):
            target.load_weights(tmp_path / "big")

    assert _peak_mib(refuse) < 50
    for key, value in _snapshot(target).items():
        np.testing.assert_array_equal(before[key], value)


def test_a_header_that_does_not_match_its_member_is_refused(backend, tmp_path):
    member = _saved_member(tmp_path / "m", "0.bias")
    lying = _npy(np.zeros(4, np.float32))[:-8]  # the header says 4 values, the member holds 2
    _rewrite(tmp_path / "m", tmp_path / "lie", members={member: lying})
    with pytest.raises(ValueError, match=r"header declares \(4,\) of float32 \(16 bytes\) but the member holds 8"):
        load_model(tmp_path / "lie")
    _rewrite(tmp_path / "m", tmp_path / "objects", members={member: _npy(np.array(["a", "b"]))})
    with pytest.raises(ValueError, match="holds <U1 values; xpcnn files hold numbers only"):
        load_model(tmp_path / "objects")


def test_an_absurd_layer_is_refused_before_allocation(backend, tmp_path):
    model = _model()
    model.save(tmp_path / "m")

    def huge(config):
        config["architecture"]["layers"][4]["config"]["out_features"] = 10**12

    _rewrite(tmp_path / "m", tmp_path / "huge", edit=huge)
    state = xpcnn.random.get_state()
    peak = _peak_mib(lambda: pytest.raises(ValueError, load_model, tmp_path / "huge"))
    assert peak < 20
    with pytest.raises(ValueError, match=r"field architecture.*Dense 'dense.*\(1000000000000, 64\).*more than the "
                                         r"limit of 2,147,483,648 per array.*max_array_elements="):
        load_model(tmp_path / "huge")
    assert xpcnn.random.get_state() == state
    with pytest.raises(ValueError, match=r"\(4, 1, 3, 3\) would hold 36 values, more than the limit of 10"):
        load_model(tmp_path / "m", max_array_elements=10)
    load_model(tmp_path / "m", max_array_elements=192)  # the largest array, Dense's (3, 64): just fits


def _set(field: str, value):
    """An edit setting the dotted/indexed ``field`` of the config to ``value``."""
    def edit(config):
        keys = [int(k) if k.isdigit() else k for k in field.replace("[", ".").replace("]", "").split(".")]
        target = config
        for key in keys[:-1]:
            target = target[key]
        target[keys[-1]] = value
    return edit


def _nest(config):
    deep: list = []
    for _ in range(500):  # (deeper than json.dumps can write here; json.loads fails near 1000)
        deep = [deep]
    config["saved_from"] = deep


#: Who must refuse a bad field. Both readers: every field the file's schema checks (types, ranges, the arrays
#: named, in every section). load_model alone: what only rebuilding checks (a layer's config, the loss, the
#: optimizer and metrics by name); load_weights rebuilds none of it (the model it is given is the architecture)
#: and must load the weights.
BOTH, MODEL_ONLY = "both readers", "load_model only"


@pytest.mark.parametrize(("edit", "message", "who"), [
    (_set("version", "1"), "field version must be a positive integer", BOTH),
    (_set("epoch", "abc"), "field epoch must be an integer, got str 'abc'", BOTH),
    (_set("epoch", -3), r"field epoch must lie in \[0, inf\], got -3", BOTH),
    (_set("architecture", []), "field architecture must be an object, got list", BOTH),
    (_set("architecture.layers", "x"), "field architecture.layers must be a list, got str", BOTH),
    (_set("architecture.input_shape", [1, 0, 8]), r"field architecture.input_shape\[1\] must lie in", BOTH),
    (_set("architecture.layers[0].class_name", "_ConvBase"), r"architecture.layers\[0\].class_name unknown layer "
                                                             "type '_ConvBase'", BOTH),
    (_set("architecture.layers[0].class_name", "Layer"),
     r"field architecture.layers\[0\].class_name unknown layer type 'Layer'", BOTH),
    (_set("architecture.layers[0].class_name", 7), r"field architecture.layers\[0\].class_name must be a string",
     BOTH),
    (_set("architecture.layers[0].config", {"out_channels": "many", "kernel_size": 3}),
     r"field architecture: cannot rebuild it: layers\[0\] \(Conv2D\)", MODEL_ONLY),
    (_set("architecture.layers[0].config", {"kernel_size": 3, "colour": "red"}),
     r"layers\[0\] \(Conv2D\).*colour", MODEL_ONLY),
    (_set("architecture.layers[0].config", {"out_channels": 4, "kernel_size": 3, "bias": "false"}),
     r"layers\[0\] \(Conv2D\).*bias must be True or False, got str 'false'", MODEL_ONLY),
    (_set("weights", {"0.weight": 5}), r"field weights\['0.weight'\] must be a string, got int", BOTH),
    (_set("weights", {"0.weight": "a999"}), r"weights\['0.weight'\] names array 'a999', which the file does not",
     BOTH),
    (_set("optimizer_state.iterations", -1), r"field optimizer_state.iterations must lie in \[0, inf\]", BOTH),
    (_set("optimizer_state.steps", {"0.weight": "x"}),
     r"field optimizer_state.steps\['0.weight'\] must be an integer", BOTH),
    (_set("random_state.seed", "x"), "field random_state.seed must be an integer", BOTH),
    (_set("compile.loss", 3), "field compile.loss must be an object, got int", BOTH),
    (_set("compile.loss.name", "hinge"), "field compile.loss: cannot rebuild it: unknown loss 'hinge'", MODEL_ONLY),
    (_set("compile.optimizer.name", "Optimizer"), "field compile.optimizer: cannot rebuild it: unknown optimizer",
     MODEL_ONLY),
    (_set("compile.optimizer.lr", "fast"), "field compile.optimizer: cannot rebuild it", MODEL_ONLY),
    (_set("compile.metrics", [{"class_name": "Metric", "config": {}}]),
     "field compile: cannot compile with it: unknown metric class 'Metric'", MODEL_ONLY),
    (_nest, "the config nests 50[0-9] levels deep, more than the 64", BOTH),
    (_set("compile.optimizer.lr", 10**400), "field compile.optimizer: cannot rebuild it", MODEL_ONLY),
    (_set("compile.metrics", [{"class_name": "Accuracy", "config": {}}, [{"class_name": "Accuracy"}]]),
     "field compile.metrics must be a list of metrics or a list of lists", BOTH),
])
def test_every_field_is_checked_and_named(backend, tmp_path, edit, message, who):
    model = _model()
    model.save(tmp_path / "m")
    _rewrite(tmp_path / "m", tmp_path / "bad", edit=edit)
    with pytest.raises(ValueError, match=message) as info:
        load_model(tmp_path / "bad")
    assert str(tmp_path / "bad") in str(info.value)
    target = Sequential([Conv2D(4, 3, padding="same"), ReLU(), MaxPool2D(2), Flatten(), Dense(3)],
                        input_shape=(1, 8, 8))
    before = _snapshot(target)
    if who == BOTH:
        with pytest.raises(ValueError, match=message) as info:
            target.load_weights(tmp_path / "bad")
        assert str(tmp_path / "bad") in str(info.value)
        expected = before  # refused: untouched
    else:
        target.load_weights(tmp_path / "bad")
        expected = _snapshot(model)
    for key, value in expected.items():
        np.testing.assert_array_equal(_snapshot(target)[key], value)


def test_only_public_concrete_layer_classes_register():
    from xpcnn.layers.base import _REGISTRY

    assert not [name for name in _REGISTRY if name.startswith("_")]
    assert {"Conv2D", "Dense", "InputLayer", "Add", "BatchNorm2D"} <= set(_REGISTRY)



def _flag_member(raw: bytes, member: bytes, flag_bits: int = 0, method: int | None = None) -> bytes:
    """The zip ``raw`` with ``member``'s general-purpose flags or compression method changed in its local and
    central headers (what an encrypted member, or one of an unknown method, looks like to zipfile)."""
    data = bytearray(raw)
    for signature, flags_at, name_at in ((b"PK\x03\x04", 6, 30), (b"PK\x01\x02", 8, 46)):
        start = 0
        while (start := data.find(signature, start)) != -1:
            if data[start + name_at:start + name_at + len(member)] == member:
                data[start + flags_at] |= flag_bits
                if method is not None:
                    data[start + flags_at + 2:start + flags_at + 4] = method.to_bytes(2, "little")
            start += 4
    return bytes(data)


@pytest.mark.parametrize(("flags", "method"), [(1, None), (0, 99)], ids=["encrypted", "unknown-method"])
@pytest.mark.parametrize("member", ["config", "weight"])
def test_encrypted_or_unknown_members_are_refused_as_damaged(backend, tmp_path, flags, method, member):
    name = "config.npy" if member == "config" else _saved_member(tmp_path / "m", "0.weight")
    if member == "config":
        _model().save(tmp_path / "m")
    bad = tmp_path / "bad"
    bad.write_bytes(_flag_member((tmp_path / "m").read_bytes(), name.encode(), flags, method))
    with pytest.raises(ValueError, match="damaged"):
        load_model(bad)


def test_an_architecture_larger_than_the_files_weights_is_refused_before_allocation(backend, tmp_path):
    def grow(config):
        layers = config["architecture"]["layers"]
        layers[4:] = [{"class_name": "Dense", "config": {"out_features": 3000}} for _ in range(6)]

    _model().save(tmp_path / "m")
    _rewrite(tmp_path / "m", tmp_path / "grown", edit=grow)
    assert _peak_mib(lambda: pytest.raises(ValueError, load_model, tmp_path / "grown")) < 20
    with pytest.raises(ValueError, match="would take the model past the values its file's weights hold"):
        load_model(tmp_path / "grown")


def test_a_deep_graph_model_saves_and_loads(backend, tmp_path):
    inputs = xpcnn.Input((2,))
    h = inputs
    for _ in range(1500):  # deeper than Python's recursion limit
        h = ReLU()(h)
    model = xpcnn.Model(inputs, Dense(2)(h))
    model.save(tmp_path / "deep")
    assert len(load_model(tmp_path / "deep").layers) == 1501


def _adam_file(path, units: int = 700) -> Sequential:
    """A Dense model trained one step with Adam, saved at ``path``: weights and optimizer slots of 700 x 400
    float32 (1.1 MB, more than one chunk of ``Archive.verify``)."""
    model = Sequential([Dense(units)], input_shape=(400,))
    model.compile("mse", optimizers.Adam(0.01))
    rng = np.random.default_rng(0)
    model.fit(rng.standard_normal((4, 400)).astype(np.float32), rng.standard_normal((4, units)).astype(np.float32),
              batch_size=4, epochs=1, verbose=0)
    model.save(path)
    return model


def _flip(raw: bytes, info: zipfile.ZipInfo, from_end: int) -> bytes:
    """The zip ``raw`` with one byte of ``info``'s member flipped, ``from_end`` bytes before the end of its data
    (stored uncompressed, as np.savez writes it)."""
    at = info.header_offset
    data = at + 30 + int.from_bytes(raw[at + 26:at + 28], "little") + int.from_bytes(raw[at + 28:at + 30], "little")
    damaged = bytearray(raw)
    damaged[data + info.compress_size - from_end] ^= 0x55
    return bytes(damaged)


def test_a_flipped_byte_in_any_member_is_refused_by_both_readers_naming_the_member(backend, tmp_path):
    model = _adam_file(tmp_path / "m")
    raw = (tmp_path / "m").read_bytes()
    with zipfile.ZipFile(tmp_path / "m") as zf:
        infos = zf.infolist()
    assert {info.filename for info in infos} == {"config.npy", *(f"a{i}.npy" for i in range(6))}
    assert all(info.compress_type == zipfile.ZIP_STORED for info in infos)
    target = Sequential([Dense(700)], input_shape=(400,))
    before = _snapshot(target)
    bad = tmp_path / "bad"
    for info in infos:
        bad.write_bytes(_flip(raw, info, from_end=3))
        message = (rf"{re.escape(str(bad))}: array '{info.filename}' \(.*\) is damaged.*Bad CRC-32 for file "
                   rf"'{info.filename}'")
        with pytest.raises(ValueError, match=message):
            load_model(bad)
        with pytest.raises(ValueError, match=message):
            target.load_weights(bad)  # which never reads the optimizer state
        for key, value in _snapshot(target).items():
            np.testing.assert_array_equal(before[key], value)
    bad.write_bytes(_flip(raw, next(i for i in infos if i.filename == "a2.npy"), from_end=3))
    with zipfile.ZipFile(tmp_path / "m") as zf:  # the field that names a2 (slot order follows the backend's)
        config = json.loads(np.lib.format.read_array(io.BytesIO(zf.read("config.npy"))).tobytes())
    (key, slot), = [(k, n) for k, slots in config["optimizer_state"]["state"].items() for n, a in slots.items()
                    if a == "a2"]
    with pytest.raises(ValueError, match=re.escape(f"'a2.npy' (optimizer_state.state[{key!r}][{slot!r}])")):
        target.load_weights(bad)  # the field naming the member
    target.load_weights(tmp_path / "m")
    for key, value in _snapshot(model).items():
        np.testing.assert_array_equal(_snapshot(target)[key], value)


def test_verifying_a_member_holds_one_chunk_at_a_time(backend, tmp_path):
    from xpcnn.io.archive import CHUNK_BYTES, Archive

    assert CHUNK_BYTES <= 2**20
    member = _saved_member(tmp_path / "m", "4.weight")
    noise = np.random.default_rng(0).integers(0, 256, 24 * 2**20, dtype=np.uint8)  # 24 MiB, incompressible
    _rewrite(tmp_path / "m", tmp_path / "big", members={member: _npy(noise)})
    del noise
    with Archive(tmp_path / "big") as archive:
        peak = _peak_mib(lambda: archive.verify([(member[:-4], "weights['4.weight']")]))
    assert peak < 4, f"verifying held {peak:.1f} MiB"


@pytest.mark.parametrize("state", ["missing", None])
def test_restoring_the_random_state_of_a_file_that_records_none_is_refused(backend, tmp_path, state):
    _model().save(tmp_path / "m")

    def drop(config):
        if state == "missing":
            del config["random_state"]
        else:
            config["random_state"] = None

    _rewrite(tmp_path / "m", tmp_path / "stateless", edit=drop)
    xpcnn.manual_seed(7)
    before = xpcnn.random.get_state()
    message = f"{re.escape(str(tmp_path / 'stateless'))} records no random state .*restore_random_state=False"
    with pytest.raises(ValueError, match=message):
        load_model(tmp_path / "stateless", restore_random_state=True)
    assert xpcnn.random.get_state() == before
    load_model(tmp_path / "stateless")  # nothing asked of the random state: loads
    assert xpcnn.random.get_state() == before


class _AnyIntDigits:
    """Lift Python's limit on the digits of an int converted to text, to write a file holding a huge one."""

    def __enter__(self) -> None:
        self.limit = sys.get_int_max_str_digits()
        sys.set_int_max_str_digits(0)

    def __exit__(self, *exc: object) -> None:
        sys.set_int_max_str_digits(self.limit)


@pytest.mark.parametrize("field", [
    "architecture.layers[4].config.out_features", "architecture.input_shape[1]", "epoch", "compile.optimizer.lr",
    "optimizer_state.iterations", "random_state.seed", "saved_from.device", "weights['4.bias']",
])
@pytest.mark.parametrize("sign", [1, -1], ids=["positive", "negative"])
def test_an_integer_too_long_to_read_is_refused_by_its_field(backend, tmp_path, field, sign):
    _model().save(tmp_path / "m")

    def weights(config):
        config["weights"]["4.bias"] = sign * 10**4999

    with _AnyIntDigits():
        _rewrite(tmp_path / "m", tmp_path / "long",
                 edit=weights if field.startswith("weights") else _set(field, sign * 10**4999))
    message = (rf"{re.escape(str(tmp_path / 'long'))}: field {re.escape(field)} holds an integer Python "
               "cannot read: got a 5000-digit number")
    with pytest.raises(ValueError, match=message):
        load_model(tmp_path / "long")
    target = Sequential([Conv2D(4, 3, padding="same"), ReLU(), MaxPool2D(2), Flatten(), Dense(3)],
                        input_shape=(1, 8, 8))
    with pytest.raises(ValueError, match=message):
        target.load_weights(tmp_path / "long")
