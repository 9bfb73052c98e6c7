"""``Sequential``: a stack of layers with a Keras-like training API and PyTorch-compatible state dicts.

Training never waits for the host between batches: a ``DataLoader`` moves the data to the device once and
shuffles there, the loss and the metrics of a batch stay 0-d device arrays, and the epoch totals are device
sums weighted by the batch size, read back once at the end of the epoch. Everything that reads values on the
host (label ranges, shapes) happens once, before training starts, and before any state changes.

Parameter keys follow ``torch.nn.Sequential``: ``"<layer index>.<name>"`` (``"0.weight"``, ``"3.bias"``,
``"1.running_mean"``), so ``model.load_state_dict(torch_model.state_dict())`` works for the same stack.
"""

from __future__ import annotations

import copy
import math
import numbers
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import array_api_compat
import numpy as np

from . import losses as losses_module
from . import metrics as metrics_module
from . import optimizers as optimizers_module
from . import random
from .backend import asarray, copy_array, dtype_name, get_backend, to_numpy
from .callbacks import CallbackList, History, ProgressBar
from .data import DataLoader
from .layers.base import Layer, get_layer_class
from .layers.fusion import Step, fuse

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


def _as_data(a: Any, name: str) -> Any:
    """An array of any backend kept as is; anything else (lists, NumPy) as a NumPy array."""
    if a is None:
        raise ValueError(f"{name} is required")
    if not array_api_compat.is_array_api_obj(a):
        a = np.asarray(a)
    if a.ndim == 0:
        raise ValueError(f"{name} must have a leading sample axis, got a 0-d array")
    if a.shape[0] == 0:
        raise ValueError(f"{name} holds no samples (shape {tuple(a.shape)})")
    return a


def _check_inputs(x: Any, name: str = "x") -> Any:
    """Model inputs must be floating: integer images would fail deep inside the first layer."""
    floating = (np.issubdtype(x.dtype, np.floating) if isinstance(x, np.ndarray)
                else array_api_compat.array_namespace(x).isdtype(x.dtype, "real floating"))
    if not floating:
        raise ValueError(f"{name} must hold floating-point values, got dtype {dtype_name(x.dtype)}; convert it "
                         "first, e.g. images.astype('float32') / 255")
    return x


