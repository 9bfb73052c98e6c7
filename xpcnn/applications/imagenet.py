"""ImageNet's side of the pretrained models: images prepared as torchvision prepared them, and class names.

``preprocess_input(images, arch)`` does on the host what torchvision's ``weights.transforms()`` does for the
model's DEFAULT weights: resize the shorter side (Pillow, antialiased, the weights' interpolation), crop the
centre, scale to [0, 1], then subtract ImageNet's mean and divide by its standard deviation per channel.
``decode_predictions(preds, top=5)`` names the best classes, from the class index Keras uses
(``imagenet_class_index.json``, downloaded once into the cache, as Keras does).
"""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np

from .._checks import check_int
from ..backend import to_numpy
from ..datasets._fetch import data_dir, download
from .weights import DEFAULT_WEIGHTS

__all__ = ["CLASS_INDEX_MIRRORS", "IMAGENET_MEAN", "IMAGENET_STD", "decode_predictions", "preprocess_input"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CLASS_INDEX_MIRRORS = ["https://storage.googleapis.com/download.tensorflow.org/data"]
_CLASS_INDEX = "imagenet_class_index.json"


def preprocess_input(images: Any, arch: str = "resnet50") -> np.ndarray:
    """``(N, 3, H, W)`` images (uint8 in [0, 255], or floats in [0, 1]) as the model ``arch``'s DEFAULT weights
    expect them: float32 ``(N, 3, crop, crop)``, normalised with ImageNet's mean and standard deviation."""
    from ..datasets.images import pillow

    if arch not in DEFAULT_WEIGHTS:
        raise ValueError(f"preprocess_input: unknown model {arch!r}; known: {sorted(DEFAULT_WEIGHTS)}")
    spec = DEFAULT_WEIGHTS[arch]
    x = np.asarray(images)
    if x.ndim != 4 or x.shape[1] != 3:
        raise ValueError(f"preprocess_input: expected images of shape (N, 3, H, W), got {x.shape}")
    if x.dtype != np.uint8:
        if not np.issubdtype(x.dtype, np.floating):
            raise TypeError(f"preprocess_input: images are uint8 or floats in [0, 1], got {x.dtype}")
        x = np.rint(np.clip(x, 0.0, 1.0) * 255.0).astype(np.uint8)
    Image = pillow()
    resample = Image.Resampling.BICUBIC if spec["interpolation"] == "bicubic" else Image.Resampling.BILINEAR
    crop = spec["crop"]
    out = np.empty((x.shape[0], 3, crop, crop), dtype=np.float32)
    for i, image in enumerate(x):
        img = Image.fromarray(np.ascontiguousarray(image.transpose(1, 2, 0)), "RGB")
        w, h = img.size
        scale = spec["resize"] / min(w, h)  # the shorter side to ``resize``, as torchvision's Resize(int)
        size = (spec["resize"], int(spec["resize"] * h / w)) if w <= h else (int(spec["resize"] * w / h),
                                                                              spec["resize"])
        img = img.resize(size, resample) if scale != 1 else img
        left, top = int(round((img.size[0] - crop) / 2.0)), int(round((img.size[1] - crop) / 2.0))  # resize >= crop
        pixels = np.asarray(img.crop((left, top, left + crop, top + crop)), dtype=np.float32) / np.float32(255.0)
        out[i] = pixels.transpose(2, 0, 1)
    mean = np.asarray(IMAGENET_MEAN, dtype=np.float32)[:, None, None]
    std = np.asarray(IMAGENET_STD, dtype=np.float32)[:, None, None]
    return (out - mean) / std


def _class_index(root: str | os.PathLike[str] | None) -> list[tuple[str, str]]:
    folder = data_dir("weights", root)
    path = folder / _CLASS_INDEX
    if not path.is_file():
        download(_CLASS_INDEX, folder, _read_class_index, CLASS_INDEX_MIRRORS,
                 by_hand=f"Download {CLASS_INDEX_MIRRORS[0]}/{_CLASS_INDEX} by hand and put it into {folder}")
    return _read_class_index(path)


def _read_class_index(path: Any) -> list[tuple[str, str]]:
    """The 1000 ``(wordnet id, name)`` pairs of a class index file; ValueError when it is not one."""
    try:
        with open(path, encoding="utf-8") as f:
            index = json.load(f)
        pairs = [tuple(index[str(i)]) for i in range(1000)]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"{path} is not ImageNet's class index (1000 entries \"i\": [wnid, name]): {exc}") from exc
    if not all(len(p) == 2 and all(isinstance(s, str) for s in p) for p in pairs):
        raise ValueError(f"{path} is not ImageNet's class index: each entry is [wnid, name]")
    return pairs


def decode_predictions(preds: Any, top: int = 5, root: str | os.PathLike[str] | None = None
                       ) -> list[list[tuple[str, str, float]]]:
    """For each row of ``(N, 1000)`` scores, the ``top`` classes as ``(wordnet id, name, score)``, best first
    (Keras's ``decode_predictions``). Scores are as given: logits, unless the model ends in a softmax."""
    top = check_int(top, "top", 1, "decode_predictions")
    scores = np.asarray(to_numpy(preds) if not isinstance(preds, np.ndarray) else preds)
    if scores.ndim != 2 or scores.shape[1] != 1000:
        raise ValueError(f"decode_predictions: expected scores of shape (N, 1000), got {scores.shape}")
    names = _class_index(root)
    best = np.argsort(-scores, axis=1, kind="stable")[:, :top]
    return [[(*names[j], float(row[j])) for j in order] for row, order in zip(scores, best)]
