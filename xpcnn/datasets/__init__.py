"""Datasets as NumPy arrays on the host, downloaded once and verified by checksum."""

from .mnist import CorruptDatasetError, DownloadError, load_mnist, read_idx

__all__ = ["CorruptDatasetError", "DownloadError", "load_mnist", "read_idx"]
