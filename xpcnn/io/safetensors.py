"""The safetensors format (Hugging Face), written and read with NumPy alone: weights PyTorch users can open.

A file is an 8-byte little-endian header length, a JSON header naming each tensor (``dtype``, ``shape``,
``data_offsets`` into the byte buffer that follows) plus string ``__metadata__``, then the raw little-endian
bytes. Reading checks the whole header before any tensor is read (known dtypes, shapes whose byte counts equal
their offsets, offsets inside the file and tiling the buffer), so a damaged or hostile file is refused with a
``ValueError`` naming the file and the entry, and nothing is allocated beyond what the file's size justifies.
"""

from __future__ import annotations

import json
import math
import os
import struct
from collections.abc import Mapping
from typing import Any, BinaryIO

import numpy as np

from .schema import loads_config

__all__ = ["read_safetensors", "write_safetensors"]

_DTYPES = {"F64": np.float64, "F32": np.float32, "F16": np.float16, "I64": np.int64, "I32": np.int32,
           "I16": np.int16, "I8": np.int8, "U8": np.uint8, "BOOL": np.bool_}
_CODES = {np.dtype(v).str: k for k, v in _DTYPES.items()}
_MAX_HEADER = 100 * 2**20  # the safetensors library's own bound


def write_safetensors(f: BinaryIO, tensors: Mapping[str, np.ndarray], metadata: Mapping[str, str]) -> None:
    """Write host ``tensors`` (C order, little-endian) and string ``metadata`` to the open binary file ``f``."""
    header: dict[str, Any] = {"__metadata__": {str(k): str(v) for k, v in metadata.items()}}
    arrays, offset = [], 0
    for name, value in tensors.items():
        arr = np.ascontiguousarray(value)
        code = _CODES.get(arr.dtype.newbyteorder("<").str)
        if code is None:
            raise ValueError(f"safetensors: tensor {name!r} has dtype {arr.dtype}, which the format cannot hold")
        arr = arr.astype(arr.dtype.newbyteorder("<"), copy=False)
        header[str(name)] = {"dtype": code, "shape": list(arr.shape), "data_offsets": [offset, offset + arr.nbytes]}
        arrays.append(arr)
        offset += arr.nbytes
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * (-len(text) % 8)  # the buffer starts 8-byte aligned
    f.write(struct.pack("<Q", len(text)))
    f.write(text)
    for arr in arrays:
        f.write(arr.tobytes())


def read_safetensors(path: str) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """The tensors (NumPy; bfloat16 widened exactly to float32) and the metadata of a safetensors file."""
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise ValueError(f"{path} is not a safetensors file: {size} bytes, shorter than its header length")
        (length,) = struct.unpack("<Q", head)
        if length > min(_MAX_HEADER, size - 8):
            raise ValueError(f"{path} is not a safetensors file (or is truncated): a header of {length} bytes in a "
                             f"file of {size}")
        try:
            header = loads_config(f.read(length).decode("utf-8"))  # an over-long integer: refused by its entry
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
            raise ValueError(f"{path}: the safetensors header is not valid JSON ({exc})") from exc
        if not isinstance(header, dict):
            raise ValueError(f"{path}: the safetensors header is not a JSON object")
        metadata = header.pop("__metadata__", None) or {}
        if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
            raise ValueError(f"{path}: the safetensors __metadata__ must map strings to strings")
        entries = _checked_entries(header, size - 8 - length, path)
        tensors = {}
        for name, (code, shape, begin, end) in entries.items():
            f.seek(8 + length + begin)
            data = f.read(end - begin)
            if code == "BF16":
                bits = np.frombuffer(data, dtype="<u2").astype(np.uint32) << 16
                tensors[name] = bits.view(np.float32).reshape(shape)
            else:
                tensors[name] = np.frombuffer(data, dtype=np.dtype(_DTYPES[code]).newbyteorder("<")).reshape(shape)
    return tensors, metadata


def _checked_entries(header: Mapping[str, Any], buffer: int, path: str) -> dict[str, tuple[str, tuple, int, int]]:
    """Each tensor's (dtype code, shape, begin, end), checked; the tensors must tile the buffer exactly."""
    entries = {}
    for name, spec in header.items():
        where = f"{path}: safetensors tensor {name!r}"
        if not isinstance(spec, dict):
            raise ValueError(f"{where}: its entry is not an object")
        code, shape, offsets = spec.get("dtype"), spec.get("shape"), spec.get("data_offsets")
        if code not in _DTYPES and code != "BF16":
            raise ValueError(f"{where}: dtype {code!r} is not one xpcnn reads ({sorted([*_DTYPES, 'BF16'])})")
        if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0
                                                  for d in shape):
            raise ValueError(f"{where}: shape {shape!r} is not a list of non-negative ints")
        if (not isinstance(offsets, list) or len(offsets) != 2
                or not all(isinstance(o, int) and not isinstance(o, bool) for o in offsets)
                or not 0 <= offsets[0] <= offsets[1] <= buffer):
            raise ValueError(f"{where}: data_offsets {offsets!r} do not lie in the {buffer}-byte buffer")
        itemsize = 2 if code == "BF16" else np.dtype(_DTYPES[code]).itemsize
        if offsets[1] - offsets[0] != math.prod(shape) * itemsize:
            raise ValueError(f"{where}: shape {shape} of {code} needs {math.prod(shape) * itemsize} bytes, the "
                             f"offsets give {offsets[1] - offsets[0]}")
        entries[str(name)] = (code, tuple(shape), offsets[0], offsets[1])
    spans = sorted((begin, end) for _, _, begin, end in entries.values())
    covered = 0
    for begin, end in spans:
        if begin != covered:
            raise ValueError(f"{path}: the safetensors tensors overlap or leave holes in the buffer at byte {begin}")
        covered = end
    if covered != buffer:
        raise ValueError(f"{path}: the safetensors tensors cover {covered} of the buffer's {buffer} bytes")
    return entries
