"""Train the classic small CNN on MNIST with xpcnn, on any backend.

    Conv2D(16, 5, same) -> ReLU -> MaxPool2D(2) -> Conv2D(32, 5, same) -> ReLU -> MaxPool2D(2)
    -> Flatten -> Dense(10)          (cross-entropy on the logits, batch 64)

Adam at lr 2e-3 keeping a moving average of the weights (momentum 0.99, Keras's ``use_ema``); ``fit`` ends
with the averaged weights, and they are what is tested and saved. Issue 4 first named Adam at 1e-3 without
the average (``--lr 1e-3 --ema 0``): over five seeds that recipe averages about 98.4% after one epoch, short
of the 98.5% target, while this one averages about 98.9% (docs/guides/results.md, "MNIST").

Examples::

    python examples/train_mnist.py                                  # NumPy, 1 epoch
    python examples/train_mnist.py --epochs 5 --backend torch --device cuda:0
    python examples/train_mnist.py --quick                          # seconds: 2,000 training images
    python examples/train_mnist.py --backend torch --epochs 3 --one-cycle 4e-3 --target-accuracy 0.99
    python examples/train_mnist.py --backend torch --dtype-policy mixed_bfloat16   # mixed precision

The test set is evaluated after every epoch (the validation curves, of the weights being trained). At the
end the script prints the test accuracy of the model ``fit`` returned and the wall time, saves the model to
``<out>/mnist_cnn.xpcnn`` (reload it with ``xpcnn.load_model``) and the loss/accuracy curves to
``<out>/history.png``. ``--one-cycle MAX_LR`` changes the rate every step (``OneCycleLR``) instead of
keeping ``--lr``; ``--target-accuracy A`` stops after the first epoch whose weights (the averaged ones, which
``fit`` would return) reach test accuracy A, and reports the wall time to get there.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import sys
import time

# run from a source checkout without installing: make ``import xpcnn`` find the package beside examples/
REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

import xpcnn  # noqa: E402
from xpcnn.datasets.mnist import load_mnist  # noqa: E402
from xpcnn.layers.activations import ReLU  # noqa: E402
from xpcnn.layers.conv import Conv2D  # noqa: E402
from xpcnn.layers.dense import Dense  # noqa: E402
from xpcnn.layers.pool import MaxPool2D  # noqa: E402
from xpcnn.layers.reshape import Flatten  # noqa: E402
from xpcnn.model import Sequential  # noqa: E402
from xpcnn.callbacks import Callback, OneCycleLR  # noqa: E402
from xpcnn.optimizers import Adam  # noqa: E402

QUICK_TRAIN, QUICK_TEST = 2000, 1000


def build_model() -> Sequential:
    return Sequential([
        Conv2D(16, 5, padding="same"), ReLU(), MaxPool2D(2),   # (16, 14, 14)
        Conv2D(32, 5, padding="same"), ReLU(), MaxPool2D(2),   # (32, 7, 7)
        Flatten(), Dense(10),                                   # logits
    ], input_shape=(1, 28, 28))


def default_data() -> pathlib.Path | None:
    """$XPCNN_DATA, else ../shared/datasets beside the repository when it exists, else None (user cache)."""
    env = os.environ.get("XPCNN_DATA")
    if env:
        return pathlib.Path(env)
    shared = REPO_ROOT.parent / "shared" / "datasets"
    return shared if shared.is_dir() else None


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--backend", default="numpy", choices=xpcnn.backend.KNOWN_BACKENDS,
                   help="array library to compute with (default: numpy)")
    p.add_argument("--device", default=None,
                   help="device of that backend, e.g. cuda:0 (cupy/torch), gpu (jax), device1 (array_api_strict)")
    p.add_argument("--epochs", type=int, default=1, help="training epochs (default: 1)")
    p.add_argument("--batch-size", type=int, default=64, help="mini-batch size (default: 64)")
    p.add_argument("--lr", type=float, default=2e-3, help="Adam learning rate (default: 2e-3)")
    p.add_argument("--ema", type=float, default=None, metavar="MOMENTUM",
                   help="momentum of the moving average of the weights; 0 trains without it (default: 0.99, "
                        "and 0 with --quick, whose 32 steps are too few to average over)")
    p.add_argument("--data", type=pathlib.Path, default=default_data(),
                   help="folder holding mnist/ (or the MNIST files themselves); default $XPCNN_DATA, else "
                        "../shared/datasets beside the repository if present, else the user cache (downloads once)")
    p.add_argument("--out", type=pathlib.Path, default=pathlib.Path("runs/mnist"),
                   help="folder for the saved model and the curves (default: runs/mnist)")
    p.add_argument("--quick", action="store_true",
                   help=f"a seconds-long run: {QUICK_TRAIN:,} training and {QUICK_TEST:,} test images")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    p.add_argument("--dtype-policy", default="float32", choices=xpcnn.mixed_precision.POLICY_NAMES,
                   help="xpcnn.mixed_precision policy of the layers (default: float32)")
    p.add_argument("--one-cycle", type=float, default=None, metavar="MAX_LR",
                   help="1cycle schedule per step up to MAX_LR over --epochs (torch's OneCycleLR) instead of --lr")
    p.add_argument("--target-accuracy", type=float, default=None, metavar="A",
                   help="stop after the first epoch whose weights reach test accuracy A (e.g. 0.99)")
    args = p.parse_args(argv)
    if args.target_accuracy is not None and not 0.0 < args.target_accuracy <= 1.0:
        p.error(f"--target-accuracy must lie in (0, 1], got {args.target_accuracy}")
    if args.ema is None:
        args.ema = 0.0 if args.quick else 0.99
    return args


class StopAtAccuracy(Callback):
    """Stop ``fit`` after the first epoch whose weights reach ``target`` test accuracy: the averaged weights when
    the optimizer keeps an average (what ``fit`` returns, evaluated here), else the epoch's ``val_accuracy``."""

    def __init__(self, target: float, x_test, y_test) -> None:
        super().__init__()
        self.target, self.x_test, self.y_test = target, x_test, y_test
        self.start = time.perf_counter()
        self.reached: tuple[int, float, float] | None = None  # (epochs, accuracy, seconds since fit began)

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        model, optimizer = self.model, self.model.optimizer
        if optimizer.use_ema:
            raw = model.params
            model.set_params(optimizer.averaged_params(raw))
            accuracy = model.evaluate(self.x_test, self.y_test, batch_size=1000)["accuracy"]
            model.set_params(raw)
        else:
            accuracy = float((logs or {})["val_accuracy"])
        print(f"epoch {epoch + 1}: test accuracy of the weights fit would return {100 * accuracy:.2f}%")
        if accuracy >= self.target and self.reached is None:
            self.reached = (epoch + 1, accuracy, time.perf_counter() - self.start)
            model.stop_training = True


