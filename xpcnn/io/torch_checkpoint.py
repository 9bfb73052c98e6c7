"""PyTorch checkpoints (``torch.save(model.state_dict(), path)``) read with NumPy alone: torch is never imported
and none of the pickle's code runs.

Two layouts are read. The zip format (torch >= 1.6): ``<folder>/data.pkl`` (the pickled state dict, whose
tensors name their storages by key), ``<folder>/data/<key>`` (each storage's raw bytes, stored uncompressed),
``<folder>/byteorder`` and ``<folder>/version``. The legacy format (``_use_new_zipfile_serialization=False``,
older torchvision ``.pth`` files): five pickles in a row (the magic number, the protocol version 1001, the
system info, the state dict, the sorted list of storage keys), then each storage as an 8-byte little-endian
element count and its little-endian bytes.

The pickle is read by a restricted unpickler. It first scans the stream's opcodes (no code runs in a scan):
only protocols 2 to 4 (torch writes 2 unless told otherwise; 0 and 1 cannot hold torch's persistent ids, 5
adds out-of-band buffers that a checkpoint never has) and only the opcodes that pickle plain data, call a
global and name a storage; memo indices no larger than the stream justifies. Then it unpickles with
``find_class`` answering only these globals, each mapped to a function of this module that builds a
placeholder (never to torch): ``collections.OrderedDict``, ``torch._utils._rebuild_tensor_v2``,
``torch._utils._rebuild_tensor``, ``torch._utils._rebuild_parameter``, ``torch.Size`` and the storage types
``torch.{Float,Double,Half,BFloat16,Long,Int,Short,Char,Byte,Bool}Storage`` and ``torch.UntypedStorage``
(``torch.storage.UntypedStorage``). Any other global (``os.system``, ``builtins.eval``, an allowed name under
another module, a dotted name...) is refused, and so is calling anything that is not one of those functions
or editing (BUILD) anything but an OrderedDict's ``_metadata``. Memory while unpickling stays within a small
multiple of the stream, which is at most ``MAX_PICKLE_BYTES``.

Nothing is allocated before the whole description is checked: each storage's element count times its item
size must equal its record's length; each tensor's offset, sizes and strides must stay inside its storage
(sizes and strides non-negative, ``offset + sum((size - 1) * stride) < numel``) and it may hold no more
values than its storage; at most ``MAX_PICKLE_BYTES`` of pickle, ``MAX_ENTRIES`` tensors or storages and
``MAX_TOTAL_VALUES`` values in all. Every refusal is a ``ValueError`` naming the file and the reason.
"""

from __future__ import annotations

import hashlib
import io
import math
import os
import pickle
import pickletools
import re
import zipfile
import zlib
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

__all__ = ["MAX_ENTRIES", "MAX_PICKLE_BYTES", "MAX_TOTAL_VALUES", "check_sha256_prefix", "is_torch_checkpoint",
           "load_torch_checkpoint"]

MAX_PICKLE_BYTES = 16 * 2**20  # a state dict of 100,000 tensors pickles to about 11 MiB
MAX_ENTRIES = 100_000  # tensors (and storages) one file may describe; ResNet-152 has about 900
MAX_TOTAL_VALUES = 2**33  # values of all tensors together (32 GiB of float32)
MAX_DIMS = 64

_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_LEGACY_MAGIC_LONG1 = b"\x8a\x0a" + _LEGACY_MAGIC.to_bytes(10, "little")
_LEGACY_PROTOCOL_VERSION = 1001
_ZIP_VERSIONS = range(1, 11)  # the file-format versions torch's reader supports
_PROTOCOLS = (2, 3, 4)
_HASH_NAME = re.compile(r"-([0-9a-f]{8,64})\.pth?$")
_STORAGE_KEY = re.compile(r"[A-Za-z0-9_]{1,64}")
_READ_ERRORS = (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError, RuntimeError, NotImplementedError)
#: what a broken or hostile pickle can raise while it is unpickled (beyond our own refusals)
_PICKLE_ERRORS = (pickle.UnpicklingError, EOFError, AttributeError, TypeError, ValueError, KeyError, IndexError,
                  OverflowError)
