"""``Sequential``: a stack of layers, run by the executor every model shares; keys follow ``nn.Sequential``.

Parameter keys are ``"<layer index>.<name>"`` (``"0.weight"``, ``"3.bias"``, ``"1.running_mean"``), so
``model.load_state_dict(torch_model.state_dict())`` works for the same stack. The model builds on its first
forward, or at once when given ``input_shape``.
"""

from __future__ import annotations

import copy
import numbers
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from .. import layers as _every_layer  # noqa: F401  (registers every layer class for from_config)
from .. import random
from ..backend import asarray
from ..graph import LayerCalls, chain_plan
from ..layers.base import Layer, layer_spec, make_layer
from . import summary as summary_text
from .base import LayerGraph

__all__ = ["Sequential"]

Array = Any


def _plain_shape(shape: Any, what: str) -> tuple[int, ...]:
    """A per-sample shape as a tuple of positive ints, or a ValueError that says what is wrong."""
    if isinstance(shape, numbers.Integral) and not isinstance(shape, bool):
        shape = (shape,)
    try:
        out = tuple(shape)
    except TypeError:
        raise TypeError(f"{what} must be a tuple of ints (per-sample, no batch axis), got {shape!r}") from None
    if not out or not all(isinstance(d, numbers.Integral) and not isinstance(d, bool) and d >= 1 for d in out):
        raise ValueError(f"{what} must be a non-empty tuple of positive ints (per-sample, no batch axis), "
                         f"got {shape!r}")
    return tuple(int(d) for d in out)


