"""Transfer learning: a pretrained network's features, a new head for your classes, then fine-tuning.

``DIR`` holds one subfolder per class (as for ``cats_vs_dogs.py``); it is streamed from disk with a 20%
validation split. ``--weights FILE`` is the backbone's pretrained weights: a torchvision ``.pth`` file of
``--arch`` (for example ``mobilenet_v3_small-047dcff4.pth`` from download.pytorch.org), read without torch;
``--weights DEFAULT`` downloads torchvision's file once into the cache. The model takes the loader's images in
[0, 1]: ImageNet's normalisation is its first layer (``include_preprocessing=True``).

1. Feature extraction: every backbone layer frozen (``model.freeze(up_to="avgpool")``), only the new head
   (dropout and a dense layer) trains, at ``--lr``. Frozen batch-norm layers keep their ImageNet statistics
   and run in inference mode (Keras's rule).
2. Fine-tuning: the backbone's convolutions unfrozen, its batch norms kept frozen (a few thousand images
   would overwrite statistics learned on a million), everything trained at ``--fine-tune-lr``, ten times
   lower, so the pretrained features move little.

Both phases' curves go to ``transfer_learning_history.png``. ``--quick`` (or no ``DIR``) makes a folder of
synthetic pictures (circles and squares, as ``cats_vs_dogs.py`` does) at 64x64; without ``--weights`` it then
starts from random weights, which tests the mechanics only.
"""

from __future__ import annotations

import pathlib

import numpy as np
from _common import Timer, folder_settings, parser, save, setup
from cats_vs_dogs import make_shapes_folder

from xpcnn import applications, to_numpy
from xpcnn.callbacks import History
from xpcnn.datasets import image_dataset_from_directory
from xpcnn.layers import BatchNorm2D, Dense, Dropout
from xpcnn.model import Model
from xpcnn.optimizers import Adam
from xpcnn.viz import plot_history

ARCHS = ("mobilenet_v3_small", "mobilenet_v3_large", "mobilenet_v2", "efficientnet_b0", "resnet18", "resnet34",
         "resnet50")


def build_model(arch: str, weights: str | None, classes: int, size: int) -> Model:
    """The pretrained backbone, pooled, then the new head: dropout and one dense layer (logits)."""
    backbone = getattr(applications, arch)(weights=weights, include_top=False, pooling="avg",
                                           input_shape=(3, size, size), include_preprocessing=True)
    head = Dense(classes, name="head")(Dropout(0.2, name="head_dropout")(backbone.outputs[0]))
    return Model(backbone.inputs[0], head, name=f"{arch}_transfer")


def main(argv: list[str] | None = None) -> float:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("directory", nargs="?", type=pathlib.Path, help="folder with one subfolder per class")
    p.add_argument("--arch", default="mobilenet_v3_small", choices=ARCHS, help="the pretrained backbone")
    p.add_argument("--weights", default=None, help="its weights: a .pth/.safetensors file, or DEFAULT")
    p.add_argument("--image-size", type=int, default=None, help="side of the square images (default 160, --quick 64)")
    p.add_argument("--batch-size", type=int, default=None, help="mini-batch size (default 32, --quick 16)")
    p.add_argument("--epochs", type=int, default=None, help="epochs of feature extraction (default 5, --quick 3)")
    p.add_argument("--fine-tune-epochs", type=int, default=None, help="epochs of fine-tuning (default 3, --quick 1)")
    p.add_argument("--lr", type=float, default=1e-3, help="Adam's learning rate for the head")
    p.add_argument("--fine-tune-lr", type=float, default=1e-4, help="Adam's learning rate when fine-tuning")
    args = p.parse_args(argv)
    setup(args)
    quick, size, batch_size = folder_settings(args, full_size=160)
    epochs, fine_tune = args.epochs or (3 if quick else 5), args.fine_tune_epochs or (1 if quick else 3)
    directory = args.directory
    if quick:
        directory = make_shapes_folder(args.out / "shapes_folder", per_class=120, seed=args.seed)
        print(f"made {directory} (240 synthetic pictures and a few corrupt files)")
    train, val = image_dataset_from_directory(directory, image_size=(size, size), validation_split=0.2,
                                              subset="both", seed=args.seed, batch_size=batch_size)

    model = build_model(args.arch, args.weights, len(train.class_names), size)
    frozen = model.freeze(up_to="avgpool")
    loaded = {key: to_numpy(value) for key, value in model.state_dict().items() if not key.startswith("head")}
    model.compile(loss="cross_entropy", optimizer=Adam(args.lr), metrics=["accuracy"])
    model.summary()
    history = History()  # one record of both phases
    print(f"1. feature extraction: {len(frozen)} backbone layers frozen, the head trains")
    with Timer("feature extraction"):
        model.fit(train, epochs=epochs, validation_data=val, verbose=2, callbacks=[history])
    kept = all(np.array_equal(to_numpy(model.state_dict()[key]), value) for key, value in loaded.items())
    print(f"validation accuracy after feature extraction: {history.history['val_accuracy'][-1]:.3f}; the backbone's "
          f"{len(loaded)} weights and statistics as loaded: {kept}")

    for layer in frozen:
        layer.trainable = not isinstance(layer, BatchNorm2D)
    model.compile(loss="cross_entropy", optimizer=Adam(args.fine_tune_lr), metrics=["accuracy"])
    print(f"2. fine-tuning: everything but the batch norms trains, at {args.fine_tune_lr:g}")
    with Timer("fine-tuning"):
        model.fit(train, epochs=epochs + fine_tune, initial_epoch=epochs, validation_data=val, verbose=2,
                  callbacks=[history])
    accuracy = history.history["val_accuracy"][-1]
    print(f"validation accuracy: {accuracy:.3f} on the {val.num_samples} validation files")
    path = args.out / f"{args.arch}_transfer.xpcnn"
    model.save(path)
    print(f"saved {path}")
    fig = plot_history(history, title=f"{args.arch}: feature extraction, then fine-tuning from epoch {epochs + 1}")
    for ax in fig.axes:
        ax.axvline(epochs + 0.5, color="grey", linestyle=":", linewidth=1)
    save(fig, args, "transfer_learning_history.png")
    return accuracy


if __name__ == "__main__":
    main()
