"""Map-style datasets: ``len()`` and ``dataset[i]`` returning one sample, ``x`` or ``(x, y)``, as in PyTorch."""

from __future__ import annotations

import mmap
from typing import Any

import numpy as np

__all__ = ["ArrayDataset", "Dataset"]


class Dataset:
    """Base of xpcnn's map-style datasets (``len()`` and ``dataset[i]`` = one sample, ``x`` or ``(x, y)``).
    Subclassing it is optional for a ``DataLoader``; it tells ``fit`` that the object holds samples, not
    batches, so that passing one without a loader is a clear error."""

    def __len__(self) -> int:
        raise NotImplementedError

    def __getitem__(self, index: int) -> Any:
        raise NotImplementedError


class ArrayDataset(Dataset):
    """Samples from arrays of one length: ``ArrayDataset(x)`` yields ``x[i]``, ``ArrayDataset(x, y)`` yields
    ``(x[i], y[i])``. The arrays may be memory-mapped (``np.load(..., mmap_mode="r")``), so that a dataset
    larger than memory is read from disk one batch at a time.

    Parameters
    ----------
    *arrays : array_like
        One or more arrays with the same leading sample axis (kept, or made, NumPy).

    Raises
    ------
    ValueError
        If no array is given, one has no sample axis, or the lengths differ.

    Examples
    --------
    >>> from xpcnn.data import ArrayDataset
    >>> data = ArrayDataset(np.zeros((10, 3, 8, 8), dtype=np.uint8), np.arange(10))
    >>> len(data), data[3][0].shape, int(data[3][1])
    (10, (3, 8, 8), 3)
    """

    def __init__(self, *arrays: Any) -> None:
        if not arrays:
            raise ValueError("ArrayDataset needs at least one array")
        arrays = tuple(a if isinstance(a, np.ndarray) else np.asarray(a) for a in arrays)
        if any(a.ndim == 0 for a in arrays):
            raise ValueError(f"ArrayDataset: every array needs a leading sample axis, got shapes "
                             f"{[a.shape for a in arrays]}")
        if len({len(a) for a in arrays}) > 1:
            raise ValueError(f"ArrayDataset: the arrays must hold the same number of samples, got shapes "
                             f"{[a.shape for a in arrays]}")
        self.arrays = arrays

    def __len__(self) -> int:
        return len(self.arrays[0])

    def __getstate__(self) -> dict[str, Any]:
        """Memory-mapped arrays travel to worker processes as their file, not their contents."""
        return {**self.__dict__, "arrays": [_reopenable(a) for a in self.arrays]}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.arrays = tuple(np.memmap(a[1], dtype=a[2], mode="r", offset=a[3], shape=a[4], order=a[5])
                            if isinstance(a, tuple) else a for a in state["arrays"])

    def __getitem__(self, index: int) -> Any:
        sample = tuple(a[index] for a in self.arrays)
        return sample if len(sample) > 1 else sample[0]

    def __repr__(self) -> str:
        return f"ArrayDataset({', '.join(f'{a.dtype}{list(a.shape)}' for a in self.arrays)})"


def _reopenable(a: np.ndarray) -> Any:
    """A whole, read-only memory map as ``("memmap", file, dtype, offset, shape, order)``; anything else as is."""
    if isinstance(a, np.memmap) and isinstance(a.base, mmap.mmap) and a.filename and a.mode == "r":  # not a view
        order = "F" if a.flags.f_contiguous and not a.flags.c_contiguous else "C"
        return ("memmap", a.filename, a.dtype, a.offset, a.shape, order)
    return a
