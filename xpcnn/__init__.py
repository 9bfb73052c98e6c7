"""xpcnn: convolutional networks written once on the Python Array API.

The same layers train on NumPy, CuPy, PyTorch, JAX and array-api-strict; ``set_backend`` switches.
"""

from . import (
    callbacks,
    data,
    datasets,
    distributed,
    layers,
    losses,
    metrics,
    mixed_precision,
    ops,
    optimizers,
    random,
    transforms,
)
from .backend import (
    Backend,
    BackendUnavailableError,
    asarray,
    available_backends,
    get_backend,
    set_backend,
    to_numpy,
    use_backend,
)
from .data import DataLoader
from .io import load_model
from .layers.node import Input
from .model import Model, Sequential
from .onnx_export import export_onnx
from .preemption import TrainingPreempted
from .random import manual_seed

__version__ = "0.1.0"

__all__ = [
    "Backend",
    "BackendUnavailableError",
    "DataLoader",
    "Input",
    "Model",
    "Sequential",
    "TrainingPreempted",
    "asarray",
    "available_backends",
    "callbacks",
    "data",
    "datasets",
    "distributed",
    "export_onnx",
    "get_backend",
    "layers",
    "load_model",
    "losses",
    "manual_seed",
    "metrics",
    "mixed_precision",
    "ops",
    "optimizers",
    "random",
    "set_backend",
    "to_numpy",
    "transforms",
    "use_backend",
]
