"""Pretrained weights: reading a file into a model of a family, and torchvision's ImageNet files on request.

``"DEFAULT"`` is the file torchvision's ``weights="DEFAULT"`` names for the model, downloaded once from
download.pytorch.org into ``$XPCNN_DATA/weights`` (else the user cache), verified against the SHA-256 prefix in
its name before it is kept; offline, the error says where to put the file by hand. Nothing downloads unless
asked.
"""

from __future__ import annotations

import os
import pathlib
from typing import Any

from ..datasets._fetch import data_dir, download
from ..io import load_torch_checkpoint
from ..io.safetensors import read_safetensors
from ..io.saving import is_safetensors
from ..io.torch_checkpoint import check_sha256_prefix, is_torch_checkpoint

__all__ = ["DEFAULT_WEIGHTS", "MIRRORS", "default_weights_file", "load_pretrained"]

MIRRORS = ["https://download.pytorch.org/models"]

#: torchvision's DEFAULT weights per model: the file, and how its images were prepared (resize the shorter
#: side, centre-crop, interpolation), which ``preprocess_input`` repeats
DEFAULT_WEIGHTS: dict[str, dict[str, Any]] = {
    "resnet18": {"file": "resnet18-f37072fd.pth", "resize": 256, "crop": 224, "interpolation": "bilinear"},
    "resnet34": {"file": "resnet34-b627a593.pth", "resize": 256, "crop": 224, "interpolation": "bilinear"},
    "resnet50": {"file": "resnet50-11ad3fa6.pth", "resize": 232, "crop": 224, "interpolation": "bilinear"},
    "mobilenet_v2": {"file": "mobilenet_v2-7ebf99e0.pth", "resize": 232, "crop": 224, "interpolation": "bilinear"},
    "mobilenet_v3_large": {"file": "mobilenet_v3_large-5c1a4163.pth", "resize": 232, "crop": 224,
                           "interpolation": "bilinear"},
    "mobilenet_v3_small": {"file": "mobilenet_v3_small-047dcff4.pth", "resize": 256, "crop": 224,
                           "interpolation": "bilinear"},
    "efficientnet_b0": {"file": "efficientnet_b0_rwightman-7f5810bc.pth", "resize": 256, "crop": 224,
                        "interpolation": "bicubic"},
}


def default_weights_file(arch: str, root: str | os.PathLike[str] | None = None) -> pathlib.Path:
    """torchvision's DEFAULT weights file for ``arch``, downloaded into the cache on first use."""
    name = DEFAULT_WEIGHTS[arch]["file"]
    folder = data_dir("weights", root)
    path = folder / name
    if path.is_file():
        return path
    expected = name.rsplit("-", 1)[1].split(".")[0]
    return download(name, folder, lambda tmp: check_sha256_prefix(str(tmp), expected), MIRRORS,
                    by_hand=f"Download {MIRRORS[0]}/{name} by hand and put it into {folder}")


def load_pretrained(model: Any, arch: str, weights: Any, include_top: bool) -> None:
    """Load ``weights`` ("DEFAULT" or a file) into ``model`` (family ``arch``); without the top, the file's
    classifier is left out. A file of another model is refused by key and shape (``load_state_dict``)."""
    if isinstance(weights, str) and weights == "DEFAULT":
        path = str(default_weights_file(arch))
    else:
        path = os.fspath(weights)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"{arch}: no weights file {path}")
    if is_safetensors(path):
        state = read_safetensors(path)[0]
    elif is_torch_checkpoint(path):
        state = load_torch_checkpoint(path)
    else:
        model.load_weights(path)  # an xpcnn file: the whole architecture, top included, must match
        return
    if not include_top:
        keys = set(model.state_dict())
        state = {k: v for k, v in state.items() if k in keys or k.endswith("num_batches_tracked")}
    try:
        model.load_state_dict(state)
    except ValueError as exc:
        raise ValueError(f"{arch}: {path} does not hold {arch}'s weights"
                         f"{'' if include_top else ' (without the top)'}: {exc}") from exc
