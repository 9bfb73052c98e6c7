"""Datasets as NumPy arrays on the host, downloaded once and verified by checksum, and folders of images."""

from ._fetch import CorruptDatasetError, DownloadError
from .catalog import class_names
from .cifar import load_cifar10, load_cifar100
from .idx import read_idx
from .image_folder import ImageDataset, ImageFolderLoader, image_dataset_from_directory
from .images import ImageFiles
from .mnist import load_fashion_mnist, load_mnist

__all__ = [
    "CorruptDatasetError",
    "DownloadError",
    "ImageDataset",
    "ImageFiles",
    "ImageFolderLoader",
    "class_names",
    "image_dataset_from_directory",
    "load_cifar10",
    "load_cifar100",
    "load_fashion_mnist",
    "load_mnist",
    "read_idx",
]
