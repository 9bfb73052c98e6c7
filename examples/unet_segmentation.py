"""A small U-Net segments generated shapes: strided convolutions down, Conv2DTranspose up, Concatenate skips.

The task is made on the fly (no download): circles, rectangles and triangles of random size, position and
brightness drawn on a noisy, unevenly lit background; the target marks each pixel that belongs to a shape. The
network (Ronneberger et al., 2015, scaled down) sees the image at three resolutions::

    32x32: Conv 8 -> Conv 8 ---------------------------------------- Concatenate -> Conv 8 -> Conv2D(1, 1)
    16x16:        Conv 16 (stride 2) -> Conv 16 ------- Concatenate -> Conv 16 -> up (to 32x32)
     8x8:                      Conv 32 (stride 2) -> Conv 32 -> up (to 16x16)

"up" is ``Conv2DTranspose(c, 2, stride=2)``, or with ``--up upsampling`` ``UpSampling2D(2)`` then a 3x3 Conv2D.
One logit per pixel, trained with ``loss="binary_crossentropy"`` (from logits, as the model ends without a
sigmoid) and Adam. Prints the intersection over union (IoU) of predicted and true shape pixels on held-out
images and writes ``unet_segmentation.png``: input / target / prediction for some of them.
"""

from __future__ import annotations

import time

import numpy as np
from _common import host, parser, save, setup

import xpcnn
from xpcnn.layers import Concatenate, Conv2D, Conv2DTranspose, UpSampling2D
from xpcnn.optimizers import Adam
from xpcnn.viz import plot_images

SIZE = 32  # image side, pixels
SHOWN = 8  # held-out images in the picture


def make_shapes(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``n`` images ``(n, 1, SIZE, SIZE)`` float32 and their masks (1.0 on shape pixels, same shape)."""
    rows, cols = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32)
    images = np.empty((n, 1, SIZE, SIZE), np.float32)
    masks = np.zeros((n, 1, SIZE, SIZE), np.float32)
    for i in range(n):
        slope = rng.uniform(-0.3, 0.3, size=2) / SIZE  # uneven light: a global threshold is not enough
        image = 0.3 + slope[0] * (rows - SIZE / 2) + slope[1] * (cols - SIZE / 2)
        for _ in range(rng.integers(1, 4)):
            shape = _shape_mask(rng.integers(3), rows, cols, rng)
            image = np.where(shape, rng.uniform(0.45, 1.0), image)
            masks[i, 0] = np.maximum(masks[i, 0], shape)
        images[i, 0] = image + rng.normal(0.0, 0.15, size=(SIZE, SIZE))
    return images, masks


def _shape_mask(kind: int, rows: np.ndarray, cols: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A filled circle (0), rectangle (1) or triangle (2) somewhere in the image."""
    cy, cx = rng.uniform(5, SIZE - 5, size=2)
    r = rng.uniform(3, 8)
    if kind == 0:
        return (rows - cy) ** 2 + (cols - cx) ** 2 <= r * r
    if kind == 1:
        h, w = rng.uniform(3, 8, size=2)
        return (np.abs(rows - cy) <= h) & (np.abs(cols - cx) <= w)
    return (rows - cy <= r) & (np.abs(cols - cx) <= (rows - cy + r) / 2)  # apex up, base 2r wide at cy + r


def build_unet(up: str = "transpose", width: int = 8) -> xpcnn.Model:
    """The U-Net above: ``up`` is "transpose" (Conv2DTranspose) or "upsampling" (UpSampling2D + Conv2D)."""
    def conv(x, c, stride=1):
        return Conv2D(c, 3, stride=stride, padding="same", activation="relu")(x)

    def upsample(x, c):
        if up == "transpose":
            return Conv2DTranspose(c, 2, stride=2, activation="relu")(x)
        return conv(UpSampling2D(2)(x), c)

    image = xpcnn.Input((1, SIZE, SIZE), name="image")
    full = conv(conv(image, width), width)                        # 32x32
    half = conv(conv(full, 2 * width, stride=2), 2 * width)       # 16x16
    quarter = conv(conv(half, 4 * width, stride=2), 4 * width)    # 8x8
    half_up = conv(Concatenate()([upsample(quarter, 2 * width), half]), 2 * width)
    full_up = conv(Concatenate()([upsample(half_up, width), full]), width)
    logits = Conv2D(1, 1, name="mask_logits")(full_up)
    return xpcnn.Model(image, logits, name="unet")


def iou(logits: np.ndarray, masks: np.ndarray) -> float:
    """Shape pixels predicted and true over shape pixels predicted or true, over all the images."""
    predicted, truth = logits > 0.0, masks > 0.5
    return float((predicted & truth).sum() / max((predicted | truth).sum(), 1))


def main(argv: list[str] | None = None) -> float:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=6, help="training epochs (default: 6)")
    p.add_argument("--train", type=int, default=4000, help="generated training images (default: 4000)")
    p.add_argument("--up", choices=("transpose", "upsampling"), default="transpose",
                   help="how the decoder upsamples (default: transpose)")
    args = p.parse_args(argv)
    backend = setup(args)
    rng = np.random.default_rng(args.seed)
    train_n, test_n, epochs = (256, 64, 2) if args.quick else (args.train, 500, args.epochs)
    x_train, y_train = make_shapes(train_n, rng)
    x_test, y_test = make_shapes(test_n, rng)

    model = build_unet(args.up)
    model.summary()
    model.compile(loss="binary_crossentropy", optimizer=Adam(3e-3))
    start = time.perf_counter()
    model.fit(x_train, y_train, batch_size=32, epochs=epochs, validation_data=(x_test, y_test),
              verbose=0 if args.quick else 2)
    logits = host(model.predict(x_test, batch_size=100))
    wall = time.perf_counter() - start
    score = iou(logits, y_test)
    print(f"IoU of the shape pixels on {test_n} held-out images: {score:.3f} (training and prediction: {wall:.1f} s "
          f"on {backend.name})")
    shown = {"input": x_test[:SHOWN], "target": y_test[:SHOWN],
             "prediction": (logits[:SHOWN] > 0.0).astype(np.float32)}
    save(plot_images(shown, title=f"U-Net segmentation, IoU {score:.3f}"), args, "unet_segmentation.png")
    return score


if __name__ == "__main__":
    main()
