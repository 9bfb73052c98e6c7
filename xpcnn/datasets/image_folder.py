"""A folder of images, one subfolder per class: Keras's ``image_dataset_from_directory``.

The folder is indexed here (classes, labels, the validation split); the files are read by
``xpcnn.datasets.images``. With a ``batch_size`` the result streams from disk: a ``DataLoader`` over the
files, decoding uint8 batches in worker threads as training needs them (Pillow releases the GIL while it
decodes and resamples), so a folder of any size trains in a few batches of memory. Without one, every image
is decoded at once into a float32 ``(N, C, H, W)`` array in [0, 1]. A file that cannot be decoded
(truncated, not an image, a decompression bomb) is left out and counted in one warning (per epoch, when
streaming): a folder of photos from the web always holds a few, and a crash after minutes helps nobody.

Differences from Keras, which returns a ``tf.data.Dataset``: NCHW layout, values in [0, 1] (not [0, 255]: no
``Rescaling(1 / 255)`` needed), and the shuffle of a split comes from NumPy's generator, so a seed splits
differently than in Keras.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import os
import pathlib
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from .._checks import check_flag, check_int
from ..data.loader import DataLoader
from ..data.stream import warn_unreadable
from ..data.workers import SkipSample
from ._fetch import progress_bar
from .images import PIL_MODES, ImageFiles

__all__ = ["ALLOWED_FORMATS", "ImageDataset", "ImageFolderLoader", "image_dataset_from_directory"]

#: the file extensions read (case-insensitive); other files, such as a README or .DS_Store, are ignored
ALLOWED_FORMATS = (".bmp", ".gif", ".jpeg", ".jpg", ".png")

_INTERPOLATIONS = ("nearest", "bilinear", "bicubic", "lanczos", "box", "hamming")
_LABEL_MODES = ("int", "binary", "categorical", None)
_SUBSETS = (None, "training", "validation", "both")
_PROGRESS_FROM = 500  # files; fewer load in well under a second


@dataclasses.dataclass(frozen=True)
class ImageDataset:
    """Images ``x`` float32 ``(N, C, H, W)`` in [0, 1], labels ``y`` (None with ``labels=None``), the class of
    each label index and each image's file. ``x, y = dataset`` unpacks the arrays for ``fit``."""

    x: np.ndarray
    y: np.ndarray | None
    class_names: tuple[str, ...]
    file_paths: tuple[str, ...]

    def __iter__(self) -> Iterator[np.ndarray | None]:
        return iter((self.x, self.y))

    def __len__(self) -> int:
        return len(self.x)


def _pair(value: Any, name: str) -> tuple[int, int]:
    if (not isinstance(value, (tuple, list)) or len(value) != 2
            or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value)):
        raise ValueError(f"image_dataset_from_directory: {name} must be (height, width) of positive ints, "
                         f"got {value!r}")
    return int(value[0]), int(value[1])


def _choice(value: Any, allowed: Sequence[Any], name: str) -> Any:
    if value not in allowed:
        raise ValueError(f"image_dataset_from_directory: {name} must be one of {list(allowed)}, got {value!r}")
    return value


def _check_split(validation_split: Any, subset: Any, seed: Any, shuffle: bool) -> None:
    """Keras's rules: the split and the subset come together; separate calls for "training" and
    "validation" must shuffle alike, so they need a seed."""
    _choice(subset, _SUBSETS, "subset")
    if validation_split is not None and (isinstance(validation_split, bool)
                                         or not isinstance(validation_split, (int, float))
                                         or not 0 < validation_split < 1):
        raise ValueError(f"image_dataset_from_directory: validation_split must be a number in (0, 1), "
                         f"got {validation_split!r}")
    if (subset is None) != (validation_split is None):
        raise ValueError("image_dataset_from_directory: give validation_split and subset together "
                         f"(got validation_split={validation_split!r}, subset={subset!r})")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise TypeError(f"image_dataset_from_directory: seed must be an int or None, got {seed!r}")
    if subset in ("training", "validation") and shuffle and seed is None:
        raise ValueError(f"image_dataset_from_directory: subset={subset!r} with shuffling needs a seed, so that the "
                         "training and validation calls split the same shuffled list; pass seed=... (or "
                         "subset='both')")


