"""What every model is, graph or stack: layers run by one executor (``xpcnn.graph.Plan``), parameters and
buffers keyed for PyTorch's ``state_dict``, a summary, and saving through ``xpcnn.io``'s public functions.

Subclasses give the plan (``_plan``), the key prefix of each layer (``keyed_layers()``: the index in a
``Sequential``, as ``torch.nn.Sequential``; the layer's name in a graph ``Model``, as a module's attribute
names), how inputs come in (``_inputs_of``) and the rows of the summary.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ..backend import asarray, copy_array, dtype_name, get_backend, to_numpy
from ..graph import Plan
from ..layers.base import Layer, cast_floating
from ..mixed_precision import Policy, as_policy
from ..training import Trainer
from . import summary as summary_text

__all__ = ["LayerGraph"]

Array = Any


class LayerGraph(Trainer):
    """The base of ``Sequential`` and ``Model``: forward/backward, keys, state dicts, summary, saving."""

    def __init__(self, name: str) -> None:
        super().__init__()
        self.name = str(name)
        self.layers: list[Layer] = []
        self._plan: Plan | None = None
        self._states: list[Any] | None = None  # the latest training forward's, for backward

    # --- what subclasses provide -------------------------------------------------------------------------
    def keyed_layers(self) -> list[tuple[str, Layer]]:
        """Each layer with the prefix of its parameter keys (``"0"`` in a Sequential, its name in a Model)."""
        raise NotImplementedError

    def _inputs_of(self, x: Any) -> list[Array]:
        """The model's input arrays from what ``forward`` was given (building the model if it must)."""
        raise NotImplementedError

    def output_layers(self) -> list[Layer]:
        """The layer that makes each output."""
        raise NotImplementedError

    @property
    def output_names(self) -> list[str]:
        """The name of each output: the name of the layer that makes it."""
        return [layer.name for layer in self.output_layers()] or ["output"]

    def output_activations(self) -> list[str | None]:
        """For each output, "softmax" or "sigmoid" when it comes out of one (a ``Softmax`` over the classes,
        a ``Sigmoid``, or ``activation=`` on the last layer), else None: a loss then takes probabilities."""
        from ..layers.activations import Sigmoid, Softmax

        kinds = []
        for layer in self.output_layers():
            if isinstance(layer, Softmax) and layer.axis in (1, -1):
                kinds.append("softmax")
            elif isinstance(layer, Sigmoid):
                kinds.append("sigmoid")
            else:
                kinds.append(layer.activation if layer.activation in ("softmax", "sigmoid") else None)
        return kinds

    @property
    def _single_input(self) -> bool:
        return True

    @property
    def _single_output(self) -> bool:
        return True

    # --- forward and backward ----------------------------------------------------------------------------
    def forward(self, x: Any, training: bool = False) -> Any:
        """The model's output(s) for a batch ``x`` (batch axis first; a list for several inputs), on the
        current backend's device.

        Parameters
        ----------
        x : array or list of arrays
            A batch, batch axis first: NumPy, a list, or an array of the current backend. A model with
            several inputs takes a list (a ``Model`` also a dict by input name).
        training : bool, default False
            Training mode (dropout active, batch norm on the batch's statistics); it also keeps what
            ``backward`` needs.

        Returns
        -------
        array or list of arrays
            The output, or a list of one per output.

        Raises
        ------
        ValueError
            If the input's per-sample shape is not the model's.

        Examples
        --------
        >>> from xpcnn.layers import Dense, Flatten
        >>> model = xpcnn.Sequential([Flatten(), Dense(10)], input_shape=(1, 28, 28))
        >>> model.forward(np.zeros((4, 1, 28, 28), dtype="float32")).shape
        (4, 10)
        """
        xs = self._inputs_of(x)
        outputs, states = self._plan.forward(xs, training)
        if training:
            self._states = states
        if self.dtype_policy.mixed:  # outputs, and so the loss and the metrics, in float32 (the backend's)
            outputs = [cast_floating(y, get_backend().dtype) for y in outputs]
        return outputs[0] if self._single_output else outputs

    def backward(self, dy: Any, input_grad: bool = True) -> Any:
        """Back-propagate the output gradient(s) ``dy`` of the latest training forward; sets every layer's
        grads and returns the gradient of the model's input(s).

        Parameters
        ----------
        dy : array or list of arrays
            The gradient of the loss with respect to the output (one per output), the output's shape.
        input_grad : bool, default True
            ``False`` (what training does: nobody differentiates the data) returns None and skips the work only
            that gradient needs: the layers before the first one with parameters, and that layer's own input
            gradient where it can leave it out (``Conv2D.input_grad``), as PyTorch does for inputs without
            ``requires_grad``. The parameters' gradients are the same either way.

        Returns
        -------
        array or list of arrays or None
            The gradient with respect to the input(s), None when ``input_grad=False``.
        """
        dys = [dy] if self._single_output else list(dy)
        states = self._states if self._states is not None else [None] * len(self._plan.steps)
        dxs = self._plan.backward(dys, states, input_grad)
        if not input_grad:
            return None
        return dxs[0] if self._single_input else dxs

    @property
    def plan(self) -> Plan | None:
        """What the executor runs (steps over numbered tensors), None until the model is built."""
        return self._plan

    def values_of(self, x: Any, tensors: Sequence[int]) -> list[Array]:
        """The inference values of the plan's ``tensors`` for a batch ``x`` (e.g. a layer's feature maps).

        Parameters
        ----------
        x : array or list of arrays
            A batch, as ``forward`` takes it.
        tensors : sequence of int
            Numbers of the plan's tensors (``plan``).

        Returns
        -------
        list of arrays
            One value per entry of ``tensors``.
        """
        xs = self._inputs_of(x)  # builds a model that is not yet built, checks the shapes of one that is
        return self._plan.values_of(xs, tensors)

    def get_layer(self, name: str | None = None, index: int | None = None) -> Layer:
        """The layer called ``name``, or at position ``index`` of ``layers`` (Keras's ``get_layer``).

        Parameters
        ----------
        name : str, optional
            The layer's name.
        index : int, optional
            Its position in ``layers`` (negative counts from the end).

        Returns
        -------
        Layer

        Raises
        ------
        ValueError
            If neither or both are given, the index is out of range or no layer has the name.

        Examples
        --------
        >>> from xpcnn.layers import Dense, Flatten
        >>> model = xpcnn.Sequential([Flatten(), Dense(10)], input_shape=(1, 28, 28))
        >>> type(model.get_layer(index=-1)).__name__
        'Dense'
        """
        if (name is None) == (index is None):
            raise ValueError(f"{self.name}: get_layer takes a name or an index, exactly one of them")
        if index is not None:
            if not -len(self.layers) <= index < len(self.layers):
                raise ValueError(f"{self.name}: layer index {index} is out of range for {len(self.layers)} layers")
            return self.layers[index]
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise ValueError(f"{self.name}: no layer named {name!r}; the layers are {[la.name for la in self.layers]}")

    # --- parameters --------------------------------------------------------------------------------------
    def _collect(self, kind: str) -> dict[str, Array]:
        return {f"{prefix}.{k}": v for prefix, layer in self.keyed_layers() for k, v in getattr(layer, kind).items()}

    @property
    def params(self) -> dict[str, Array]:
        """Every layer's parameters keyed as the PyTorch module's (``"0.weight"``, ``"conv1.bias"``)."""
        return self._collect("params")

    @property
    def grads(self) -> dict[str, Array]:
        """The gradients of the latest backward, keyed as ``params``."""
        return self._collect("grads")

    @property
    def trainable_params(self) -> dict[str, Array]:
        """The parameters of the layers that are not frozen: what training updates."""
        return {f"{prefix}.{k}": v for prefix, layer in self.keyed_layers() if layer.trainable
                for k, v in layer.params.items()}

    @property
    def trainable(self) -> bool:
        """Whether any layer trains; setting it freezes (False) or unfreezes (True) every layer, as Keras's
        ``model.trainable``."""
        return any(layer.trainable for layer in self.layers)

    @trainable.setter
    def trainable(self, value: bool) -> None:
        for layer in self.layers:
            layer.trainable = value

    @property
    def dtype_policy(self) -> Policy:
        """The mixed policy of its layers when one has one, else ``"float32"``; setting it sets every layer's
        (``xpcnn.mixed_precision``)."""
        return next((layer.dtype_policy for layer in self.layers if layer.dtype_policy.mixed), Policy("float32"))

    @dtype_policy.setter
    def dtype_policy(self, value: Policy | str) -> None:
        policy = as_policy(value, f"{self.name}.dtype_policy")
        for layer in self.layers:
            layer.dtype_policy = policy

    @property
    def computes_in_float16(self) -> bool:
        """Whether a layer computes in float16: what needs loss scaling (``compile(auto_scale_loss=True)``)."""
        return any(layer.dtype_policy.compute_dtype == "float16" for layer in self.layers)

    def freeze(self, up_to: str | None = None) -> list[Layer]:
        """Freeze every layer (``up_to=None``), or every layer from the first to the one named ``up_to``
        included, in the order of ``layers``: a pretrained backbone, before fine-tuning its head.
        ``model.trainable = True`` (or a layer's ``trainable = True``) undoes it.

        Parameters
        ----------
        up_to : str, optional
            The name of the last layer to freeze.

        Returns
        -------
        list of Layer
            The layers frozen.

        Raises
        ------
        ValueError
            If no layer is named ``up_to``.
        """
        end = len(self.layers) if up_to is None else self.layers.index(self.get_layer(up_to)) + 1
        for layer in self.layers[:end]:
            layer.trainable = False
        return self.layers[:end]

    @property
    def buffers(self) -> dict[str, Array]:
        """What layers keep besides parameters (batch norm's running statistics), keyed as ``params``."""
        return self._collect("buffers")

    def set_params(self, params: Mapping[str, Array]) -> None:
        """Assign parameters by key (the arrays are used as given: the optimizer's output, for instance).

        Parameters
        ----------
        params : mapping of str to array
            Arrays of the current backend keyed as ``params`` (a subset is fine).

        Raises
        ------
        KeyError
            If a key names no parameter's layer.
        """
        for key, value in params.items():
            layer, name = self._split_key(key)
            layer.params[name] = value

    def set_buffers(self, buffers: Mapping[str, Array]) -> None:
        """Assign buffers (batch-norm statistics) by key, as ``set_params`` does parameters.

        Parameters
        ----------
        buffers : mapping of str to array
            Arrays of the current backend keyed as ``buffers``.
        """
        for key, value in buffers.items():
            layer, name = self._split_key(key)
            layer.buffers[name] = value

    def _split_key(self, key: str) -> tuple[Layer, str]:
        prefix, _, name = str(key).rpartition(".")  # a layer's name may hold dots (torch's nested modules)
        layer = dict(self.keyed_layers()).get(prefix)
        if layer is None or not name:
            raise KeyError(f"{self.name}: no parameter {key!r}")
        return layer, name

    @property
    def num_params(self) -> int:
        """The number of parameter values of every layer (buffers not counted)."""
        return sum(math.prod(p.shape) for p in self.params.values())

    # --- state dicts -------------------------------------------------------------------------------------
    def _entries(self) -> dict[str, Array]:
        """Parameters then buffers of each layer in turn, in the order of a PyTorch ``state_dict``."""
        return {f"{prefix}.{k}": v for prefix, layer in self.keyed_layers()
                for k, v in (*layer.params.items(), *layer.buffers.items())}

    def state_dict(self) -> dict[str, Array]:
        """Parameters and buffers (copies, on the device) keyed like the equivalent PyTorch module's.

        Returns
        -------
        dict of str to array
            Each layer's parameters, then its buffers, in layer order.

        Examples
        --------
        >>> from xpcnn.layers import Dense, Flatten
        >>> model = xpcnn.Sequential([Flatten(), Dense(10)], input_shape=(1, 28, 28))
        >>> {key: value.shape for key, value in model.state_dict().items()}
        {'1.weight': (10, 784), '1.bias': (10,)}
        """
        return {key: copy_array(value) for key, value in self._entries().items()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Load parameters and buffers from a dict of NumPy arrays, torch tensors or any backend's arrays.

        Keys and shapes must match exactly (torch's ``num_batches_tracked`` is ignored); otherwise a
        ValueError lists every missing, unexpected or mis-shaped entry and the model is left untouched.

        Parameters
        ----------
        state : mapping of str to array
            Keyed as ``state_dict()`` (a PyTorch module's ``state_dict()`` for the same architecture). The
            values are copied and cast to each parameter's dtype.

        Raises
        ------
        TypeError
            If ``state`` is not a mapping.
        ValueError
            If the model is not built, or a key is missing or unexpected, a shape differs or a value is no
            array.
        """
        if not isinstance(state, Mapping):
            raise TypeError(f"load_state_dict takes a mapping of arrays, got {type(state).__name__}")
        if not self.built:
            raise ValueError(
                f"{self.name}: build the model (Sequential(..., input_shape=...) or model.build(shape)) before "
                "loading a state dict, so that its parameters exist"
            )
        current = self._entries()
        expected = {key: tuple(value.shape) for key, value in current.items()}
        given = {str(k): v for k, v in state.items() if not str(k).endswith("num_batches_tracked")}
        missing = [k for k in expected if k not in given]
        unexpected = [k for k in given if k not in expected]
        mismatched = []
        for key, shape in expected.items():
            if key in given:
                value = given[key]  # its shape only: an array read lazily from a file is not read yet
                got = tuple(value.shape) if hasattr(value, "shape") else np.shape(value)
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
            try:
                # through the host: detaches autograd tensors, copies, and works from any backend/device
                host_value = np.asarray(to_numpy(given[key])).astype(dtype_name(current[key].dtype), copy=True)
                converted[key] = asarray(host_value, dtype=current[key].dtype)
            except Exception as exc:  # an object that is no array
                raise ValueError(f"{self.name}: state dict entry {key!r} is not an array: {exc}") from exc
        for key, value in converted.items():
            layer, name = self._split_key(key)
            (layer.params if name in layer.params else layer.buffers)[name] = value

    # --- description -------------------------------------------------------------------------------------
    def _summary_rows(self) -> tuple[tuple[str, ...], list[tuple[str, ...]]]:
        """The summary's column headers and one row per layer (subclasses add columns)."""
        raise NotImplementedError

    def _input_description(self) -> str:
        raise NotImplementedError

    def summary(self, print_fn: Any = None) -> str:
        """Print (with ``print_fn``, default ``print``) and return a table of layers, output shapes and counts.

        Parameters
        ----------
        print_fn : callable, optional
            Called once with the whole table; ``print`` by default.

        Returns
        -------
        str
            The table.

        Raises
        ------
        ValueError
            If the model is not built.

        Examples
        --------
        >>> from xpcnn.layers import Dense, Flatten
        >>> model = xpcnn.Sequential([Flatten(), Dense(10)], input_shape=(1, 28, 28))
        >>> text = model.summary()
        Model: "sequential"  input shape (None, 1, 28, 28)
        ...
        Total params: 7,850
        Trainable params: 7,850
        Non-trainable params: 0
        ...
        """
        if not self.built:
            raise ValueError(
                f"{self.name}: summary() needs a built model: pass input_shape=... to Sequential, call "
                "model.build(shape), or run one batch through it"
            )
        headers, rows = self._summary_rows()
        trainable = sum(math.prod(p.shape) for p in self.trainable_params.values())
        non_trainable = sum(math.prod(v.shape) for v in self._entries().values()) - trainable
        text = summary_text.table(self.name, self._input_description(), headers, rows, trainable, non_trainable)
        (print_fn or print)(text)
        return text

    # --- saving (see xpcnn.io) -----------------------------------------------------------------------
    def save(self, path: Any) -> None:
        """Write architecture, weights, buffers, compile config, optimizer state, epoch and random state to
        ONE file at exactly ``path`` (atomically; see ``xpcnn.load_model``).

        Parameters
        ----------
        path : str or os.PathLike
            The file to write (replaced if it exists).

        Raises
        ------
        ValueError
            If the model is not built.
        """
        from ..io import save_model  # io rebuilds models: it imports this package, so import it here

        save_model(self, path)

    def save_weights(self, path: Any) -> None:
        """Write parameters and buffers only (atomically) to ``path``.

        Parameters
        ----------
        path : str or os.PathLike
            The file to write (replaced if it exists).

        Raises
        ------
        ValueError
            If the model is not built.
        """
        from ..io import save_weights

        save_weights(self, path)

    def load_weights(self, path: Any) -> None:
        """Load parameters and buffers from a file written by ``save_weights`` or ``save``.

        Also a ``.safetensors`` file or a PyTorch checkpoint (``xpcnn.io.load_weights``).

        Parameters
        ----------
        path : str or os.PathLike
            The file to read.

        Raises
        ------
        ValueError
            If the file comes from another architecture (keys, shapes); the model is then left untouched.
        """
        from ..io import load_weights

        load_weights(self, path)
