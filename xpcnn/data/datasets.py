"""Map-style datasets: ``len()`` and ``dataset[i]`` returning one sample, ``x`` or ``(x, y)``, as in PyTorch."""

from __future__ import annotations

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
    larger than memory is read from disk one batch at a time."""

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

    def __getitem__(self, index: int) -> Any:
        sample = tuple(a[index] for a in self.arrays)
        return sample if len(sample) > 1 else sample[0]

    def __repr__(self) -> str:
        return f"ArrayDataset({', '.join(f'{a.dtype}{list(a.shape)}' for a in self.arrays)})"
