"""MNIST and Fashion-MNIST: two releases in the IDX format, read by one reader (``idx``)."""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from .idx import IdxRelease, load_idx_release

__all__ = ["FASHION_MNIST", "MNIST", "load_fashion_mnist", "load_mnist"]

Splits = tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]

#: MD5 sums of the decompressed contents (computed from the canonical files), so .gz and plain copies verify
MNIST = IdxRelease(
    name="mnist",
    title="MNIST",
    files={
        "train-images-idx3-ubyte": ("6bbc9ace898e44ae57da46a324031adb", (60000, 28, 28)),
        "train-labels-idx1-ubyte": ("a25bea736e30d166cdddb491f175f624", (60000,)),
        "t10k-images-idx3-ubyte": ("2646ac647ad5339dbf082846283269ea", (10000, 28, 28)),
        "t10k-labels-idx1-ubyte": ("27ae3e4e09519cfbb04c329615203637", (10000,)),
    },
    mirrors=("https://ossci-datasets.s3.amazonaws.com/mnist/", "https://storage.googleapis.com/cvdf-datasets/mnist/"),
    class_names=tuple(str(d) for d in range(10)),
)

#: Zalando publishes the MD5 sums of its .gz files only (no copy was at hand to compute the contents' sums)
FASHION_MNIST = IdxRelease(
    name="fashion_mnist",
    title="Fashion-MNIST",
    files={
        "train-images-idx3-ubyte": ("8d4fb7e6c68d591d4c3dfef9ec88bf0d", (60000, 28, 28)),
        "train-labels-idx1-ubyte": ("25c81989df183df01b3e8a0aad5dffbe", (60000,)),
        "t10k-images-idx3-ubyte": ("bef4ecab320f06d8554ea6380940ec79", (10000, 28, 28)),
        "t10k-labels-idx1-ubyte": ("bb300cfdad3c16e7a12a480ee83cd310", (10000,)),
    },
    mirrors=("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
             "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/"),
    class_names=("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                 "Ankle boot"),
    md5_of="gzip",
)


def load_mnist(
    root: str | os.PathLike[str] | None = None,
    download: bool = True,
    *,
    mirrors: Sequence[str] | None = None,
    progress: bool = True,
) -> Splits:
    """MNIST as ``((x_train, y_train), (x_test, y_test))``.

    Images are float32 ``(N, 1, 28, 28)`` in [0, 1] (NCHW, ready for Conv2D); labels are int64 ``(N,)``.
    Files are read from ``root``, else ``$XPCNN_DATA/mnist``, else ``$XDG_CACHE_HOME/xpcnn/mnist`` (or
    ``~/.cache/xpcnn/mnist``), each as ``.gz`` or uncompressed. Missing files are downloaded into that
    folder when ``download`` is true (from ``mirrors``, default ``MNIST.mirrors``).
    """
    return load_idx_release(MNIST, root, download, mirrors, progress)


def load_fashion_mnist(
    root: str | os.PathLike[str] | None = None,
    download: bool = True,
    *,
    mirrors: Sequence[str] | None = None,
    progress: bool = True,
) -> Splits:
    """Fashion-MNIST (Zalando's drop-in replacement for MNIST) as ``load_mnist``: the same layout and dtypes,
    read from ``root``, else ``$XPCNN_DATA/fashion_mnist``, else the user cache. Only ``.gz`` files are
    accepted, verified against Zalando's published MD5 sums; class names: ``class_names("fashion_mnist")``."""
    return load_idx_release(FASHION_MNIST, root, download, mirrors, progress)
