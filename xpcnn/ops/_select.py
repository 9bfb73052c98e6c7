"""``where(mask, a, 0)`` and ``where(mask, 0, a)``: the gradient routing of ReLU and max pooling.

Generic: ``xp.where``. NumPy fast path: NumPy's ``where`` branches per element, and a ReLU or max-pool mask is
as good as random, so it runs at the speed of branch mispredictions (about 5 ns per element, ten times an
arithmetic pass). On NumPy the same selection is a bitwise AND of the float's bit pattern with an all-ones
or all-zeros word made from the mask: branch-free, and bit-for-bit what ``where`` returns, for every value
including NaN, infinities and signed zeros (unlike ``a * mask``, which turns ``inf * 0`` into NaN). The test
``tests/ops/test_fast_paths.py`` checks the two implementations agree exactly.

Only this module and ``_strided`` in ``xpcnn.ops`` import NumPy. Nothing here is public API; ``__all__`` is
empty so that the benchmark profiler charges this time to the calling op.
"""

from __future__ import annotations

import math
from typing import Any

import array_api_compat
import numpy as np

__all__: list[str] = []

UINT_OF = {np.dtype(np.float32): np.uint32, np.dtype(np.float64): np.uint64, np.dtype(np.float16): np.uint16}


def numpy_float(a: Any) -> bool:
    """Whether ``a`` is a NumPy float array whose bit pattern the fast paths can mask (the one gate)."""
    return (
        isinstance(a, np.ndarray)
        and array_api_compat.is_numpy_namespace(array_api_compat.array_namespace(a))
        and a.dtype in UINT_OF
        and a.ndim >= 1
    )


def fast(mask: Any, a: Any) -> bool:
    """Whether the NumPy bitwise implementation applies to ``where(mask, a, 0)``."""
    return numpy_float(a) and isinstance(mask, np.ndarray) and mask.dtype == np.bool_ and mask.ndim >= 1


def _bitwise(mask: Any, a: Any, keep_where_true: bool) -> Any:
    uint = UINT_OF[a.dtype]
    ones = mask.view(np.uint8)  # False -> 0, True -> 1
    # keep where True: -1 -> all ones; keep where False: 1 - 1 = 0 and 0 - 1 = all ones (unsigned wrap-around)
    word = np.negative(ones, dtype=uint) if keep_where_true else np.subtract(ones, 1, dtype=uint)
    out = word if word.shape == np.broadcast_shapes(word.shape, a.shape) else None  # reuse the mask's memory
    return np.bitwise_and(a.view(uint), word, out=out).view(a.dtype)


def select_bits(mask: Any, a_bits: Any, out: Any, word: Any) -> None:
    """``out = a_bits where mask else 0`` on unsigned views of float bits: the boolean mask becomes an
    all-ones or all-zeros word (written into ``word``, which may be ``out`` itself), ANDed with ``a_bits``."""
    np.negative(mask.view(np.uint8), dtype=word.dtype, out=word)
    np.bitwise_and(word, a_bits, out=out)


_BLOCK_ELEMENTS = 1 << 18  # per block of a blocked pass: its few arrays together stay in cache


def blocks(a: Any, axes: tuple[int, ...] | None = None) -> list[tuple[slice, ...]]:
    """Index tuples (leading axes only) that cut ``a`` into cache-sized slabs along its outermost memory axis
    (among ``axes``).

    A chain of elementwise passes run slab by slab reads and writes main memory once instead of once per
    pass; the outermost axis keeps each slab contiguous (or as close to it as the layout allows)."""
    size = math.prod(a.shape)
    candidates = range(a.ndim) if axes is None else axes
    axis = max(candidates, key=lambda d: (abs(a.strides[d]) if a.shape[d] > 1 else -1))
    parts = min(a.shape[axis], max(1, size // _BLOCK_ELEMENTS))
    if parts <= 1:
        return [(slice(None),)]
    cuts = [a.shape[axis] * i // parts for i in range(parts + 1)]
    lead = (slice(None),) * axis
    return [(*lead, slice(cuts[i], cuts[i + 1])) for i in range(parts) if cuts[i] < cuts[i + 1]]


def same_layout(a: Any, like: Any) -> Any:
    """NumPy: ``a``'s values in ``like``'s memory order (``like`` has a's shape)."""
    out = np.empty_like(like, dtype=a.dtype)
    np.copyto(out, a)
    return out


def keep_where_positive(y: Any, a: Any) -> Any:
    """``where(y > 0, a, 0)`` (``y`` and ``a`` of one shape): ReLU's backward. On NumPy in cache-sized slabs,
    the mask and the selection fused, so that main memory sees ``y`` and ``a`` read and the result written
    once."""
    if not (numpy_float(a) and numpy_float(y) and y.shape == a.shape and y.dtype == a.dtype):
        return keep_where(y > 0, a)
    uint = UINT_OF[a.dtype]
    if [st // a.itemsize for st in a.strides] != [st // y.itemsize for st in y.strides]:
        a = same_layout(a, y)  # one copy beats three passes walking two memory orders
    out = np.empty_like(y)  # y's memory order
    out_bits, a_bits = out.view(uint), a.view(uint)
    mask = np.empty_like(y, dtype=np.bool_)  # y's memory order: no pass below walks two orders
    for index in blocks(y):
        m = mask[index]
        np.greater(y[index], 0, out=m)
        select_bits(m, a_bits[index], out=out_bits[index], word=out_bits[index])
    return out


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
