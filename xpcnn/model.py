"""``Sequential``: a stack of layers with PyTorch-compatible state dicts; training comes from ``Trainer``.

The model is the layer stack: building, forward and backward, parameters, buffers, state dicts, summary and
config. ``compile``/``fit``/``evaluate``/``predict`` live in ``xpcnn.training``, whose engine runs over the
protocol this class provides, so graph models train with the same code.

Parameter keys follow ``torch.nn.Sequential``: ``"<layer index>.<name>"`` (``"0.weight"``, ``"3.bias"``,
``"1.running_mean"``), so ``model.load_state_dict(torch_model.state_dict())`` works for the same stack.
"""

from __future__ import annotations

import copy
import math
import numbers
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from . import layers as _every_layer  # noqa: F401  (registers every layer class for from_config)
from . import random
from .backend import asarray, copy_array, dtype_name, to_numpy
from .layers.base import Layer, get_layer_class
from .layers.fusion import Step, fuse
from .training import Trainer

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


class Sequential(Trainer):
    """A linear stack of layers.

    ``input_shape`` is per sample (no batch axis), e.g. ``(1, 28, 28)``; when given every layer is built at
    once (so ``summary`` works), else on the first forward. ``params``, ``grads`` and ``buffers`` are dicts
    over all layers keyed like ``torch.nn.Sequential`` (``"0.weight"``).
    """

    def __init__(self, layers: Iterable[Layer] | None = None, input_shape: Any = None, name: str = "sequential"):
        super().__init__()
        self.layers: list[Layer] = []
        self.name = str(name)
        self.input_shape: tuple[int, ...] | None = None
        self.output_shape: tuple[int, ...] | None = None
        self._steps: list[Step] | None = None  # what the latest training forward ran, for backward
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
        """Append a layer (built at once when the model already is)."""
        self._check_layer(layer, len(self.layers))
        if self.built:
            self._build_layers([*self.layers, layer], self.input_shape)
        self.layers.append(layer)
        if self.built:
            self.output_shape = layer.output_shape

    # --- building ----------------------------------------------------------------------------------------
    @property
    def built(self) -> bool:
        return self.input_shape is not None

    def build(self, input_shape: Any) -> tuple[int, ...]:
        """Build every layer for per-sample ``input_shape``; return the per-sample output shape.

        On error (a layer refuses the shape) the layers and the random stream are left as they were.
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
        """The per-sample output shape for ``sample_shape`` without changing the model or the random stream."""
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

    # --- forward and backward ----------------------------------------------------------------------------
    def forward(self, x: Array, training: bool = False) -> Array:
        """The model's output for a batch ``x`` (batch axis first), on the current backend's device."""
        x = asarray(x)
        if not self.built:
            if x.ndim < 2:
                raise ValueError(f"{self.name}: expected a batch (batch axis first), got shape {tuple(x.shape)}")
            self.build(tuple(x.shape[1:]))
        steps = fuse(self.layers)  # ReLU + MaxPool2D run as one step (same values, fewer passes)
        for step in steps:
            x = step.forward(x, training=training)
        if training:
            self._steps = steps
        return x

    __call__ = forward

    def backward(self, dy: Array, input_grad: bool = True) -> Array | None:
        """Back-propagate the output gradient ``dy`` of the latest training forward; sets every layer's grads
        and returns the gradient of the model's input.

        ``input_grad=False`` (what training does: nobody differentiates the data) returns None and skips the
        work only that gradient needs: the layers before the first one with parameters, and that layer's own
        input gradient where it can leave it out (``Conv2D.input_grad``), as PyTorch does for inputs without
        ``requires_grad``. The parameters' gradients are the same either way.
        """
        steps = self._steps if self._steps is not None else self.layers
        first = 0 if input_grad else next((i for i, s in enumerate(steps) if getattr(s, "params", None)), len(steps))
        for i in reversed(range(first, len(steps))):
            step = steps[i]
            if i == first and not input_grad and hasattr(step, "input_grad"):
                saved, step.input_grad = step.input_grad, False
                try:
                    step.backward(dy)
                finally:
                    step.input_grad = saved
            else:
                dy = step.backward(dy)
        return dy if input_grad else None

    # --- parameters --------------------------------------------------------------------------------------
    @property
    def params(self) -> dict[str, Array]:
        return {f"{i}.{k}": v for i, layer in enumerate(self.layers) for k, v in layer.params.items()}

    @property
    def grads(self) -> dict[str, Array]:
        return {f"{i}.{k}": v for i, layer in enumerate(self.layers) for k, v in layer.grads.items()}

    @property
    def buffers(self) -> dict[str, Array]:
        return {f"{i}.{k}": v for i, layer in enumerate(self.layers) for k, v in layer.buffers.items()}

    def set_params(self, params: Mapping[str, Array]) -> None:
        """Assign parameters by key (the arrays are used as given: the optimizer's output, for instance)."""
        for key, value in params.items():
            index, name = self._split_key(key)
            self.layers[index].params[name] = value

    def set_buffers(self, buffers: Mapping[str, Array]) -> None:
        """Assign buffers (batch-norm statistics) by key, as ``set_params`` does parameters."""
        for key, value in buffers.items():
            index, name = self._split_key(key)
            self.layers[index].buffers[name] = value

    def _split_key(self, key: str) -> tuple[int, str]:
        index, _, name = str(key).partition(".")
        if not index.isdigit() or int(index) >= len(self.layers) or not name:
            raise KeyError(f"{self.name}: no parameter {key!r}")
        return int(index), name

    @property
    def num_params(self) -> int:
        return sum(math.prod(p.shape) for p in self.params.values())

    # --- state dicts -------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Array]:
        """Parameters and buffers (copies, on the device) keyed like ``torch.nn.Sequential.state_dict()``."""
        out: dict[str, Array] = {}
        for i, layer in enumerate(self.layers):
            for k, v in layer.params.items():
                out[f"{i}.{k}"] = copy_array(v)
            for k, v in layer.buffers.items():
                out[f"{i}.{k}"] = copy_array(v)
        return out

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Load parameters and buffers from a dict of NumPy arrays, torch tensors or any backend's arrays.

        Keys and shapes must match exactly (torch's ``num_batches_tracked`` is ignored); otherwise a
        ValueError lists every missing, unexpected or mis-shaped entry and the model is left untouched.
        """
        if not isinstance(state, Mapping):
            raise TypeError(f"load_state_dict takes a mapping of arrays, got {type(state).__name__}")
        if not self.built:
            raise ValueError(
                f"{self.name}: build the model (Sequential(..., input_shape=...) or model.build(shape)) before "
                "loading a state dict, so that its parameters exist"
            )
        expected: dict[str, tuple[int, ...]] = {}
        for i, layer in enumerate(self.layers):
            for k, v in (*layer.params.items(), *layer.buffers.items()):
                expected[f"{i}.{k}"] = tuple(v.shape)
        given = {str(k): v for k, v in state.items() if not str(k).endswith("num_batches_tracked")}
        missing = [k for k in expected if k not in given]
        unexpected = [k for k in given if k not in expected]
        mismatched = []
        for key, shape in expected.items():
            if key in given:
                got = tuple(getattr(given[key], "shape", np.shape(given[key])))
                if got != shape:
                    mismatched.append(f"{key}: expected {shape}, got {got}")
        if missing or unexpected or mismatched:
            parts = []
            if missing:
                parts.append(f"missing keys {missing}")
            if unexpected:
                parts.append(f"unexpected keys {unexpected}")
            if mismatched:
                parts.append("shape mismatches [" + "; ".join(mismatched) + "]")
            raise ValueError(f"{self.name}: state dict does not fit this model: " + ", ".join(parts))
        converted = {}
        for key in expected:
            current = self._entry(key)
            try:
                # through the host: detaches autograd tensors, copies, and works from any backend/device
                host_value = np.asarray(to_numpy(given[key])).astype(dtype_name(current.dtype), copy=True)
                value = asarray(host_value, dtype=current.dtype)
            except Exception as exc:  # an object that is no array
                raise ValueError(f"{self.name}: state dict entry {key!r} is not an array: {exc}") from exc
            converted[key] = value
        for key, value in converted.items():
            index, name = self._split_key(key)
            layer = self.layers[index]
            if name in layer.params:
                layer.params[name] = value
            else:
                layer.buffers[name] = value

    def _entry(self, key: str) -> Array:
        index, name = self._split_key(key)
        layer = self.layers[index]
        return layer.params[name] if name in layer.params else layer.buffers[name]

    # --- description -------------------------------------------------------------------------------------
    def summary(self, print_fn: Any = None) -> str:
        """Print (with ``print_fn``, default ``print``) and return a table of layers, output shapes and counts."""
        if not self.built:
            raise ValueError(
                f"{self.name}: summary() needs a built model: pass input_shape=... to Sequential, call "
                "model.build(shape), or run one batch through it"
            )
        rows = []
        trainable = non_trainable = 0
        for i, layer in enumerate(self.layers):
            n_train = sum(math.prod(p.shape) for p in layer.params.values())
            n_buf = sum(math.prod(b.shape) for b in layer.buffers.values())
            trainable += n_train
            non_trainable += n_buf
            shape = "(None, " + ", ".join(str(d) for d in layer.output_shape) + ")"
            rows.append((f"{i} ({type(layer).__name__})", shape, f"{n_train + n_buf:,}"))
        headers = ("Layer (type)", "Output Shape", "Param #")
        widths = [max(len(headers[c]), *(len(r[c]) for r in rows)) + 4 for c in range(3)]
        total_width = sum(widths)

        def line(cells: Sequence[str]) -> str:
            return "".join(cell.ljust(w) for cell, w in zip(cells, widths)).rstrip()

        input_shape = "(None, " + ", ".join(str(d) for d in self.input_shape) + ")"
        out = [
            f'Model: "{self.name}"  input shape {input_shape}',
            "_" * total_width,
            line(headers),
            "=" * total_width,
            *[line(r) for r in rows],
            "=" * total_width,
            f"Total params: {trainable + non_trainable:,}",
            f"Trainable params: {trainable:,}",
            f"Non-trainable params: {non_trainable:,}",
            "_" * total_width,
        ]
        text = "\n".join(out)
        (print_fn or print)(text)
        return text

    def get_config(self) -> dict[str, Any]:
        """The architecture as JSON-friendly data: layer class names, their configs and the input shape."""
        return {
            "name": self.name,
            "input_shape": None if self.input_shape is None else list(self.input_shape),
            "layers": [{"class_name": type(layer).__name__, "config": layer.get_config()} for layer in self.layers],
        }

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Sequential:
        """Rebuild (fresh weights) on the current backend from ``get_config()``'s output."""
        layers = []
        for spec in config["layers"]:
            layer_cls = get_layer_class(spec["class_name"])
            layers.append(layer_cls(**spec.get("config", {})))
        return cls(layers, input_shape=config.get("input_shape"), name=config.get("name", "sequential"))

    def __repr__(self) -> str:
        inner = ", ".join(repr(layer) for layer in self.layers)
        return f"Sequential([{inner}], input_shape={self.input_shape})"

    # --- saving (see xpcnn.io) -----------------------------------------------------------------------
    def save(self, path: Any) -> None:
        """Write architecture, weights, buffers, compile config, optimizer state, epoch and random state to
        ONE file at exactly ``path`` (atomically; see ``xpcnn.load_model``)."""
        from .io import save_model

        save_model(self, path)

    def save_weights(self, path: Any) -> None:
        """Write parameters and buffers only (atomically) to ``path``."""
        from .io import save_weights

        save_weights(self, path)

    def load_weights(self, path: Any) -> None:
        """Load parameters and buffers from a file written by ``save_weights`` or ``save``."""
        from .io import load_weights

        load_weights(self, path)

