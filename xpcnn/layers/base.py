"""The layer contract: parameters and gradients in dicts, an explicit forward and backward.

Subclasses implement ``_build`` (create parameters, return the per-sample output shape), ``_forward`` and
``_backward``, and may override ``_check_input`` to reject inputs with a clear message. The base class
validates before any state changes, builds on the first forward, and keeps the backward bookkeeping.

What a backward needs from its forward travels one way: a training ``_forward`` keeps it in ``self._cache``
(its inputs, and what the op returned for reuse: ``return_saved=True`` of ``conv2d``, ``batch_norm`` and
``max_pool2d``), and ``_backward`` hands it back to the op (``saved=``). Ops keep nothing between calls. A
layer that a graph model calls at several places has its ``_cache`` saved after each call and put back before
that call's backward (``call_state``).

Under a mixed dtype policy (``xpcnn.mixed_precision``) the base class casts: a floating input to the dtype
the layer computes in (the policy's half dtype, or float32 for ``computes_in_float32`` layers), the output
gradient likewise, each parameter gradient back to its parameter's dtype (float32), and the input gradient
back to the input's dtype. A layer reads its parameters for computing through ``_param`` (cast to the
compute dtype); everything else about it stays dtype-blind.
"""

from __future__ import annotations

import collections
import contextlib
import contextvars
import math
import re
from collections.abc import Iterator, Mapping
from typing import Any, ClassVar

import array_api_compat

from ..backend import dtype_name, get_backend, half_dtype
from ..initializers import INITIALIZERS
from ..mixed_precision import Policy, as_policy, global_policy

__all__ = [
    "Layer", "cast_floating", "check_layer_name", "get_layer_class", "layer_spec", "make_layer", "parameter_limit",
]

_REGISTRY: dict[str, type[Layer]] = {}
_NAME_COUNTS: collections.Counter[str] = collections.Counter()  # per prefix, process-wide, as in Keras
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z0-9_]+)*")


def _default_name(class_name: str) -> str:
    """``conv2d``, then ``conv2d_1``, ``conv2d_2``, ... (Keras's scheme) from the class name."""
    prefix = re.sub(r"(?<!^)(?=[A-Z][a-z])", "_", class_name.lstrip("_")).lower()
    count = _NAME_COUNTS[prefix]
    _NAME_COUNTS[prefix] += 1
    return prefix if count == 0 else f"{prefix}_{count}"


def cast_floating(x: Any, dtype: Any) -> Any:
    """``x`` in ``dtype`` when it is a floating array of another dtype; integer and boolean arrays (labels,
    uint8 images) and arrays already in ``dtype`` come back as they are."""
    if x.dtype == dtype:
        return x
    xp = array_api_compat.array_namespace(x)
    return xp.astype(x, dtype) if xp.isdtype(x.dtype, "real floating") else x


