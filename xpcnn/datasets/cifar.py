"""CIFAR-10 and CIFAR-100 from their binary releases: download, verify, extract safely, read the records.

Only the binary release is read (fixed-length records: label byte(s), then 1024 red, 1024 green and 1024
blue values, row-major): the pickled "python version" would run code on load. The archive's MD5 is checked
before extraction; extraction writes each member through a filter (regular files and folders under the
release's one top folder, nothing else: no links, devices, absolute paths, ``:`` or ``..`` leading out) into a
temporary folder renamed into place when whole, with a manifest of the extracted files' MD5 sums checked on
every later load.
A folder extracted by hand has no manifest (the release publishes no per-file sums): it is checked for its
files' sizes and label ranges only.
"""

from __future__ import annotations

import dataclasses
import errno
import json
import os
import pathlib
import posixpath
import shutil
import tarfile
import tempfile
import zlib
from collections.abc import Mapping, Sequence

import numpy as np

from .._checks import check_flag
from ..io.atomic import current_umask
from ._fetch import CorruptDatasetError, data_dir, download, md5

__all__ = ["CIFAR10", "CIFAR100", "CifarRelease", "load_cifar10", "load_cifar100", "load_cifar_release"]

Splits = tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]

_PIXELS = 3 * 32 * 32
_MANIFEST = ".xpcnn-manifest.json"
_MACHINE_ERRORS = {errno.ENOSPC, errno.EACCES, errno.EPERM, errno.EROFS, getattr(errno, "EDQUOT", errno.ENOSPC)}


@dataclasses.dataclass(frozen=True)
class CifarRelease:
    """One binary CIFAR release: its archive and checksum, the top folder inside it, which files hold
    how many records, and the label fields before each image (``label_modes``, in record order)."""

    name: str  # folder under $XPCNN_DATA
    title: str
    archive: str
    md5: str
    folder: str
    train_files: Mapping[str, int]  # file -> records
    test_files: Mapping[str, int]
    label_modes: Mapping[str, tuple[str, ...]]  # label mode -> class names, in record order
    mirrors: tuple[str, ...] = ("https://www.cs.toronto.edu/~kriz/",)

    @property
    def record_bytes(self) -> int:
        return len(self.label_modes) + _PIXELS


CIFAR10 = CifarRelease(
    name="cifar10",
    title="CIFAR-10",
    archive="cifar-10-binary.tar.gz",
    md5="c32a1d4ab5d03f1284b67883e8d87530",
    folder="cifar-10-batches-bin",
    train_files={f"data_batch_{i}.bin": 10000 for i in range(1, 6)},
    test_files={"test_batch.bin": 10000},
    label_modes={"label": ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
                           "truck")},
)

CIFAR100 = CifarRelease(
    name="cifar100",
    title="CIFAR-100",
    archive="cifar-100-binary.tar.gz",
    md5="03b5dce01913d631647c71ecec9e9cb8",
    folder="cifar-100-binary",
    train_files={"train.bin": 50000},
    test_files={"test.bin": 10000},
    label_modes={
        "coarse": tuple("""aquatic_mammals fish flowers food_containers fruit_and_vegetables
            household_electrical_devices household_furniture insects large_carnivores
            large_man-made_outdoor_things large_natural_outdoor_scenes large_omnivores_and_herbivores
            medium_mammals non-insect_invertebrates people reptiles small_mammals trees vehicles_1
            vehicles_2""".split()),
        "fine": tuple("""apple aquarium_fish baby bear beaver bed bee beetle bicycle bottle bowl boy bridge bus
            butterfly camel can castle caterpillar cattle chair chimpanzee clock cloud cockroach couch crab
            crocodile cup dinosaur dolphin elephant flatfish forest fox girl hamster house kangaroo keyboard
            lamp lawn_mower leopard lion lizard lobster man maple_tree motorcycle mountain mouse mushroom
            oak_tree orange orchid otter palm_tree pear pickup_truck pine_tree plain plate poppy porcupine
            possum rabbit raccoon ray road rocket rose sea seal shark shrew skunk skyscraper snail snake
            spider squirrel streetcar sunflower sweet_pepper table tank telephone television tiger tractor
            train trout tulip turtle wardrobe whale willow_tree wolf woman worm""".split()),
    },
)