#: the opcodes Python's pickler writes for a checkpoint at protocols 2 to 4: plain data, memo, globals, calls
#: of them, BUILD (an OrderedDict's ``_metadata``) and binary persistent ids (storages)
_OPCODES = frozenset({
    "PROTO", "FRAME", "STOP", "MARK", "POP", "POP_MARK", "DUP", "NONE", "NEWTRUE", "NEWFALSE",
    "BININT", "BININT1", "BININT2", "LONG1", "LONG4", "BINFLOAT",
    "SHORT_BINSTRING", "BINSTRING", "SHORT_BINBYTES", "BINBYTES", "BINBYTES8",
    "SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8",
    "EMPTY_TUPLE", "TUPLE1", "TUPLE2", "TUPLE3", "TUPLE", "EMPTY_LIST", "APPEND", "APPENDS",
    "EMPTY_DICT", "SETITEM", "SETITEMS",
    "BINGET", "LONG_BINGET", "BINPUT", "LONG_BINPUT", "MEMOIZE",
    "GLOBAL", "STACK_GLOBAL", "REDUCE", "BUILD", "BINPERSID",
})


class _Refused(Exception):
    """A reason to refuse the file, raised inside the unpickler and reported with the file's name."""


class _StorageType:
    """What ``torch.<X>Storage`` stands for: a NumPy dtype code (``bf16`` for bfloat16). Not callable, and
    shared by every file, so a pickle may not edit it."""

    __slots__ = ("code", "itemsize", "name")

    def __init__(self, name: str, code: str) -> None:
        self.name, self.code = name, code
        self.itemsize = 2 if code == "bf16" else np.dtype(code).itemsize

    def __setstate__(self, state: Any) -> None:
        raise _Refused(f"the pickle edits torch.{self.name} (BUILD), which torch never writes")

    def __repr__(self) -> str:
        return f"torch.{self.name}"


_STORAGE_TYPES = {name: _StorageType(name, code) for name, code in [
    ("FloatStorage", "f4"), ("DoubleStorage", "f8"), ("HalfStorage", "f2"), ("BFloat16Storage", "bf16"),
    ("LongStorage", "i8"), ("IntStorage", "i4"), ("ShortStorage", "i2"), ("CharStorage", "i1"),
    ("ByteStorage", "u1"), ("BoolStorage", "?"), ("UntypedStorage", "u1")]}


class _Storage:
    """A storage the pickle names: ``numel`` elements of ``kind``, ``start`` elements into the record ``key``
    (non-zero only for a legacy storage view). Its bytes are read after every check passed."""

    __slots__ = ("key", "kind", "numel", "start")

    def __init__(self, key: str, kind: _StorageType, numel: int, start: int = 0) -> None:
        self.key, self.kind, self.numel, self.start = key, kind, numel, start

    def __setstate__(self, state: Any) -> None:
        raise _Refused("the pickle edits a storage (BUILD), which torch never writes")


class _Tensor:
    """A checked tensor: ``size`` and ``stride`` (elements) at ``offset`` in ``storage``; not yet read."""

    __slots__ = ("offset", "size", "storage", "stride")

    def __init__(self, storage: _Storage, offset: int, size: tuple[int, ...], stride: tuple[int, ...]) -> None:
        self.storage, self.offset, self.size, self.stride = storage, offset, size, stride

    def __setstate__(self, state: Any) -> None:
        raise _Refused("the pickle edits a tensor (BUILD), which torch never writes")


class _OrderedDict(dict):
    """What ``collections.OrderedDict`` stands for (a dict keeps its order). Its BUILD state may only carry a
    state dict's ``_metadata`` (the modules' versions), which is dropped."""

    def __init__(self, items: Any = ()) -> None:  # Python 2 pickles pass the items as a list of pairs
        if not isinstance(items, (list, tuple)) or not all(isinstance(p, (list, tuple)) and len(p) == 2
                                                           for p in items):
            raise _Refused("the pickle builds an OrderedDict from something other than (key, value) pairs")
        super().__init__(items)

    def __setstate__(self, state: Any) -> None:
        if state is not None and not (isinstance(state, dict) and set(state) <= {"_metadata"}):
            raise _Refused("the pickle sets attributes of an OrderedDict other than a state dict's _metadata")