class Sequential(LayerGraph):
    """A linear stack of layers.

    ``input_shape`` is per sample (no batch axis), e.g. ``(1, 28, 28)``; when given every layer is built at
    once (so ``summary`` works), else on the first forward. ``params``, ``grads`` and ``buffers`` are dicts
    over all layers keyed like ``torch.nn.Sequential`` (``"0.weight"``).

    Parameters
    ----------
    layers : iterable of Layer, optional
        The layers in order; each instance at one position only (a layer keeps its own state for backward).
    input_shape : int or tuple of int, optional
        The per-sample input shape; builds the model at once.
    name : str, default "sequential"
        The model's name (in the summary and in error messages).

    Raises
    ------
    TypeError
        If an item is not a ``Layer``, or ``input_shape`` is neither an int nor a sequence.
    ValueError
        If a layer object is listed twice, ``input_shape`` holds anything but positive ints, or a layer
        refuses it.

    Examples
    --------
    >>> from xpcnn.layers import Conv2D, Dense, Flatten, MaxPool2D
    >>> model = xpcnn.Sequential([
    ...     Conv2D(8, 3, padding="same", activation="relu"), MaxPool2D(2), Flatten(), Dense(10),
    ... ], input_shape=(1, 28, 28))
    >>> model.output_shape
    (10,)
    >>> list(model.params)
    ['0.weight', '0.bias', '3.weight', '3.bias']
    """

    def __init__(self, layers: Iterable[Layer] | None = None, input_shape: Any = None, name: str = "sequential"):
        super().__init__(name)
        self.input_shape: tuple[int, ...] | None = None
        self.output_shape: tuple[int, ...] | None = None
        for layer in list(layers or []):
            self._check_layer(layer, len(self.layers))
            self.layers.append(layer)
        if input_shape is not None:
            self.build(input_shape)

    def _check_layer(self, layer: Any, index: int) -> None:
        if not isinstance(layer, Layer):
            raise TypeError(f"Sequential: item {index} is not a Layer but {type(layer).__name__} {layer!r}")
        for i, other in enumerate(self.layers):
            if other is layer:
                raise ValueError(
                    f"Sequential: the same {type(layer).__name__} object is at positions {i} and {index}; a layer "
                    "keeps its own state for backward, so create one instance per position"
                )

    def add(self, layer: Layer) -> None:
        """Append a layer (built at once when the model already is).

        Parameters
        ----------
        layer : Layer
            A layer not yet in the model.

        Raises
        ------
        TypeError
            If ``layer`` is not a ``Layer``.
        ValueError
            If the same object is already in the model, or (built model) it refuses the last output shape.
        """
        self._check_layer(layer, len(self.layers))
        if self.built:
            self._build_layers([*self.layers, layer], self.input_shape)
        self.layers.append(layer)
        if self.built:
            self.output_shape = layer.output_shape
            self._plan = chain_plan(self.layers)

    # --- building ----------------------------------------------------------------------------------------
    @property
    def built(self) -> bool:
        """Whether the layers have their parameters (``input_shape=`` given, ``build`` or a first forward)."""
        return self.input_shape is not None

    def build(self, input_shape: Any) -> tuple[int, ...]:
        """Build every layer for per-sample ``input_shape``; return the per-sample output shape.

        On error (a layer refuses the shape) the layers and the random stream are left as they were.

        Parameters
        ----------
        input_shape : int or tuple of int
            The shape of one sample, no batch axis, e.g. ``(1, 28, 28)``.

        Returns
        -------
        tuple of int
            The per-sample output shape.

        Raises
        ------
        ValueError
            If the model has no layers, a layer refuses the shape, or the model was built for another shape.
        """
        shape = _plain_shape(input_shape, "input_shape")
        if self.built:
            if shape != self.input_shape:
                raise ValueError(f"{self.name}: built for per-sample input shape {self.input_shape}, got {shape}")
            return self.output_shape
        if not self.layers:
            raise ValueError(f"{self.name}: cannot build a model without layers")
        self.output_shape = self._build_layers(self.layers, shape)
        self.input_shape = shape
        self._plan = chain_plan(self.layers)
        return self.output_shape

    @staticmethod
    def _build_layers(layers: Sequence[Layer], shape: tuple[int, ...]) -> tuple[int, ...]:
        """Build the unbuilt layers in turn; on error restore them and the random stream, then re-raise."""
        saved = {id(layer): copy.deepcopy(layer.__dict__) for layer in layers if not layer.built}
        random_state = random.get_state()
        try:
            for index, layer in enumerate(layers):
                if layer.built:
                    if tuple(layer.input_shape) != shape:
                        raise ValueError(
                            f"layer {index} ({type(layer).__name__}) was built for per-sample input "
                            f"{tuple(layer.input_shape)} but receives {shape}"
                        )
                    shape = tuple(layer.output_shape)
                else:
                    try:
                        shape = tuple(layer.build(shape))
                    except ValueError as exc:
                        raise ValueError(f"layer {index} ({type(layer).__name__}): {exc}") from exc
        except BaseException:
            for layer in layers:
                if id(layer) in saved:
                    layer.__dict__.clear()
                    layer.__dict__.update(saved[id(layer)])
            random.set_state(random_state)
            raise
        return shape

    def compute_output_shape(self, sample_shape: tuple[int, ...]) -> tuple[int, ...]:
        """The per-sample output shape for ``sample_shape`` without changing the model or the random stream.

        Parameters
        ----------
        sample_shape : tuple of int
            The shape of one input sample, no batch axis.

        Returns
        -------
        tuple of int

        Raises
        ------
        ValueError
            If a layer refuses the shape, or the model was built for another one.
        """
        if self.built:
            if tuple(sample_shape) != self.input_shape:
                raise ValueError(
                    f"{self.name}: built for per-sample input shape {self.input_shape}, got data of per-sample "
                    f"shape {tuple(sample_shape)}"
                )
            return self.output_shape
        if not self.layers:
            raise ValueError(f"{self.name}: the model has no layers")
        trial = copy.deepcopy(self.layers)
        random_state = random.get_state()
        try:
            return self._build_layers(trial, _plain_shape(sample_shape, "per-sample input shape"))
        finally:
            random.set_state(random_state)

    # --- what the shared executor needs -------------------------------------------------------------
    def _inputs_of(self, x: Any) -> list[Any]:
        x = asarray(x)
        if not self.built:
            if x.ndim < 2:
                raise ValueError(f"{self.name}: expected a batch (batch axis first), got shape {tuple(x.shape)}")
            self.build(tuple(x.shape[1:]))
        return [x]

    __call__ = LayerGraph.forward

    def keyed_layers(self) -> list[tuple[str, Layer]]:
        return [(str(i), layer) for i, layer in enumerate(self.layers)]

    def output_layers(self) -> list[Layer]:
        return self.layers[-1:]

    def layer_calls(self) -> LayerCalls:
        """The stack as named tensors: ``input``, each layer's output as ``<index>:<layer name>`` (unique even
        where two layers share a name), the last one ``output``."""
        last = len(self.layers) - 1
        names = ["output" if i == last else f"{i}:{layer.name}" for i, layer in enumerate(self.layers)]
        calls = [(layer, ["input" if i == 0 else names[i - 1]], names[i]) for i, layer in enumerate(self.layers)]
        return LayerCalls([("input", tuple(self.input_shape))], calls, [("output", tuple(self.output_shape))])

    # --- description -------------------------------------------------------------------------------------
    def _summary_rows(self) -> tuple[tuple[str, ...], list[tuple[str, ...]]]:
        rows = [(f"{i} ({type(layer).__name__})", summary_text.shape_text(layer.output_shape),
                 summary_text.param_count(layer)) for i, layer in enumerate(self.layers)]
        return ("Layer (type)", "Output Shape", "Param #"), rows

    def _input_description(self) -> str:
        return summary_text.shape_text(self.input_shape)

    def get_config(self) -> dict[str, Any]:
        """The architecture as JSON-friendly data: layer class names, their configs and the input shape.

        Returns
        -------
        dict
            ``{"name": ..., "input_shape": ..., "layers": [...]}``, what ``from_config`` takes.
        """
        return {
            "name": self.name,
            "input_shape": None if self.input_shape is None else list(self.input_shape),
            "layers": [layer_spec(layer, named=False) for layer in self.layers],
        }

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Sequential:
        """Rebuild (fresh weights) on the current backend from ``get_config()``'s output.

        Parameters
        ----------
        config : mapping
            What ``get_config()`` returned.

        Returns
        -------
        Sequential
        """
        layers = [make_layer(spec, f"layers[{i}]") for i, spec in enumerate(config["layers"])]
        return cls(layers, input_shape=config.get("input_shape"), name=config.get("name", "sequential"))

    def __repr__(self) -> str:
        inner = ", ".join(repr(layer) for layer in self.layers)
        return f"Sequential([{inner}], input_shape={self.input_shape})"
