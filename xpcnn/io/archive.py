"""Reading an xpcnn file within a budget: the zip is opened, its config read and parsed (bounded in size and
nesting), and each array read only when the loader asks for it by name, after its ``.npy`` header.

Nothing is inflated that the config does not name. A member's header (dtype, shape) is read first and made
available as ``shape``/``dtype``, so the loader compares it with what the model expects before the data is
loaded; the data read is exactly what that header declares (and the member's recorded size must agree).
Object arrays (pickles) are refused: nothing read from a file runs code. Before a loader reads any array,
``verify`` streams every member the config names to its end, a chunk at a time, so that each is checked
against its zip CRC-32: a damaged file is refused whole, even where the loader reads only part of it
(``load_weights`` never reads the optimizer state).
"""

from __future__ import annotations

import json
import math
import os
import zipfile
import zlib
from collections.abc import Iterable
from typing import Any

import numpy as np

from .schema import loads_config

__all__ = ["Archive", "ArchiveMember", "CHUNK_BYTES", "MAX_CONFIG_BYTES", "MAX_JSON_DEPTH"]

MAX_CONFIG_BYTES = 64 * 2**20  # the JSON config of any real model is far smaller
MAX_JSON_DEPTH = 64
CHUNK_BYTES = 2**20  # what ``verify`` holds of a member at a time
# what reading a damaged or hostile zip can raise: encrypted members (RuntimeError) and unknown compression
# methods (NotImplementedError) included
_READ_ERRORS = (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError, RuntimeError, NotImplementedError)


