"""Class activation maps: which pixels made a global-average-pooling CNN call a digit a 7.

A CNN whose last convolution is followed by GlobalAvgPool2D and one Dense layer scores class ``k`` as
``sum_c W[k, c] * mean(F_c)``; the map ``sum_c W[k, c] * F_c`` (Zhou et al., "Learning Deep Features for
Discriminative Localization", 2016) shows where that evidence lies. This script trains such a network on
MNIST, computes the maps of the predicted classes for some test digits with ``xpcnn.viz.class_activation_map``
and saves them overlaid on the digits as ``class_activation_maps.png`` (titles: predicted / true label,
red when wrong). ``--quick`` trains briefly on a small subset.
"""

from __future__ import annotations

from _common import Timer, mnist, parser, save, setup

from xpcnn.layers.activations import ReLU
from xpcnn.layers.conv import Conv2D
from xpcnn.layers.dense import Dense
from xpcnn.layers.pool import GlobalAvgPool2D, MaxPool2D
from xpcnn.model import Sequential
from xpcnn.optimizers import Adam
from xpcnn.viz import class_activation_map, plot_class_activation_maps

SHOWN = 16  # test digits in the picture


def build_model(width: int) -> Sequential:
    """28x28 -> 14x14 -> 7x7 features, then GlobalAvgPool2D and one Dense layer: the CAM architecture."""
    return Sequential([
        Conv2D(width, 3, padding=1), ReLU(), MaxPool2D(2),      # (w, 14, 14)
        Conv2D(2 * width, 3, padding=1), ReLU(), MaxPool2D(2),  # (2w, 7, 7)
        Conv2D(4 * width, 3, padding=1), ReLU(),                # (4w, 7, 7): the maps the CAM weighs
        GlobalAvgPool2D(),                                      # (4w,)
        Dense(10),                                              # class scores
    ], input_shape=(1, 28, 28))


def main(argv: list[str] | None = None) -> None:
    args = parser(__doc__.splitlines()[0], mnist=True).parse_args(argv)
    setup(args)
    train_n, test_n, epochs, width = (512, 256, 1, 8) if args.quick else (20000, 2000, 3, 16)
    (x_train, y_train), (x_test, y_test) = mnist(args, train=train_n, test=test_n)

    model = build_model(width)
    model.compile(loss="cross_entropy", optimizer=Adam(lr=3e-3 if args.quick else 2e-3), metrics=["accuracy"])
    model.summary()
    with Timer("training"):
        model.fit(x_train, y_train, batch_size=64, epochs=epochs, verbose=0 if args.quick else 1)
    scores = model.evaluate(x_test, y_test, batch_size=250)
    print(f"test accuracy on {len(x_test)} digits: {scores['accuracy']:.3f}")

    # the maps of the last Conv2D: the ReLU after it is shape-preserving, then comes the global pooling
    maps, predicted = class_activation_map(model, x_test[:SHOWN], layer=Conv2D)
    fig = plot_class_activation_maps(
        x_test[:SHOWN], maps, predicted, labels=y_test[:SHOWN], ncols=8,
        title=f"Class activation maps (test accuracy {scores['accuracy']:.1%})",
    )
    save(fig, args, "class_activation_maps.png")


if __name__ == "__main__":
    main()
