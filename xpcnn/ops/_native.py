"""Which namespace's own kernels serve an op: the fast paths that delegate to a framework (DESIGN.md rule 8).

JAX has ``lax.conv_general_dilated``, which XLA compiles to the machine's convolution library; the generic
column algorithm, traced by XLA, runs several times slower. PyTorch has oneDNN and cuDNN behind ``aten``. An
op asks ``kernel(xp, name)`` for its namespace's implementation (in ``_jax`` or ``_torch``) and falls back to
its generic Array API code when there is none. ``generic_only()``
switches the delegation off, so tests and benchmarks can hold the two implementations against each other.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import array_api_compat

__all__ = ["generic_only", "kernel", "kernels"]

_enabled = [True]


_modules: dict[int, tuple[Any, Any]] = {}  # id(namespace) -> (namespace, its kernels or None): asked at every op


def kernels(xp: Any) -> Any | None:
    """The module of native kernels for namespace ``xp``, or None (then the generic code runs)."""
    if not _enabled[0]:
        return None
    known = _modules.get(id(xp))
    if known is not None and known[0] is xp:
        return known[1]
    module = None
    if array_api_compat.is_jax_namespace(xp):
        from . import _jax as module
    elif array_api_compat.is_torch_namespace(xp):
        from . import _torch as module
    _modules[id(xp)] = (xp, module)
    return module


def kernel(xp: Any, name: str) -> Any | None:
    """Namespace ``xp``'s own implementation of op ``name``, or None (then the generic code runs)."""
    module = kernels(xp)
    return None if module is None else getattr(module, name, None)


@contextlib.contextmanager
def generic_only() -> Iterator[None]:
    """Run the generic Array API code for every namespace inside the block."""
    saved = _enabled[0]
    _enabled[0] = False
    try:
        yield
    finally:
        _enabled[0] = saved
