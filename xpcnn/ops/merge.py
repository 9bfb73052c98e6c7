"""The sum that joins a residual connection, for the graph executor's in-place path.

``add(a, b)`` is ``a + b`` (what the ``Add`` layer computes for two inputs). ``overwrite=True`` says the caller
hands ``a`` over: nothing reads it afterwards and no other array shares its memory (the executor grants it in
inference, ``layers.fusion.in_place``). On torch the sum is then written into ``a`` where ``a`` already has
the sum's shape and dtype (``a.add_(b)``, torchvision's ``out += identity``): no new array for a feature map
that a ResNet block adds to its shortcut and throws away. The generic path never writes in place (DESIGN.md
rule 3) and ignores the flag; the values are the same either way.
"""

from __future__ import annotations

from typing import Any

import array_api_compat

from . import _native

__all__ = ["add"]


def add(a: Any, b: Any, *, overwrite: bool = False) -> Any:
    """``a + b`` (broadcasting as the namespace does); ``overwrite``: see the module's docstring."""
    native = _native.kernel(array_api_compat.array_namespace(a, b), "add")
    if native is not None:
        return native(a, b, overwrite)
    return a + b
