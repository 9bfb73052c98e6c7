"""``where(mask, a, 0)`` and ``where(mask, 0, a)``: the gradient routing of ReLU and max pooling.

Generic: ``xp.where``. NumPy fast path: NumPy's ``where`` branches per element, and a ReLU or max-pool mask is
as good as random, so it runs at the speed of branch mispredictions (about 5 ns per element, ten times an
arithmetic pass). On NumPy the same selection is a bitwise AND of the float's bit pattern with an all-ones
or all-zeros word made from the mask: branch-free, and bit-for-bit what ``where`` returns, for every value
including NaN, infinities and signed zeros (unlike ``a * mask``, which turns ``inf * 0`` into NaN). The test
``tests/test_fast_paths.py`` checks the two implementations agree exactly.

Only this module and ``_strided`` in ``xpcnn.ops`` import NumPy. Nothing here is public API; ``__all__`` is
empty so that the benchmark profiler charges this time to the calling op.
"""

from __future__ import annotations

from typing import Any

import array_api_compat
import numpy as np

__all__: list[str] = []

UINT_OF = {np.dtype(np.float32): np.uint32, np.dtype(np.float64): np.uint64, np.dtype(np.float16): np.uint16}


def fast(mask: Any, a: Any) -> bool:
    """Whether the NumPy bitwise implementation applies to these operands."""
    return (
        array_api_compat.is_numpy_namespace(array_api_compat.array_namespace(mask, a))
        and isinstance(a, np.ndarray)
        and isinstance(mask, np.ndarray)
        and mask.dtype == np.bool_
        and a.dtype in UINT_OF
        and a.ndim >= 1
        and mask.ndim >= 1
    )


def _bitwise(mask: Any, a: Any, keep_where_true: bool) -> Any:
    uint = UINT_OF[a.dtype]
    ones = mask.view(np.uint8)  # False -> 0, True -> 1
    # keep where True: -1 -> all ones; keep where False: 1 - 1 = 0 and 0 - 1 = all ones (unsigned wrap-around)
    word = np.negative(ones, dtype=uint) if keep_where_true else np.subtract(ones, 1, dtype=uint)
    out = word if word.shape == np.broadcast_shapes(word.shape, a.shape) else None  # reuse the mask's memory
    return np.bitwise_and(a.view(uint), word, out=out).view(a.dtype)


def keep_where(mask: Any, a: Any) -> Any:
    """``where(mask, a, 0)`` with ``a``'s dtype (mask and a broadcast as in ``where``)."""
    if fast(mask, a):
        return _bitwise(mask, a, True)
    return array_api_compat.array_namespace(mask, a).where(mask, a, 0.0)


def drop_where(mask: Any, a: Any) -> Any:
    """``where(mask, 0, a)`` with ``a``'s dtype (mask and a broadcast as in ``where``)."""
    if fast(mask, a):
        return _bitwise(mask, a, False)
    return array_api_compat.array_namespace(mask, a).where(mask, 0.0, a)
