"""Adjacent layers that a model runs as one step: ``ReLU`` then ``MaxPool2D`` becomes relu(max_pool(x)).

The maximum commutes with the ReLU (a monotone function), so relu(max_pool(x)) == max_pool(relu(x)) value for
value, and the pooling gradient lands on the same first maximum: where that maximum is positive it is the
same element, and where it is not, the ReLU's zero gradient kills it either way. Run in this order the
ReLU's forward and backward passes touch the pooled array, a quarter of the size for 2x2 windows, instead of
the full feature map. ``tests/layers/test_fusion.py`` checks outputs and gradients are identical to the layers run
one by one.

The fused ReLU layer itself is skipped: its ``forward``/``backward`` are not called, so it keeps no cache.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from ..ops import activations as act
from .activations import ReLU
from .base import Layer
from .pool import MaxPool2D

__all__ = ["ReLUMaxPool", "Step", "fuse"]


class Step(Protocol):
    def forward(self, x: Any, training: bool = False) -> Any: ...

    def backward(self, dy: Any) -> Any: ...


class ReLUMaxPool:
    """relu(pool(x)) for a ``ReLU`` followed by ``pool``, with the ReLU applied to the pooled output."""

    def __init__(self, pool: MaxPool2D) -> None:
        self.pool = pool
        self._cache: Any = None

    def forward(self, x: Any, training: bool = False) -> Any:
        y = act.relu(self.pool.forward(x, training=training))
        self._cache = y if training else None
        return y

    def backward(self, dy: Any) -> Any:
        if self._cache is None:  # the pool says what is missing
            return self.pool.backward(dy)
        if tuple(dy.shape) != tuple(self._cache.shape):
            raise ValueError(
                f"ReLU + {self.pool._name()}: output gradient has shape {tuple(dy.shape)}, "
                f"but the last forward produced {tuple(self._cache.shape)}"
            )
        return self.pool.backward(act.relu_backward(dy, self._cache))

    def call_state(self) -> Any:
        """The ReLU's part of the forward state (the pool keeps its own), for a pool called at several places."""
        return self._cache

    def restore_call_state(self, state: Any) -> None:
        self._cache = state


def fuse(layers: Sequence[Layer]) -> list[Step]:
    """The steps that run ``layers`` in order: each ``ReLU`` directly followed by a ``MaxPool2D`` is merged
    with it; every other layer is its own step."""
    steps: list[Step] = []
    i = 0
    while i < len(layers):
        layer = layers[i]
        if type(layer) is ReLU and i + 1 < len(layers) and type(layers[i + 1]) is MaxPool2D:
            steps.append(ReLUMaxPool(layers[i + 1]))
            i += 2
        else:
            steps.append(layer)
            i += 1
    return steps