def check_layer_name(name: Any, owner: str) -> str:
    """A layer name is an identifier (letters, digits, underscores), or several joined by dots as PyTorch
    names nested modules (``layer1.0.conv1``, ``features.3.block.0``), so that it is the path of a PyTorch
    submodule and a state-dict key prefix (a parameter's name holds no dot: a key splits at its last one)."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ValueError(f"{owner}: a layer name is letters, digits and underscores, not starting with a digit, "
                         f"or several such parts joined by dots (after the first, digits may start one); got "
                         f"{name!r}")
    return name


def get_layer_class(name: str) -> type[Layer]:
    """The layer class registered under ``name`` (its class name), for rebuilding saved models. Only public,
    concrete classes register: bases and private classes (``_ConvBase``, ...) cannot be named in a file."""
    if not isinstance(name, str) or name not in _REGISTRY:
        raise ValueError(f"unknown layer type {name!r:.60}; known: {sorted(_REGISTRY)}")
    return _REGISTRY[name]


def layer_spec(layer: Layer, named: bool) -> dict[str, Any]:
    """What a model's config holds of ``layer``: its class name, its name (in a graph), its config, and
    ``"trainable": False`` when it is frozen (configs of unfrozen models stay as they were)."""
    spec: dict[str, Any] = {"class_name": type(layer).__name__}
    if named:
        spec["name"] = layer.name
    spec["config"] = layer.get_config()
    if not layer.trainable:
        spec["trainable"] = False
    if layer.dtype_policy.mixed:
        spec["dtype_policy"] = layer.dtype_policy.name
    return spec


def make_layer(spec: Mapping[str, Any], where: str) -> Layer:
    """A layer from its saved ``{"class_name", "config", "name", "trainable", "dtype_policy"}`` (``trainable``
    only when False, ``dtype_policy`` only when mixed); a ValueError naming ``where`` when the class is unknown
    or its constructor refuses the config."""
    layer_cls = get_layer_class(spec["class_name"])
    try:
        layer = layer_cls(**spec.get("config", {}), name=spec.get("name"))
        layer.trainable = spec.get("trainable", True)
        layer.dtype_policy = spec.get("dtype_policy", "float32")
    except (TypeError, ValueError, OverflowError) as exc:  # OverflowError: float(10**400)
        raise ValueError(f"{where} ({spec['class_name']}): {exc}") from exc
    return layer


_LIMITS: contextvars.ContextVar[list[int | None] | None] = contextvars.ContextVar("parameter_limits", default=None)


@contextlib.contextmanager
def parameter_limit(max_elements: int, total: int | None = None) -> Iterator[None]:
    """Within the block, a layer refuses to create a parameter or buffer of more than ``max_elements`` values,
    or (with ``total``) more values than are left of ``total`` over all layers, before allocating it: what
    rebuilding a model from a file runs under (``load_model(max_array_elements=)``; ``total``, the values the
    file's weights hold)."""
    token = _LIMITS.set([int(max_elements), None if total is None else int(total)])
    try:
        yield
    finally:
        _LIMITS.reset(token)


class Layer:
    """Base class of every layer.

    ``params`` is the live dict read on every forward (assigning an entry replaces the parameter);
    ``grads`` has the same keys and is overwritten by ``backward``; ``buffers`` holds non-trained state.
    ``input_ndim`` is the number of per-sample axes the layer accepts (None: any).
    """

    input_ndim: ClassVar[int | tuple[int, ...] | None] = None
    #: Under a mixed policy, compute in float32 rather than the half dtype (softmax, sigmoid, preprocessing:
    #: what loses too much in half precision), as ``torch.autocast``'s float32 ops. Batch norm needs no flag:
    #: its op normalises a half-precision input in its float32 parameters' dtype.
    computes_in_float32: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if not cls.__name__.startswith("_"):
            _REGISTRY[cls.__name__] = cls

    def __init__(self, name: str | None = None) -> None:
        self.name = _default_name(type(self).__name__) if name is None else check_layer_name(name, type(self).__name__)
        self.params: dict[str, Any] = {}
        self.grads: dict[str, Any] = {}
        self.buffers: dict[str, Any] = {}
        self.input_shape: tuple[int, ...] | None = None
        self.output_shape: tuple[int, ...] | None = None
        self._cache: Any = None
        self._out_shape: tuple[int, ...] | None = None
        self.activation: str | None = None
        self._activation: Layer | None = None  # applied after ``_forward`` (``activation=`` of Conv2D, Dense)
        self._nodes: list[Any] = []  # its calls in graph models (xpcnn.layers.node.Node)
        self.trainable = True  # False: frozen (no updates, no optimizer slots; batch norm in inference mode)
        self._dtype_policy = global_policy()
        self._computing: Any = None  # under a mixed policy, the dtype of the running forward
        self._input_dtype: Any = None  # the latest training forward's input dtype, when it cast the input
        self._resolved: tuple[Any, Any] | None = None  # (backend, its half dtype) for the policy

    # --- the public contract ------------------------------------------------------------------------
    @property
    def built(self) -> bool:
        """Whether the parameters exist (``build`` ran, or the first forward did)."""
        return self.input_shape is not None

    def build(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        """Create parameters for per-sample ``input_shape`` (no batch axis); return the output shape.

        Parameters
        ----------
        input_shape : tuple of int
            One sample's shape, without the batch axis: ``(C, H, W)`` for images.

        Returns
        -------
        tuple of int
            One output sample's shape.

        Raises
        ------
        ValueError
            If the shape has the wrong number of axes for this layer or does not fit its configuration.

        Examples
        --------
        >>> from xpcnn.layers import Conv2D
        >>> Conv2D(8, 3, padding=1).build((3, 32, 32))
        (8, 32, 32)
        """
        shape = tuple(int(d) for d in input_shape)
        self._check_ndim(len(shape), f"per-sample input shape {shape}")
        self._check_input(shape)
        out = tuple(self._build(shape))
        self.input_shape, self.output_shape = shape, out
        return out

    def forward(self, x: Any, training: bool = False) -> Any:
        """The layer's output; with ``training=True`` it also keeps what ``backward`` needs.

        Parameters
        ----------
        x : array
            A batch, batch axis first, on the current backend. The first call builds the layer.
        training : bool, default False
            Training behaviour (dropout active, batch statistics) and keep what ``backward`` needs.

        Returns
        -------
        array
            The output batch.

        Raises
        ------
        TypeError
            If ``x`` is not an array.
        ValueError
            If ``x``'s shape does not fit the layer (axes, channels, a window larger than the input).
        """
        if not array_api_compat.is_array_api_obj(x):
            raise TypeError(f"{self._name()}: expected an array, got {type(x).__name__}")
        self._check_ndim(x.ndim - 1, f"input of shape {tuple(x.shape)} (batch axis first)")
        sample_shape = tuple(x.shape[1:])
        if self.built:
            self._check_input(sample_shape)
        else:
            self.build(sample_shape)
        input_dtype = x.dtype
        if self._dtype_policy.mixed:
            self._computing = self._compute_dtype()
            x = cast_floating(x, self._computing)
        y = self._forward(x, training)
        if self._activation is not None:
            y = self._activation.forward(y, training)
        if training:
            self._out_shape = tuple(y.shape)
            self._input_dtype = input_dtype if self._dtype_policy.mixed else None
        return y

    def backward(self, dy: Any) -> Any:
        """Input gradient for output gradient ``dy`` of the latest training forward; sets ``grads``.

        Parameters
        ----------
        dy : array
            The loss's gradient with respect to the latest training forward's output (its shape).

        Returns
        -------
        array or None
            The gradient with respect to that forward's input (None where a layer has no input gradient).

        Raises
        ------
        RuntimeError
            If no ``forward(x, training=True)`` came first.
        ValueError
            If ``dy``'s shape is not the output's.

        Examples
        --------
        >>> from xpcnn.layers import Dense
        >>> layer = Dense(2)
        >>> y = layer.forward(xpcnn.asarray(np.ones((4, 3))), training=True)
        >>> layer.backward(xpcnn.asarray(np.ones((4, 2)))).shape, sorted(layer.grads)
        ((4, 3), ['bias', 'weight'])
        """
        if self._out_shape is None:
            raise RuntimeError(f"{self._name()}: backward() needs a forward(x, training=True) first")
        if tuple(dy.shape) != self._out_shape:
            raise ValueError(
                f"{self._name()}: output gradient has shape {tuple(dy.shape)}, "
                f"but the last forward produced {self._out_shape}"
            )
        if self._activation is not None:
            dy = self._activation.backward(dy)
        if self._input_dtype is None:
            return self._backward(dy)
        dx = self._backward(cast_floating(dy, self._computing))
        self.grads = {key: cast_floating(g, self.params[key].dtype) for key, g in self.grads.items()}
        return None if dx is None else cast_floating(dx, self._input_dtype)

    def __call__(self, inputs: Any, training: bool = False) -> Any:
        """On arrays, ``forward``; on symbolic tensors (``xpcnn.Input``), a new node of a graph model."""
        from .node import call_symbolic, is_symbolic

        if is_symbolic(inputs):
            return call_symbolic(self, inputs)
        return self.forward(inputs, training)

    def call_state(self) -> Any:
        """What ``backward`` needs from the latest training forward: saved per call when a graph model calls
        this layer at several places, and put back (``restore_call_state``) before each call's backward."""
        act = None if self._activation is None else self._activation.call_state()
        return self._cache, self._out_shape, self._input_dtype, self._computing, act

    def restore_call_state(self, state: Any) -> None:
        """Put back what ``call_state`` returned, before that call's backward."""
        self._cache, self._out_shape, self._input_dtype, self._computing, act = state
        if self._activation is not None:
            self._activation.restore_call_state(act)

    @property
    def num_params(self) -> int:
        """The number of parameter values (buffers not counted)."""
        return sum(math.prod(p.shape) for p in self.params.values())

    @property
    def trainable(self) -> bool:
        """Whether training updates this layer's parameters (Keras's flag). A frozen layer gets no update and
        no optimizer slots, and a frozen batch norm normalises with its running statistics even in training,
        leaving them as they are (Keras's rule: fine-tuning a pretrained network keeps its statistics)."""
        return self._trainable

    @trainable.setter
    def trainable(self, value: bool) -> None:
        if not isinstance(value, bool):
            raise TypeError(f"{self._name()}: trainable must be True or False, got {value!r}")
        self._trainable = value

    @property
    def dtype_policy(self) -> Policy:
        """The layer's dtype policy (``xpcnn.mixed_precision``; the global one when it was created). Set it
        to a ``Policy`` or a name; the layers it runs inside itself (its activation) follow."""
        return self._dtype_policy

    @dtype_policy.setter
    def dtype_policy(self, value: Policy | str) -> None:
        policy = as_policy(value, f"{self._name()} {self.name!r}")
        for layer in (self, *self._inner_layers()):
            layer._dtype_policy, layer._resolved = policy, None

    @property
    def compute_dtype(self) -> str:
        """The dtype it computes in: the policy's half dtype, float32 for ``computes_in_float32`` layers under a
        mixed policy, else the backend's dtype."""
        policy = self._dtype_policy
        if not policy.mixed:
            return dtype_name(get_backend().dtype)
        return "float32" if self.computes_in_float32 else policy.compute_dtype

    def get_config(self) -> dict[str, Any]:
        """Constructor arguments that rebuild this layer (JSON-friendly)."""
        return {}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"

    # --- hooks for subclasses -----------------------------------------------------------------------
    def _build(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        return input_shape

    def _check_input(self, sample_shape: tuple[int, ...]) -> None:
        """Raise ValueError if a per-sample input of this shape cannot go through the layer."""

    def _forward(self, x: Any, training: bool) -> Any:
        raise NotImplementedError

    def _backward(self, dy: Any) -> Any:
        raise NotImplementedError

    # --- helpers for subclasses ---------------------------------------------------------------------
    def _name(self) -> str:
        return type(self).__name__

    def _inner_layers(self) -> list[Layer]:
        """The layers this one runs inside itself (its activation), which share its dtype policy."""
        return [] if self._activation is None else [self._activation]

    def _param(self, key: str) -> Any:
        """Parameter ``key`` (None if the layer has none) as the running forward computes with it: under a
        mixed policy a half-precision copy of the float32 master weight, cast anew at each forward."""
        p = self.params.get(key)
        if p is None or self._computing is None or not self._dtype_policy.mixed:
            return p
        return cast_floating(p, self._computing)

    def _compute_dtype(self) -> Any:
        """The namespace dtype of ``compute_dtype`` under a mixed policy (resolved once per backend: the
        backend may refuse the half dtype, with a ValueError saying why)."""
        backend = get_backend()
        if self._resolved is None or self._resolved[0] is not backend:
            half = half_dtype(self._dtype_policy.compute_dtype, backend)
            self._resolved = (backend, backend.dtype if self.computes_in_float32 else half)
        return self._resolved[1]

    def _check_ndim(self, ndim: int, what: str) -> None:
        allowed = self.input_ndim
        if allowed is None:
            return
        allowed = (allowed,) if isinstance(allowed, int) else allowed
        if ndim not in allowed:
            batch_ndims = " or ".join(str(a + 1) for a in allowed)
            raise ValueError(f"{self._name()}: expected {batch_ndims}-D input (batch axis first), got {what}")

    def _set_activation(self, activation: str | None) -> None:
        """Apply the named activation (``"relu"``, ``"sigmoid"``, ...) to this layer's output, as Keras's
        ``activation=``; None applies none."""
        from .activations import make_activation  # that module builds on this one

        self._activation = make_activation(activation, owner=self._name(), name=f"{self.name}_activation")
        self.activation = activation

    def _activation_config(self) -> dict[str, Any]:
        """``{"activation": name}`` when one is set (configs and reprs without it stay as they were)."""
        return {} if self.activation is None else {"activation": self.activation}

    def _drawn(self, shape: tuple[int, ...], initializer: str, fan_in: int, fan_out: int) -> Any:
        """A parameter drawn on the host by the named initializer (one seed, the same weights everywhere), on
        the current backend and device in its default dtype."""
        self._check_size(shape)
        backend = get_backend()
        host_values = INITIALIZERS[initializer](shape, fan_in, fan_out)
        return backend.xp.asarray(host_values.astype(dtype_name(backend.dtype)), device=backend.device)

    def _zeros(self, shape: tuple[int, ...]) -> Any:
        self._check_size(shape)
        backend = get_backend()
        return backend.xp.zeros(shape, dtype=backend.dtype, device=backend.device)

    def _ones(self, shape: tuple[int, ...]) -> Any:
        self._check_size(shape)
        backend = get_backend()
        return backend.xp.ones(shape, dtype=backend.dtype, device=backend.device)

    def _check_size(self, shape: tuple[int, ...]) -> None:
        limits = _LIMITS.get()
        if limits is None:
            return
        count, (limit, left) = math.prod(shape), limits
        if count > limit:
            raise ValueError(f"{self._name()} {self.name!r}: a parameter of shape {tuple(shape)} would hold "
                             f"{count:,} values, more than the limit of {limit:,} per array "
                             "(raise it with max_array_elements= if the model really is that large)")
        if left is not None:
            if count > left:
                raise ValueError(f"{self._name()} {self.name!r}: a parameter of shape {tuple(shape)} would take "
                                 "the model past the values its file's weights hold")
            limits[1] = left - count
