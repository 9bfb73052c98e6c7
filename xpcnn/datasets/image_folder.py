"""A folder of images, one subfolder per class, as NumPy arrays: Keras's ``image_dataset_from_directory``.

The images are decoded with Pillow and resized on the host, in threads (Pillow releases the GIL while it
decodes and resamples), into one preallocated float32 ``(N, C, H, W)`` array in [0, 1]. A file that cannot
be decoded (truncated, not an image, a decompression bomb) is skipped and counted in one warning: a folder
of photos from the web always holds a few, and a crash after minutes of loading helps nobody.

Differences from Keras, which returns a ``tf.data.Dataset``: NumPy arrays in NCHW layout, values in [0, 1]
(not [0, 255]: no ``Rescaling(1 / 255)`` needed), no ``batch_size`` (``fit`` batches), and the shuffle of a
split comes from NumPy's generator, so a seed splits differently than in Keras.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import os
import pathlib
import warnings
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from .._checks import check_flag
from ._fetch import progress_bar

__all__ = ["ALLOWED_FORMATS", "ImageDataset", "image_dataset_from_directory"]

#: the file extensions read (case-insensitive); other files, such as a README or .DS_Store, are ignored
ALLOWED_FORMATS = (".bmp", ".gif", ".jpeg", ".jpg", ".png")

_PIL_MODES = {"rgb": "RGB", "grayscale": "L", "rgba": "RGBA"}
_INTERPOLATIONS = ("nearest", "bilinear", "bicubic", "lanczos", "box", "hamming")
_LABEL_MODES = ("int", "binary", "categorical", None)
_SUBSETS = (None, "training", "validation", "both")
_NAMED_IN_WARNING = 5
_PROGRESS_FROM = 500  # files; fewer load in well under a second
_WIDE_GREY_MODES = ("I;16", "I;16L", "I;16B", "I")  # 16-bit greyscale PNGs: Pillow's convert clips them at 255


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


def _crop_box(width: int, height: int, target_h: int, target_w: int) -> tuple[float, float, float, float]:
    """The centred window of the image with the target's aspect ratio, as large as fits."""
    crop_w = min(width, height * target_w / target_h)
    crop_h = min(height, width * target_h / target_w)
    left, top = (width - crop_w) / 2, (height - crop_h) / 2
    return left, top, left + crop_w, top + crop_h


def _decode(path: pathlib.Path, out: np.ndarray, mode: str, resample: Any, crop: bool) -> str | None:
    """Decode ``path`` (first frame), convert, resize into ``out`` (C, H, W); the reason on failure."""
    from PIL import Image

    h, w = out.shape[1:]
    try:
        with Image.open(path) as img:  # reads the header only
            if Image.MAX_IMAGE_PIXELS and img.size[0] * img.size[1] > Image.MAX_IMAGE_PIXELS:
                return f"{img.size[0]}x{img.size[1]} pixels, over Pillow's MAX_IMAGE_PIXELS (a decompression bomb?)"
            box = _crop_box(*img.size, h, w) if crop else None
            if img.mode in _WIDE_GREY_MODES:  # scale 16 bits onto [0, 1] before anything rounds to 8 bits
                grey = Image.fromarray(np.clip(np.asarray(img, dtype=np.float32) / 65535.0, 0.0, 1.0), "F")
                plane = np.asarray(grey.resize((w, h), resample, box=box), dtype=np.float32)
                pixels = np.stack([plane] * min(len(mode), 3) + [np.ones_like(plane)] * (mode == "RGBA"))
            else:
                img = img.convert(mode)  # decodes the whole file: truncation shows here
                pixels = np.asarray(img.resize((w, h), resample, box=box), dtype=np.float32) / np.float32(255.0)
                pixels = pixels[None] if pixels.ndim == 2 else pixels.transpose(2, 0, 1)
    except MemoryError:
        raise
    except Exception as exc:  # any other failure to decode one file means: skip that file, say why
        return f"{type(exc).__name__}: {exc}"
    out[...] = pixels
    return None


def _load(files: Sequence[pathlib.Path], image_size: tuple[int, int], color_mode: str, interpolation: str,
          crop: bool, num_workers: int | None, verbose: bool) -> tuple[np.ndarray, np.ndarray]:
    """Decode ``files`` in threads into one array; returns it (bad files dropped) and the mask of good ones."""
    try:
        from PIL import Image
    except ImportError as exc:
        raise ImportError("image_dataset_from_directory reads images with Pillow: pip install 'xpcnn[images]'") from exc
    mode = _PIL_MODES[color_mode]
    resample = getattr(Image.Resampling, interpolation.upper())
    x = np.empty((len(files), len(mode), *image_size), dtype=np.float32)
    failures: list[tuple[pathlib.Path, str]] = []
    bar = progress_bar(len(files), "decoding images", unit="img") if verbose and len(files) >= _PROGRESS_FROM else None
    workers = num_workers or min(8, os.cpu_count() or 1)
    with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
        reasons = pool.map(lambda i: _decode(files[i], x[i], mode, resample, crop), range(len(files)))
        ok = np.ones(len(files), dtype=bool)
        for i, reason in enumerate(reasons):
            if reason is not None:
                ok[i] = False
                failures.append((files[i], reason))
            if bar is not None:
                bar.update(1)
    if bar is not None:
        bar.close()
    if failures:
        named = "; ".join(f"{p} ({why})" for p, why in failures[:_NAMED_IN_WARNING])
        more = f" and {len(failures) - _NAMED_IN_WARNING} more" if len(failures) > _NAMED_IN_WARNING else ""
        warnings.warn(f"image_dataset_from_directory: skipped {len(failures)} of {len(files)} files that could "
                      f"not be decoded as images: {named}{more}", stacklevel=3)
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


