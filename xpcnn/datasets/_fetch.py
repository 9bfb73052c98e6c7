"""What every dataset loader shares: the cache folder, checksums, errors, and downloads from mirrors.

A download streams into a temporary file beside its destination, is verified, then renamed with
``os.replace``: an interrupted or damaged download never appears under the real name.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import pathlib
import tempfile
import urllib.request
from collections.abc import Callable, Sequence
from typing import Any

__all__ = [
    "CorruptDatasetError",
    "DownloadError",
    "data_dir",
    "download",
    "md5",
    "progress_bar",
]

_CHUNK = 1 << 20


class CorruptDatasetError(ValueError):
    """A data file exists but is damaged (bad checksum, bad header, truncated); the message names it."""


class DownloadError(ConnectionError):
    """No mirror delivered a file: the machine is probably offline; the message says where to put files."""


def md5(data: bytes | pathlib.Path) -> str:
    """Hex MD5 of bytes or of a file's contents (read in chunks): enough to catch truncated or damaged
    downloads (not a security check)."""
    digest = hashlib.md5(usedforsecurity=False)
    if isinstance(data, pathlib.Path):
        with data.open("rb") as f:
            while chunk := f.read(_CHUNK):
                digest.update(chunk)
    else:
        digest.update(data)
    return digest.hexdigest()


def data_dir(name: str, root: str | os.PathLike[str] | None = None) -> pathlib.Path:
    """Where dataset ``name`` lives: ``root`` when given, else ``$XPCNN_DATA/<name>``, else the user cache
    (``$XDG_CACHE_HOME/xpcnn/<name>`` or ``~/.cache/xpcnn/<name>``)."""
    if root is not None:
        return pathlib.Path(root).expanduser()
    env = os.environ.get("XPCNN_DATA")
    if env:
        return pathlib.Path(env).expanduser() / name
    cache = os.environ.get("XDG_CACHE_HOME") or pathlib.Path.home() / ".cache"
    return pathlib.Path(cache).expanduser() / "xpcnn" / name


def progress_bar(total: int | None, desc: str, unit: str = "B") -> Any:
    """A tqdm bar when tqdm is installed, else None (progress is a nicety, not a dependency)."""
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return None
    return tqdm(total=total, desc=desc, unit=unit, unit_scale=unit == "B", leave=False)


def download(
    filename: str,
    directory: pathlib.Path,
    verify: Callable[[pathlib.Path], object],
    mirrors: Sequence[str],
    *,
    by_hand: str,
    progress: bool = True,
    timeout: float = 30.0,
) -> pathlib.Path:
    """Fetch ``filename`` from the first mirror whose copy passes ``verify`` (which raises on a bad file);
    write it atomically into ``directory``. ``by_hand`` ends the offline error: which files to put where."""
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / filename
    errors = []
    for base in mirrors:
        url = base.rstrip("/") + "/" + filename
        fd, tmp = tempfile.mkstemp(prefix=f".{filename}.", suffix=".part", dir=directory)
        try:
            with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as response:
                total = int(response.headers.get("Content-Length") or 0) or None
                bar = progress_bar(total, filename) if progress else None
                try:
                    while chunk := response.read(1 << 16):
                        out.write(chunk)
                        if bar is not None:
                            bar.update(len(chunk))
                finally:
                    if bar is not None:
                        bar.close()
            verify(pathlib.Path(tmp))
            os.replace(tmp, target)
            return target
        except (OSError, ValueError, http.client.HTTPException) as exc:  # URLError, HTTPError, bad checksum
            errors.append(f"{url}: {exc}")
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)
    raise DownloadError(
        f"could not download {filename} from any mirror; this machine seems offline or the mirrors are down.\n"
        + "\n".join(f"  {e}" for e in errors)
        + f"\n{by_hand}"
    )
