"""Symbolic tensors and nodes: what calling layers on ``xpcnn.Input`` builds, and what a graph ``Model`` runs.

``Input(shape)`` makes a ``SymbolicTensor``: a per-sample shape and the node that produces it. Calling a layer
on symbolic tensors builds the layer for their shapes (or checks them against its built ones), records a
``Node`` (the layer and the tensors it reads) and returns the node's output tensor. No array is computed:
``xpcnn.Model(inputs, outputs)`` later walks the nodes from its inputs to its outputs.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .base import Layer

__all__ = ["Input", "InputLayer", "Node", "SymbolicTensor", "call_symbolic", "is_symbolic"]


class SymbolicTensor:
    """A value a graph model will compute: its per-sample ``shape`` (no batch axis) and the ``node`` making it."""

    __slots__ = ("node", "shape")

    def __init__(self, shape: tuple[int, ...], node: Node) -> None:
        self.shape = tuple(int(d) for d in shape)
        self.node = node

    @property
    def name(self) -> str:
        """The name of the layer that produces it."""
        return self.node.layer.name

    def __repr__(self) -> str:
        return f"<SymbolicTensor shape=(None, {', '.join(map(str, self.shape))}) from {self.name!r}>"


class Node:
    """One call of ``layer``: the symbolic tensors it reads (``inputs``) and the one it makes (``output``)."""

    def __init__(self, layer: Layer, inputs: Sequence[SymbolicTensor], output_shape: tuple[int, ...],
                 several: bool = False) -> None:
        self.layer = layer
        self.inputs = list(inputs)
        self.several = several  # the layer takes a list of inputs (a merge layer)
        self.output = SymbolicTensor(output_shape, self)
        layer._nodes.append(self)


class InputLayer(Layer):
    """The source of an ``Input``: no parameters; its node reads nothing and hands the model's input on.

    Parameters
    ----------
    shape : int or tuple of int
        One sample's shape, without the batch axis.
    name : str, optional
        The layer's name (the model's input name); by default made from the class name.

    Raises
    ------
    TypeError
        If ``shape`` is not an int or a tuple of ints.
    ValueError
        If ``shape`` is empty or holds a size below 1.
    """

    def __init__(self, shape: Any, *, name: str | None = None) -> None:
        super().__init__(name)
        shape = (shape,) if isinstance(shape, int) and not isinstance(shape, bool) else shape
        try:
            shape = tuple(shape)
        except TypeError:
            raise TypeError(f"Input: shape must be a tuple of ints (per sample, no batch axis), "
                            f"got {shape!r}") from None
        if not shape or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 1 for d in shape):
            raise ValueError(f"Input: shape must be a non-empty tuple of positive ints (per sample, no batch axis), "
                             f"got {shape!r}")
        self.input_shape = self.output_shape = shape

    def _forward(self, x: Any, training: bool) -> Any:
        return x

    def _backward(self, dy: Any) -> Any:
        return dy

    def get_config(self) -> dict[str, Any]:
        return {"shape": list(self.input_shape)}


def Input(shape: Any, name: str | None = None) -> SymbolicTensor:  # noqa: N802 (Keras's spelling)
    """A model input of per-sample ``shape`` (no batch axis, NCHW for images): call layers on it.

    Parameters
    ----------
    shape : int or tuple of int
        The shape of one sample.
    name : str, optional
        The input's name (``Model.input_names``; ``forward`` takes a dict by these names).

    Returns
    -------
    SymbolicTensor
        What ``xpcnn.Model(inputs=...)`` takes; calling a layer on it gives the layer's output tensor.

    Raises
    ------
    TypeError
        If ``shape`` is neither an int nor a sequence.
    ValueError
        If ``shape`` holds anything but positive ints.

    Examples
    --------
    >>> from xpcnn.layers import Conv2D
    >>> x = xpcnn.Input(shape=(3, 32, 32), name="image")
    >>> Conv2D(8, 3, stride=2, padding="same")(x).shape
    (8, 16, 16)
    """
    layer = InputLayer(shape, name=name)
    return Node(layer, [], layer.output_shape).output


def is_symbolic(inputs: Any) -> bool:
    """Whether ``inputs`` is a symbolic tensor or a list holding one (then a layer call builds a node)."""
    if isinstance(inputs, SymbolicTensor):
        return True
    return isinstance(inputs, (list, tuple)) and any(isinstance(t, SymbolicTensor) for t in inputs)


def _describe(tensors: Sequence[SymbolicTensor]) -> str:
    return ", ".join(f"{t.name!r} (None, {', '.join(map(str, t.shape))})" for t in tensors)


def call_symbolic(layer: Layer, inputs: Any) -> SymbolicTensor:
    """Record ``layer`` called on symbolic ``inputs``; build it for their shapes, or check them against the
    shapes it was built for. Errors name the layer, the tensors it was given and their shapes."""
    tensors = list(inputs) if isinstance(inputs, (list, tuple)) else [inputs]
    who = f"layer {layer.name!r} ({type(layer).__name__})"
    if not all(isinstance(t, SymbolicTensor) for t in tensors):
        raise TypeError(f"{who}: called on a mix of symbolic tensors and arrays; call it on xpcnn.Input tensors "
                        "(or the outputs of layers called on them) only")
    several = bool(getattr(layer, "takes_several_inputs", False))
    if not several and len(tensors) != 1:
        raise ValueError(f"{who} takes one input, got {len(tensors)}: {_describe(tensors)}")
    shapes = [t.shape for t in tensors] if several else tensors[0].shape
    try:
        if not layer.built:
            out = layer.build(shapes)
        else:
            built_for = [tuple(s) for s in layer.input_shape] if several else tuple(layer.input_shape)
            if built_for != shapes:
                raise ValueError(f"it was built for per-sample input {built_for}, not {shapes}")
            out = layer.output_shape
    except ValueError as exc:
        raise ValueError(f"{who} cannot take {_describe(tensors)}: {exc}") from exc
    return Node(layer, tensors, tuple(out), several).output
