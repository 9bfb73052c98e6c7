"""PyTorch checkpoints read without torch: what torch.save writes (zip and legacy formats) reads back exactly in
a process where torch cannot be imported; hostile files are refused with nothing executed (a sentinel file the
payload would create never exists) and nothing allocated beyond what the file justifies; load_weights takes
these files and predicts as torch does."""

from __future__ import annotations

import hashlib
import io
import json
import pathlib
import pickle
import struct
import subprocess
import sys
import tracemalloc
import zipfile
from collections.abc import Callable

import numpy as np
import pytest

from layer_checks import host
from xpcnn.io import load_torch_checkpoint
from xpcnn.io import torch_checkpoint as tc
from xpcnn.layers import BatchNorm2D, Conv2D, Dense, Flatten, MaxPool2D, ReLU
from xpcnn.model import Sequential

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
LEGACY = {"_use_new_zipfile_serialization": False}
FORMATS = {"zip": {}, "legacy": LEGACY, "zip-protocol4": {"pickle_protocol": 4},
           "legacy-protocol3": {**LEGACY, "pickle_protocol": 3}}


# ---- files written by torch, read back where torch cannot be imported ---------------------------------------

def _state_dict():
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    shared = torch.randn(20)
    return {
        "conv.weight": torch.randn(4, 2, 3, 3),
        "conv.bias": torch.randn(4),
        "half": torch.randn(3, 5).half(),
        "bf16": torch.randn(2, 7).bfloat16(),
        "double": torch.randn(3).double(),
        "bn.num_batches_tracked": torch.tensor(7),
        "int32": torch.arange(6, dtype=torch.int32).reshape(2, 3),
        "uint8": torch.arange(250, 256, dtype=torch.uint8),
        "mask": torch.tensor([True, False, True]),
        "transposed": torch.randn(3, 5).t(),  # non-contiguous: saved as is, with its strides
        "strided": torch.randn(6, 8)[::2, 1::3],  # an offset and strides other than a transpose's
        "shared.a": shared[:12].view(3, 4),  # two views of one storage
        "shared.b": shared[12:].view(2, 4),
        "bf16.t": torch.randn(4, 3).bfloat16().t(),
        "empty": torch.zeros(0, 3),
        "scalar": torch.tensor(2.5),
    }


def _expected(value) -> np.ndarray:
    torch = pytest.importorskip("torch")
    return value.float().numpy() if value.dtype == torch.bfloat16 else value.numpy()


_READER = """
import json, sys
sys.modules["torch"] = None  # any import of torch fails
import numpy as np
from xpcnn.io import load_torch_checkpoint
arrays = load_torch_checkpoint(sys.argv[1])
np.savez(sys.argv[2], **{f"a{i}": value for i, value in enumerate(arrays.values())})
print(json.dumps({"keys": list(arrays), "torch": sys.modules["torch"] is None}))
"""


def _read_without_torch(path, tmp_path) -> dict[str, np.ndarray]:
    out = tmp_path / "arrays.npz"
    run = subprocess.run([sys.executable, "-c", _READER, str(path), str(out)], check=False, cwd=REPO_ROOT,
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout.strip().splitlines()[-1])
    assert report["torch"], "torch was imported"
    with np.load(out) as arrays:
        return {key: arrays[f"a{i}"] for i, key in enumerate(report["keys"])}


@pytest.mark.parametrize("fmt", FORMATS)
def test_state_dicts_read_back_exactly_without_torch(tmp_path, fmt):
    torch = pytest.importorskip("torch")
    state = _state_dict()
    path = tmp_path / "state.pt"
    torch.save(state, path, **FORMATS[fmt])
    arrays = _read_without_torch(path, tmp_path)
    assert list(arrays) == list(state)
    for key, value in state.items():
        expected = _expected(value)
        assert arrays[key].dtype == expected.dtype and arrays[key].shape == expected.shape, key
        np.testing.assert_array_equal(arrays[key], expected, err_msg=key)
    assert arrays["bf16"].dtype == np.float32 and arrays["half"].dtype == np.float16
    assert arrays["bn.num_batches_tracked"].dtype == np.int64


