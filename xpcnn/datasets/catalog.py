"""The class names of each built-in dataset, by dataset name: what a label index means."""

from __future__ import annotations

from .cifar import CIFAR10, CIFAR100
from .mnist import FASHION_MNIST, MNIST

__all__ = ["class_names"]


def class_names(dataset: str, label_mode: str | None = None) -> tuple[str, ...]:
    """``class_names("cifar10")[y]`` names label ``y``; CIFAR-100 takes ``label_mode`` ``"fine"`` (default)
    or ``"coarse"``. Datasets: ``"mnist"``, ``"fashion_mnist"``, ``"cifar10"``, ``"cifar100"``."""
    if dataset in (MNIST.name, FASHION_MNIST.name):
        release = MNIST if dataset == MNIST.name else FASHION_MNIST
        if label_mode is not None:
            raise ValueError(f"class_names: {release.title} has one label mode; got label_mode={label_mode!r}")
        return release.class_names
    cifar = {CIFAR10.name: CIFAR10, CIFAR100.name: CIFAR100}
    if dataset not in cifar:
        raise ValueError(f"class_names: unknown dataset {dataset!r}; known: "
                         f"{[MNIST.name, FASHION_MNIST.name, *cifar]}")
    modes = cifar[dataset].label_modes
    mode = label_mode if label_mode is not None else "fine" if "fine" in modes else next(iter(modes))
    if mode not in modes:
        raise ValueError(f"class_names: {cifar[dataset].title} label_mode must be one of {sorted(modes)}, "
                         f"got {label_mode!r}")
    return modes[mode]