def _ints(value: Any, what: str) -> tuple[int, ...]:
    if (not isinstance(value, (tuple, list)) or len(value) > MAX_DIMS
            or not all(type(v) is int and v >= 0 for v in value)):
        raise _Refused(f"a tensor's {what} {value!r:.80} is not a tuple of at most {MAX_DIMS} non-negative ints")
    return tuple(value)


def _rebuild_tensor(storage: Any, offset: Any, size: Any, stride: Any) -> _Tensor:
    """``torch._utils._rebuild_tensor``: the tensor's view of its storage, checked to stay inside it."""
    if not isinstance(storage, _Storage):
        raise _Refused(f"a tensor is rebuilt over a {type(storage).__name__}, not a storage")
    if type(offset) is not int or offset < 0:
        raise _Refused(f"a tensor's storage offset {offset!r:.40} is not a non-negative int")
    size, stride = _ints(size, "size"), _ints(stride, "stride")
    if len(size) != len(stride):
        raise _Refused(f"a tensor has size {size} but strides {stride}")
    values, numel = math.prod(size), storage.numel
    where = f"a tensor of size {size}, strides {stride} at offset {offset} in storage {storage.key!r} of {numel}"
    if values == 0:
        if offset > numel:
            raise _Refused(f"{where} elements starts outside it")
    elif offset + sum((n - 1) * s for n, s in zip(size, stride)) >= numel:
        raise _Refused(f"{where} elements reaches past its end")
    elif values > numel:
        raise _Refused(f"{where} elements holds more values than its storage (expanded tensors are refused)")
    return _Tensor(storage, offset, size, stride)


def _rebuild_tensor_v2(*args: Any) -> _Tensor:
    """``torch._utils._rebuild_tensor_v2(storage, offset, size, stride, requires_grad, hooks[, metadata])``."""
    if len(args) not in (6, 7):
        raise _Refused(f"the pickle calls torch._utils._rebuild_tensor_v2 with {len(args)} arguments, not 6 or 7")
    requires_grad, hooks, metadata = args[4], args[5], args[6] if len(args) == 7 else None
    if not isinstance(requires_grad, bool) or not isinstance(hooks, dict) or hooks or metadata:
        raise _Refused("a tensor carries backward hooks or metadata (conjugate/negative bits), which a state "
                       "dict never has")
    return _rebuild_tensor(*args[:4])


def _rebuild_parameter(*args: Any) -> _Tensor:
    """``torch._utils._rebuild_parameter(data, requires_grad, hooks)``: the data itself."""
    if len(args) != 3 or not isinstance(args[0], _Tensor) or not isinstance(args[1], bool) or args[2]:
        raise _Refused("the pickle calls torch._utils._rebuild_parameter with arguments a parameter never has")
    return args[0]


def _size(*args: Any) -> tuple[int, ...]:
    """``torch.Size(dims)``: a tuple of ints."""
    if len(args) != 1:
        raise _Refused(f"the pickle calls torch.Size with {len(args)} arguments")
    return _ints(args[0], "torch.Size")


class _Allowed:
    """An allowed callable as the pickle sees it: calls go to ``function``; a BUILD that would edit it (and so
    every later file's reading) is refused."""

    __slots__ = ("function", "name")

    def __init__(self, name: str, function: Callable[..., Any]) -> None:
        self.name, self.function = name, function

    def __call__(self, *args: Any) -> Any:
        return self.function(*args)

    def __setstate__(self, state: Any) -> None:
        raise _Refused(f"the pickle edits {self.name} (BUILD), which torch never writes")