def _torch_model():
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(2, 4, 3, padding=1), torch.nn.BatchNorm2d(4), torch.nn.ReLU(),
                                torch.nn.MaxPool2d(2), torch.nn.Flatten(), torch.nn.Linear(36, 5)).eval()
    with torch.no_grad():
        model[1].running_mean.uniform_(-0.5, 0.5)
        model[1].running_var.uniform_(0.5, 2.0)
        model[1].weight.uniform_(0.5, 1.5)
        model[1].bias.uniform_(-0.5, 0.5)
    return model


def test_module_state_dict_and_parameters(tmp_path):
    torch = pytest.importorskip("torch")
    model = _torch_model()
    for i, (state, kwargs) in enumerate([(model.state_dict(), {}), (model.state_dict(keep_vars=True), LEGACY),
                                         (model.state_dict(keep_vars=True), {})]):  # Parameters: _rebuild_parameter
        path = tmp_path / f"m{i}.pth"
        torch.save(state, path, **kwargs)
        arrays = load_torch_checkpoint(path)
        assert list(arrays) == list(state)
        for key, value in state.items():
            np.testing.assert_array_equal(arrays[key], value.detach().numpy())


@pytest.mark.parametrize("fmt", ["zip", "legacy"])
def test_checkpoints_holding_a_state_dict_are_unwrapped(tmp_path, fmt):
    torch = pytest.importorskip("torch")
    model = _torch_model().train()
    optimizer = torch.optim.Adam(model.parameters())
    model(torch.randn(2, 2, 6, 6)).sum().backward()
    optimizer.step()
    wrapped = torch.nn.DataParallel(model)  # keys "module.<key>"
    state = model.state_dict()
    for name, checkpoint in [("state_dict", {"epoch": 3, "state_dict": wrapped.state_dict(),
                                             "optimizer": optimizer.state_dict(), "best": 0.5}),
                             ("model", {"model": state, "args": {"lr": 0.1, "tags": ["a", "b"]}})]:
        path = tmp_path / f"{name}.pt"
        torch.save(checkpoint, path, **FORMATS[fmt])
        arrays = load_torch_checkpoint(path)
        assert list(arrays) == list(state)
        for key, value in state.items():
            np.testing.assert_array_equal(arrays[key], value.numpy())


def test_file_name_hash_is_checked(tmp_path):
    torch = pytest.importorskip("torch")
    path = tmp_path / "scratch.pth"
    torch.save(_state_dict(), path, **LEGACY)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    good = tmp_path / f"resnet-{digest[:8]}.pth"
    good.write_bytes(path.read_bytes())
    assert set(load_torch_checkpoint(good)) == set(_state_dict())
    wrong = "0" * 8 if not digest.startswith("0" * 8) else "1" * 8
    bad = tmp_path / f"resnet-{wrong}.pth"
    bad.write_bytes(path.read_bytes())
    with pytest.raises(ValueError, match=f"its name says its SHA-256 begins {wrong}, but the file's SHA-256 is "
                                         f"{digest}") as info:
        load_torch_checkpoint(bad)
    assert str(bad) in str(info.value)
    assert set(load_torch_checkpoint(bad, check_hash=False)) == set(_state_dict())


# ---- hand-made files: a pickle assembler and the two layouts ----------------------------------------------------

def _str(text: str) -> bytes:
    data = text.encode()
    return b"X" + struct.pack("<I", len(data)) + data


def _int(n: int) -> bytes:
    return b"J" + struct.pack("<i", n) if -2**31 <= n < 2**31 else b"\x8a\x09" + n.to_bytes(9, "little", signed=True)


def _global(module: str, name: str) -> bytes:
    return b"c" + f"{module}\n{name}\n".encode()


def _tuple(*items: bytes) -> bytes:
    return b"(" + b"".join(items) + b"t"


def _call(function: bytes, *args: bytes) -> bytes:
    return function + _tuple(*args) + b"R"


def _pickle(body: bytes, protocol: int = 2) -> bytes:
    return b"\x80" + bytes([protocol]) + body + b"."


def _storage(key: str = "0", numel: int = 4, kind: str = "FloatStorage", legacy_view: bytes | None = None) -> bytes:
    fields = [_str("storage"), _global("torch", kind), _str(key), _str("cpu"), _int(numel)]
    if legacy_view is not None:
        fields.append(legacy_view)
    return _tuple(*fields) + b"Q"


