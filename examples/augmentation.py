"""Data augmentation on the device: one batch through RandomFlip, RandomRotation and RandomTranslation.

The transforms of ``xpcnn.transforms`` take an NCHW batch of the current backend and draw their random
numbers per sample on the device, so a ``DataLoader(..., transform=Compose([...]))`` augments every batch
without a trip to the host. This script passes one batch of photos (from scikit-image) through each
transform and through all three in turn, and saves the grid as ``augmentation.png``: one row per
transform, one column per image.
"""

from __future__ import annotations

import numpy as np
from _common import parser, save, setup

import xpcnn
from xpcnn.transforms import Compose, RandomFlip, RandomRotation, RandomTranslation
from xpcnn.viz import plot_images

PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "immunohistochemistry", "colorwheel")


def photo_batch(size: int) -> np.ndarray:
    """Six scikit-image photos, centre-cropped square and resized, as float32 ``(6, 3, size, size)`` in [0, 1]."""
    from skimage import data
    from skimage.transform import resize

    batch = []
    for name in PHOTOS:
        image = getattr(data, name)()[..., :3]
        h, w = image.shape[:2]
        side = min(h, w)
        top, left = (h - side) // 2, (w - side) // 2
        square = image[top:top + side, left:left + side]
        batch.append(resize(square, (size, size), anti_aliasing=True).transpose(2, 0, 1))
    return np.stack(batch).astype(np.float32)


def main(argv: list[str] | None = None) -> None:
    args = parser(__doc__.splitlines()[0]).parse_args(argv)
    setup(args)
    x = xpcnn.asarray(photo_batch(48 if args.quick else 128))

    flip = RandomFlip(horizontal=True, vertical=False, p=0.5)
    rotate = RandomRotation(30)
    shift = RandomTranslation(0.2, 0.2)
    rows = {
        "original": x,
        "RandomFlip\n(p=0.5)": flip(x),
        "RandomRotation\n(30 degrees)": rotate(x),
        "RandomTranslation\n(20%)": shift(x),
        "all three": Compose([flip, rotate, shift])(x),
    }
    fig = plot_images(rows, title="One batch through xpcnn.transforms")
    save(fig, args, "augmentation.png")


if __name__ == "__main__":
    main()