_GLOBALS: dict[tuple[str, str], Any] = {
    **{(module, name): _Allowed(f"{module}.{name}", function) for module, name, function in [
        ("collections", "OrderedDict", _OrderedDict),
        ("torch._utils", "_rebuild_tensor_v2", _rebuild_tensor_v2),
        ("torch._utils", "_rebuild_tensor", _rebuild_tensor),
        ("torch._utils", "_rebuild_parameter", _rebuild_parameter),
        ("torch", "Size", _size)]},
    ("torch.storage", "UntypedStorage"): _STORAGE_TYPES["UntypedStorage"],
    **{("torch", name): kind for name, kind in _STORAGE_TYPES.items()},
}


class _Unpickler(pickle.Unpickler):
    """Unpickles ``data`` (scanned first), answering only ``_GLOBALS``; persistent ids go to ``storage``."""

    def __init__(self, data: bytes, storage: Callable[[tuple], _Storage]) -> None:
        super().__init__(io.BytesIO(data), encoding="utf-8")
        self._storage = storage

    def find_class(self, module: str, name: str) -> Any:
        target = _GLOBALS.get((module, name))
        if target is None:
            raise _Refused(f"the pickle names the global {module!s:.100}.{name!s:.100}, which a state dict never "
                           "needs; only " + ", ".join(sorted(f"{m}.{n}" for m, n in _GLOBALS)) + " are allowed")
        return target

    def persistent_load(self, pid: Any) -> _Storage:
        if not isinstance(pid, tuple) or not pid:
            raise _Refused(f"a persistent id {pid!r:.80} is not a tuple")
        typename = pid[0].decode("ascii", "replace") if isinstance(pid[0], bytes) else pid[0]
        if typename == "module":
            raise _Refused("it holds a whole pickled nn.Module (its code), not a state dict: save "
                           "model.state_dict() instead")
        if typename != "storage":
            raise _Refused(f"a persistent id names {typename!r:.40}, not a storage")
        return self._storage(pid)


def _scan(data: bytes, start: int, what: str) -> int:
    """Check the pickle starting at ``data[start]`` opcode by opcode (nothing runs) and return where it ends."""
    puts = 0
    try:
        for count, (op, arg, pos) in enumerate(pickletools.genops(io.BytesIO(data[start:]))):
            if count == 0 and (op.name != "PROTO" or arg not in _PROTOCOLS):
                proto = arg if op.name == "PROTO" else "0 or 1"
                raise _Refused(f"{what} is a pickle of protocol {proto}; torch writes protocols "
                               f"{_PROTOCOLS[0]} to {_PROTOCOLS[-1]} (2 by default)")
            if op.name not in _OPCODES:
                raise _Refused(f"{what} uses the pickle opcode {op.name} (at byte {pos}), which torch never writes "
                               "for a checkpoint")
            if op.name in ("BINPUT", "LONG_BINPUT"):
                if arg > puts:  # Python's pickler numbers its memo 0, 1, 2...; a larger index would size the memo
                    raise _Refused(f"{what} stores memo entry {arg} after {puts} entries")
                puts += arg == puts
            puts += op.name == "MEMOIZE"
            end = pos
    except ValueError as exc:  # truncated, an unknown opcode, an argument longer than the stream, bad UTF-8
        raise _Refused(f"{what} is not a complete pickle: damaged, truncated or longer than the "
                       f"{MAX_PICKLE_BYTES:,} bytes allowed ({exc})") from None
    return start + end + 1


def _unpickle(data: bytes, start: int, what: str, storage: Callable[[tuple], _Storage]) -> tuple[Any, int]:
    """The object pickled at ``data[start]`` (scanned, then unpickled) and where its pickle ends."""
    end = _scan(data, start, what)
    try:
        return _Unpickler(data[start:end], storage).load(), end
    except _PICKLE_ERRORS as exc:
        raise _Refused(f"{what} does not rebuild a checkpoint ({type(exc).__name__}: {exc})") from None


def _no_storage(pid: tuple) -> _Storage:
    raise _Refused("a header pickle names a storage")