def _image_files(folder: pathlib.Path, follow_links: bool) -> list[pathlib.Path]:
    """The image files under ``folder`` (recursively, hidden folders such as ``.ipynb_checkpoints`` left out,
    each linked folder once), sorted by path."""
    found, seen = [], set()
    for parent, dirs, files in os.walk(folder, followlinks=follow_links):
        real = os.path.realpath(parent)
        if real in seen:  # a link back up the tree
            dirs[:] = []
            continue
        seen.add(real)
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        found.extend(pathlib.Path(parent) / f for f in files if f.lower().endswith(ALLOWED_FORMATS))
    return sorted(found)


def _index(directory: pathlib.Path, inferred: bool, labels: Any, class_names: Sequence[str] | None,
           follow_links: bool) -> tuple[list[pathlib.Path], np.ndarray | None, tuple[str, ...]]:
    """Every image file with its label: the class folders' (in ``class_names`` order, files sorted in each)
    when ``inferred``, else ``labels`` (None or one per file, files sorted by path)."""
    if not inferred:
        files = _image_files(directory, follow_links)
        if labels is None:
            return files, None, ()
        y = np.asarray(labels)
        if y.shape != (len(files),) or y.dtype.kind not in "iu" or (y.size and y.min() < 0):
            raise ValueError(f"image_dataset_from_directory: labels must be 'inferred', None or one int >= 0 per "
                             f"image file ({len(files)} found under {directory}, sorted by path); got "
                             f"{y.dtype} of shape {y.shape}")
        return files, y.astype(np.int64), ()
    folders = sorted(p.name for p in directory.iterdir() if p.is_dir() and not p.name.startswith("."))
    if class_names is not None:
        if sorted(class_names) != folders or len(set(class_names)) != len(class_names):
            raise ValueError(f"image_dataset_from_directory: class_names {list(class_names)} must name each "
                             f"subfolder of {directory} once; its subfolders are {folders}")
        folders = list(class_names)
    files, y = [], []
    for k, name in enumerate(folders):
        found = _image_files(directory / name, follow_links)
        files += found
        y += [k] * len(found)
    return files, np.asarray(y, dtype=np.int64), tuple(folders)


def _load(files: ImageFiles, num_workers: int | None, verbose: bool) -> tuple[np.ndarray, np.ndarray]:
    """Decode every file in threads into one float32 array; returns it (bad files dropped) and the mask of
    good ones."""
    x = np.empty((len(files), *files.shape), dtype=np.float32)
    failures: list[tuple[str, str]] = []
    bar = progress_bar(len(files), "decoding images", unit="img") if verbose and len(files) >= _PROGRESS_FROM else None

    def read(i: int) -> str | None:
        try:
            files.read(i, x[i])
        except SkipSample as exc:
            return str(exc)
        return None

    workers = num_workers or min(8, os.cpu_count() or 1)
    with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
        ok = np.ones(len(files), dtype=bool)
        for i, reason in enumerate(pool.map(read, range(len(files)))):
            if reason is not None:
                ok[i] = False
                failures.append((files.file_paths[i], reason))
            if bar is not None:
                bar.update(1)
    if bar is not None:
        bar.close()
    if failures:
        warn_unreadable(f"image_dataset_from_directory: skipped {len(failures)} of {len(files)} files that could "
                        "not be decoded as images", failures, stacklevel=3)
        x = x[ok]
    return x, ok


def _labels_in_mode(y: np.ndarray | None, label_mode: str | None, classes: int) -> np.ndarray | None:
    if y is None or label_mode is None:
        return None
    if label_mode == "binary":
        return y.astype(np.float32)[:, None]
    if label_mode == "categorical":
        return np.eye(classes, dtype=np.float32)[y]
    return y


