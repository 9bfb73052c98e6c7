"""A convolutional autoencoder on MNIST: strided convolutions down, a transposed convolution and upsampling up.

    encoder  (1, 28, 28) -> Conv2D stride 2 -> (w, 14, 14) -> Conv2D stride 2 -> (4, 7, 7)   the code
    decoder  -> Conv2DTranspose stride 2 -> (w, 14, 14) -> UpSampling2D -> (w, 28, 28) -> Conv2D -> Sigmoid

Trained with the mean squared error between the input and the output (``fit(x, x)``), it learns to squeeze
each digit's 784 pixels through a code of 4 x 7 x 7 = 196 numbers and rebuild it. The script saves ``autoencoder.png``: one test digit of each class in the
top row, its reconstruction below. ``--quick`` trains briefly on a small subset.
"""

from __future__ import annotations

import numpy as np
from _common import Timer, mnist, parser, save, setup

from xpcnn.layers.activations import ReLU, Sigmoid
from xpcnn.layers.conv import Conv2D, Conv2DTranspose
from xpcnn.layers.upsampling import UpSampling2D
from xpcnn.model import Sequential
from xpcnn.optimizers import Adam
from xpcnn.viz import plot_images


CODE_CHANNELS = 4  # the bottleneck: (4, 7, 7), a quarter of the pixels


def build_model(width: int) -> Sequential:
    return Sequential([
        # encoder: each stride-2 convolution halves the image
        Conv2D(width, 3, stride=2, padding=1), ReLU(),                   # (w, 14, 14)
        Conv2D(CODE_CHANNELS, 3, stride=2, padding=1), ReLU(),           # (4, 7, 7): the code
        # decoder: a learned upsampling, then a fixed one followed by a convolution
        Conv2DTranspose(width, 3, stride=2, padding=1, output_padding=1), ReLU(),  # (w, 14, 14)
        UpSampling2D(2),                                                 # (w, 28, 28)
        Conv2D(1, 3, padding=1), Sigmoid(),                              # (1, 28, 28) in (0, 1)
    ], input_shape=(1, 28, 28))


def main(argv: list[str] | None = None) -> None:
    args = parser(__doc__.splitlines()[0], mnist=True).parse_args(argv)
    setup(args)
    train_n, test_n, epochs, width = (512, 256, 2, 8) if args.quick else (20000, 2000, 5, 16)
    (x_train, _), (x_test, y_test) = mnist(args, train=train_n, test=test_n)

    model = build_model(width)
    model.compile(loss="mse", optimizer=Adam(lr=2e-3))
    model.summary()
    with Timer("training"):
        model.fit(x_train, x_train, batch_size=64, epochs=epochs, validation_data=(x_test, x_test),
                  verbose=0 if args.quick else 1)
    print(f"test MSE: {model.evaluate(x_test, x_test, batch_size=250)['loss']:.4f}")

    shown = np.array([int(np.flatnonzero(y_test == digit)[0]) for digit in range(10)])  # one of each class
    originals = x_test[shown]
    reconstructions = model.predict(originals)
    fig = plot_images({"original": originals, "reconstruction": reconstructions},
                      title="Convolutional autoencoder on MNIST test digits")
    save(fig, args, "autoencoder.png")


if __name__ == "__main__":
    main()
