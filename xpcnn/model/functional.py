"""``Model``: a graph of layers from ``Input`` tensors to output tensors, Keras's Functional API.

    x = xpcnn.Input(shape=(3, 32, 32))
    h = Conv2D(16, 3, padding="same", activation="relu")(x)
    y = Add()([h, Conv2D(16, 3, padding="same")(h)])
    model = xpcnn.Model(inputs=x, outputs=Dense(10)(Flatten()(y)))

The model runs the nodes between its inputs and its outputs (``xpcnn.graph``): a layer called at several
places shares its parameters (its gradient is the sum over its calls), a tensor read by several layers gets
the sum of their gradients. Parameter keys are ``"<layer name>.<param>"``, so a PyTorch module whose
submodules are attributes of the same names loads with ``load_state_dict``. A graph that cannot run is refused
when the model is made, with a ValueError that says what is wrong.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ..backend import asarray
from ..graph import LayerCalls, graph_plan, nodes_between
from ..layers.base import Layer, layer_spec, make_layer
from ..layers.node import InputLayer, Node, SymbolicTensor, call_symbolic
from . import summary as summary_text
from .base import LayerGraph

__all__ = ["Model"]

Array = Any


def _as_tensor_list(value: Any, what: str) -> list[SymbolicTensor]:
    tensors = list(value) if isinstance(value, (list, tuple)) else [value]
    if not tensors:
        raise ValueError(f"Model: {what} must hold at least one symbolic tensor")
    for t in tensors:
        if not isinstance(t, SymbolicTensor):
            raise TypeError(f"Model: {what} must be symbolic tensors (xpcnn.Input, or layers called on them), "
                            f"got {type(t).__name__}")
    return tensors


class Model(LayerGraph):
    """A graph of layers from ``inputs`` (``xpcnn.Input`` tensors, one or a list) to ``outputs``.

    Parameters
    ----------
    inputs : SymbolicTensor or list of SymbolicTensor
        ``xpcnn.Input`` tensors; a list makes ``forward`` take a list (or a dict by input name).
    outputs : SymbolicTensor or list of SymbolicTensor
        Tensors made by calling layers on the inputs; a list makes ``forward`` return a list.
    name : str, default "model"
        The model's name.

    Raises
    ------
    TypeError
        If an input or output is not a symbolic tensor.
    ValueError
        If an input is not an ``xpcnn.Input`` tensor or is listed twice, an input reaches no output, or two
        layers share a name.

    Examples
    --------
    >>> from xpcnn.layers import Add, Conv2D, Dense, Flatten
    >>> x = xpcnn.Input(shape=(3, 32, 32))
    >>> h = Conv2D(16, 3, padding="same", activation="relu")(x)
    >>> y = Add()([h, Conv2D(16, 3, padding="same")(h)])
    >>> model = xpcnn.Model(inputs=x, outputs=Dense(10)(Flatten()(y)))
    >>> model.forward(np.zeros((2, 3, 32, 32), dtype="float32")).shape
    (2, 10)
    """

    def __init__(self, inputs: Any, outputs: Any, name: str = "model") -> None:
        super().__init__(name)
        ins, outs = _as_tensor_list(inputs, "inputs"), _as_tensor_list(outputs, "outputs")
        self._several_inputs = isinstance(inputs, (list, tuple))
        self._several_outputs = isinstance(outputs, (list, tuple))
        for t in ins:
            if not isinstance(t.node.layer, InputLayer):
                raise ValueError(f"Model: input {t.name!r} is not an xpcnn.Input tensor but the output of a "
                                 f"{type(t.node.layer).__name__} layer")
        if len({id(t) for t in ins}) != len(ins):
            raise ValueError(f"Model: an input is listed twice in {[t.name for t in ins]}")
        nodes = nodes_between(ins, outs)
        reached = {id(node) for node in nodes}
        unused = [t.name for t in ins if id(t.node) not in reached]
        if unused:
            raise ValueError(f"Model: input(s) {unused} reach no output; every input must feed an output")
        self.layers = list(dict.fromkeys(n.layer for n in nodes if not isinstance(n.layer, InputLayer)))
        names = [layer.name for layer in self.layers] + [t.name for t in ins]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"Model: layer names must be unique in a model, {twice} name several layers; "
                             "give them distinct name= arguments")
        self.inputs, self.outputs, self._nodes = ins, outs, nodes
        self._plan = graph_plan(ins, outs, nodes)
        shapes_in, shapes_out = [t.shape for t in ins], [t.shape for t in outs]
        self.input_shape = shapes_in if self._several_inputs else shapes_in[0]
        self.output_shape = shapes_out if self._several_outputs else shapes_out[0]

    built = True

    @property
    def _single_input(self) -> bool:
        return not self._several_inputs

    @property
    def _single_output(self) -> bool:
        return not self._several_outputs

    @property
    def input_names(self) -> list[str]:
        """The name of each input (``Input(name=...)``), in the order ``forward`` takes them."""
        return [t.name for t in self.inputs]

    # --- what the shared executor needs -------------------------------------------------------------
    def _inputs_of(self, x: Any) -> list[Array]:
        if isinstance(x, Mapping):
            unknown = sorted(set(x) - set(self.input_names))
            missing = [n for n in self.input_names if n not in x]
            if unknown or missing:
                raise ValueError(f"{self.name}: inputs by name must be exactly {self.input_names}; missing "
                                 f"{missing}, unknown {unknown}")
            xs = [x[n] for n in self.input_names]
        elif self._several_inputs:
            if not isinstance(x, (list, tuple)) or len(x) != len(self.inputs):
                raise ValueError(f"{self.name}: expected a list of {len(self.inputs)} input arrays "
                                 f"({self.input_names}), got {type(x).__name__}"
                                 + (f" of {len(x)}" if isinstance(x, (list, tuple)) else ""))
            xs = list(x)
        else:
            xs = [x]
        arrays = [asarray(a) for a in xs]
        for a, t in zip(arrays, self.inputs):
            if tuple(a.shape[1:]) != t.shape:
                raise ValueError(f"{self.name}: input {t.name!r} takes per-sample shape {t.shape}, got an array of "
                                 f"shape {tuple(a.shape)} (batch axis first)")
        return arrays

    __call__ = LayerGraph.forward

    def keyed_layers(self) -> list[tuple[str, Layer]]:
        return [(layer.name, layer) for layer in self.layers]

    def output_layers(self) -> list[Layer]:
        return [t.node.layer for t in self.outputs]

    def compute_output_shape(self, sample_shape: Any) -> Any:
        """The per-sample output shape(s) for input(s) of ``sample_shape``; a ValueError when they differ
        from the model's inputs.

        Parameters
        ----------
        sample_shape : tuple of int or list of tuple of int
            The shape of one sample of each input, no batch axis.

        Returns
        -------
        tuple of int or list of tuple of int
            ``output_shape``.
        """
        given = [tuple(s) for s in sample_shape] if self._several_inputs else tuple(sample_shape)
        wanted = [t.shape for t in self.inputs] if self._several_inputs else self.inputs[0].shape
        if given != wanted:
            raise ValueError(f"{self.name}: built for per-sample input shape {wanted}, got data of per-sample "
                             f"shape {given}")
        return self.output_shape

    def build(self, input_shape: Any) -> Any:
        """A graph model is built when it is made; this checks ``input_shape`` and returns the output shape.

        Parameters
        ----------
        input_shape : tuple of int or list of tuple of int
            The per-sample shape of each input.

        Returns
        -------
        tuple of int or list of tuple of int

        Raises
        ------
        ValueError
            If ``input_shape`` is not the model's.
        """
        return self.compute_output_shape(input_shape)

    # --- description ----------------------------------------------------------------------------------
    def _summary_rows(self) -> tuple[tuple[str, ...], list[tuple[str, ...]]]:
        rows, ref = [], self._node_refs()
        for node in self._nodes:
            layer = node.layer
            inbound = ", ".join(f"{ref[id(t.node)][0]}[{ref[id(t.node)][1]}]" for t in node.inputs)
            count = "0" if isinstance(layer, InputLayer) else summary_text.param_count(layer)
            rows.append((f"{layer.name} ({type(layer).__name__})", summary_text.shape_text(node.output.shape), count,
                         inbound))
        return ("Layer (type)", "Output Shape", "Param #", "Connected to"), rows

    def _input_description(self) -> str:
        return ", ".join(summary_text.shape_text(t.shape) for t in self.inputs)

    def _node_refs(self) -> dict[int, list[Any]]:
        """``[layer name, index of the call among this model's calls of that layer]`` for every node."""
        seen: dict[str, int] = {}
        refs = {}
        for node in self._nodes:
            name = node.layer.name
            refs[id(node)] = [name, seen.get(name, 0)]
            seen[name] = seen.get(name, 0) + 1
        return refs

    def layer_calls(self) -> LayerCalls:
        """The graph as named tensors: each input under its name, each call's output under its layer's name
        (``name:1``, ``name:2`` for a shared layer's later calls)."""
        ref = self._node_refs()

        def tensor(t: SymbolicTensor) -> str:
            name, index = ref[id(t.node)]
            return name if index == 0 else f"{name}:{index}"

        calls = [(node.layer, [tensor(t) for t in node.inputs], tensor(node.output)) for node in self._nodes
                 if not isinstance(node.layer, InputLayer)]
        return LayerCalls([(tensor(t), t.shape) for t in self.inputs], calls,
                          [(tensor(t), t.shape) for t in self.outputs])

    def get_config(self) -> dict[str, Any]:
        """The graph as JSON-friendly data: each layer (class, name, config) and each node with the
        ``[layer name, node index]`` of the tensors it reads, in topological order.

        Returns
        -------
        dict
            What ``from_config`` takes.
        """
        layers = list(dict.fromkeys(node.layer for node in self._nodes))
        ref = self._node_refs()
        return {
            "class_name": "Model",
            "name": self.name,
            "layers": [layer_spec(layer, named=True) for layer in layers],
            "nodes": [{"layer": node.layer.name, "inbound": [ref[id(t.node)] for t in node.inputs]}
                      for node in self._nodes],
            "inputs": [ref[id(t.node)] for t in self.inputs] if self._several_inputs else ref[id(self.inputs[0].node)],
            "outputs": [ref[id(t.node)] for t in self.outputs] if self._several_outputs
            else ref[id(self.outputs[0].node)],
        }

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Model:
        """Rebuild the graph (fresh weights) on the current backend from ``get_config()``'s output.

        Parameters
        ----------
        config : mapping
            What ``get_config()`` returned.

        Returns
        -------
        Model
        """
        layers: dict[str, Layer] = {}
        for i, spec in enumerate(config["layers"]):
            layers[spec["name"]] = make_layer(spec, f"layers[{i}]")
        tensors: dict[tuple[str, int], SymbolicTensor] = {}
        for node in config["nodes"]:
            layer = layers[node["layer"]]
            if isinstance(layer, InputLayer):
                out = Node(layer, [], layer.output_shape).output
            else:
                inbound = [tensors[(name, int(index))] for name, index in node["inbound"]]
                out = call_symbolic(layer, inbound if getattr(layer, "takes_several_inputs", False) else inbound[0])
            tensors[(layer.name, sum(1 for key in tensors if key[0] == layer.name))] = out

        def pick(spec: Sequence[Any]) -> Any:
            if spec and isinstance(spec[0], (list, tuple)):
                return [tensors[(name, int(index))] for name, index in spec]
            return tensors[(spec[0], int(spec[1]))]

        return cls(pick(config["inputs"]), pick(config["outputs"]), name=config.get("name", "model"))

    def __repr__(self) -> str:
        return (f"Model(inputs={self.input_names}, outputs={self.output_names}, layers={len(self.layers)}, "
                f"name={self.name!r})")
