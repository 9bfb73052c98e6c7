"""Models: ``Sequential`` (a stack of layers) and ``Model`` (a graph, Keras's Functional API), one base."""

from .base import LayerGraph
from .functional import Model
from .sequential import Sequential

__all__ = ["LayerGraph", "Model", "Sequential"]
