"""The restricted unpickler of ``load_torch_checkpoint``: what a checkpoint's pickle may name and do.

The stream's opcodes are scanned first (no code runs in a scan): protocols 2 to 4 only, the opcodes that pickle
plain data, call a global and name a storage, memo indices no larger than the stream justifies. Then
``find_class`` answers only the globals a state dict needs, each with a function of this module that records
what the file describes (a placeholder ``_Tensor`` over a declared ``_Storage``), never with torch; any other
global, a call of anything else, or a BUILD of anything but an OrderedDict's ``_metadata`` is refused
(``_Refused``). The storages a pickle names are declared once each, with one type and element count.
"""

from __future__ import annotations

import io
import math
import pickle
import pickletools
import re
from collections.abc import Callable
from typing import Any

import numpy as np

__all__ = ["MAX_DIMS", "MAX_ENTRIES", "MAX_PICKLE_BYTES", "MAX_TOTAL_VALUES"]

MAX_PICKLE_BYTES = 16 * 2**20  # a state dict of 100,000 tensors pickles to about 11 MiB
MAX_ENTRIES = 100_000  # tensors (and storages) one file may describe; ResNet-152 has about 900
MAX_TOTAL_VALUES = 2**33  # values of all tensors together (32 GiB of float32)
MAX_DIMS = 64
_PROTOCOLS = (2, 3, 4)
_STORAGE_KEY = re.compile(r"[A-Za-z0-9_]{1,64}")
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