class _Storages:
    """The storages a pickle names, by key: each declared once, with one type and element count."""

    def __init__(self) -> None:
        self.by_key: dict[str, _Storage] = {}

    def declare(self, kind: Any, key: Any, location: Any, numel: Any) -> _Storage:
        if not isinstance(kind, _StorageType):
            raise _Refused(f"a storage's type is {kind!r:.60}, not a storage type")
        if not isinstance(key, str) or not _STORAGE_KEY.fullmatch(key) or not isinstance(location, str):
            raise _Refused(f"a storage's key {key!r:.80} or location {location!r:.40} is not a short name")
        if type(numel) is not int or numel < 0:
            raise _Refused(f"storage {key!r} declares {numel!r:.40} elements")
        known = self.by_key.get(key)
        if known is not None:
            if (known.kind, known.numel) != (kind, numel):
                raise _Refused(f"storage {key!r} is declared as {known.numel} of {known.kind} and as {numel} of {kind}")
            return known
        if len(self.by_key) >= MAX_ENTRIES:
            raise _Refused(f"it names more than {MAX_ENTRIES:,} storages")
        self.by_key[key] = _Storage(key, kind, numel)
        return self.by_key[key]


def _safe_member_name(name: str) -> bool:
    parts = name.split("/")
    return not (name.startswith("/") or "\\" in name or "\0" in name or ":" in parts[0] or ".." in parts)


class _ZipCheckpoint:
    """The zip format: members checked, the pickle unpickled, each storage's record matched to its size."""

    def __init__(self, path: str) -> None:
        self.path = path
        try:
            self.zip = zipfile.ZipFile(path)
        except _READ_ERRORS as exc:
            raise _Refused(f"it is a damaged or truncated zip archive ({type(exc).__name__}: {exc})") from None

    def load(self) -> tuple[Any, Callable[[_Storage], bytes], str]:
        names = self.zip.NameToInfo
        if len(names) > MAX_ENTRIES + 16:
            raise _Refused(f"the archive has {len(names):,} members, more than {MAX_ENTRIES:,} storages need")
        for name in names:
            if not _safe_member_name(name):
                raise _Refused(f"the archive member {name!r:.200} leaves the archive (absolute or '..' path)")
        pickles = [n for n in names if n.count("/") == 1 and n.endswith("/data.pkl")]
        if len(pickles) != 1:
            raise _Refused("it is a zip archive but not one torch.save writes (no single <folder>/data.pkl)")
        self.prefix = pickles[0][: -len("data.pkl")]
        for name in names:
            if not name.startswith(self.prefix):
                raise _Refused(f"the archive member {name!r:.200} lies outside its folder {self.prefix!r}")
        if any(n.startswith(self.prefix + "code/") for n in names):
            raise _Refused("it is a TorchScript archive (torch.jit.save), not a state dict")
        version = self._small(self.prefix + "version") or self._small(self.prefix + ".data/version")
        if version is not None and (not version.strip().isdigit() or int(version) not in _ZIP_VERSIONS):
            raise _Refused(f"its format version {version!r:.20} is not one torch reads ({_ZIP_VERSIONS[0]} to "
                           f"{_ZIP_VERSIONS[-1]})")
        order = self._small(self.prefix + "byteorder") or b"little"
        if order not in (b"little", b"big"):
            raise _Refused(f"its byteorder record says {order!r:.20}, not little or big")
        self.storages = _Storages()
        data = self._read(names[pickles[0]], MAX_PICKLE_BYTES)
        obj, end = _unpickle(data, 0, "data.pkl", self._storage)
        if end != len(data):
            raise _Refused(f"data.pkl has {len(data) - end} bytes after its pickle")
        return obj, self._bytes, "<" if order == b"little" else ">"

    def _small(self, name: str) -> bytes | None:
        info = self.zip.NameToInfo.get(name)
        return None if info is None else self._read(info, 16)

    def _read(self, info: zipfile.ZipInfo, limit: int) -> bytes:
        if info.compress_type != zipfile.ZIP_STORED:
            raise _Refused(f"the archive member {info.filename!r} is compressed; torch stores every record as is")
        if info.file_size > limit:
            raise _Refused(f"the archive member {info.filename!r} holds {info.file_size:,} bytes, more than "
                           f"the {limit:,} it may")
        try:
            data = self.zip.read(info)  # checked against its CRC-32
        except _READ_ERRORS as exc:
            raise _Refused(f"the archive member {info.filename!r} is damaged or truncated ({type(exc).__name__}: "
                           f"{exc})") from None
        return data

    def _storage(self, pid: tuple) -> _Storage:
        if len(pid) != 5:
            raise _Refused(f"a storage's persistent id has {len(pid)} fields, not 5")
        storage = self.storages.declare(*pid[1:])
        info = self.zip.NameToInfo.get(f"{self.prefix}data/{storage.key}")
        if info is None:
            raise _Refused(f"storage {storage.key!r} has no record data/{storage.key} in the archive")
        nbytes = storage.numel * storage.kind.itemsize
        if info.file_size != nbytes:
            raise _Refused(f"storage {storage.key!r} declares {storage.numel:,} elements of {storage.kind} "
                           f"({nbytes:,} bytes) but its record holds {info.file_size:,} bytes")
        return storage

    def _bytes(self, storage: _Storage) -> bytes:
        return self._read(self.zip.NameToInfo[f"{self.prefix}data/{storage.key}"], storage.numel *
                          storage.kind.itemsize)

    def close(self) -> None:
        self.zip.close()


