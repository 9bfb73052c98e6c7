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


def build_jax(name: str, seed: int = 0) -> tuple[dict[str, Any], dict[str, Any], Any]:
    """The same network in plain JAX: ``(params, batch_stats, apply)`` with
    ``apply(params, batch_stats, x, training) -> (logits, new_batch_stats)``.

    Written as JAX's libraries (flax, haiku, equinox) write it: images NHWC (JAX's own layout: the caller
    transposes its NCHW data once), ``lax.conv_general_dilated`` with HWIO kernels, ``lax.reduce_window`` max
    pooling, batch norm with batch statistics while training (PyTorch's momentum 0.1, unbiased running
    variance), a dense layer as ``x @ w + b``; PyTorch's default uniform initialisation. Flattening goes
    through NCHW so that the dense layer sees the features in the order the other frameworks do.
    """
    import jax
    import jax.numpy as jnp
    import numpy as np
    from jax import lax

    spec = MODELS[name]
    rng = np.random.default_rng(seed)
    c, h, w = spec["input_shape"]
    params: dict[str, Any] = {}
    stats: dict[str, Any] = {}
    plan: list[tuple[str, str, tuple]] = []  # (kind, key prefix, static args)
    features = None
    for i, (kind, *args) in enumerate(spec["layers"]):
        key = str(i)
        if kind == "conv":
            out_channels, kernel, padding = args
            bound = 1.0 / np.sqrt(c * kernel * kernel)
            params[key + ".weight"] = rng.uniform(-bound, bound, (kernel, kernel, c, out_channels))
            params[key + ".bias"] = rng.uniform(-bound, bound, out_channels)
            pad = (kernel - 1) // 2 if padding == "same" else int(padding)
            plan.append((kind, key, ((pad, pad), (pad, pad))))
            c = out_channels
        elif kind == "bn":
            params[key + ".weight"], params[key + ".bias"] = np.ones(c), np.zeros(c)
            stats[key + ".mean"], stats[key + ".var"] = np.zeros(c), np.ones(c)
            plan.append((kind, key, ()))
        elif kind == "maxpool":
            plan.append((kind, key, (args[0],)))
            h, w = h // args[0], w // args[0]
        elif kind in ("relu", "gap", "flatten"):
            plan.append((kind, key, ()))
            if kind != "relu":
                features = c if kind == "gap" else c * h * w
        elif kind == "dense":
            bound = 1.0 / np.sqrt(features)
            params[key + ".weight"] = rng.uniform(-bound, bound, (features, args[0]))
            params[key + ".bias"] = rng.uniform(-bound, bound, args[0])
            plan.append((kind, key, ()))
            features = args[0]
        else:  # pragma: no cover
            raise ValueError(f"unknown layer kind {kind!r}")

    def apply(p: dict[str, Any], s: dict[str, Any], x: Any, training: bool) -> tuple[Any, dict[str, Any]]:
        s = dict(s)
        for kind, key, static in plan:
            if kind == "conv":
                x = lax.conv_general_dilated(x, p[key + ".weight"], (1, 1), static,
                                             dimension_numbers=("NHWC", "HWIO", "NHWC"))
                x = x + p[key + ".bias"]
            elif kind == "bn":
                if training:
                    mean, var = jnp.mean(x, axis=(0, 1, 2)), jnp.var(x, axis=(0, 1, 2))
                    n = x.shape[0] * x.shape[1] * x.shape[2]
                    s[key + ".mean"] = 0.9 * s[key + ".mean"] + 0.1 * mean
                    s[key + ".var"] = 0.9 * s[key + ".var"] + 0.1 * var * n / (n - 1)
                else:
                    mean, var = s[key + ".mean"], s[key + ".var"]
                x = (x - mean) * lax.rsqrt(var + 1e-5) * p[key + ".weight"] + p[key + ".bias"]
            elif kind == "relu":
                x = jax.nn.relu(x)
            elif kind == "maxpool":
                k = static[0]
                x = lax.reduce_window(x, -jnp.inf, lax.max, (1, k, k, 1), (1, k, k, 1), "VALID")
            elif kind == "gap":
                x = jnp.mean(x, axis=(1, 2))
            elif kind == "flatten":
                x = jnp.reshape(jnp.transpose(x, (0, 3, 1, 2)), (x.shape[0], -1))
            elif kind == "dense":
                x = x @ p[key + ".weight"] + p[key + ".bias"]
        return x, s

    as_device = lambda tree: {k: jnp.asarray(v, dtype=jnp.float32) for k, v in tree.items()}  # noqa: E731
    return as_device(params), as_device(stats), apply