def _tensor(storage: bytes, offset: int = 0, size=(4,), stride=(1,)) -> bytes:
    return _call(_global("torch._utils", "_rebuild_tensor_v2"), storage, _int(offset),
                 _tuple(*map(_int, size)), _tuple(*map(_int, stride)), b"\x89",
                 _call(_global("collections", "OrderedDict")))


def _state(**tensors: bytes) -> bytes:
    items = b"".join(_str(key) + value for key, value in tensors.items())
    return _call(_global("collections", "OrderedDict")) + b"(" + items + b"u"


def _zip(pkl: bytes, storages: dict[str, bytes] | None = None, extra: dict[str, bytes] | None = None,
         compress: bool = False) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        zf.writestr("archive/data.pkl", pkl)
        zf.writestr("archive/byteorder", b"little")
        for key, data in (storages or {}).items():
            zf.writestr(f"archive/data/{key}", data, zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED)
        for name, data in (extra or {"archive/version": b"3\n"}).items():
            zf.writestr(name, data)
    return buffer.getvalue()


def _legacy(pkl: bytes, storages: list[tuple[str, int, bytes]], keys: list[str] | None = None) -> bytes:
    header = b"".join(pickle.dumps(v, protocol=2) for v in
                      (tc._LEGACY_MAGIC, 1001, {"protocol_version": 1001, "little_endian": True}))
    keys = [key for key, _, _ in storages] if keys is None else keys
    records = b"".join(struct.pack("<q", numel) + data for _, numel, data in storages)
    return header + pkl + pickle.dumps(keys, protocol=2) + records


_FOUR = np.arange(4, dtype="<f4").tobytes()
_VALID_ZIP = _zip(_pickle(_state(w=_tensor(_storage()))), {"0": _FOUR})


def test_hand_made_files_read(tmp_path):
    """The assembler's files are valid: the hostile ones below differ from these only where they attack."""
    path = tmp_path / "valid.pt"
    path.write_bytes(_VALID_ZIP)
    np.testing.assert_array_equal(load_torch_checkpoint(path)["w"], np.arange(4, dtype=np.float32))
    view = _tuple(_str("view"), _int(2), _int(3))  # a storage view (legacy files of torch < 1.0)
    path.write_bytes(_legacy(_pickle(_state(w=_tensor(_storage(numel=6, legacy_view=view), size=(3,)),
                                            v=_tensor(_storage(numel=6, legacy_view=b"N"), size=(2, 3),
                                                      stride=(1, 2)))),
                             [("0", 6, np.arange(6, dtype="<f4").tobytes())]))
    arrays = load_torch_checkpoint(path)
    np.testing.assert_array_equal(arrays["w"], [2, 3, 4])
    np.testing.assert_array_equal(arrays["v"], np.arange(6, dtype=np.float32).reshape(3, 2).T)


def _payloads(sentinel: str) -> dict[str, tuple[bytes, str]]:
    """Files whose pickle, if its code ran, would create ``sentinel``; with the global each names."""
    touch = _str(f"touch {sentinel}")
    python = _str(f"open({sentinel!r}, 'w')")
    argv = b"](" + _str("touch") + _str(sentinel) + b"e"
    return {
        "os.system": (_zip(_pickle(_call(_global("os", "system"), touch))), "os.system"),
        "posix.system": (_zip(_pickle(_call(_global("posix", "system"), touch))), "posix.system"),
        "builtins.eval": (_zip(_pickle(_call(_global("builtins", "eval"), python))), "builtins.eval"),
        "builtins.exec": (_zip(_pickle(_call(_global("builtins", "exec"), python))), "builtins.exec"),
        "__builtin__.eval": (_zip(_pickle(_call(_global("__builtin__", "eval"), python))), "__builtin__.eval"),
        "subprocess.Popen": (_zip(_pickle(_call(_global("subprocess", "Popen"), argv))), "subprocess.Popen"),
        "STACK_GLOBAL": (_zip(_pickle(b"\x8c\x02os\x8c\x06system\x93" + _tuple(touch) + b"R", protocol=4)),
                         "os.system"),
        "as a tensor's storage": (_zip(_pickle(_state(w=_tensor(_call(_global("os", "system"), touch))))),
                                  "os.system"),
        "in a checkpoint's other entries": (_zip(_pickle(
            b"}(" + _str("state_dict") + _state() + _str("args") + _call(_global("os", "system"), touch) + b"u")),
            "os.system"),
        "legacy: in the magic number's place": (_pickle(_call(_global("os", "system"), touch)), "os.system"),
        "legacy: in the state dict": (_legacy(_pickle(_call(_global("posix", "system"), touch)), []),
                                      "posix.system"),
    }


