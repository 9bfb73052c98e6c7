"""torchvision's model definitions, the oracle of ``xpcnn.applications``, without torchvision's compiled operators.

The torchvision wheel on PyPI is built for CUDA; beside the CPU build of torch that the tests use,
``import torchvision`` fails while its ``__init__`` registers the C++ operators (``operator torchvision::nms
does not exist``). The model definitions (``torchvision.models.resnet`` and the rest) are plain PyTorch and
need none of those operators. So the package is entered without running its ``__init__.py``: a module whose
``__path__`` is the installed package's folder stands in for it, and ``torchvision.models`` imports from there
as usual. Pinned in the test extra with the torch it was built for (torch 2.13, torchvision 0.28).
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types
from typing import Any

import pytest


def torchvision_models() -> Any:
    """``torchvision.models``, or a skip when torchvision is not installed."""
    pytest.importorskip("torch")
    if "torchvision" not in sys.modules:
        spec = importlib.util.find_spec("torchvision")  # finds the package without importing it
        if spec is None or spec.submodule_search_locations is None:
            pytest.skip("torchvision is not installed (it is in the test extra)")
        package = types.ModuleType("torchvision")
        package.__path__ = list(spec.submodule_search_locations)
        package.__spec__ = spec
        sys.modules["torchvision"] = package
    return importlib.import_module("torchvision.models")
