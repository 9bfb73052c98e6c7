"""Shared checks for layers and losses: numerical gradients and PyTorch autograd as oracle.

Every check runs on the backend that is active (the ``backend``/``backend64`` fixtures) and compares on the
host. ``check_numerical_gradients`` differentiates ``sum(forward(x) * dy)`` by central differences, both at
sampled coordinates and along random directions, with the random stream rewound before every forward so
that dropout masks stay fixed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

import xpcnn
from xpcnn.layers.base import Layer

Array = Any


def host(x: Array) -> np.ndarray:
    return np.asarray(xpcnn.to_numpy(x), dtype=np.float64)


def run_layer(layer: Layer, x: np.ndarray, dy_seed: int = 1) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict]:
    """Forward (training) and backward with a random output gradient; everything returned on the host."""
    y = layer.forward(xpcnn.asarray(x), training=True)
    dy = np.random.default_rng(dy_seed).standard_normal(tuple(y.shape))
    dx = layer.backward(xpcnn.asarray(dy))
    return host(y), dy, host(dx), {k: host(g) for k, g in layer.grads.items()}


def check_numerical_gradients(
    layer: Layer, x: np.ndarray, *, eps: float = 1e-6, rtol: float = 1e-5, atol: float = 1e-8,
    samples: int = 15, directions: int = 3,
) -> None:
    """Assert that ``layer.backward`` matches central differences for the input and every parameter."""
    random_state = xpcnn.random.get_state()
    _, dy, dx, grads = run_layer(layer, x)
    params = {k: host(v) for k, v in layer.params.items()}
    wrt = {"x": x, **params}
    analytic = {"x": dx, **grads}

    def objective(values: dict[str, np.ndarray]) -> float:
        for name, value in values.items():
            if name != "x":
                layer.params[name] = xpcnn.asarray(value)
        xpcnn.random.set_state(random_state)
        y = layer.forward(xpcnn.asarray(values["x"]), training=True)
        return float(np.sum(host(y) * dy))

    def diff(name: str, direction: np.ndarray) -> float:
        plus = {**wrt, name: wrt[name] + eps * direction}
        minus = {**wrt, name: wrt[name] - eps * direction}
        return (objective(plus) - objective(minus)) / (2 * eps)

    rng = np.random.default_rng(7)
    try:
        for name, value in wrt.items():
            assert analytic[name].shape == value.shape, f"grad of {name}: {analytic[name].shape} != {value.shape}"
            flat = rng.permutation(value.size)[:samples]
            for index in flat:
                e = np.zeros(value.size)
                e[index] = 1.0
                numeric = diff(name, e.reshape(value.shape))
                exact = analytic[name].reshape(-1)[index]
                assert np.isclose(exact, numeric, rtol=rtol, atol=atol + rtol * np.abs(analytic[name]).max()), (
                    f"d/d{name}[{np.unravel_index(index, value.shape)}]: backward {exact}, numerical {numeric}"
                )
            for _ in range(directions):
                v = rng.standard_normal(value.shape)
                numeric = diff(name, v)
                exact = float(np.sum(analytic[name] * v))
                assert np.isclose(exact, numeric, rtol=rtol, atol=atol * value.size), (
                    f"directional derivative along a random v for {name}: backward {exact}, numerical {numeric}"
                )
    finally:
        for name, value in params.items():
            layer.params[name] = xpcnn.asarray(value)


def assert_matches_torch(
    layer: Layer, x: np.ndarray, torch_forward: Callable[..., Any], *, rtol: float,
    param_names: dict[str, str] | None = None, atol: float | None = None,
) -> None:
    """Forward, input gradient and parameter gradients agree with PyTorch autograd.

    ``torch_forward(x, **params)`` computes the reference on float64 CPU tensors; ``param_names`` maps
    xpcnn parameter names to the keyword names that function takes (default: the same names).
    """
    import torch

    y, dy, dx, grads = run_layer(layer, x)
    tx = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    names = param_names or {k: k for k in layer.params}
    tparams = {
        names[k]: torch.tensor(host(v), dtype=torch.float64, requires_grad=True) for k, v in layer.params.items()
    }
    ty = torch_forward(tx, **tparams)
    ty.backward(torch.tensor(dy, dtype=torch.float64))
    scale = lambda ref: (atol if atol is not None else rtol) * max(1.0, float(np.abs(ref).max()))  # noqa: E731
    ref_y = ty.detach().numpy()
    np.testing.assert_allclose(y, ref_y, rtol=rtol, atol=scale(ref_y), err_msg="forward")
    ref_dx = tx.grad.numpy()
    np.testing.assert_allclose(dx, ref_dx, rtol=rtol, atol=scale(ref_dx), err_msg="input gradient")
    for k, tname in names.items():
        ref = tparams[tname].grad.numpy()
        np.testing.assert_allclose(grads[k], ref, rtol=rtol, atol=scale(ref), err_msg=f"gradient of {k}")


def rtol_for(backend: xpcnn.Backend) -> float:
    """The issue's tolerances: 1e-8 relative in float64, 1e-4 in float32."""
    return 1e-8 if xpcnn.backend.dtype_name(backend.dtype) == "float64" else 1e-4


def assert_on_device(array: Array, backend: xpcnn.Backend) -> None:
    import array_api_compat

    assert array_api_compat.device(array) == backend.device, (
        f"array on {array_api_compat.device(array)!r}, expected the backend device {backend.device!r}"
    )


def assert_forward_backward_on_device(layer: Layer, x: Array, backend: xpcnn.Backend) -> None:
    """A training forward and a backward keep every array on the backend's device and dtype."""
    y = layer.forward(x, training=True)
    dx = layer.backward(backend.xp.ones_like(y))
    for array in (y, dx, *layer.params.values(), *layer.grads.values()):
        assert_on_device(array, backend)
        assert array.dtype == backend.dtype
    assert tuple(dx.shape) == tuple(x.shape)
