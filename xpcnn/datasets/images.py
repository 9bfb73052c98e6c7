"""One image file as pixels, and a list of image files as a lazy map-style dataset.

``decode_image`` opens a file with Pillow, takes its first frame, converts it to the colour mode and resizes
it (after a centred crop, or a padding, to the target's aspect ratio) into a ``(C, H, W)`` array: uint8 as
decoded, or float32 in [0, 1]. A JPEG whose target is at most half its size is decoded at 1/2, 1/4 or 1/8
scale directly (Pillow's draft mode), which is several times faster than decoding it whole and shrinking it.
16-bit greyscale is scaled onto the output's range, never clipped at 255.

``ImageFiles`` reads its files one at a time, in ``dataset[i]``, as uint8: the bytes that cross to the
device are a quarter of float32's, and the conversion happens there. A file that cannot be decoded raises
``SkipSample``, so that a ``DataLoader`` leaves it out and counts it, and a run never ends on one bad file.
"""

from __future__ import annotations

import pathlib
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..data.datasets import Dataset
from ..data.workers import SkipSample

__all__ = ["ImageFiles", "decode_image", "pillow"]

PIL_MODES = {"rgb": "RGB", "grayscale": "L", "rgba": "RGBA"}
_WIDE_GREY_MODES = ("I;16", "I;16L", "I;16B", "I")  # 16-bit greyscale PNGs: Pillow's convert clips them at 255
_DRAFT_FROM = 2  # decode a JPEG at reduced scale when it is at least this many times the target


def pillow() -> Any:
    try:
        from PIL import Image
    except ImportError as exc:
        raise ImportError("reading image files needs Pillow: pip install 'xpcnn[images]'") from exc
    return Image


def _crop_box(width: int, height: int, target_h: int, target_w: int) -> tuple[float, float, float, float]:
    """The centred window of the image with the target's aspect ratio, as large as fits."""
    crop_w = min(width, height * target_w / target_h)
    crop_h = min(height, width * target_h / target_w)
    left, top = (width - crop_w) / 2, (height - crop_h) / 2
    return left, top, left + crop_w, top + crop_h


def _pad_size(width: int, height: int, target_h: int, target_w: int) -> tuple[int, int]:
    """The smallest canvas with the target's aspect ratio that holds the whole image."""
    return max(width, round(height * target_w / target_h)), max(height, round(width * target_h / target_w))


def _fit(img: Any, mode: str, size: tuple[int, int], resample: Any, aspect: str | None) -> Any:
    """``img`` (already in ``mode`` or 32-bit float) resized to ``size`` (h, w), cropped or padded first."""
    Image = pillow()
    h, w = size
    box = None
    if aspect == "crop":
        box = _crop_box(*img.size, h, w)
    elif aspect == "pad":
        canvas = Image.new(img.mode, _pad_size(*img.size, h, w))
        canvas.paste(img, ((canvas.size[0] - img.size[0]) // 2, (canvas.size[1] - img.size[1]) // 2))
        img = canvas
    return img.resize((w, h), resample, box=box)


def decode_image(path: str | pathlib.Path, out: np.ndarray, mode: str, resample: Any, aspect: str | None) -> None:
    """Decode ``path`` into ``out`` ``(C, H, W)`` (uint8 as decoded, or float32 in [0, 1]); ``aspect``:
    None (stretch), ``"crop"`` or ``"pad"`` to the target's aspect ratio. Raises ``SkipSample`` with the
    reason when the file is not a readable image or is over Pillow's ``MAX_IMAGE_PIXELS``."""
    Image = pillow()
    h, w = out.shape[1:]
    scale = 255.0 if out.dtype == np.uint8 else 1.0
    try:
        with Image.open(path) as img:  # reads the header only
            if Image.MAX_IMAGE_PIXELS and img.size[0] * img.size[1] > Image.MAX_IMAGE_PIXELS:
                raise SkipSample(f"{img.size[0]}x{img.size[1]} pixels, over Pillow's MAX_IMAGE_PIXELS "
                                 "(a decompression bomb?)")
            if img.mode in _WIDE_GREY_MODES:  # scale 16 bits before anything rounds to 8 bits
                grey = Image.fromarray(np.clip(np.asarray(img, dtype=np.float32) / 65535.0, 0.0, 1.0) * scale, "F")
                plane = np.asarray(_fit(grey, "F", (h, w), resample, aspect), dtype=np.float32)
                planes = [plane] * min(len(mode), 3) + [np.full_like(plane, scale)] * (mode == "RGBA")
                pixels = np.stack(planes)
            else:
                if img.format == "JPEG" and min(img.size[0] / w, img.size[1] / h) >= _DRAFT_FROM:
                    img.draft(mode if mode != "RGBA" else "RGB", (w, h))  # decodes at 1/2, 1/4 or 1/8 size
                img = img.convert(mode)  # decodes the whole file: truncation shows here
                pixels = np.asarray(_fit(img, mode, (h, w), resample, aspect))
                pixels = pixels[None] if pixels.ndim == 2 else pixels.transpose(2, 0, 1)
                if out.dtype != np.uint8:
                    pixels = pixels.astype(np.float32) / np.float32(255.0)
    except (SkipSample, MemoryError):
        raise
    except Exception as exc:  # any other failure to decode one file means: leave that file out, say why
        raise SkipSample(f"{type(exc).__name__}: {exc}") from exc
    out[...] = np.rint(pixels) if out.dtype == np.uint8 and pixels.dtype != np.uint8 else pixels


class ImageFiles(Dataset):
    """Image files read one at a time as uint8 ``(C, H, W)`` samples, with their labels when given:
    ``dataset[i]`` is ``image`` or ``(image, label)``. ``file_paths`` names each sample's file (errors and the
    warning about undecodable files name them); ``class_names`` what each label index means."""

    def __init__(self, files: Sequence[str | pathlib.Path], labels: np.ndarray | None, image_size: tuple[int, int],
                 color_mode: str = "rgb", interpolation: str = "bilinear", aspect: str | None = None,
                 class_names: Sequence[str] = ()) -> None:
        if labels is not None and len(labels) != len(files):
            raise ValueError(f"ImageFiles: {len(files)} files but {len(labels)} labels")
        self.file_paths = tuple(str(f) for f in files)
        self.labels, self.class_names = labels, tuple(class_names)
        self.mode = PIL_MODES[color_mode]
        self.shape = (len(self.mode), *image_size)
        self.resample = getattr(pillow().Resampling, interpolation.upper())
        self.aspect = aspect

    def __len__(self) -> int:
        return len(self.file_paths)

    def read(self, index: int, out: np.ndarray) -> None:
        """Decode file ``index`` into ``out`` (uint8 or float32, shaped ``(C, H, W)``)."""
        decode_image(self.file_paths[index], out, self.mode, self.resample, self.aspect)

    def __getitem__(self, index: int) -> Any:
        image = np.empty(self.shape, np.uint8)
        self.read(index, image)
        return image if self.labels is None else (image, self.labels[index])

    def __repr__(self) -> str:
        return f"ImageFiles({len(self)} files, shape={self.shape}, classes={list(self.class_names)})"
