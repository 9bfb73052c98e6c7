"""MNIST: read the four IDX files, verify them, download them once into a cache when they are missing.

The data are returned as NumPy arrays on the host (this is I/O at the edge of the library); a
``DataLoader`` moves them to the device once. Checksums are taken over the *decompressed* bytes so that a
``.gz`` and an uncompressed copy of the same file both verify, and a corrupt file is never used silently.
"""

from __future__ import annotations

import gzip
import hashlib
import http.client
import os
import pathlib
import tempfile
import urllib.request
import zlib
from collections.abc import Sequence

import numpy as np

__all__ = [
    "MIRRORS",
    "CorruptDatasetError",
    "DownloadError",
    "default_data_dir",
    "download",
    "load_mnist",
    "md5",
    "read_idx",
]

MIRRORS: tuple[str, ...] = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
)

#: file name (without .gz) -> MD5 of the decompressed contents, expected shape
FILES: dict[str, tuple[str, tuple[int, ...]]] = {
    "train-images-idx3-ubyte": ("6bbc9ace898e44ae57da46a324031adb", (60000, 28, 28)),
    "train-labels-idx1-ubyte": ("a25bea736e30d166cdddb491f175f624", (60000,)),
    "t10k-images-idx3-ubyte": ("2646ac647ad5339dbf082846283269ea", (10000, 28, 28)),
    "t10k-labels-idx1-ubyte": ("27ae3e4e09519cfbb04c329615203637", (10000,)),
}

_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


class CorruptDatasetError(ValueError):
    """A data file exists but is damaged (bad checksum, bad header, truncated); the message names it."""


class DownloadError(ConnectionError):
    """No mirror delivered a file: the machine is probably offline; the message says where to put files."""


def md5(data: bytes) -> str:
    """Hex MD5 of ``data``: enough to catch truncated or damaged downloads (not a security check)."""
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


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
    expected = header + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(data) != expected:
        raise CorruptDatasetError(
            f"{name}: IDX header says shape {shape} ({expected} bytes) but the file holds {len(data)} bytes"
        )
    return np.frombuffer(data, dtype=dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


def default_data_dir() -> pathlib.Path:
    """Where MNIST lives when no ``root`` is given: ``$XPCNN_DATA/mnist``, else the user cache."""
    env = os.environ.get("XPCNN_DATA")
    if env:
        return pathlib.Path(env).expanduser() / "mnist"
    cache = os.environ.get("XDG_CACHE_HOME") or pathlib.Path.home() / ".cache"
    return pathlib.Path(cache).expanduser() / "xpcnn" / "mnist"


def _find(directory: pathlib.Path, name: str) -> pathlib.Path | None:
    for candidate in (directory / name, directory / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    return None


def _read_verified(path: pathlib.Path, expected_md5: str) -> bytes:
    """The decompressed bytes of ``path``, or CorruptDatasetError when they do not match the checksum."""
    try:
        raw = path.read_bytes()
        data = gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw
    except (OSError, EOFError, zlib.error) as exc:
        raise CorruptDatasetError(f"{path}: cannot decompress ({exc}); delete it and load again") from exc
    digest = md5(data)
    if digest != expected_md5:
        raise CorruptDatasetError(
            f"{path}: checksum mismatch (MD5 of contents {digest}, expected {expected_md5}); "
            "the file is damaged or not the canonical MNIST file: delete it and load again"
        )
    return data


def download(
    name: str,
    directory: pathlib.Path,
    expected_md5: str,
    mirrors: Sequence[str] = MIRRORS,
    progress: bool = True,
    timeout: float = 30.0,
) -> pathlib.Path:
    """Fetch ``name``.gz from the first mirror that serves a verified copy; write it atomically.

    The file is streamed into a temporary file beside its destination, checked, then renamed with
    ``os.replace``, so an interrupted download never leaves a half file under the real name.
    """
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / f"{name}.gz"
    errors = []
    for base in mirrors:
        url = base.rstrip("/") + f"/{name}.gz"
        fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".part", dir=directory)
        try:
            with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as response:
                total = int(response.headers.get("Content-Length") or 0) or None
                bar = _progress_bar(total, f"{name}.gz") if progress else None
                try:
                    while chunk := response.read(1 << 16):
                        out.write(chunk)
                        if bar is not None:
                            bar.update(len(chunk))
                finally:
                    if bar is not None:
                        bar.close()
            _read_verified(pathlib.Path(tmp), expected_md5)
            os.replace(tmp, target)
            return target
        except (OSError, ValueError, http.client.HTTPException) as exc:  # URLError, HTTPError, bad checksum
            errors.append(f"{url}: {exc}")
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)
    raise DownloadError(
        f"could not download {name}.gz from any mirror; this machine seems offline or the mirrors are down.\n"
        + "\n".join(f"  {e}" for e in errors)
        + f"\nDownload the four MNIST files ({', '.join(f + '.gz' for f in FILES)}) by hand and put them in "
        f"{directory} (or pass root=..., or set XPCNN_DATA to a folder that holds mnist/)."
    )


def _progress_bar(total: int | None, desc: str):
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return None
    return tqdm(total=total, desc=desc, unit="B", unit_scale=True, leave=False)


def load_mnist(
    root: str | os.PathLike[str] | None = None,
    download: bool = True,
    *,
    mirrors: Sequence[str] | None = None,
    progress: bool = True,
) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """MNIST as ``((x_train, y_train), (x_test, y_test))``.

    Images are float32 ``(N, 1, 28, 28)`` in [0, 1] (NCHW, ready for Conv2D); labels are int64 ``(N,)``.
    Files are read from ``root``, else ``$XPCNN_DATA/mnist``, else ``$XDG_CACHE_HOME/xpcnn/mnist`` (or
    ``~/.cache/xpcnn/mnist``), each as ``.gz`` or uncompressed. Missing files are downloaded into that
    folder when ``download`` is true (from ``mirrors``, default ``MIRRORS``).
    """
    directory = pathlib.Path(root).expanduser() if root is not None else default_data_dir()
    arrays = {}
    for name, (checksum, shape) in FILES.items():
        path = _find(directory, name)
        if path is None:
            if not download:
                raise FileNotFoundError(
                    f"MNIST file {name} (or {name}.gz) not found in {directory}; pass download=True, "
                    "root=..., or set XPCNN_DATA to a folder that holds mnist/"
                )
            path = _download(name, directory, checksum, MIRRORS if mirrors is None else mirrors, progress)
        arr = read_idx(_read_verified(path, checksum), str(path))
        if arr.shape != shape or arr.dtype != np.uint8:
            raise CorruptDatasetError(f"{path}: expected uint8 {shape}, found {arr.dtype} {arr.shape}")
        arrays[name] = arr

    def images(name: str) -> np.ndarray:
        return (arrays[name].astype(np.float32) / np.float32(255.0)).reshape(-1, 1, 28, 28)

    return (
        (images("train-images-idx3-ubyte"), arrays["train-labels-idx1-ubyte"].astype(np.int64)),
        (images("t10k-images-idx3-ubyte"), arrays["t10k-labels-idx1-ubyte"].astype(np.int64)),
    )


_download = download  # load_mnist's ``download`` argument shadows the function inside it