class _LegacyCheckpoint:
    """The legacy format: header pickles checked, the state dict unpickled, the storages' layout in the file
    matched to their declarations (each record's element count and bytes), nothing of them read yet."""

    def __init__(self, path: str) -> None:
        self.path, self.size = path, os.path.getsize(path)
        self.file = open(path, "rb")  # noqa: SIM115 (closed by close())

    def load(self) -> tuple[Any, Callable[[_Storage], bytes], str]:
        data = self.file.read(min(self.size, MAX_PICKLE_BYTES))  # read(n) would allocate n bytes at once
        magic, pos = _unpickle(data, 0, "the magic number", _no_storage)
        if magic != _LEGACY_MAGIC:
            raise _Refused("it is a pickle but not a PyTorch checkpoint (wrong magic number)")
        version, pos = _unpickle(data, pos, "the protocol version", _no_storage)
        if version != _LEGACY_PROTOCOL_VERSION:
            raise _Refused(f"its legacy protocol version is {version!r:.20}, not {_LEGACY_PROTOCOL_VERSION}")
        info, pos = _unpickle(data, pos, "the system info", _no_storage)
        if not isinstance(info, dict):
            raise _Refused(f"its system info is a {type(info).__name__}, not a dict")
        self.storages = _Storages()
        self.views: dict[str, _Storage] = {}
        obj, pos = _unpickle(data, pos, "the state dict's pickle", self._storage)
        keys, pos = _unpickle(data, pos, "the storage keys", _no_storage)
        self._locate(keys, pos)
        return obj, self._bytes, "<"  # torch writes legacy storages little-endian whatever the machine

    def _storage(self, pid: tuple) -> _Storage:
        if len(pid) != 6:
            raise _Refused(f"a storage's persistent id has {len(pid)} fields, not 6")
        root = self.storages.declare(*pid[1:5])
        if root.numel * root.kind.itemsize > self.size:
            raise _Refused(f"storage {root.key!r} declares {root.numel:,} elements of {root.kind}, more bytes "
                           f"than the file's {self.size:,}")
        view = pid[5]
        if view is None:
            return root
        if (not isinstance(view, tuple) or len(view) != 3 or not isinstance(view[0], str)
                or not all(type(v) is int and v >= 0 for v in view[1:]) or view[1] + view[2] > root.numel):
            raise _Refused(f"storage view {view!r:.80} does not lie inside storage {root.key!r}")
        known = self.views.setdefault(view[0], _Storage(root.key, root.kind, view[2], view[1]))
        if (known.key, known.numel, known.start) != (root.key, view[2], view[1]):
            raise _Refused(f"storage view {view[0]!r:.40} is declared twice differently")
        return known

    def _locate(self, keys: Any, pos: int) -> None:
        """Match each storage record after the pickles (8-byte element count, then the bytes) to the storage
        declared under its key; the records must end exactly at the end of the file."""
        declared = self.storages.by_key
        if not isinstance(keys, list) or len(set(map(str, keys))) != len(keys) or set(keys) != set(declared):
            raise _Refused("its list of storage keys is not the set of storages its state dict names")
        self.offsets = {}
        for key in keys:
            storage = declared[key]
            self.file.seek(pos)
            head = self.file.read(8)
            count = int.from_bytes(head, "little") if len(head) == 8 else None
            if count != storage.numel:
                raise _Refused(f"storage {key!r} declares {storage.numel:,} elements of {storage.kind} but its "
                               f"record at byte {pos:,} says {count}")
            self.offsets[key] = pos + 8
            pos += 8 + storage.numel * storage.kind.itemsize
            if pos > self.size:
                raise _Refused(f"storage {key!r} ends at byte {pos:,}, past the end of the file ({self.size:,} "
                               "bytes; truncated)")
        if pos != self.size:
            raise _Refused(f"{self.size - pos:,} bytes follow the last storage")

    def _bytes(self, storage: _Storage) -> bytes:
        nbytes = self.storages.by_key[storage.key].numel * storage.kind.itemsize
        self.file.seek(self.offsets[storage.key])
        data = self.file.read(nbytes)
        if len(data) != nbytes:
            raise _Refused(f"storage {storage.key!r} is truncated")
        return data

    def close(self) -> None:
        self.file.close()


