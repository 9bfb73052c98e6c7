"""Feature maps of a three-stage CNN on a photo, with the stateless ops only (no layers, no training).

This is the pipeline of the classic "CNN from scratch in NumPy" tutorial, written with ``xpcnn.ops``:

    grey cat (1, 1, H, W)
    stage 1: two fixed 3x3 edge filters (vertical, horizontal) -> ReLU -> 2x2 max pooling
    stage 2: three random 5x5 filters over the 2 maps             -> ReLU -> 2x2 max pooling
    stage 3: one random 7x7 filter over the 3 maps                -> ReLU -> 2x2 max pooling

and saves one PNG (``feature_maps.png``) with every stage's maps, one row per stage. The same code runs on
NumPy, CuPy, PyTorch, JAX or array-api-strict (``--backend``).
"""

from __future__ import annotations

import numpy as np
from _common import host, parser, save, setup

import xpcnn
from xpcnn.ops.activations import relu
from xpcnn.ops.conv import conv2d
from xpcnn.ops.pool import max_pool2d
from xpcnn.viz import plot_feature_maps

# stage 1's filters, (out=2, in=1, 3, 3): the vertical one responds to left-right changes in brightness
EDGE_FILTERS = np.array(
    [
        [[[-1.0, 0.0, 1.0], [-1.0, 0.0, 1.0], [-1.0, 0.0, 1.0]]],  # vertical edges
        [[[1.0, 1.0, 1.0], [0.0, 0.0, 0.0], [-1.0, -1.0, -1.0]]],  # horizontal edges
    ],
    dtype=np.float32,
)


def grey_cat(quick: bool) -> np.ndarray:
    """skimage's Chelsea the cat as one grey image ``(1, 1, H, W)`` in [0, 1] (half size with ``quick``)."""
    from skimage import color, data

    grey = color.rgb2gray(data.chelsea()).astype(np.float32)  # (300, 451)
    if quick:
        grey = grey[::2, ::2]
    return grey[None, None]


def stage(x, weight, name: str, maps: dict) -> object:
    """conv (valid, stride 1) -> ReLU -> 2x2 max pooling, keeping each intermediate for the picture."""
    y = conv2d(x, weight)
    maps[f"{name} conv {weight.shape[2]}x{weight.shape[3]}"] = y
    y = relu(y)
    maps[f"{name} ReLU"] = y
    y = max_pool2d(y, 2)  # stride defaults to the kernel size
    maps[f"{name} max pool"] = y
    return y


def main(argv: list[str] | None = None) -> None:
    args = parser(__doc__.splitlines()[0]).parse_args(argv)
    setup(args)
    rng = xpcnn.random.host_generator()  # random filters drawn on the host: the same on every backend

    image = xpcnn.asarray(grey_cat(args.quick))
    maps = {"input": image}
    x = stage(image, xpcnn.asarray(EDGE_FILTERS), "L1", maps)
    x = stage(x, xpcnn.asarray(rng.uniform(-1.0, 1.0, size=(3, 2, 5, 5))), "L2", maps)
    x = stage(x, xpcnn.asarray(rng.uniform(-1.0, 1.0, size=(1, 3, 7, 7))), "L3", maps)

    for name, m in maps.items():
        a = host(m)
        print(f"{name:>16}: {tuple(a.shape)}  min {a.min():8.3f}  max {a.max():8.3f}")
    fig = plot_feature_maps(maps, title="Feature maps of a three-stage CNN (conv, ReLU, max pooling)", cmap="gray")
    save(fig, args, "feature_maps.png")


if __name__ == "__main__":
    main()
