"""xpcnn: convolutional networks written once on the Python Array API.

The same layers train on NumPy, CuPy, PyTorch, JAX and array-api-strict; ``set_backend`` switches.
"""

from . import random
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
from .random import manual_seed

__version__ = "0.1.0"

__all__ = [
    "Backend",
    "BackendUnavailableError",
    "asarray",
    "available_backends",
    "get_backend",
    "manual_seed",
    "random",
    "set_backend",
    "to_numpy",
    "use_backend",
]