class Archive:
    """An xpcnn file open for reading (a context manager): ``config`` and ``member(name)``."""

    def __init__(self, path: Any) -> None:
        self.path = os.fspath(path)
        if not os.path.exists(self.path):
            raise FileNotFoundError(f"no such file: {self.path}")
        with open(self.path, "rb") as f:
            magic = f.read(6)
        if magic.startswith(b"\x93NUMPY"):
            raise ValueError(f"{self.path} holds a single NumPy array (.npy), not an xpcnn model/weights file")
        if not magic.startswith((b"PK\x03\x04", b"PK\x05\x06")):
            raise ValueError(f"{self.path} is not an xpcnn model/weights file (not a zip archive written by xpcnn; "
                             f"it starts with {magic!r})")
        try:
            self._zip = zipfile.ZipFile(self.path)
        except _READ_ERRORS as exc:  # BadZipFile when the end of the archive is missing
            raise ValueError(f"{self.path} is damaged or truncated: not a readable xpcnn model/weights file "
                             f"({type(exc).__name__}: {exc})") from exc
        try:
            self.config = self._read_config()
        except BaseException:
            self._zip.close()
            raise

    def __enter__(self) -> Archive:
        return self

    def __exit__(self, *exc: object) -> None:
        self._zip.close()

    def member(self, name: Any, where: str) -> ArchiveMember:
        """The array ``name`` the config names at ``where``, its header read (its data not yet)."""
        if not isinstance(name, str) or f"{name}.npy" not in self._zip.NameToInfo:
            raise ValueError(f"{self.path}: {where} names array {name!r}, which the file does not hold (damaged file)")
        return ArchiveMember(self, f"{name}.npy", where)

    def verify(self, named: Iterable[tuple[Any, str]]) -> None:
        """Check every array ``name`` the config names at ``where`` (pairs ``(name, where)``) against its zip
        CRC-32: its header first (``member``), then its data streamed to the end, ``CHUNK_BYTES`` at a time.
        The config entry was checked when it was read; an array named twice is read once."""
        seen = set()
        for name, where in named:
            if name not in seen:
                seen.add(name)
                self.member(name, where).verify()

    def _read_config(self) -> dict[str, Any]:
        info = self._zip.NameToInfo.get("config.npy")
        if info is None:
            raise ValueError(f"{self.path} is a NumPy .npz archive but not an xpcnn file (it has no xpcnn config "
                             "entry)")
        if info.file_size > MAX_CONFIG_BYTES:
            raise ValueError(f"{self.path}: the config entry holds {info.file_size:,} bytes, more than the "
                             f"{MAX_CONFIG_BYTES:,} any model needs (damaged or hostile file)")
        member = ArchiveMember(self, "config.npy", "config")
        if member.dtype != np.uint8 or len(member.shape) != 1:
            raise ValueError(f"{self.path} is a NumPy .npz archive but not an xpcnn file (its config entry is not "
                             "UTF-8 text)")
        try:
            text = np.asarray(member).tobytes().decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ValueError(f"{self.path}: the config entry is not UTF-8 text; the file is damaged ({exc})") from exc
        depth = json_depth(text)
        if depth > MAX_JSON_DEPTH:
            raise ValueError(f"{self.path}: the config nests {depth} levels deep, more than the {MAX_JSON_DEPTH} "
                             "any model needs (damaged or hostile file)")
        try:
            config = loads_config(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{self.path}: the config entry is not valid JSON; the file is damaged ({exc})") from exc
        if not isinstance(config, dict):
            raise ValueError(f"{self.path} is not an xpcnn model/weights file (its config is not a JSON object)")
        return config


class ArchiveMember:
    """One ``.npy`` member: ``shape``, ``dtype`` and ``ndim`` from its header; ``np.asarray(member)`` reads the
    data (exactly the bytes the header declares)."""

    def __init__(self, archive: Archive, member: str, where: str) -> None:
        self._archive, self._where = archive, where
        self._info = archive._zip.NameToInfo[member]
        try:
            with archive._zip.open(self._info) as f:
                version = np.lib.format.read_magic(f)
                read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                               else np.lib.format.read_array_header_2_0)
                shape, self._fortran, dtype = read_header(f)
                self._offset = f.tell()
        except _READ_ERRORS as exc:
            raise self._error(f"its .npy header cannot be read ({type(exc).__name__}: {exc})") from exc
        if dtype.hasobject or dtype.kind not in "biuf":
            raise self._error(f"it holds {dtype} values; xpcnn files hold numbers only (never pickled objects)")
        self.shape, self.dtype, self.ndim = tuple(int(d) for d in shape), dtype, len(shape)
        self.nbytes = math.prod(self.shape) * dtype.itemsize
        if self._info.file_size != self._offset + self.nbytes:
            raise self._error(f"its header declares {self.shape} of {dtype} ({self.nbytes:,} bytes) but the member "
                              f"holds {self._info.file_size - self._offset:,}")

    def _error(self, what: str) -> ValueError:
        return ValueError(f"{self._archive.path}: array {self._info.filename!r} ({self._where}) is damaged: {what}")

    def verify(self) -> None:
        """Read the member to its end, ``CHUNK_BYTES`` at a time, so that zipfile compares it with its CRC-32."""
        try:
            with self._archive._zip.open(self._info) as f:
                while f.read(CHUNK_BYTES):
                    pass
        except _READ_ERRORS as exc:
            raise self._error(f"its data does not read back as the zip recorded it ({type(exc).__name__}: "
                              f"{exc})") from exc

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        buffer = np.empty(self.nbytes, dtype=np.uint8)  # writable: a backend may share it (torch.asarray does)
        try:
            with self._archive._zip.open(self._info) as f:
                f.read(self._offset)
                got = f.readinto(memoryview(buffer))
                f.read(1)  # at the end: the CRC of the whole member is checked
        except _READ_ERRORS as exc:
            raise self._error(f"{type(exc).__name__}: {exc}") from exc
        if got != self.nbytes:
            raise self._error(f"{got:,} of its {self.nbytes:,} bytes are there (truncated)")
        array = buffer.view(self.dtype).reshape(self.shape, order="F" if self._fortran else "C")
        return array if dtype is None else array.astype(dtype)


def json_depth(text: str) -> int:
    """How deeply ``[`` and ``{`` nest in JSON ``text`` (outside strings): checked before ``json.loads``,
    whose recursion a hostile file could otherwise exhaust."""
    depth = deepest = 0
    in_string = escaped = False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth -= 1
    return deepest
