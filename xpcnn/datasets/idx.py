"""IDX releases (MNIST, Fashion-MNIST): parse the format, verify each file, download it once when missing.

One reader serves every release in this format; a release is a description (file names, checksums, shapes,
mirrors), not code. The arrays are NumPy on the host (I/O at the edge of the library); a ``DataLoader`` moves
them to the device once.
"""

from __future__ import annotations

import dataclasses
import gzip
import math
import os
import pathlib
import zlib
from collections.abc import Mapping, Sequence

import numpy as np

from .._checks import check_flag
from ._fetch import CorruptDatasetError, data_dir, download, md5

__all__ = ["IdxRelease", "load_idx_release", "read_idx"]

_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
_SPLITS = (("train-images-idx3-ubyte", "train-labels-idx1-ubyte"), ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"))


@dataclasses.dataclass(frozen=True)
class IdxRelease:
    """One IDX dataset: the four files of ``_SPLITS`` with their MD5 sums and shapes, where to fetch them.

    ``md5_of`` says what the sums cover: ``"contents"`` (the decompressed bytes, so that a ``.gz`` and an
    uncompressed copy both verify) or ``"gzip"`` (the published ``.gz`` files themselves, read only as such).
    """

    name: str  # folder name under $XPCNN_DATA and title in messages
    title: str
    files: Mapping[str, tuple[str, tuple[int, ...]]]  # file name without .gz -> (MD5, shape)
    mirrors: tuple[str, ...]
    class_names: tuple[str, ...]
    md5_of: str = "contents"


def read_idx(data: bytes, name: str = "<bytes>") -> np.ndarray:
    """Parse an IDX file (magic ``00 00 type ndim``, big-endian int32 dims, then the values).

    Raises CorruptDatasetError naming ``name`` on a bad magic number, unknown type or wrong length.
    """
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise CorruptDatasetError(f"{name}: not an IDX file (bad magic number {data[:4].hex() or 'empty'})")
    code, ndim = data[2], data[3]
    if code not in _IDX_DTYPES:
        raise CorruptDatasetError(f"{name}: unknown IDX element type 0x{code:02x}")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise CorruptDatasetError(f"{name}: IDX header truncated ({len(data)} bytes)")
    shape = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    dtype = np.dtype(_IDX_DTYPES[code])
    expected = header + math.prod(shape) * dtype.itemsize  # Python ints: no overflow
    if len(data) != expected:
        raise CorruptDatasetError(
            f"{name}: IDX header says shape {shape} ({expected} bytes) but the file holds {len(data)} bytes"
        )
    return np.frombuffer(data, dtype=dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


def _decompressed(path: pathlib.Path, raw: bytes) -> bytes:
    try:
        return gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw
    except (OSError, EOFError, zlib.error) as exc:
        raise CorruptDatasetError(f"{path}: cannot decompress ({exc}); delete it and load again") from exc


def _read_verified(path: pathlib.Path, expected_md5: str, release: IdxRelease) -> bytes:
    """The decompressed bytes of ``path``, or CorruptDatasetError when the checksum does not match."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise CorruptDatasetError(f"{path}: cannot read ({exc})") from exc
    covered = _decompressed(path, raw) if release.md5_of == "contents" else raw
    digest = md5(covered)
    if digest != expected_md5:
        what = "contents" if release.md5_of == "contents" else "file"
        raise CorruptDatasetError(
            f"{path}: checksum mismatch (MD5 of {what} {digest}, expected {expected_md5}); the file is damaged "
            f"or not the canonical {release.title} file: delete it and load again"
        )
    return covered if release.md5_of == "contents" else _decompressed(path, raw)


def _find(directory: pathlib.Path, name: str, release: IdxRelease) -> pathlib.Path | None:
    if (directory / f"{name}.gz").is_file():
        return directory / f"{name}.gz"
    if (directory / name).is_file():
        if release.md5_of == "gzip":
            raise CorruptDatasetError(
                f"{directory / name}: {release.title}'s published checksums are those of the .gz files, so an "
                f"uncompressed copy cannot be verified; put {name}.gz there instead"
            )
        return directory / name
    return None


def load_idx_release(
    release: IdxRelease,
    root: str | os.PathLike[str] | None,
    download_missing: bool,
    mirrors: Sequence[str] | None,
    progress: bool,
) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """``((x_train, y_train), (x_test, y_test))``: float32 ``(N, 1, H, W)`` in [0, 1] and int64 labels."""
    download_missing = check_flag(download_missing, "download", release.title)
    progress = check_flag(progress, "progress", release.title)
    directory = data_dir(release.name, root)
    by_hand = (f"Download the four {release.title} files ({', '.join(f + '.gz' for f in release.files)}) by hand "
               f"and put them in {directory} (or pass root=..., or set XPCNN_DATA to a folder that holds "
               f"{release.name}/).")
    arrays = {}
    for name, (checksum, shape) in release.files.items():
        path = _find(directory, name, release)
        if path is None:
            if not download_missing:
                raise FileNotFoundError(
                    f"{release.title} file {name}.gz not found in {directory}; pass download=True, root=..., "
                    f"or set XPCNN_DATA to a folder that holds {release.name}/"
                )
            path = download(f"{name}.gz", directory, lambda p, c=checksum: _read_verified(p, c, release),
                            release.mirrors if mirrors is None else mirrors, by_hand=by_hand, progress=progress)
        arr = read_idx(_read_verified(path, checksum, release), str(path))
        if arr.shape != shape or arr.dtype != np.uint8:
            raise CorruptDatasetError(f"{path}: expected uint8 {shape}, found {arr.dtype} {arr.shape}")
        arrays[name] = arr

    def split(images: str, labels: str) -> tuple[np.ndarray, np.ndarray]:
        x = arrays[images].astype(np.float32) / np.float32(255.0)
        return x[:, None], arrays[labels].astype(np.int64)

    train, test = (split(*names) for names in _SPLITS)
    return train, test
