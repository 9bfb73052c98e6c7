"""Where input becomes batches on the device: checks, datasets, the loader, and the adapters ``fit`` uses.

``checks`` (before training), ``datasets`` (map-style: ``len`` + ``[i]``), ``sampling`` (each epoch's order
from ``(seed, epoch)``), ``workers`` and ``stream`` (reading a dataset ahead in threads or processes),
``device`` (host buffers and copies to the device), ``loader`` (``DataLoader``), ``adapters`` (whatever
``fit``/``evaluate``/``predict`` is given, as one ``EpochIterator``).
"""

from .adapters import EpochIterator, is_stream
from .checks import check_finite, check_samples, check_targets, split_validation
from .datasets import ArrayDataset, Dataset
from .loader import DataLoader
from .workers import SampleError, SkipSample

__all__ = [
    "ArrayDataset",
    "DataLoader",
    "Dataset",
    "EpochIterator",
    "SampleError",
    "SkipSample",
    "check_finite",
    "check_samples",
    "check_targets",
    "is_stream",
    "split_validation",
]