def load(data: pathlib.Path | None):
    root = data
    if root is not None and (root / "mnist").is_dir():
        root = root / "mnist"
    return load_mnist(root)


def main(argv: list[str] | None = None) -> float:
    args = parse_args(argv)
    device = int(args.device) if isinstance(args.device, str) and args.device.isdigit() else args.device
    backend = xpcnn.set_backend(args.backend, device=device)
    xpcnn.manual_seed(args.seed)
    xpcnn.mixed_precision.set_global_policy(args.dtype_policy)
    print(f"backend: {backend}, dtype policy {args.dtype_policy}")

    (x_train, y_train), (x_test, y_test) = load(args.data)
    if args.quick:
        x_train, y_train = x_train[:QUICK_TRAIN], y_train[:QUICK_TRAIN]
        x_test, y_test = x_test[:QUICK_TEST], y_test[:QUICK_TEST]
    print(f"MNIST: {len(x_train):,} training and {len(x_test):,} test images")

    model = build_model()
    model.summary()
    optimizer = Adam(lr=args.lr, use_ema=args.ema > 0, ema_momentum=args.ema)
    model.compile(loss="cross_entropy", optimizer=optimizer, metrics=["accuracy"])

    callbacks = []
    if args.one_cycle is not None:
        callbacks.append(OneCycleLR(args.one_cycle))
    stop = None
    if args.target_accuracy is not None:
        stop = StopAtAccuracy(args.target_accuracy, x_test, y_test)
        callbacks.append(stop)
    start = time.perf_counter()
    history = model.fit(x_train, y_train, batch_size=args.batch_size, epochs=args.epochs,
                        validation_data=(x_test, y_test), verbose=1, callbacks=callbacks)
    accuracy = model.evaluate(x_test, y_test, batch_size=1000)["accuracy"]  # the weights fit returned
    wall = time.perf_counter() - start
    weights = f"weights averaged with momentum {args.ema}" if args.ema > 0 else "final weights"
    print(f"test accuracy after {model.epoch} epoch(s): {accuracy:.4f} ({100 * accuracy:.2f}%) on "
          f"{len(x_test):,} images ({weights})")
    print(f"wall time (training, per-epoch and final test evaluation): {wall:.1f} s on {backend.name}")
    if stop is not None:
        if stop.reached is None:
            print(f"target {100 * args.target_accuracy:.2f}% not reached in {args.epochs} epoch(s)")
        else:
            epochs, reached, seconds = stop.reached
            print(f"target {100 * args.target_accuracy:.2f}% reached after {epochs} epoch(s): "
                  f"{100 * reached:.2f}% in {seconds:.1f} s")

    args.out.mkdir(parents=True, exist_ok=True)
    model_path = args.out / "mnist_cnn.xpcnn"
    model.save(model_path)
    print(f"saved {model_path}")

    from xpcnn.viz import plot_history

    fig = plot_history(history)
    picture = args.out / "history.png"
    fig.savefig(picture, dpi=80)
    import matplotlib.pyplot as plt

    plt.close(fig)
    print(f"saved {picture}")
    return accuracy


if __name__ == "__main__":
    main()
