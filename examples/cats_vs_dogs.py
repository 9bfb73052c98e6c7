"""Cats vs dogs from a folder of photos: the "image classification from scratch" tutorial on xpcnn.

``DIR`` holds one subfolder per class, for example Microsoft's PetImages (``Cat/`` and ``Dog/``, with a few
corrupt JPEGs among the 25,000 photos). ``image_dataset_from_directory`` streams it with a 20% validation
split: worker threads decode each batch from disk as training asks for it (uint8, scaled on the device), so
memory holds a few batches whatever the folder's size, and files that do not decode are left out (one
warning per epoch). ``RandomFlip`` and ``RandomRotation`` augment each training batch on the device
(``fit(transform=...)``). The network: four Conv2D/MaxPool2D blocks,
GlobalAvgPool2D and ``Dense(1, activation="sigmoid")``, trained with binary cross-entropy and RMSprop. Then
the class activation maps of some validation images are saved as ``cats_vs_dogs_cam.png``.

``--quick`` (or no ``DIR``) makes a folder of synthetic pictures instead: circles against squares of random
colours, sizes and places on noisy backgrounds, with a few corrupt files mixed in; a few epochs on it reach
over 90% validation accuracy (the examples' test checks it on every backend).
"""

from __future__ import annotations

import pathlib

import numpy as np
from _common import Timer, folder_settings, parser, save, setup

from xpcnn import to_numpy
from xpcnn.callbacks import OneCycleLR
from xpcnn.datasets import image_dataset_from_directory
from xpcnn.layers import Conv2D, Dense, GlobalAvgPool2D, MaxPool2D
from xpcnn.model import Sequential
from xpcnn.optimizers import RMSprop
from xpcnn.transforms import Compose, RandomFlip, RandomRotation
from xpcnn.viz import class_activation_map, plot_class_activation_maps

SHOWN = 16  # validation images in the CAM picture
CORRUPT = 4  # broken files mixed into the synthetic folder
NOISE = 10  # standard deviation of the background noise (of 255)
RADIUS = (0.2, 0.4)  # of the picture side


def make_shapes_folder(root: pathlib.Path, per_class: int, size: int = 64, seed: int = 0) -> pathlib.Path:
    """``root/circles`` and ``root/squares``: one filled shape per JPEG or PNG on a noisy background, plus
    truncated and non-image files that the loader must skip."""
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(seed)
    for label in ("circles", "squares"):
        (root / label).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            background = rng.uniform(0, 255, 3) * 0.6 + rng.normal(0, NOISE, (size, size, 3))
            picture = Image.fromarray(np.clip(background, 0, 255).astype(np.uint8))
            radius = rng.uniform(*RADIUS) * size
            cx, cy = rng.uniform(radius, size - radius, 2)
            box = (cx - radius, cy - radius, cx + radius, cy + radius)
            fill = tuple(int(c) for c in rng.integers(0, 256, 3))
            draw = ImageDraw.Draw(picture)
            (draw.ellipse if label == "circles" else draw.rectangle)(box, fill=fill)
            picture.save(root / label / f"{i:04d}.{'jpg' if i % 2 else 'png'}")
    for i in range(CORRUPT):  # what a folder of photos from the web holds too
        label = ("circles", "squares")[i % 2]
        whole = (root / label / "0001.jpg").read_bytes()
        (root / label / f"broken_{i}.jpg").write_bytes(whole[: len(whole) // 3] if i < 2 else b"not an image")
    return root


def build_model(image_size: int, width: int) -> Sequential:
    """Four Conv2D/MaxPool2D blocks doubling the width, then the CAM head: GlobalAvgPool2D, one sigmoid unit."""
    layers = []
    for block in range(4):
        layers += [Conv2D(width * 2 ** block, 3, padding="same", activation="relu"), MaxPool2D(2)]
    layers += [GlobalAvgPool2D(), Dense(1, activation="sigmoid")]
    return Sequential(layers, input_shape=(3, image_size, image_size))


def main(argv: list[str] | None = None) -> float:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("directory", nargs="?", type=pathlib.Path, help="folder with one subfolder per class")
    p.add_argument("--epochs", type=int, default=None, help="training epochs (default: 15, --quick 16)")
    p.add_argument("--image-size", type=int, default=None, help="side of the square images (default: 128, --quick 64)")
    p.add_argument("--batch-size", type=int, default=None, help="mini-batch size (default: 32, --quick 16)")
    p.add_argument("--max-lr", type=float, default=2e-3, help="peak RMSprop learning rate of the 1cycle schedule")
    args = p.parse_args(argv)
    setup(args)
    quick, size, batch_size = folder_settings(args, full_size=128)
    epochs = args.epochs or (16 if quick else 15)
    directory = args.directory
    if quick:
        directory = make_shapes_folder(args.out / "shapes_folder", per_class=300, seed=args.seed)
        print(f"made {directory} (600 synthetic pictures and {CORRUPT} corrupt files)")

    train, val = image_dataset_from_directory(directory, image_size=(size, size), label_mode="binary",
                                              validation_split=0.2, subset="both", seed=args.seed,
                                              batch_size=batch_size)
    model = build_model(size, width=16 if quick else 32)
    model.compile(loss="binary_crossentropy", optimizer=RMSprop(args.max_lr), metrics=["accuracy"])
    model.summary()
    augment = Compose([RandomFlip(horizontal=True), RandomRotation(10)])
    with Timer("training"):
        history = model.fit(train, epochs=epochs, validation_data=val, transform=augment, verbose=2,
                            callbacks=[OneCycleLR(args.max_lr, epochs=epochs, steps_per_epoch=len(train))])
    accuracy = history.history["val_accuracy"][-1]
    print(f"validation accuracy: {accuracy:.3f} on the {val.num_samples} validation files")

    images, labels = (to_numpy(part)[:SHOWN] for part in next(iter(val)))  # the first validation batch
    maps, predicted = class_activation_map(model, images, layer=MaxPool2D)
    fig = plot_class_activation_maps(images, maps, predicted, labels=labels[:, 0].astype(np.int64),
                                     class_names=train.class_names, ncols=8,
                                     title=f"Class activation maps (validation accuracy {accuracy:.1%})")
    save(fig, args, "cats_vs_dogs_cam.png")
    return accuracy


if __name__ == "__main__":
    main()
