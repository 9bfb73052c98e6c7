"""The benchmark models, described once and built for xpcnn and for PyTorch from the same description.

A model is a per-sample input shape plus a list of layer specs; ``build_xpcnn`` and ``build_torch`` turn
the specs into the two frameworks' layers, so the two sides cannot drift apart.
"""

from __future__ import annotations

from typing import Any

# (kind, *args): ("conv", out_channels, kernel, padding), ("bn",), ("relu",), ("maxpool", k), ("gap",),
# ("flatten",), ("dense", out_features)
MODELS: dict[str, dict[str, Any]] = {
    "mnist": {
        "input_shape": (1, 28, 28),
        "classes": 10,
        "batch_sizes": (64, 256),
        "layers": [
            ("conv", 16, 5, "same"), ("relu",), ("maxpool", 2),
            ("conv", 32, 5, "same"), ("relu",), ("maxpool", 2),
            ("flatten",), ("dense", 10),
        ],
    },
    "cifar": {
        "input_shape": (3, 32, 32),
        "classes": 10,
        "batch_sizes": (128,),
        "layers": [
            ("conv", 64, 3, 1), ("bn",), ("relu",), ("maxpool", 2),
            ("conv", 128, 3, 1), ("bn",), ("relu",), ("maxpool", 2),
            ("conv", 256, 3, 1), ("bn",), ("relu",), ("maxpool", 2),
            ("gap",), ("dense", 10),
        ],
    },
}


def describe(name: str) -> str:
    """One line naming the layers, for the report."""
    parts = []
    for kind, *args in MODELS[name]["layers"]:
        parts.append(f"{kind}({', '.join(map(str, args))})" if args else kind)
    return " > ".join(parts)


def build_xpcnn(name: str) -> Any:
    """An uncompiled ``xpcnn`` Sequential for model ``name`` on the current backend."""
    from xpcnn.layers.activations import ReLU
    from xpcnn.layers.conv import Conv2D
    from xpcnn.layers.dense import Dense
    from xpcnn.layers.pool import GlobalAvgPool2D, MaxPool2D
    from xpcnn.layers.reshape import Flatten
    from xpcnn.model import Sequential

    spec = MODELS[name]
    layers = []
    for kind, *args in spec["layers"]:
        if kind == "conv":
            out_channels, kernel, padding = args
            layers.append(Conv2D(out_channels, kernel, padding=padding))
        elif kind == "bn":
            from xpcnn.layers.normalization import BatchNorm2D  # only the cifar model needs it

            layers.append(BatchNorm2D())
        elif kind == "relu":
            layers.append(ReLU())
        elif kind == "maxpool":
            layers.append(MaxPool2D(args[0]))
        elif kind == "gap":
            layers.append(GlobalAvgPool2D())
        elif kind == "flatten":
            layers.append(Flatten())
        elif kind == "dense":
            layers.append(Dense(args[0]))
        else:  # pragma: no cover - a typo in MODELS
            raise ValueError(f"unknown layer kind {kind!r}")
    return Sequential(layers, input_shape=spec["input_shape"])


def build_torch(name: str) -> Any:
    """The same network as ``torch.nn.Sequential`` (PyTorch's default initialisation; float32)."""
    from torch import nn

    spec = MODELS[name]
    c, h, w = spec["input_shape"]
    features = None  # set once the spatial axes are gone
    modules = []
    for kind, *args in spec["layers"]:
        if kind == "conv":
            out_channels, kernel, padding = args
            modules.append(nn.Conv2d(c, out_channels, kernel, padding=padding))
            c = out_channels  # "same" and padding=(k-1)/2 keep h, w for the odd kernels used here
        elif kind == "bn":
            modules.append(nn.BatchNorm2d(c))
        elif kind == "relu":
            modules.append(nn.ReLU())
        elif kind == "maxpool":
            modules.append(nn.MaxPool2d(args[0]))
            h, w = h // args[0], w // args[0]
        elif kind == "gap":
            modules += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
            features = c
        elif kind == "flatten":
            modules.append(nn.Flatten())
            features = c * h * w
        elif kind == "dense":
            modules.append(nn.Linear(features, args[0]))
            features = args[0]
        else:  # pragma: no cover
            raise ValueError(f"unknown layer kind {kind!r}")
    return nn.Sequential(*modules)