def _state_dict_of(obj: Any) -> dict[str, _Tensor]:
    """The state dict a checkpoint holds: the object itself, or its ``"state_dict"`` or ``"model"`` entry; a
    ``"module."`` prefix on every key (``nn.DataParallel``) removed."""
    if not isinstance(obj, dict):
        raise _Refused(f"it holds an object of type {type(obj).__name__}, not a state dict")
    if not all(isinstance(v, _Tensor) for v in obj.values()):
        for name in ("state_dict", "model"):
            if isinstance(obj.get(name), dict):
                obj = obj[name]
                break
    for key, value in obj.items():
        if not isinstance(key, str) or not isinstance(value, _Tensor):
            raise _Refused(f"its entry {key!r:.80} is of type {type(value).__name__}, not a tensor (a checkpoint is "
                           "read when it is a state dict or holds one under 'state_dict' or 'model')")
    if len(obj) > MAX_ENTRIES:
        raise _Refused(f"it holds {len(obj):,} tensors, more than the {MAX_ENTRIES:,} allowed")
    total = sum(math.prod(t.size) for t in obj.values())
    if total > MAX_TOTAL_VALUES:
        raise _Refused(f"its tensors hold {total:,} values together, more than the {MAX_TOTAL_VALUES:,} allowed")
    if obj and all(k.startswith("module.") for k in obj):
        return {k[len("module."):]: v for k, v in obj.items()}
    return dict(obj)


def _arrays(tensors: Mapping[str, _Tensor], read: Callable[[_Storage], bytes], order: str) -> dict[str, np.ndarray]:
    """Each tensor as a NumPy array (a copy, C order, native byte order; bfloat16 widened to float32). Each
    storage is read once and dropped after its last tensor."""
    left: dict[str, int] = {}
    for t in tensors.values():
        left[t.storage.key] = left.get(t.storage.key, 0) + 1
    buffers: dict[str, bytes] = {}
    arrays = {}
    for name, t in tensors.items():
        storage, kind = t.storage, t.storage.kind
        key = storage.key
        if key not in buffers:
            buffers[key] = read(storage)
        raw_dtype = np.dtype("u2" if kind.code == "bf16" else kind.code).newbyteorder(order)
        raw = np.frombuffer(buffers[key], dtype=raw_dtype)[storage.start:storage.start + storage.numel]
        if math.prod(t.size) == 0:
            array = np.empty(t.size, dtype=raw_dtype)
        else:
            view = np.lib.stride_tricks.as_strided(raw[t.offset:], shape=t.size, writeable=False,
                                                   strides=[s * kind.itemsize for s in t.stride])
            array = np.array(view, copy=True)
        array = array.astype(raw_dtype.newbyteorder("="), copy=False)
        if kind.code == "bf16":
            array = (array.astype(np.uint32) << 16).view(np.float32)
        arrays[name] = array
        left[key] -= 1
        if not left[key]:
            del buffers[key]
    return arrays


