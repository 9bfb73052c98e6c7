"""What every example shares: command-line flags, backend set-up, MNIST loading and saving figures.

Each example runs unchanged on any backend::

    python examples/feature_maps.py                          # NumPy on the CPU
    python examples/feature_maps.py --backend cupy           # the first GPU
    python examples/feature_maps.py --backend torch --device cuda:0
    python examples/class_activation_maps.py --quick --out /tmp/pictures

``--quick`` trains on a small subset for a seconds-long smoke run (the tests use it).
"""

from __future__ import annotations

import argparse
import pathlib
import sys
import time
from typing import Any

import numpy as np

# run from a source checkout without installing: make ``import xpcnn`` find the package beside examples/
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import xpcnn  # noqa: E402

DPI = 80  # small PNGs; the figure sizes are fixed, so the pixel size of each picture is too


def parser(description: str, mnist: bool = False, other_datasets: tuple[str, ...] = ()) -> argparse.ArgumentParser:
    """The flags every example takes (``--data`` too when it reads MNIST, which may also name one of
    ``other_datasets`` the example can train on instead)."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--backend", default="numpy", choices=xpcnn.backend.KNOWN_BACKENDS,
                   help="array library to compute with (default: numpy)")
    p.add_argument("--device", default=None,
                   help="device of that backend, e.g. cuda:0 (cupy/torch), gpu (jax), device1 (array_api_strict)")
    p.add_argument("--out", default=".", type=pathlib.Path, help="folder for the PNG (default: here)")
    p.add_argument("--quick", action="store_true", help="a seconds-long run on a small subset")
    p.add_argument("--seed", default=0, type=int, help="random seed (default: 0)")
    if mnist:
        others = (f"; or {' or '.join(other_datasets)}: that dataset from $XPCNN_DATA/<name> or the user cache"
                  if other_datasets else "")
        p.add_argument("--data", default=None, type=pathlib.Path,
                       help="folder with the MNIST files (or with an mnist/ folder); default $XPCNN_DATA/mnist "
                            f"or the user cache, downloading once if missing{others}")
    return p


def setup(args: argparse.Namespace) -> xpcnn.Backend:
    """Select the backend and device, seed every generator, create the output folder."""
    device: Any = args.device
    if isinstance(device, str) and device.isdigit():
        device = int(device)  # "--device 1" means GPU 1
    backend = xpcnn.set_backend(args.backend, device=device)
    xpcnn.manual_seed(args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    print(f"backend: {backend}")
    return backend


def mnist(args: argparse.Namespace, train: int | None = None, test: int | None = None):
    """MNIST as NumPy ``((x_train, y_train), (x_test, y_test))``, cut to the first ``train``/``test`` samples."""
    from xpcnn.datasets.mnist import load_mnist

    root = args.data
    if root is not None and (root / "mnist").is_dir():
        root = root / "mnist"
    (x_train, y_train), (x_test, y_test) = load_mnist(root)
    return (x_train[:train], y_train[:train]), (x_test[:test], y_test[:test])


def save(fig: Any, args: argparse.Namespace, name: str) -> pathlib.Path:
    """Write ``fig`` as ``<out>/<name>`` at the examples' DPI, close it, print where it went."""
    import matplotlib.pyplot as plt

    path = args.out / name
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    print(f"saved {path}")
    return path


class Timer:
    """``with Timer("training"):`` prints how long the block took."""

    def __init__(self, what: str) -> None:
        self.what = what

    def __enter__(self) -> Timer:
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        print(f"{self.what}: {time.perf_counter() - self.start:.1f} s")


def host(x: Any) -> np.ndarray:
    """A backend array on the host, for printing and plotting."""
    return np.asarray(xpcnn.to_numpy(x))


def folder_settings(args: argparse.Namespace, full_size: int) -> tuple[bool, int, int]:
    """For the examples that read a folder of images (``directory``, ``--image-size``, ``--batch-size``):
    whether the run is quick (``--quick`` or no folder given), the image side (64 when quick, else
    ``full_size``) and the batch size (16 when quick, else 32), each unless given on the command line."""
    quick = args.quick or args.directory is None
    return quick, args.image_size or (64 if quick else full_size), args.batch_size or (16 if quick else 32)

