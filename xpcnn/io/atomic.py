"""Writing a file atomically: a temp file beside the target, renamed over it when whole.

A failed or killed save leaves an existing file intact and readers never see half a file. The temp file is
named after its target and the writing process (``.<name>.<pid>@<host>.<random>.xpcnn-tmp``), so a save killed
outright (SIGKILL) leaves a file users recognise, which the next save of that target on the same host removes
once its process is gone (on a shared file system a process id means nothing on another host).
"""

from __future__ import annotations

import os
import re
import socket
import stat
import tempfile
import zlib
from collections.abc import Callable
from typing import Any, BinaryIO

__all__ = ["atomic_write", "current_umask", "remove_stale_temporaries"]

_TEMP_SUFFIX = ".xpcnn-tmp"


def current_umask() -> int:
    """The process's umask (reading it means setting it, so it is set back at once)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _host() -> str:
    """This machine as it may appear in a file name: the start of its name in letters, digits and dashes, then
    a checksum of the whole name, so hosts whose names differ only where that rewrote them stay apart."""
    name = socket.gethostname()
    return f"{re.sub(r'[^A-Za-z0-9-]', '-', name)[:16]}-{zlib.crc32(name.encode()):08x}"


def atomic_write(path: str, write: Callable[[BinaryIO], Any]) -> None:
    """Call ``write(f)`` on a temp file beside ``path``, then rename it to ``path``; errors name the user's
    path, never the temp file."""
    folder = os.path.dirname(os.path.abspath(path))
    _check_folder(path, folder)
    if os.path.isdir(path):
        raise IsADirectoryError(f"cannot save to {path}: it is a directory")
    remove_stale_temporaries(folder, os.path.basename(path))
    tmp = None
    try:
        mode = os.stat(path).st_mode & 0o777 if os.path.isfile(path) else 0o666 & ~current_umask()
        fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.{os.getpid()}@{_host()}.", suffix=_TEMP_SUFFIX,
                                   dir=folder)
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
        _fsync_folder(folder)  # the rename too survives a power cut (a caller may delete the file it replaces)
    except BaseException as exc:
        if tmp is not None:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
        if isinstance(exc, OSError):
            raise type(exc)(f"cannot save to {path}: {exc.strerror or exc}") from exc
        raise


def _check_folder(path: str, folder: str) -> None:
    """Refuse a save whose ``folder`` is missing, not a folder or cannot be reached, saying which (not
    ``os.path.isdir``, which answers False alike for a folder that is missing and one behind a folder without
    search permission)."""
    try:
        mode = os.stat(folder).st_mode
    except FileNotFoundError:
        raise FileNotFoundError(f"cannot save to {path}: the folder {folder} does not exist") from None
    except PermissionError as exc:
        raise PermissionError(f"cannot save to {path}: permission denied: the folder {folder} cannot be reached "
                              "(a folder on its way lacks search permission)") from exc
    except OSError as exc:  # a file on the way (NotADirectoryError), a loop of links, ...
        raise type(exc)(f"cannot save to {path}: the folder {folder} cannot be reached: {exc.strerror or exc}") from exc
    if not stat.S_ISDIR(mode):
        raise NotADirectoryError(f"cannot save to {path}: {folder} is not a folder")


def _fsync_folder(folder: str) -> None:
    """Make the folder's entries durable (POSIX; elsewhere the rename is left to the file system)."""
    if os.name != "posix":
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def remove_stale_temporaries(folder: str, name: str) -> None:
    """Remove the temp files of saves of ``name`` on this host whose process is gone (killed mid-write). Only
    where a process can be asked whether it lives without harm (POSIX: signal 0); a live writer's file, and any
    other host's, is kept. Temp files named without a host (as earlier versions named them) count as this
    host's."""
    if os.name != "posix":
        return
    pattern = re.compile(rf"\.{re.escape(name)}\.(\d+)(?:@{re.escape(_host())})?\.[^.@]+{re.escape(_TEMP_SUFFIX)}")
    for entry in os.listdir(folder):
        match = pattern.fullmatch(entry)
        if match is None or int(match.group(1)) == os.getpid():
            continue
        try:
            os.kill(int(match.group(1)), 0)
            continue  # its writer still runs
        except ProcessLookupError:
            pass
        except (PermissionError, OverflowError):
            continue
        try:
            os.unlink(os.path.join(folder, entry))
        except OSError:
            pass