def _check_int(value: Any, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def _is_integer_dtype(a: Any) -> bool:
    if isinstance(a, np.ndarray):
        return bool(np.issubdtype(a.dtype, np.integer))
    xp = array_api_compat.array_namespace(a)
    return bool(xp.isdtype(a.dtype, "integral"))


def _reshape(a: Any, shape: tuple[int, ...]) -> Any:
    if isinstance(a, np.ndarray):
        return a.reshape(shape)
    return array_api_compat.array_namespace(a).reshape(a, shape)


class Sequential:
    """A linear stack of layers.

    ``input_shape`` is per sample (no batch axis), e.g. ``(1, 28, 28)``; when given every layer is built at
    once (so ``summary`` works), else on the first forward. ``params``, ``grads`` and ``buffers`` are dicts
    over all layers keyed like ``torch.nn.Sequential`` (``"0.weight"``).
    """

    def __init__(self, layers: Iterable[Layer] | None = None, input_shape: Any = None, name: str = "sequential"):
        self.layers: list[Layer] = []
        self.name = str(name)
        self.input_shape: tuple[int, ...] | None = None
        self.output_shape: tuple[int, ...] | None = None
        self.loss: Any = None
        self.optimizer: Any = None
        self.metrics: list[Any] = []
        self.stop_training = False
        self.epoch = 0  # number of epochs completed by fit (saved in checkpoints)
        self.history: Any = None
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

    def _infer_output_shape(self, sample_shape: tuple[int, ...]) -> tuple[int, ...]:
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

    def backward(self, dy: Array) -> Array:
        """Back-propagate the output gradient ``dy`` of the latest training forward; sets every layer's grads."""
        for step in reversed(self._steps if self._steps is not None else self.layers):
            dy = step.backward(dy)
        return dy

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
        from .io import _import_layer_modules  # io imports this module: import it late

        _import_layer_modules()
        layers = []
        for spec in config["layers"]:
            layer_cls = get_layer_class(spec["class_name"])
            layers.append(layer_cls(**spec.get("config", {})))
        return cls(layers, input_shape=config.get("input_shape"), name=config.get("name", "sequential"))

    def __repr__(self) -> str:
        inner = ", ".join(repr(layer) for layer in self.layers)
        return f"Sequential([{inner}], input_shape={self.input_shape})"

    # --- compile -----------------------------------------------------------------------------------------
    def compile(self, loss: Any, optimizer: Any, metrics: Any = None) -> None:
        """Choose the loss (object or name), the optimizer (object or name) and the metrics to report.

        Metrics: ``"accuracy"`` (binary accuracy with binary cross-entropy), ``"top_k_accuracy"`` (k=5,
        reported as ``"top_5_accuracy"``) or ``xpcnn.metrics.TopKAccuracy(k)``.
        """
        loss_obj = losses_module.get(loss)
        opt = optimizers_module.get(optimizer)
        if metrics is None:
            metrics = []
        elif isinstance(metrics, (str, metrics_module.Metric)):
            metrics = [metrics]
        metric_objs = [metrics_module.get(m, loss_obj) for m in metrics]
        names = [m.name for m in metric_objs]
        for n in names:
            if n == "loss" or n.startswith("val_") or names.count(n) > 1:
                raise ValueError(f"metric names must be unique, not 'loss' and not start with 'val_'; got {names}")
        self.loss, self.optimizer, self.metrics = loss_obj, opt, metric_objs

    @property
    def compiled(self) -> bool:
        return self.loss is not None and self.optimizer is not None

    def _require_compiled(self, what: str) -> None:
        if not self.compiled:
            raise RuntimeError(f"{self.name}: call compile(loss=..., optimizer=...) before {what}()")

    @property
    def metrics_names(self) -> list[str]:
        return ["loss", *(m.name for m in self.metrics)]

    # --- host checks (once per call, before any state changes) --------------------------------------
    def _prepare_targets(self, x: Any, y: Any, xname: str = "x", yname: str = "y") -> Any:
        """Check ``x``/``y`` against each other, the model and the loss on the host; return ``y`` (reshaped
        to the model's output shape where a regression/binary target came flat)."""
        if x.shape[0] != y.shape[0]:
            raise ValueError(
                f"{xname} and {yname} must have the same length (number of samples): {xname} has {x.shape[0]} "
                f"(shape {tuple(x.shape)}), {yname} has {y.shape[0]} (shape {tuple(y.shape)})"
            )
        out = self._infer_output_shape(tuple(x.shape[1:]))
        loss_name = getattr(self.loss, "name", None)
        n = int(y.shape[0])
        if loss_name == "cross_entropy":
            if len(out) != 1:
                raise ValueError(f"cross_entropy needs a model output of shape (classes,) per sample; this model "
                                 f"outputs {out}")
            classes = out[0]
            if y.ndim == 1:
                if not _is_integer_dtype(y):
                    raise ValueError(f"{yname}: 1-D targets for cross_entropy are class labels and must be integers, "
                                     f"got dtype {dtype_name(y.dtype)}; give one-hot targets as (N, {classes})")
                labels = np.asarray(to_numpy(y))
                bad = (labels < 0) | (labels >= classes)
                if bad.any():
                    where = np.flatnonzero(bad)
                    raise ValueError(
                        f"{yname}: integer labels must lie in [0, {classes}) (the model has {classes} outputs); "
                        f"found {where.size} outside, e.g. {labels[where[0]]} at index {where[0]} "
                        f"(min {labels.min()}, max {labels.max()})"
                    )
            elif tuple(y.shape[1:]) != out:
                raise ValueError(f"{yname}: cross_entropy takes integer labels ({n},) or one-hot targets "
                                 f"({n}, {classes}); got shape {tuple(y.shape)}")
            return y
        # binary cross-entropy, MSE, other losses: targets shaped like the outputs
        if tuple(y.shape[1:]) != out:
            if math.prod(y.shape[1:]) == math.prod(out):
                y = _reshape(y, (n, *out))
            else:
                raise ValueError(f"{yname}: targets of shape {tuple(y.shape)} do not match the model's outputs "
                                 f"({n}, {', '.join(map(str, out))})")
        if loss_name == "binary_cross_entropy" and _is_integer_dtype(y):
            labels = np.asarray(to_numpy(y))
            if labels.size and (labels.min() < 0 or labels.max() > 1):
                raise ValueError(f"{yname}: binary_cross_entropy takes 0/1 labels, found values in "
                                 f"[{labels.min()}, {labels.max()}]")
        return y

    # --- one step ------------------------------------------------------------------------------------
    def _train_step(self, xb: Array, yb: Array) -> dict[str, Array]:
        pred = self.forward(xb, training=True)
        loss = self.loss.forward(pred, yb)
        self.backward(self.loss.backward())
        self.set_params(self.optimizer.step(self.params, self.grads))
        logs = {"loss": loss}
        for metric in self.metrics:
            logs[metric.name] = metric(pred, yb)
        return logs

    def _test_step(self, xb: Array, yb: Array) -> dict[str, Array]:
        pred = self.forward(xb, training=False)
        logs = {"loss": self.loss.forward(pred, yb)}
        for metric in self.metrics:
            logs[metric.name] = metric(pred, yb)
        return logs

    def train_on_batch(self, x: Any, y: Any) -> dict[str, Array]:
        """One optimisation step on one batch; returns ``{"loss": ..., <metric>: ...}`` as 0-d DEVICE arrays.

        Nothing is read back: call ``float()`` on the values only when you log them. Host-side label
        checks run only for NumPy/list targets (free there); device targets are not inspected.
        """
        self._require_compiled("train_on_batch")
        xb, yb = self._batch(x, y)
        return self._train_step(xb, yb)

    def test_on_batch(self, x: Any, y: Any) -> dict[str, Array]:
        """Loss and metrics of one batch in inference mode, as 0-d device arrays (no update)."""
        self._require_compiled("test_on_batch")
        xb, yb = self._batch(x, y)
        return self._test_step(xb, yb)

    def _batch(self, x: Any, y: Any) -> tuple[Array, Array]:
        x, y = _check_inputs(_as_data(x, "x")), _as_data(y, "y")
        if isinstance(y, np.ndarray):
            y = self._prepare_targets(x, y)
        elif x.shape[0] != y.shape[0]:
            raise ValueError(f"x and y must have the same length, got {x.shape[0]} and {y.shape[0]}")
        xb = asarray(x)
        if not self.built:
            self.build(tuple(xb.shape[1:]))
        return xb, asarray(y)

    # --- epoch bookkeeping ---------------------------------------------------------------------------
    @staticmethod
    def _accumulate(sums: dict[str, Array] | None, logs: Mapping[str, Array], size: int) -> dict[str, Array]:
        if sums is None:
            return {k: v * size for k, v in logs.items()}
        return {k: sums[k] + v * size for k, v in logs.items()}

    @staticmethod
    def _read_means(groups: Sequence[tuple[str, dict[str, Array] | None, int]]) -> dict[str, float]:
        """Divide device sums by their sample counts, reading all of them back in ONE host transfer."""
        backend = get_backend()
        xp = backend.xp
        keys, values = [], []
        for prefix, sums, count in groups:
            if not sums:
                continue
            for k, v in sums.items():
                keys.append((prefix + k, count))
                values.append(xp.astype(xp.reshape(v, ()), backend.dtype) if v.dtype != backend.dtype
                              else xp.reshape(v, ()))
        if not values:
            return {}
        host = np.asarray(to_numpy(xp.stack(values)), dtype=np.float64)
        return {key: float(host[i]) / count for i, (key, count) in enumerate(keys)}

    def _evaluate_sums(self, loader: DataLoader, cbs: Any = None) -> tuple[dict[str, Array] | None, int]:
        sums, seen = None, 0
        for step, (xb, yb) in enumerate(loader):
            size = int(xb.shape[0])
            if cbs is not None:
                cbs.on_test_batch_begin(step, {"size": size})
            logs = self._test_step(xb, yb)
            sums = self._accumulate(sums, logs, size)
            seen += size
            if cbs is not None:
                cbs.on_test_batch_end(step, {**logs, "size": size})
        return sums, seen

    # --- fit / evaluate / predict --------------------------------------------------------------------
    def fit(
        self,
        x: Any,
        y: Any,
        batch_size: int = 32,
        epochs: int = 1,
        validation_data: Any = None,
        validation_split: float = 0.0,
        shuffle: bool = True,
        callbacks: Sequence[Any] | None = None,
        verbose: int = 1,
        initial_epoch: int = 0,
    ) -> Any:
        """Train for ``epochs - initial_epoch`` epochs; return a ``History`` (``history.history["loss"]`` ...).

        ``x``/``y``: NumPy arrays, lists, or arrays of the current backend. ``validation_split`` holds out
        the LAST fraction of the samples (before shuffling), like Keras; ``validation_data=(x_val, y_val)``
        takes precedence. ``verbose``: 0 silent, 1 progress bar, 2 one line per epoch.
        With an optimizer that averages the weights (``use_ema=True``) the epochs train and validate the
        raw weights, and the model holds the averaged ones when a ``fit`` that took a step returns (Keras's
        behaviour; batch-norm running statistics stay those gathered with the raw weights).
        Raises ValueError before anything changes when x and y differ in length or labels are out of range.
        """
        self._require_compiled("fit")
        batch_size = _check_int(batch_size, "batch_size", 1)
        epochs = _check_int(epochs, "epochs", 0)
        initial_epoch = _check_int(initial_epoch, "initial_epoch", 0)
        if not isinstance(validation_split, numbers.Real) or not 0.0 <= float(validation_split) < 1.0:
            raise ValueError(f"validation_split must be a float in [0, 1), got {validation_split!r}")
        if verbose not in (0, 1, 2):
            raise ValueError(f"verbose must be 0, 1 or 2, got {verbose!r}")
        x, y = _check_inputs(_as_data(x, "x")), _as_data(y, "y")
        y = self._prepare_targets(x, y)
        val = None
        if validation_data is not None:
            if not isinstance(validation_data, (tuple, list)) or len(validation_data) != 2:
                raise ValueError("validation_data must be a pair (x_val, y_val)")
            vx = _check_inputs(_as_data(validation_data[0], "x_val"), "x_val")
            vy = _as_data(validation_data[1], "y_val")
            vy = self._prepare_targets(vx, vy, "x_val", "y_val")
            val = (vx, vy)
        elif validation_split > 0.0:
            n = int(x.shape[0])
            split_at = int(n * (1.0 - float(validation_split)))
            if split_at < 1 or split_at >= n:
                raise ValueError(f"validation_split={validation_split} leaves no training or no validation "
                                 f"samples out of {n}")
            val = (x[split_at:, ...], y[split_at:, ...])
            x, y = x[:split_at, ...], y[:split_at, ...]
        callback_list = list(callbacks or [])
        for cb in callback_list:
            if not hasattr(cb, "set_model"):
                raise TypeError(f"callbacks must be xpcnn.callbacks.Callback objects, got {type(cb).__name__}")

        # --- from here on, state changes ---
        if not self.built:
            self.build(tuple(x.shape[1:]))
        loader = DataLoader(x, y, batch_size=batch_size, shuffle=shuffle)
        val_loader = None if val is None else DataLoader(val[0], val[1], batch_size=batch_size, shuffle=False)
        history = History()
        if verbose:
            callback_list.insert(0, ProgressBar(verbose=verbose))
        callback_list.append(history)
        cbs = CallbackList(callback_list, model=self, params={
            "epochs": epochs, "steps": len(loader), "batch_size": batch_size, "samples": loader.num_samples,
            "verbose": verbose, "metrics": self.metrics_names,
        })
        self.history = history
        self.stop_training = False
        cbs.on_train_begin({})
        epoch_logs: dict[str, float] = {}
        first_iteration = self.optimizer.iterations
        for epoch in range(initial_epoch, epochs):
            cbs.on_epoch_begin(epoch, {})
            sums, seen = None, 0
            for step, (xb, yb) in enumerate(loader):
                size = int(xb.shape[0])
                cbs.on_train_batch_begin(step, {"size": size})
                logs = self._train_step(xb, yb)
                sums = self._accumulate(sums, logs, size)
                seen += size
                cbs.on_train_batch_end(step, {**logs, "size": size})
                if self.stop_training:
                    break
            groups = [("", sums, seen)]
            if val_loader is not None:
                cbs.on_test_begin({})
                val_sums, val_seen = self._evaluate_sums(val_loader, cbs)
                groups.append(("val_", val_sums, val_seen))
            epoch_logs = self._read_means(groups)
            if val_loader is not None:
                cbs.on_test_end({k[4:]: v for k, v in epoch_logs.items() if k.startswith("val_")})
            epoch_logs["lr"] = float(self.optimizer.lr)
            self.epoch = epoch + 1
            cbs.on_epoch_end(epoch, epoch_logs)
            if self.stop_training:
                break
        trained = self.optimizer.iterations > first_iteration
        if trained and self.optimizer.use_ema:  # as in Keras, before on_train_end (EarlyStopping may restore)
            self.set_params(self.optimizer.averaged_params(self.params))
        cbs.on_train_end(dict(epoch_logs))
        return history

    def evaluate(self, x: Any, y: Any, batch_size: int = 32, verbose: int = 0,
                 callbacks: Sequence[Any] | None = None) -> dict[str, float]:
        """Loss and metrics over ``(x, y)`` in inference mode: ``{"loss": float, "accuracy": float, ...}``.

        The batch values are summed on the device and read back once.
        """
        self._require_compiled("evaluate")
        batch_size = _check_int(batch_size, "batch_size", 1)
        if verbose not in (0, 1, 2):
            raise ValueError(f"verbose must be 0, 1 or 2, got {verbose!r}")
        x, y = _check_inputs(_as_data(x, "x")), _as_data(y, "y")
        y = self._prepare_targets(x, y)
        if not self.built:
            self.build(tuple(x.shape[1:]))
        loader = DataLoader(x, y, batch_size=batch_size, shuffle=False)
        callback_list = list(callbacks or [])
        if verbose:
            callback_list.insert(0, ProgressBar(verbose=verbose))
        cbs = CallbackList(callback_list, model=self, params={"steps": len(loader), "verbose": verbose,
                                                               "batch_size": batch_size})
        cbs.on_test_begin({})
        sums, seen = self._evaluate_sums(loader, cbs)
        result = self._read_means([("", sums, seen)])
        cbs.on_test_end(dict(result))
        return result

    def predict(self, x: Any, batch_size: int = 32, verbose: int = 0) -> Array:
        """The outputs for every sample of ``x``, concatenated on the device (an array of the current backend)."""
        batch_size = _check_int(batch_size, "batch_size", 1)
        x = _check_inputs(_as_data(x, "x"))
        self._infer_output_shape(tuple(x.shape[1:]))  # a clear error before anything changes
        if not self.built:
            self.build(tuple(x.shape[1:]))
        loader = DataLoader(x, None, batch_size=batch_size, shuffle=False)
        outputs = [self.forward(xb, training=False) for xb in _maybe_progress(loader, verbose, "predict")]
        if len(outputs) == 1:
            return outputs[0]
        return get_backend().xp.concat(outputs, axis=0)

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


def _maybe_progress(loader: DataLoader, verbose: int, desc: str) -> Iterable[Any]:
    if not verbose:
        return loader
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return loader
    return tqdm(loader, total=len(loader), desc=desc, leave=False)