def image_dataset_from_directory(
    directory: str | os.PathLike[str],
    labels: str | Sequence[int] | None = "inferred",
    label_mode: str | None = "int",
    class_names: Sequence[str] | None = None,
    color_mode: str = "rgb",
    image_size: tuple[int, int] = (256, 256),
    shuffle: bool = True,
    seed: int | None = None,
    validation_split: float | None = None,
    subset: str | None = None,
    interpolation: str = "bilinear",
    follow_links: bool = False,
    crop_to_aspect_ratio: bool = False,
    *,
    num_workers: int | None = None,
    verbose: bool = True,
) -> ImageDataset | tuple[ImageDataset, ImageDataset]:
    """Load ``directory/<class>/**/<image>`` (JPEG, PNG, BMP, GIF) as an ``ImageDataset``, as Keras does.

    Classes are the subfolders, sorted by name (or in ``class_names`` order); labels are int64 indices
    (``label_mode="int"``), float32 ``(N, 1)`` for two classes (``"binary"``, for a sigmoid output),
    one-hot float32 (``"categorical"``) or None. ``labels=None`` reads every image under ``directory``
    without labels; a list gives one int per file, files sorted by path. Images are converted to
    ``color_mode`` (``"rgb"``, ``"grayscale"``, ``"rgba"``) and resized to ``image_size`` with Pillow's
    ``interpolation`` filter (optionally after a centred crop to the target's aspect ratio).

    With ``shuffle`` the file list is shuffled (by ``seed``) before ``validation_split`` takes its last
    fraction for ``subset="validation"`` and leaves the rest to ``"training"``; ``"both"`` returns the two.
    """
    owner = "image_dataset_from_directory"
    shuffle, verbose = check_flag(shuffle, "shuffle", owner), check_flag(verbose, "verbose", owner)
    follow_links = check_flag(follow_links, "follow_links", owner)
    crop_to_aspect_ratio = check_flag(crop_to_aspect_ratio, "crop_to_aspect_ratio", owner)
    image_size = _pair(image_size, "image_size")
    _choice(color_mode, tuple(_PIL_MODES), "color_mode")
    _choice(interpolation, _INTERPOLATIONS, "interpolation")
    _choice(label_mode, _LABEL_MODES, "label_mode")
    _check_split(validation_split, subset, seed, shuffle)
    inferred = isinstance(labels, str) and labels == "inferred"
    if not (inferred or labels is None or isinstance(labels, (list, tuple, np.ndarray))):
        raise ValueError(f"image_dataset_from_directory: labels must be 'inferred', None or a list of ints, got {labels!r}")
    if class_names is not None and not inferred:
        raise ValueError("image_dataset_from_directory: class_names is only used with labels='inferred'")
    directory = pathlib.Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"image_dataset_from_directory: {directory} is not a folder")

    files, y, names = _index(directory, inferred, labels, class_names, follow_links)
    if not files:
        raise ValueError(f"image_dataset_from_directory: no image files ({', '.join(ALLOWED_FORMATS)}) found "
                         f"under {directory}")
    if inferred and len(names) < 2:
        raise ValueError(f"image_dataset_from_directory: found {len(names)} class folder(s) in {directory} "
                         f"({names}); a classifier needs two or more, one subfolder per class (or pass labels=None)")
    classes = len(names) if names else int(y.max()) + 1 if y is not None else 0
    if label_mode == "binary" and y is not None and classes != 2:
        raise ValueError(f"image_dataset_from_directory: label_mode='binary' needs exactly 2 classes, found {classes}")
    if verbose:
        print(f"Found {len(files)} files" + (f" belonging to {len(names)} classes." if names else "."))

    order = np.random.default_rng(seed).permutation(len(files)) if shuffle else np.arange(len(files))
    n_val = 0 if validation_split is None else int(validation_split * len(files))
    parts = {"training": order[:len(order) - n_val], "validation": order[len(order) - n_val:]}
    if validation_split is not None and (n_val == 0 or n_val == len(files)):
        raise ValueError(f"image_dataset_from_directory: validation_split={validation_split} of {len(files)} files "
                         f"leaves {len(files) - n_val} for training and {n_val} for validation; both need some")
    wanted = ["training", "validation"] if subset == "both" else [subset or "training"]  # None: all files

    datasets = []
    for part in wanted:
        chosen = [files[i] for i in parts[part]]
        if verbose and subset is not None:
            print(f"Using {len(chosen)} files for {part}.")
        x, ok = _load(chosen, image_size, color_mode, interpolation, crop_to_aspect_ratio, num_workers, verbose)
        if len(x) == 0:
            raise ValueError(f"image_dataset_from_directory: none of the {len(chosen)} {part} files under "
                             f"{directory} could be decoded as an image")
        labels_kept = None if y is None else y[parts[part]][ok]
        datasets.append(ImageDataset(x, _labels_in_mode(labels_kept, label_mode, classes), names,
                                     tuple(str(p) for p, good in zip(chosen, ok) if good)))
    return tuple(datasets) if subset == "both" else datasets[0]
