"""PyTorch checkpoints (``torch.save(model.state_dict(), path)``) read with NumPy alone: torch is never imported
and none of the pickle's code runs.

Two layouts are read. The zip format (torch >= 1.6): ``<folder>/data.pkl`` (the pickled state dict, whose
tensors name their storages by key), ``<folder>/data/<key>`` (each storage's raw bytes, stored uncompressed),
``<folder>/byteorder`` and ``<folder>/version``. The legacy format (``_use_new_zipfile_serialization=False``,
older torchvision ``.pth`` files): five pickles in a row (the magic number, the protocol version 1001, the
system info, the state dict, the sorted list of storage keys), then each storage as an 8-byte little-endian
element count and its little-endian bytes.

The pickle is read by a restricted unpickler (``torch_pickle``). It first scans the stream's opcodes (no code
runs in a scan): only protocols 2 to 4 (torch writes 2 unless told otherwise; 0 and 1 cannot hold torch's
persistent ids, 5 adds out-of-band buffers that a checkpoint never has) and only the opcodes that pickle plain
data, call a global and name a storage; memo indices no larger than the stream justifies. Then it unpickles
with ``find_class`` answering only these globals, each mapped to a function of this module that builds a
placeholder (never to torch): ``collections.OrderedDict``, ``torch._utils._rebuild_tensor_v2``,
``torch._utils._rebuild_tensor``, ``torch._utils._rebuild_parameter``, ``torch.Size`` and the storage types
``torch.{Float,Double,Half,BFloat16,Long,Int,Short,Char,Byte,Bool}Storage`` and ``torch.UntypedStorage``
(``torch.storage.UntypedStorage``). Any other global (``os.system``, ``builtins.eval``, an allowed name under
another module, a dotted name...) is refused, and so is calling anything that is not one of those functions or
editing (BUILD) anything but an OrderedDict's ``_metadata``. Memory while unpickling stays within a small
multiple of the stream, which is at most ``MAX_PICKLE_BYTES``.

Nothing is allocated before the whole description is checked: each storage's element count times its item
size must equal its record's length; each tensor's offset, sizes and strides must stay inside its storage
(sizes and strides non-negative, ``offset + sum((size - 1) * stride) < numel``) and it may hold no more
values than its storage; at most ``MAX_PICKLE_BYTES`` of pickle, ``MAX_ENTRIES`` tensors or storages and
``MAX_TOTAL_VALUES`` values in all. Every refusal is a ``ValueError`` naming the file and the reason.
"""

from __future__ import annotations

import hashlib
import math
import os
import re
import zipfile
import zlib
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from .torch_pickle import (MAX_ENTRIES, MAX_PICKLE_BYTES, MAX_TOTAL_VALUES, _no_storage, _Refused, _Storage,
                           _Storages, _Tensor, _unpickle)

__all__ = ["MAX_ENTRIES", "MAX_PICKLE_BYTES", "MAX_TOTAL_VALUES", "check_sha256_prefix", "is_torch_checkpoint",
           "load_torch_checkpoint"]


_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_LEGACY_MAGIC_LONG1 = b"\x8a\x0a" + _LEGACY_MAGIC.to_bytes(10, "little")
_LEGACY_PROTOCOL_VERSION = 1001
_ZIP_VERSIONS = range(1, 11)  # the file-format versions torch's reader supports
_HASH_NAME = re.compile(r"-([0-9a-f]{8,64})\.pth?$")
_READ_ERRORS = (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError, RuntimeError, NotImplementedError)
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

    Parameters
    ----------
    path : str or os.PathLike
    check_hash : bool, default True

    Returns
    -------
    dict of str to numpy.ndarray
        What ``model.load_state_dict`` takes.

    Raises
    ------
    FileNotFoundError
        If there is no such file.
    ValueError
        For every refusal.
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
