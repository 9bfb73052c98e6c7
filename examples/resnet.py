"""A small ResNet on MNIST with the Functional API: residual blocks, BatchNorm, projection shortcuts.

ResNet-20's layout (He et al., 2016, the CIFAR-10 networks) scaled to fit a 2-core CPU::

    Conv2D(16, 3) -> BN -> ReLU                                   stem, full resolution
    stage 1: BLOCKS x block(16)                                   28x28 (MNIST) / 32x32 (CIFAR-10)
    stage 2: BLOCKS x block(32), the first with stride 2          14x14 / 16x16
    stage 3: BLOCKS x block(64), the first with stride 2          7x7 / 8x8
    GlobalAvgPool2D -> Dense(10)

    block(c):  x -> Conv2D(c, 3) -> BN -> ReLU -> Conv2D(c, 3) -> BN -> (+ shortcut(x)) -> ReLU
    shortcut:  x itself, or Conv2D(c, 1, stride 2) -> BN where the block halves the resolution (projection)

``--blocks 3`` is ResNet-20 itself; the default ``--blocks 1`` is the 8-layer ResNet. Adam with a 1cycle
learning-rate schedule (``OneCycleLR``), batch 128. ``--ema MOMENTUM`` also keeps a moving average of the
weights; ``fit`` then re-estimates the BatchNorm statistics for the average (``update_bn``).

``--data cifar10`` trains the same network on CIFAR-10 (``load_cifar10``: ``$XPCNN_DATA/cifar10`` or the user
cache, downloaded once), with the usual augmentation on the device: random crops of the image padded by 4
pixels and horizontal flips.

Prints the test accuracy after each epoch and the wall time; saves the curves as ``resnet_history.png`` and the
model as ``resnet.xpcnn`` in ``--out``. ``--quick`` trains a narrow net on 2,000 images for a smoke run.
"""

from __future__ import annotations

import time

from _common import mnist, parser, save, setup

import xpcnn
from xpcnn.callbacks import OneCycleLR
from xpcnn.datasets import load_cifar10
from xpcnn.layers import Add, BatchNorm2D, Conv2D, Dense, GlobalAvgPool2D, ReLU
from xpcnn.optimizers import Adam
from xpcnn.transforms import Compose, RandomCrop, RandomFlip
from xpcnn.viz import plot_history


def conv_bn(x, channels: int, kernel: int, stride: int, name: str):
    """Conv2D (no bias: the BatchNorm's shift replaces it) then BatchNorm2D."""
    x = Conv2D(channels, kernel, stride=stride, padding=kernel // 2, bias=False, name=f"{name}_conv")(x)
    return BatchNorm2D(name=f"{name}_bn")(x)


def residual_block(x, channels: int, stride: int, name: str):
    """Two 3x3 conv-BN pairs around a ReLU, added to the input (or to its projection), then a ReLU."""
    h = ReLU(name=f"{name}_relu1")(conv_bn(x, channels, 3, stride, f"{name}_a"))
    h = conv_bn(h, channels, 3, 1, f"{name}_b")
    shortcut = x if stride == 1 and x.shape[0] == channels else conv_bn(x, channels, 1, stride, f"{name}_proj")
    return ReLU(name=f"{name}_out")(Add(name=f"{name}_add")([h, shortcut]))


def build_resnet(input_shape=(1, 28, 28), num_classes: int = 10, widths=(16, 32, 64), blocks: int = 1):
    """The ResNet above for images of ``input_shape``: ``len(widths)`` stages of ``blocks`` blocks each."""
    inputs = xpcnn.Input(input_shape, name="image")
    x = ReLU(name="stem_relu")(conv_bn(inputs, widths[0], 3, 1, "stem"))
    for stage, channels in enumerate(widths):
        for block in range(blocks):
            stride = 2 if stage > 0 and block == 0 else 1
            x = residual_block(x, channels, stride, f"stage{stage + 1}_block{block + 1}")
    logits = Dense(num_classes, name="classes")(GlobalAvgPool2D(name="pool")(x))
    return xpcnn.Model(inputs, logits, name=f"resnet{6 * blocks + 2}")


def load_data(args, train: int | None, test: int | None):
    """``(title, (x_train, y_train), (x_test, y_test), augmentation)`` of the dataset ``--data`` names
    (``cifar10``), else of MNIST from the folder it gives (first ``train``/``test`` samples)."""
    if args.data is not None and str(args.data) == "cifar10":
        (x_train, y_train), (x_test, y_test) = load_cifar10()
        augment = Compose([RandomCrop(padding=4), RandomFlip(horizontal=True)])
        return "CIFAR-10", (x_train[:train], y_train[:train]), (x_test[:test], y_test[:test]), augment
    return ("MNIST", *mnist(args, train=train, test=test), None)


def main(argv: list[str] | None = None) -> float:
    p = parser(__doc__.splitlines()[0], mnist=True, other_datasets=("cifar10",))
    p.add_argument("--epochs", type=int, default=2, help="training epochs (default: 2)")
    p.add_argument("--blocks", type=int, default=1, help="residual blocks per stage (default: 1; 3 is ResNet-20)")
    p.add_argument("--batch-size", type=int, default=128, help="mini-batch size (default: 128)")
    p.add_argument("--max-lr", type=float, default=4e-3, help="peak learning rate of the 1cycle schedule")
    p.add_argument("--ema", type=float, default=0.0, metavar="MOMENTUM",
                   help="keep a moving average of the weights with this momentum (default: 0, none)")
    args = p.parse_args(argv)
    backend = setup(args)
    train_n, test_n, widths = (2000, 500, (4, 8, 16)) if args.quick else (None, None, (16, 32, 64))
    title, (x_train, y_train), (x_test, y_test), augment = load_data(args, train_n, test_n)
    print(f"{title}: {len(x_train):,} training and {len(x_test):,} test images")

    model = build_resnet(x_train.shape[1:], widths=widths, blocks=args.blocks)
    model.summary()
    model.compile(loss="cross_entropy", optimizer=Adam(args.max_lr, use_ema=args.ema > 0, ema_momentum=args.ema or 0.99),
                  metrics=["accuracy"])
    start = time.perf_counter()
    history = model.fit(x_train, y_train, batch_size=args.batch_size, epochs=args.epochs,
                        validation_data=(x_test, y_test), callbacks=[OneCycleLR(args.max_lr)],
                        verbose=0 if args.quick else 1, transform=augment)
    accuracy = model.evaluate(x_test, y_test, batch_size=500)["accuracy"]  # the weights fit returned
    wall = time.perf_counter() - start
    for epoch, value in enumerate(history.history["val_accuracy"], 1):
        print(f"epoch {epoch}: test accuracy {100 * value:.2f}%")
    weights = f"weights averaged with momentum {args.ema}" if args.ema > 0 else "final weights"
    print(f"test accuracy after {model.epoch} epoch(s): {100 * accuracy:.2f}% on {len(x_test):,} images ({weights})")
    print(f"wall time (training, per-epoch and final test evaluation): {wall:.1f} s on {backend.name}, "
          f"{wall / max(args.epochs, 1):.1f} s per epoch")
    path = args.out / "resnet.xpcnn"
    model.save(path)
    print(f"saved {path}")
    save(plot_history(history, title=f"{model.name} on {title}"), args, "resnet_history.png")
    return accuracy


if __name__ == "__main__":
    main()