def _member_path(member: tarfile.TarInfo, release: CifarRelease, archive: pathlib.Path) -> str | None:
    """The member's path inside the release folder, None for the folder itself; refuses anything else."""
    name = member.name
    parts = posixpath.normpath(name).split("/")
    if name.startswith(("/", "\\")) or ".." in parts or any(c in name for c in ":\\\0"):
        raise CorruptDatasetError(f"{archive}: member {name!r} would escape the folder {archive.parent}; "
                                  "the archive is not the canonical release and is not extracted")
    if not (member.isfile() or member.isdir()):
        raise CorruptDatasetError(f"{archive}: member {name!r} is a link or special file; the canonical "
                                  f"{release.title} archive holds only files and folders")
    if parts[0] != release.folder:
        raise CorruptDatasetError(f"{archive}: member {name!r} lies outside {release.folder}/, the one folder "
                                  f"of the {release.title} release")
    return "/".join(parts[1:]) or None


def _extract(archive: pathlib.Path, release: CifarRelease) -> None:
    """Extract ``release.folder`` from ``archive`` beside it, all or nothing, with a manifest of MD5 sums."""
    tmp = pathlib.Path(tempfile.mkdtemp(prefix=f".{release.folder}.", suffix=".part", dir=archive.parent))
    try:
        try:
            sums = _extract_members(archive, release, tmp)
        except (tarfile.TarError, EOFError, zlib.error, OSError) as exc:
            if isinstance(exc, OSError) and exc.errno in _MACHINE_ERRORS:  # the disk, not the archive
                raise
            raise CorruptDatasetError(f"{archive}: cannot extract ({exc}); delete it and load again") from exc
        (tmp / _MANIFEST).write_text(json.dumps({"md5": sums}, indent=1))
        os.chmod(tmp, 0o777 & ~current_umask())  # mkdtemp's folder is private; the cache may be shared
        try:
            os.replace(tmp, archive.parent / release.folder)
        except OSError:
            if not (archive.parent / release.folder).is_dir():  # else another process extracted it meanwhile
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _extract_members(archive: pathlib.Path, release: CifarRelease, tmp: pathlib.Path) -> dict[str, str]:
    """Write the release folder's members into ``tmp``; returns their MD5 sums by inner path."""
    expected = {**release.train_files, **release.test_files}
    sums = {}
    with tarfile.open(archive, "r:gz") as tar:
        for member in tar:
            inner = _member_path(member, release, archive)
            if inner is None:
                continue
            target = tmp.joinpath(*inner.split("/"))
            if member.isdir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            if inner in expected and member.size != expected[inner] * release.record_bytes:
                raise CorruptDatasetError(f"{archive}: member {member.name!r} holds {member.size} bytes, not "
                                          f"{expected[inner]} records of {release.record_bytes} bytes")
            target.parent.mkdir(parents=True, exist_ok=True)
            source = tar.extractfile(member)
            with source, target.open("wb") as out:
                shutil.copyfileobj(source, out, 1 << 20)
            sums[inner] = md5(target)
    missing = sorted(set(expected) - set(sums))
    if missing:
        raise CorruptDatasetError(f"{archive}: {release.folder}/{missing[0]} is missing from the archive")
    return sums


def _verify_archive(path: pathlib.Path, release: CifarRelease) -> None:
    digest = md5(path)
    if digest != release.md5:
        raise CorruptDatasetError(f"{path}: checksum mismatch (MD5 {digest}, expected {release.md5}); the file is "
                                  f"damaged or not the canonical {release.title} binary release: delete it and "
                                  "load again")


def _extracted_folder(directory: pathlib.Path, release: CifarRelease, download_missing: bool,
                      mirrors: Sequence[str] | None, progress: bool) -> pathlib.Path:
    """The release folder, extracted from the archive first when it is not there yet."""
    folder = directory / release.folder
    if folder.is_dir():
        return folder
    archive = directory / release.archive
    if not archive.is_file():
        if not download_missing:
            raise FileNotFoundError(f"{release.title}: neither {release.folder}/ nor {release.archive} found in "
                                    f"{directory}; pass download=True, root=..., or set XPCNN_DATA to a folder "
                                    f"that holds {release.name}/")
        by_hand = (f"Download {release.archive} (the binary version) from https://www.cs.toronto.edu/~kriz/cifar.html "
                   f"by hand and put it in {directory} (or pass root=..., or set XPCNN_DATA to a folder that "
                   f"holds {release.name}/).")
        archive = download(release.archive, directory, lambda p: _verify_archive(p, release),
                           release.mirrors if mirrors is None else mirrors, by_hand=by_hand, progress=progress)
    _verify_archive(archive, release)
    _extract(archive, release)
    return folder


