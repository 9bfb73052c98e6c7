"""Adjacent layers that a model runs as one step: ``ReLU`` then ``MaxPool2D`` becomes relu(max_pool(x)).

The maximum commutes with the ReLU (a monotone function), so relu(max_pool(x)) == max_pool(relu(x)) value for
value, and the pooling gradient lands on the same first maximum: where that maximum is positive it is the
same element, and where it is not, the ReLU's zero gradient kills it either way. Run in this order the
ReLU's forward and backward passes touch the pooled array, a quarter of the size for 2x2 windows, instead of
the full feature map. ``tests/layers/test_fusion.py`` checks outputs and gradients are identical to the layers run
one by one.

The fused ReLU layer itself is skipped: its ``forward``/``backward`` are not called, so it keeps no cache.
The pooled array is the pool's own new array, so the ReLU overwrites it (``overwrite=True``: in place on
torch): the cache keeps the ReLU's output, the pool keeps its input and indices, nobody else reads it.

In inference a step may also write its result into an input the executor hands over (``in_place``): an
activation (``ReLU``, ``ReLU6``, ``Hardswish``, ``Hardsigmoid``) or an ``Add`` whose input is a new array that
only it reads, made by a layer whose inference output is always a new array (``FRESH_OUTPUTS``: batch norm,
convolution, dense, add). That is torchvision's ``inplace=True`` activations and ``out += identity``: on torch
the executor then allocates no array for those steps and each writes into memory that is still in cache
(MobileNetV3-Large and ResNet-50 took about 10% less CPU time per image on a 2-core Xeon). The activation's
op is called directly, with ``overwrite=True``; where the layer's own ``forward`` would do more than call it
(an unbuilt layer, a mixed dtype policy that casts its input, an ``Add`` of arrays of two shapes or dtypes)
``in_place`` gives up and the layer runs as usual. ``tests/layers/test_fusion.py`` checks the results equal
the layers one by one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

from ..ops import activations as act
from ..ops import merge as merge_ops
from .activations import Hardsigmoid, Hardswish, ReLU, ReLU6
from .base import Layer
from .conv import Conv2D
from .dense import Dense
from .merge import Add
from .normalization import BatchNorm1D, BatchNorm2D
from .pool import MaxPool2D

__all__ = ["FRESH_OUTPUTS", "ReLUMaxPool", "Step", "fuse", "in_place"]


class Step(Protocol):
    def forward(self, x: Any, training: bool = False) -> Any: ...

    def backward(self, dy: Any) -> Any: ...


class ReLUMaxPool:
    """relu(pool(x)) for a ``ReLU`` followed by ``pool``, with the ReLU applied to the pooled output."""

    def __init__(self, pool: MaxPool2D) -> None:
        self.pool = pool
        self._cache: Any = None

    def forward(self, x: Any, training: bool = False) -> Any:
        y = act.relu(self.pool.forward(x, training=training), overwrite=True)  # the pool's new array
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


#: Layers whose inference output is always a new array that no other array shares (not a view of the
#: input, not the input itself, not a parameter): an executor may hand it to the one step that reads it.
FRESH_OUTPUTS: tuple[type[Layer], ...] = (BatchNorm1D, BatchNorm2D, Conv2D, Dense, Add)

_IN_PLACE_ACTIVATIONS: dict[type[Layer], Callable[..., Any]] = {
    ReLU: act.relu, ReLU6: act.relu6, Hardswish: act.hardswish, Hardsigmoid: act.hardsigmoid,
}


def _runs_its_op_only(layer: Layer) -> bool:
    """Whether the layer's inference ``forward`` is its op and nothing else: built, no ``activation=`` after
    it, no mixed dtype policy that would cast its input first."""
    policy = getattr(layer, "dtype_policy", None)
    return layer.built and layer._activation is None and not getattr(policy, "mixed", False)


def in_place(layer: Layer, donated: int) -> Callable[[Any], Any] | None:
    """The inference forward of ``layer`` that writes its result into its input number ``donated`` (which the
    caller hands over), for the layers that can (else None). It takes what the layer's ``forward`` takes (an
    array; a list for ``Add``) and returns None where it does not apply to this call (then run the layer)."""
    op = _IN_PLACE_ACTIVATIONS.get(type(layer))
    if op is not None:
        def activation(x: Any) -> Any:
            return op(x, overwrite=True) if _runs_its_op_only(layer) else None

        return activation
    if type(layer) is Add:
        def add(xs: Any) -> Any:
            if len(xs) != 2 or not _runs_its_op_only(layer):
                return None
            a, b = xs[donated], xs[1 - donated]
            if tuple(a.shape) != tuple(b.shape) or a.dtype != b.dtype or tuple(a.shape[1:]) != layer.output_shape:
                return None
            return merge_ops.add(a, b, overwrite=True)

        return add
    return None
