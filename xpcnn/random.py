"""Random numbers on the current device, one small interface over each backend's native generator.

The Array API has no random module. xpcnn keeps one counter-based stream: every draw takes the key
``(seed, counter)`` and bumps the counter, and each backend turns that key into its own generator. The whole
state is two integers, so it is saved in checkpoints and restored exactly (``get_state``/``set_state``).
Initial weights are drawn on the host with NumPy (``host_generator``) so that the same seed gives the same
weights on every backend.
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from .backend import dtype_name, get_backend

__all__ = [
    "advance",
    "bernoulli",
    "get_state",
    "host_generator",
    "manual_seed",
    "normal",
    "permutation",
    "set_state",
    "traced_counter",
    "uniform",
]

_state: dict[str, int | None] = {"seed": None, "counter": 0}
_traced: dict[str, Any] = {"counter": None, "drawn": 0}


def manual_seed(seed: int) -> None:
    """Seed every generator of the library; the same script then gives the same numbers."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    _state["seed"] = int(seed)
    _state["counter"] = 0


def get_state() -> dict[str, int]:
    """The stream's position as plain ints (JSON-friendly), for checkpoints."""
    return {"seed": _seed(), "counter": int(_state["counter"])}


def set_state(state: dict[str, int]) -> None:
    """Continue the stream exactly where ``get_state`` left it."""
    try:
        seed, counter = int(state["seed"]), int(state["counter"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"a random state is {{'seed': int, 'counter': int}}, got {state!r}") from exc
    _state["seed"], _state["counter"] = seed, counter


def _seed() -> int:
    if _state["seed"] is None:
        _state["seed"] = secrets.randbits(63)
    return int(_state["seed"])


def _next_key() -> tuple[int, Any]:
    seed = _seed()
    if _traced["counter"] is not None:  # inside a compiled step: the counter is an input of the step
        drawn = _traced["drawn"]
        _traced["drawn"] = drawn + 1
        return seed, _traced["counter"] + drawn
    counter = int(_state["counter"])
    _state["counter"] = counter + 1
    return seed, counter


@contextlib.contextmanager
def traced_counter(counter: Any) -> Iterator[Callable[[], int]]:
    """Draws inside the block take the keys ``(seed, counter + i)`` for the i-th draw, ``counter`` being a
    value traced by ``jax.jit``, and leave the stream where it is; the yielded function tells how many draws
    the block made. A compiled step runs its body in this block once, when traced, and then moves the stream
    on by that many draws per call (``advance``): the same keys, hence the same dropout masks, as eager JAX.
    """
    if _traced["counter"] is not None:
        raise RuntimeError("xpcnn.random.traced_counter blocks do not nest")
    _traced["counter"], _traced["drawn"] = counter, 0
    try:
        yield lambda: int(_traced["drawn"])
    finally:
        _traced["counter"], _traced["drawn"] = None, 0


def advance(draws: int) -> None:
    """Move the stream on by ``draws`` keys (what a compiled step drew), as if they had been drawn here."""
    _seed()
    _state["counter"] = int(_state["counter"]) + int(draws)


def _key_to_int(key: tuple[int, int]) -> int:
    return int(np.random.SeedSequence(list(key)).generate_state(1, np.uint64)[0] >> np.uint64(1))


def host_generator() -> np.random.Generator:
    """A NumPy generator for the next key: initial weights are drawn here, then moved to the device."""
    return np.random.default_rng(list(_next_key()))


# --- one draw on the current backend ---------------------------------------------------------------

def uniform(shape: tuple[int, ...], low: float = 0.0, high: float = 1.0, dtype: Any = None) -> Any:
    """Samples of U[low, high) on the current device, in ``dtype`` (default: the backend's float dtype)."""
    u = _draw("uniform", tuple(shape), dtype)
    if (low, high) == (0.0, 1.0):
        return u
    return u * (high - low) + low


def normal(shape: tuple[int, ...], mean: float = 0.0, std: float = 1.0, dtype: Any = None) -> Any:
    """Samples of N(mean, std**2) on the current device."""
    z = _draw("normal", tuple(shape), dtype)
    if (mean, std) == (0.0, 1.0):
        return z
    return z * std + mean


def bernoulli(shape: tuple[int, ...], p: float) -> Any:
    """A boolean array, True with probability ``p``, on the current device."""
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"bernoulli probability must lie in [0, 1], got {p}")
    return uniform(shape) < p


def permutation(n: int) -> Any:
    """A random permutation of ``range(n)`` as an int64 array on the current device."""
    return _draw("permutation", (int(n),), None)


# NumPy's and CuPy's Generator method for each kind of draw.
_GENERATOR_METHOD = {"uniform": "random", "normal": "standard_normal"}


def _draw(kind: str, shape: tuple[int, ...], dtype: Any) -> Any:
    """One draw of ``kind`` (uniform, normal, permutation of shape[0]) with the next key, on the device."""
    backend = get_backend()
    name, xp, dev = backend.name, backend.xp, backend.device
    dtype = backend.dtype if dtype is None else dtype
    key = _next_key()
    if name == "torch":
        import torch

        gen = torch.Generator(device=dev).manual_seed(_key_to_int(key))
        if kind == "permutation":
            return torch.randperm(shape[0], generator=gen, device=dev, dtype=torch.int64)
        sample = torch.rand if kind == "uniform" else torch.randn
        return sample(shape, generator=gen, device=dev, dtype=dtype)
    if name == "jax":
        import jax

        jkey = jax.random.fold_in(jax.random.key(key[0]), key[1])
        if kind == "permutation":
            return jax.device_put(jax.random.permutation(jkey, shape[0]), dev)
        return jax.device_put(getattr(jax.random, kind)(jkey, shape, dtype=dtype), dev)
    if name == "cupy":
        import cupy

        with dev:
            if kind == "permutation":
                return cupy.random.RandomState(_key_to_int(key)).permutation(shape[0]).astype(cupy.int64)
            rng = cupy.random.default_rng(_key_to_int(key))
            return getattr(rng, _GENERATOR_METHOD[kind])(shape, dtype=dtype)
    # NumPy, and namespaces without a generator (array-api-strict): draw on the host, then move.
    rng = np.random.default_rng(list(key))
    if kind == "permutation":
        return xp.asarray(rng.permutation(shape[0]).astype(np.int64), device=dev)
    return xp.asarray(getattr(rng, _GENERATOR_METHOD[kind])(shape, dtype=dtype_name(dtype)), device=dev)