@pytest.mark.parametrize("name", list(_payloads("s")))
def test_globals_that_run_code_are_refused(tmp_path, name):
    sentinel = tmp_path / "sentinel"
    content, named = _payloads(str(sentinel))[name]
    path = tmp_path / "hostile.pt"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=f"names the global {named}, which a state dict never needs") as info:
        load_torch_checkpoint(path)
    assert str(path) in str(info.value) and "only collections.OrderedDict" in str(info.value)
    assert not sentinel.exists()


def _zipfile_with(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buffer.getvalue()


_CASES: dict[str, tuple[Callable[[], bytes], str]] = {
    # names that look allowed but are not the allowed pair
    "allowed name, other module": (lambda: _zip(_pickle(_call(_global("os", "OrderedDict")))),
                                   "names the global os.OrderedDict"),
    "dotted name": (lambda: _zip(_pickle(_call(_global("collections", "OrderedDict.fromkeys"), _str("ab")))),
                    "names the global collections.OrderedDict.fromkeys"),
    "torch.load itself": (lambda: _zip(_pickle(_call(_global("torch", "load"), _str("x")))), "torch.load"),
    "copyreg._reconstructor": (lambda: _zip(_pickle(_call(_global("copyreg", "_reconstructor")))),
                               "copyreg._reconstructor"),
    # calls of what is not an allowed function; opcodes that build objects without REDUCE
    "REDUCE of a storage type": (lambda: _zip(_pickle(_call(_global("torch", "FloatStorage"), _int(3)))),
                                 "not callable"),
    "REDUCE of a string": (lambda: _zip(_pickle(_call(_str("os.system"), _str("x")))), "not callable"),
    "INST": (lambda: _zip(_pickle(b"(" + _str("x") + b"ios\nsystem\n")), "opcode INST"),
    "OBJ": (lambda: _zip(_pickle(b"(" + _global("os", "system") + _str("x") + b"o")), "opcode OBJ"),
    "NEWOBJ": (lambda: _zip(_pickle(_global("os", "system") + _tuple() + b"\x81")), "opcode NEWOBJ"),
    "EXT1": (lambda: _zip(_pickle(b"\x82\x01")), "opcode EXT1"),
    "text PERSID": (lambda: _zip(_pickle(b"P0\n")), "opcode PERSID"),
    "rebuild with the wrong arity": (lambda: _zip(_pickle(_call(_global("torch._utils", "_rebuild_tensor_v2"),
                                                               _int(1)))), "with 1 arguments"),
    "backward hooks": (lambda: _zip(_pickle(_state(w=_call(
        _global("torch._utils", "_rebuild_tensor_v2"), _storage(), _int(0), _tuple(_int(4)), _tuple(_int(1)),
        b"\x89", b"}" + _str("h") + _int(1) + b"s"))), {"0": _FOUR}), "backward hooks"),
    "BUILD edits a checked tensor": (lambda: _zip(_pickle(_state(
        w=_tensor(_storage()) + b"N}" + _str("offset") + _int(10**6) + b"s\x86b")), {"0": _FOUR}),
        "edits a tensor"),
    "BUILD edits an allowed storage type": (lambda: _zip(_pickle(
        _global("torch", "FloatStorage") + b"N}" + _str("itemsize") + _int(1) + b"s\x86b")),
        "edits torch.FloatStorage"),
    "BUILD edits an allowed function": (lambda: _zip(_pickle(
        _global("torch._utils", "_rebuild_tensor") + b"N}" + _str("function") + _int(1) + b"s\x86b")),
        "edits torch._utils._rebuild_tensor"),
    "BUILD sets an OrderedDict attribute": (lambda: _zip(_pickle(
        _call(_global("collections", "OrderedDict")) + b"}" + _str("__class__") + _int(1) + b"sb")),
        "other than a state dict's _metadata"),
    # protocols torch never writes
    "protocol 5, out-of-band buffer": (lambda: _zip(b"\x80\x05\x97."), "protocol 5"),
    "protocol 1": (lambda: _zip(b"}."), "protocol 0 or 1"),
    "protocol 0": (lambda: _zip(b"(dp0\n."), "protocol 0 or 1"),
    "memo index far past the memo": (lambda: _zip(b"\x80\x02}r" + struct.pack("<I", 2**31) + b"."),
                                     "stores memo entry 2147483648 after 0 entries"),
    "truncated pickle": (lambda: _zip(_pickle(_state(w=_tensor(_storage())))[:-20], {"0": _FOUR}),
                         "data.pkl is not a complete pickle"),
    # storages and tensors outside their bytes
    "storage larger than its record": (
        lambda: _zip(_pickle(_state(w=_tensor(_storage(numel=100)))), {"0": _FOUR}),
        r"declares 100 elements of torch.FloatStorage \(400 bytes\) but its record holds 16 bytes"),
    "huge element count": (lambda: _zip(_pickle(_state(w=_tensor(_storage(numel=2**40)))), {"0": _FOUR}),
                           "declares 1,099,511,627,776 elements"),
    "storage without a record": (lambda: _zip(_pickle(_state(w=_tensor(_storage(key="7"))))),
                                 "has no record data/7"),
    "storage key leaving the folder": (lambda: _zip(_pickle(_state(w=_tensor(_storage(key="../x"))))),
                                       "is not a short name"),
    "storage declared twice differently": (lambda: _zip(_pickle(_state(
        w=_tensor(_storage()), v=_tensor(_storage(kind="IntStorage")))), {"0": _FOUR}), "declared as 4 of"),
    "offset out of range": (lambda: _zip(_pickle(_state(w=_tensor(_storage(), offset=1))), {"0": _FOUR}),
                            "reaches past its end"),
    "stride out of range": (lambda: _zip(_pickle(_state(w=_tensor(_storage(), size=(2, 2), stride=(3, 1)))),
                                         {"0": _FOUR}), "reaches past its end"),
    "negative stride": (lambda: _zip(_pickle(_state(w=_tensor(_storage(), size=(4,), stride=(-1,)))),
                                     {"0": _FOUR}), "stride .* is not a tuple of at most 64 non-negative ints"),
    "negative size": (lambda: _zip(_pickle(_state(w=_tensor(_storage(), size=(-4,)))), {"0": _FOUR}),
                      "size .* is not a tuple"),
    "negative offset": (lambda: _zip(_pickle(_state(w=_tensor(_storage(), offset=-1))), {"0": _FOUR}),
                        "storage offset -1 is not a non-negative int"),
    "size and strides of other lengths": (lambda: _zip(_pickle(_state(w=_tensor(_storage(), size=(2, 2)))),
                                                       {"0": _FOUR}), r"has size \(2, 2\) but strides \(1,\)"),
    "expanded tensor": (lambda: _zip(_pickle(_state(w=_tensor(_storage(numel=1), size=(2**20, 2**20),
                                                              stride=(0, 0)))), {"0": _FOUR[:4]}),
                        "holds more values than its storage"),
    "empty tensor past its storage": (lambda: _zip(_pickle(_state(w=_tensor(_storage(), offset=9, size=(0,)))),
                                                   {"0": _FOUR}), "starts outside it"),
    # the archive
    "member with ..": (lambda: _zip(_pickle(_state()), extra={"archive/../evil": b"x"}), "leaves the archive"),
    "absolute member": (lambda: _zip(_pickle(_state()), extra={"/etc/evil": b"x"}), "leaves the archive"),
    "member outside the folder": (lambda: _zip(_pickle(_state()), extra={"other/x": b"x"}), "outside its folder"),
    "truncated zip": (lambda: _VALID_ZIP[: len(_VALID_ZIP) // 2], "damaged or truncated zip archive"),
    "damaged storage": (lambda: _VALID_ZIP.replace(_FOUR, b"\xff" * 16), "is damaged or truncated"),
    "compressed storage": (lambda: _zip(_pickle(_state(w=_tensor(_storage()))), {"0": _FOUR}, compress=True),
                           "is compressed"),
    "unknown format version": (lambda: _zip(_pickle(_state()), extra={"archive/version": b"99\n"}),
                               "format version"),
    "TorchScript archive": (lambda: _zip(_pickle(_state()), extra={"archive/code/m.py": b""}), "TorchScript"),
    "no data.pkl": (lambda: _zipfile_with({"a/b": b""}), "no single <folder>/data.pkl"),
    # what the pickle holds
    "a list, not a state dict": (lambda: _zip(_pickle(b"]")), "holds an object of type list, not a state dict"),
    "an entry that is no tensor": (lambda: _zip(_pickle(_state(w=_int(3)))), "entry 'w' is of type int, not a tensor"),
    # the legacy layout
    "legacy: wrong magic": (lambda: pickle.dumps(12345, protocol=2), "wrong magic number"),
    "legacy: whole module": (lambda: _legacy(_pickle(_tuple(_str("module"), _str("M"), _str("f.py"),
                                                            _str("code")) + b"Q"), []), "whole pickled nn.Module"),
    "legacy: record size differs": (lambda: _legacy(_pickle(_state(w=_tensor(_storage(legacy_view=b"N")))),
                                                    [("0", 5, _FOUR + _FOUR[:4])]),
                                    "declares 4 elements of torch.FloatStorage but its record at byte"),
    "legacy: truncated storage": (lambda: _legacy(_pickle(_state(w=_tensor(_storage(legacy_view=b"N")))),
                                                  [("0", 4, _FOUR[:8])]), "past the end of the file"),
    "legacy: trailing bytes": (lambda: _legacy(_pickle(_state(w=_tensor(_storage(legacy_view=b"N")))),
                                               [("0", 4, _FOUR + b"junk")]), "4 bytes follow the last storage"),
    "legacy: keys differ": (lambda: _legacy(_pickle(_state(w=_tensor(_storage(legacy_view=b"N")))),
                                            [("0", 4, _FOUR)], keys=["0", "1"]), "list of storage keys"),
    "legacy: huge element count": (lambda: _legacy(_pickle(_state(w=_tensor(_storage(numel=2**40,
                                                                                     legacy_view=b"N")))),
                                                   [("0", 4, _FOUR)]), "more bytes than the file's"),
    "legacy: view outside its storage": (lambda: _legacy(_pickle(_state(w=_tensor(_storage(
        legacy_view=_tuple(_str("v"), _int(2), _int(3)))))), [("0", 4, _FOUR)]), "does not lie inside storage"),
    "neither zip nor pickle": (lambda: b"GIF89a", "is not a PyTorch checkpoint"),
}


@pytest.mark.parametrize("case", list(_CASES))
def test_hostile_and_damaged_files_are_refused(tmp_path, case):
    make, message = _CASES[case]
    path = tmp_path / "bad.pt"
    path.write_bytes(make())
    with pytest.raises(ValueError, match=message) as info:
        load_torch_checkpoint(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize("case", ["huge element count", "legacy: huge element count", "expanded tensor",
                                  "memo index far past the memo"])
def test_huge_declarations_are_refused_before_allocation(tmp_path, case):
    make, message = _CASES[case]
    path = tmp_path / "huge.pt"
    path.write_bytes(make())
    tracemalloc.start()
    try:
        with pytest.raises(ValueError, match=message):
            load_torch_checkpoint(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 2**21, f"{peak:,} bytes allocated to refuse {case}"


def test_allowed_objects_are_not_edited_for_later_files(tmp_path):
    path = tmp_path / "edit.pt"
    path.write_bytes(_CASES["BUILD edits an allowed storage type"][0]())
    with pytest.raises(ValueError):
        load_torch_checkpoint(path)
    path.write_bytes(_VALID_ZIP)
    np.testing.assert_array_equal(load_torch_checkpoint(path)["w"], np.arange(4, dtype=np.float32))


def _limit(monkeypatch, name: str, value: int) -> None:
    """A limit lowered where it is checked: the reader, and its unpickler (``torch_pickle``)."""
    from xpcnn.io import torch_pickle

    for module in (tc, torch_pickle):
        monkeypatch.setattr(module, name, value)


def test_limits_on_the_pickle_and_the_entries(tmp_path, monkeypatch):
    path = tmp_path / "many.pt"
    path.write_bytes(_zip(_pickle(_state(a=_tensor(_storage("0")), b=_tensor(_storage("1")),
                                         c=_tensor(_storage("2")))), {"0": _FOUR, "1": _FOUR, "2": _FOUR}))
    assert len(load_torch_checkpoint(path)) == 3
    _limit(monkeypatch, "MAX_ENTRIES", 2)
    with pytest.raises(ValueError, match="names more than 2 storages"):
        load_torch_checkpoint(path)
    _limit(monkeypatch, "MAX_ENTRIES", 10)
    _limit(monkeypatch, "MAX_TOTAL_VALUES", 11)
    with pytest.raises(ValueError, match="its tensors hold 12 values together, more than the 11 allowed"):
        load_torch_checkpoint(path)
    _limit(monkeypatch, "MAX_PICKLE_BYTES", 100)
    with pytest.raises(ValueError, match="data.pkl' holds .* bytes, more than the 100 it may"):
        load_torch_checkpoint(path)
    path.write_bytes(_legacy(_pickle(_state(w=_tensor(_storage(legacy_view=b"N")))), [("0", 4, _FOUR)]))
    with pytest.raises(ValueError, match="is not a complete pickle: damaged, truncated or longer than the 100"):
        load_torch_checkpoint(path)


# ---- load_weights -----------------------------------------------------------------------------------------------

def _model() -> Sequential:
    return Sequential([Conv2D(4, 3, padding=1), BatchNorm2D(), ReLU(), MaxPool2D(2), Flatten(), Dense(5)],
                      input_shape=(2, 6, 6))


def _x() -> np.ndarray:
    return np.random.default_rng(0).standard_normal((5, 2, 6, 6)).astype(np.float32)


def _snapshot(model) -> dict[str, np.ndarray]:
    return {k: np.array(host(v), copy=True) for k, v in model.state_dict().items()}


@pytest.mark.parametrize(("fmt", "name", "wrap"), [("zip", "w.pth", None), ("legacy", "w.pth", None),
                                                   ("zip", "w.bin", "state_dict"), ("legacy", "w.pt", "model")])
def test_load_weights_predicts_as_torch(backend, tmp_path, fmt, name, wrap):
    torch = pytest.importorskip("torch")
    tmodel = _torch_model()
    state = tmodel.state_dict()
    if wrap == "state_dict":
        checkpoint = {"epoch": 1, "state_dict": {f"module.{k}": v for k, v in state.items()}}
    else:
        checkpoint = state if wrap is None else {wrap: state}
    path = tmp_path / name  # a torch file by its first bytes, whatever its extension
    torch.save(checkpoint, path, **FORMATS[fmt])
    model = _model()
    model.load_weights(path)
    for key, value in model.state_dict().items():
        np.testing.assert_array_equal(host(value), state[key].numpy())
    with torch.no_grad():
        expected = tmodel(torch.from_numpy(_x())).numpy()
    np.testing.assert_allclose(host(model.predict(_x())), expected, rtol=1e-5, atol=1e-5)


def test_load_weights_refusals_leave_the_model_untouched(backend, tmp_path):
    torch = pytest.importorskip("torch")
    model = _model()
    before = _snapshot(model)
    other = tmp_path / "other.pth"
    torch.save({"0.weight": torch.zeros(4, 2, 5, 5)}, other)
    with pytest.raises(ValueError, match=r"missing keys .*shape mismatches \[0.weight: expected \(4, 2, 3, 3\)"):
        model.load_weights(other)
    sentinel = tmp_path / "sentinel"
    hostile = tmp_path / "hostile.pth"
    hostile.write_bytes(_zip(_pickle(_call(_global("os", "system"), _str(f"touch {sentinel}")))))
    with pytest.raises(ValueError, match="names the global os.system"):
        model.load_weights(hostile)
    assert not sentinel.exists()
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="garbage.pt is not a PyTorch checkpoint"):
        model.load_weights(garbage)
    for key, value in _snapshot(model).items():
        np.testing.assert_array_equal(before[key], value)


def test_xpcnn_weights_named_pth_still_load(backend, tmp_path):
    model = _model()
    path = tmp_path / "mine.pth"  # xpcnn keeps any name: the first bytes decide the reader
    model.save_weights(path)
    rebuilt = _model()
    rebuilt.load_weights(path)
    for key, value in _snapshot(model).items():
        np.testing.assert_array_equal(_snapshot(rebuilt)[key], value)