def _check_name_hash(path: str) -> None:
    match = _HASH_NAME.search(os.path.basename(path))
    if match is not None:
        check_sha256_prefix(path, match.group(1))


def check_sha256_prefix(path: str, expected: str) -> None:
    """Refuse ``path`` unless its SHA-256 begins with ``expected`` (the hash in a torchvision file's name, also
    checked on a download before it is kept)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(2**20), b""):
            digest.update(chunk)
    actual = digest.hexdigest()
    if not actual.startswith(expected):
        raise ValueError(f"{path}: its name says its SHA-256 begins {expected}, but the file's SHA-256 is {actual} "
                         "(damaged or replaced file)")


def is_torch_checkpoint(path: str) -> bool:
    """Whether ``path`` is a PyTorch checkpoint by its first bytes (a zip whose first record is
    ``<folder>/data.pkl``, or a pickle of torch's magic number), or is a ``.pt``/``.pth`` file that is no zip."""
    try:
        with open(path, "rb") as f:
            head = f.read(1024)
    except OSError:
        return False
    if head.startswith(b"PK\x03\x04"):
        name_end = 30 + int.from_bytes(head[26:28], "little")
        return head[30:name_end].endswith(b"/data.pkl")
    if head.startswith(b"\x80") and _LEGACY_MAGIC_LONG1 in head[:32]:
        return True
    return path.lower().endswith((".pt", ".pth")) and not head.startswith(b"PK")


def load_torch_checkpoint(path: Any, *, check_hash: bool = True) -> dict[str, np.ndarray]:
    """The state dict of a PyTorch checkpoint as NumPy arrays, read without torch and without running any code.

    Reads what ``torch.save(model.state_dict(), path)`` writes, in the zip format and in the legacy format
    (``_use_new_zipfile_serialization=False``, older torchvision files); see the module's docstring for what
    is allowed and checked. A checkpoint that is a dict holding the state dict under ``"state_dict"`` or
    ``"model"`` (beside, say, ``"epoch"``) gives that state dict; keys that all begin with ``"module."`` (a
    model wrapped in ``nn.DataParallel``) lose that prefix. Every value must be a tensor.

    dtypes: float32, float64, float16 and the integer and bool types (int64 ``num_batches_tracked``) are kept;
    bfloat16 becomes float32, exactly (NumPy has no bfloat16). Each array is a C-ordered copy in native byte
    order, strided (non-contiguous) tensors and tensors sharing a storage included.

    A torchvision-style name ``<name>-<hash>.pth`` (``.pt``), the hash 8 or more lowercase hex digits, is the
    prefix of the file's SHA-256 and is checked (``check_hash=False`` skips that). Every refusal is a
    ``ValueError`` naming the file and the reason.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"no such file: {path}")
    if check_hash:
        _check_name_hash(path)
    with open(path, "rb") as f:
        head = f.read(4)
    if not head.startswith((b"PK", b"\x80")):
        raise ValueError(f"{path} is not a PyTorch checkpoint (neither a zip archive nor a pickle; it starts "
                         f"with {head!r})")
    reader: _ZipCheckpoint | _LegacyCheckpoint | None = None
    try:
        reader = _ZipCheckpoint(path) if head.startswith(b"PK") else _LegacyCheckpoint(path)
        obj, read, order = reader.load()
        return _arrays(_state_dict_of(obj), read, order)
    except _Refused as exc:
        raise ValueError(f"{path}: {exc}") from None
    finally:
        if reader is not None:
            reader.close()