def _read_records(folder: pathlib.Path, files: Mapping[str, int], release: CifarRelease,
                  sums: Mapping[str, str] | None) -> np.ndarray:
    """The records of ``files`` as one uint8 array ``(N, record_bytes)``, each file checked first."""
    chunks = []
    for name, count in files.items():
        path = folder / name
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise CorruptDatasetError(f"{path}: cannot read ({exc}); delete {folder} and load again") from exc
        if len(data) != count * release.record_bytes:
            raise CorruptDatasetError(f"{path}: {len(data)} bytes, expected {count} records of "
                                      f"{release.record_bytes} bytes; delete {folder} and load again")
        if sums is not None and md5(data) != sums.get(name):
            raise CorruptDatasetError(f"{path}: checksum mismatch with the manifest written when it was extracted; "
                                      f"the file was damaged since: delete {folder} and load again")
        chunks.append(np.frombuffer(data, dtype=np.uint8).reshape(count, release.record_bytes))
    return np.concatenate(chunks)


def _manifest(folder: pathlib.Path) -> Mapping[str, str] | None:
    """The MD5 sums recorded at extraction; None for a folder extracted by hand (checked by size only)."""
    path = folder / _MANIFEST
    if not path.is_file():
        return None
    try:
        sums = json.loads(path.read_text())["md5"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise CorruptDatasetError(f"{path}: unreadable manifest ({exc}); delete {folder} and load again") from exc
    if not isinstance(sums, dict):
        raise CorruptDatasetError(f"{path}: the manifest's md5 field is not a mapping; delete {folder}")
    return sums


def load_cifar_release(
    release: CifarRelease,
    label_mode: str,
    root: str | os.PathLike[str] | None = None,
    download: bool = True,
    *,
    mirrors: Sequence[str] | None = None,
    progress: bool = True,
) -> Splits:
    """``((x_train, y_train), (x_test, y_test))`` of ``release`` with labels of ``label_mode``."""
    download = check_flag(download, "download", release.title)
    progress = check_flag(progress, "progress", release.title)
    if label_mode not in release.label_modes:
        raise ValueError(f"{release.title}: label_mode must be one of {sorted(release.label_modes)}, "
                         f"got {label_mode!r}")
    folder = _extracted_folder(data_dir(release.name, root), release, download, mirrors, progress)
    sums = _manifest(folder)
    field = list(release.label_modes).index(label_mode)
    classes = len(release.label_modes[label_mode])
    label_bytes = len(release.label_modes)

    def split(files: Mapping[str, int]) -> tuple[np.ndarray, np.ndarray]:
        records = _read_records(folder, files, release, sums)
        labels = records[:, field].astype(np.int64)
        if labels.max(initial=0) >= classes:
            raise CorruptDatasetError(f"{folder}: a {label_mode} label reads {labels.max()}, but {release.title} "
                                      f"has {classes} classes; delete {folder} and load again")
        images = records[:, label_bytes:].reshape(-1, 3, 32, 32).astype(np.float32) / np.float32(255.0)
        return images, labels

    return split(release.train_files), split(release.test_files)


def load_cifar10(
    root: str | os.PathLike[str] | None = None,
    download: bool = True,
    *,
    mirrors: Sequence[str] | None = None,
    progress: bool = True,
) -> Splits:
    """CIFAR-10 as ``((x_train, y_train), (x_test, y_test))``: float32 ``(N, 3, 32, 32)`` in [0, 1] and int64
    labels (50,000 and 10,000 images). Read from ``root``, else ``$XPCNN_DATA/cifar10``, else the user cache;
    ``cifar-10-binary.tar.gz`` is downloaded there when missing (``download=True``), MD5-checked and extracted.
    Class names: ``class_names("cifar10")``."""
    return load_cifar_release(CIFAR10, "label", root, download, mirrors=mirrors, progress=progress)


def load_cifar100(
    root: str | os.PathLike[str] | None = None,
    download: bool = True,
    label_mode: str = "fine",
    *,
    mirrors: Sequence[str] | None = None,
    progress: bool = True,
) -> Splits:
    """CIFAR-100 as ``load_cifar10``, with the 100 ``"fine"`` labels or the 20 ``"coarse"`` superclasses
    (``label_mode``), from ``cifar-100-binary.tar.gz`` under ``$XPCNN_DATA/cifar100``. Class names:
    ``class_names("cifar100", label_mode)``."""
    return load_cifar_release(CIFAR100, label_mode, root, download, mirrors=mirrors, progress=progress)