class ImageFolderLoader(DataLoader):
    """The batches of a folder of images, read from disk as they are needed (``image_dataset_from_directory``
    with a ``batch_size``): a ``DataLoader`` over ``ImageFiles``, with the folder's ``class_names`` and each
    sample's file in ``file_paths``; ``len()`` is the number of batches, as for Keras's dataset."""

    @property
    def class_names(self) -> tuple[str, ...]:
        """The class names, in label order (label ``i`` is ``class_names[i]``)."""
        return self.dataset.class_names

    @property
    def file_paths(self) -> tuple[str, ...]:
        """The image files, in the dataset's order (that of ``predict`` over an unshuffled loader)."""
        return self.dataset.file_paths


def image_dataset_from_directory(
    directory: str | os.PathLike[str],
    labels: str | Sequence[int] | None = "inferred",
    label_mode: str | None = "int",
    class_names: Sequence[str] | None = None,
    color_mode: str = "rgb",
    batch_size: int | None = 32,
    image_size: tuple[int, int] = (256, 256),
    shuffle: bool = True,
    seed: int | None = None,
    validation_split: float | None = None,
    subset: str | None = None,
    interpolation: str = "bilinear",
    follow_links: bool = False,
    crop_to_aspect_ratio: bool = False,
    pad_to_aspect_ratio: bool = False,
    data_format: str | None = None,
    verbose: bool = True,
    *,
    num_workers: int | None = None,
) -> ImageFolderLoader | ImageDataset | tuple[Any, Any]:
    """Read ``directory/<class>/**/<image>`` (JPEG, PNG, BMP, GIF) as Keras does, with Keras's arguments.

    With a ``batch_size`` (default 32) the result streams: an ``ImageFolderLoader`` whose batches are read
    from disk by ``num_workers`` threads as training asks for them, decoded to uint8 and scaled to [0, 1] on
    the device, reshuffled each epoch with ``shuffle`` (by ``seed``); memory holds a few batches, whatever
    the size of the folder (validation batches keep one order, so that ``predict`` lines up with
    ``file_paths``). A file that fails to decode is left out of its batch (one warning per epoch names the
    first five). ``batch_size=None`` decodes everything at once into an ``ImageDataset`` of NumPy
    arrays (float32 ``(N, C, H, W)`` in [0, 1]), skipping undecodable files with one warning.

    Classes are the subfolders, sorted by name (or in ``class_names`` order); labels are int64 indices
    (``label_mode="int"``), float32 ``(1,)`` per image for two classes (``"binary"``, for a sigmoid
    output), one-hot float32 (``"categorical"``) or None. ``labels=None`` reads every image under
    ``directory`` without labels; a list gives one int per file, files sorted by path. Images are converted
    to ``color_mode`` (``"rgb"``, ``"grayscale"``, ``"rgba"``) and resized to ``image_size`` with Pillow's
    ``interpolation`` filter, after a centred crop (``crop_to_aspect_ratio``) or a black padding
    (``pad_to_aspect_ratio``) to the target's aspect ratio. ``data_format`` may only be
    ``"channels_first"`` (xpcnn is NCHW).

    With ``shuffle`` the file list is shuffled (by ``seed``) before ``validation_split`` takes its last
    fraction for ``subset="validation"`` and leaves the rest to ``"training"``; ``"both"`` returns the two.
    """
    owner = "image_dataset_from_directory"
    shuffle, verbose = check_flag(shuffle, "shuffle", owner), check_flag(verbose, "verbose", owner)
    follow_links = check_flag(follow_links, "follow_links", owner)
    crop_to_aspect_ratio = check_flag(crop_to_aspect_ratio, "crop_to_aspect_ratio", owner)
    pad_to_aspect_ratio = check_flag(pad_to_aspect_ratio, "pad_to_aspect_ratio", owner)
    if crop_to_aspect_ratio and pad_to_aspect_ratio:
        raise ValueError(f"{owner}: crop_to_aspect_ratio and pad_to_aspect_ratio exclude each other; choose one")
    if data_format not in (None, "channels_first"):
        raise ValueError(f"{owner}: data_format must be None or 'channels_first' (xpcnn's layers take NCHW "
                         f"images), got {data_format!r}")
    if batch_size is not None:
        batch_size = check_int(batch_size, "batch_size", 1, owner)
    image_size = _pair(image_size, "image_size")
    _choice(color_mode, tuple(PIL_MODES), "color_mode")
    _choice(interpolation, _INTERPOLATIONS, "interpolation")
    _choice(label_mode, _LABEL_MODES, "label_mode")
    _check_split(validation_split, subset, seed, shuffle)
    inferred = isinstance(labels, str) and labels == "inferred"
    if not (inferred or labels is None or isinstance(labels, (list, tuple, np.ndarray))):
        raise ValueError(f"{owner}: labels must be 'inferred', None or a list of ints, got {labels!r}")
    if class_names is not None and not inferred:
        raise ValueError(f"{owner}: class_names is only used with labels='inferred'")
    directory = pathlib.Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"{owner}: {directory} is not a folder")

    files, y, names = _index(directory, inferred, labels, class_names, follow_links)
    if not files:
        raise ValueError(f"{owner}: no image files ({', '.join(ALLOWED_FORMATS)}) found under {directory}")
    if inferred and len(names) < 2:
        raise ValueError(f"{owner}: found {len(names)} class folder(s) in {directory} ({names}); a classifier needs "
                         "two or more, one subfolder per class (or pass labels=None)")
    classes = len(names) if names else int(y.max()) + 1 if y is not None else 0
    if label_mode == "binary" and y is not None and classes != 2:
        raise ValueError(f"{owner}: label_mode='binary' needs exactly 2 classes, found {classes}")
    if verbose:
        print(f"Found {len(files)} files" + (f" belonging to {len(names)} classes." if names else "."))

    order = np.random.default_rng(seed).permutation(len(files)) if shuffle else np.arange(len(files))
    n_val = 0 if validation_split is None else int(validation_split * len(files))
    parts = {"training": order[:len(order) - n_val], "validation": order[len(order) - n_val:]}
    if validation_split is not None and (n_val == 0 or n_val == len(files)):
        raise ValueError(f"{owner}: validation_split={validation_split} of {len(files)} files leaves "
                         f"{len(files) - n_val} for training and {n_val} for validation; both need some")
    wanted = ["training", "validation"] if subset == "both" else [subset or "training"]  # None: all files
    aspect = "crop" if crop_to_aspect_ratio else "pad" if pad_to_aspect_ratio else None

    results = []
    for part in wanted:
        chosen = parts[part]
        if verbose and subset is not None:
            print(f"Using {len(chosen)} files for {part}.")
        part_labels = None if y is None else _labels_in_mode(y[chosen], label_mode, classes)
        images = ImageFiles([files[i] for i in chosen], part_labels, image_size, color_mode, interpolation, aspect,
                            names)
        if batch_size is not None:
            # validation batches keep one order, so that predict(val) lines up with val.file_paths
            results.append(ImageFolderLoader(images, batch_size=batch_size, shuffle=shuffle and part == "training",
                                             seed=seed,
                                             num_workers=num_workers))
            continue
        x, ok = _load(images, num_workers, verbose)
        if len(x) == 0:
            raise ValueError(f"{owner}: none of the {len(chosen)} {part} files under {directory} could be decoded "
                             "as an image")
        results.append(ImageDataset(x, None if part_labels is None else part_labels[ok], names,
                                    tuple(p for p, good in zip(images.file_paths, ok) if good)))
    return tuple(results) if subset == "both" else results[0]
