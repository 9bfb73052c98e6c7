"""The shape of an xpcnn file's config, checked field by field before anything is built from it.

Every refusal is a ``ValueError`` that names the file and the field (``architecture.layers[2].class_name``),
so a damaged or hostile file never surfaces as a ``TypeError``, ``KeyError`` or a bare "invalid literal for
int()". The values inside a layer's own ``config`` are checked by the layer's constructor; the loader names
the field when it refuses them. One check reaches every field, a layer's config included: an integer too long
for Python to convert (``sys.get_int_max_str_digits``) is parsed (``loads_config``) as a ``LongInteger`` and
refused by its field's name before anything else is looked at.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from typing import Any

from ..layers.base import get_layer_class

__all__ = ["FORMAT_MODEL", "FORMAT_VERSION", "FORMAT_WEIGHTS", "LongInteger", "check_architecture", "check_config",
           "loads_config"]

FORMAT_MODEL = "xpcnn.model"
FORMAT_WEIGHTS = "xpcnn.weights"
FORMAT_VERSION = 1
MAX_DIMS = 8  # per-sample axes of an input shape
MAX_EXTENT = 2**31  # one axis of an input shape
MAX_ITEMS = 100_000  # layers, nodes, weights or optimizer entries


class LongInteger:
    """An integer in a file's JSON with more digits than Python converts to ``int``: kept as this marker, so
    that the schema refuses it by field name instead of ``json.loads`` failing with a bare conversion error."""

    __slots__ = ("digits",)

    def __init__(self, digits: int) -> None:
        self.digits = digits

    def __repr__(self) -> str:
        return f"<a {self.digits}-digit number>"


def _parse_int(text: str) -> int | LongInteger:
    try:
        return int(text)
    except ValueError:  # more digits than sys.get_int_max_str_digits()
        return LongInteger(len(text.lstrip("-")))


def loads_config(text: str | bytes) -> Any:
    """``json.loads``, an over-long integer parsed as a ``LongInteger`` (raises ``json.JSONDecodeError``)."""
    return json.loads(text, parse_int=_parse_int)


class _Checker:
    def __init__(self, path: str) -> None:
        self.path = path

    def fail(self, field: str, problem: str) -> ValueError:
        return ValueError(f"{self.path}: field {field} {problem} (damaged or foreign file)")

    def no_long_integers(self, value: Any, field: str) -> None:
        """Refuse the first ``LongInteger`` anywhere in ``value``, named by its field (walked without recursion:
        the safetensors metadata's JSON is not bounded in depth before it is parsed)."""
        stack = [(value, field)]
        while stack:
            value, field = stack.pop()
            if isinstance(value, LongInteger):
                raise self.fail(field, f"holds an integer Python cannot read: got a {value.digits}-digit number "
                                       f"(the limit is {sys.get_int_max_str_digits()} digits)")
            if isinstance(value, dict):
                stack.extend((v, f"{field}.{k}" if k.isidentifier() else f"{field}[{k!r}]")
                             for k, v in reversed(value.items()))
            elif isinstance(value, list):
                stack.extend((v, f"{field}[{i}]") for i, v in reversed(list(enumerate(value))))

    def dict(self, value: Any, field: str) -> Mapping[str, Any]:
        if not isinstance(value, dict):
            raise self.fail(field, f"must be an object, got {type(value).__name__}")
        if len(value) > MAX_ITEMS:
            raise self.fail(field, f"holds {len(value):,} entries, more than {MAX_ITEMS:,}")
        return value

    def list(self, value: Any, field: str) -> list[Any]:
        if not isinstance(value, list):
            raise self.fail(field, f"must be a list, got {type(value).__name__}")
        if len(value) > MAX_ITEMS:
            raise self.fail(field, f"holds {len(value):,} items, more than {MAX_ITEMS:,}")
        return value

    def str(self, value: Any, field: str) -> str:
        if not isinstance(value, str):
            raise self.fail(field, f"must be a string, got {type(value).__name__}")
        return value

    def int(self, value: Any, field: str, low: int = 0, high: int | None = None) -> int:
        if not isinstance(value, int) or isinstance(value, bool):
            raise self.fail(field, f"must be an integer, got {type(value).__name__} {value!r:.40}")
        if value < low or (high is not None and value > high):
            raise self.fail(field, f"must lie in [{low}, {high if high is not None else 'inf'}], got {value}")
        return value

    def names(self, value: Any, field: str) -> None:
        """An object mapping keys to the names of arrays in the file."""
        for key, name in self.dict(value, field).items():
            self.str(name, f"{field}[{key!r}]")

    def shape(self, value: Any, field: str) -> None:
        dims = self.list(value, field)
        if not 1 <= len(dims) <= MAX_DIMS:
            raise self.fail(field, f"must hold 1 to {MAX_DIMS} axes, got {len(dims)}")
        for i, d in enumerate(dims):
            self.int(d, f"{field}[{i}]", 1, MAX_EXTENT)

    def layer(self, spec: Any, field: str, named: bool) -> None:
        spec = self.dict(spec, field)
        class_name = self.str(spec.get("class_name"), f"{field}.class_name")
        try:
            get_layer_class(class_name)
        except ValueError as exc:
            raise self.fail(f"{field}.class_name", str(exc)) from None
        if named or spec.get("name") is not None:
            self.str(spec.get("name"), f"{field}.name")
        if not isinstance(spec.get("trainable", True), bool):
            raise self.fail(f"{field}.trainable", "must be true or false")
        self.dict(spec.get("config", {}), f"{field}.config")


def check_config(config: Mapping[str, Any], path: str) -> None:
    """Refuse a config whose fields do not have the types and ranges xpcnn writes (see the module docstring)."""
    check = _Checker(path)
    for key, value in config.items():
        check.no_long_integers(value, key)
    kind = config.get("format")
    if kind not in (FORMAT_MODEL, FORMAT_WEIGHTS):
        raise ValueError(f"{path} is not an xpcnn model/weights file (unknown format {kind!r:.60})")
    version = config.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise check.fail("version", f"must be a positive integer, got {version!r:.40}")
    if version > FORMAT_VERSION:
        raise ValueError(f"{path} was written in file format version {version}; this xpcnn reads up to "
                         f"{FORMAT_VERSION}: upgrade xpcnn")
    _check_architecture(check, config.get("architecture"))
    check.names(config.get("weights"), "weights")
    if kind == FORMAT_WEIGHTS:
        return
    check.int(config.get("epoch", 0), "epoch")
    state = config.get("random_state")
    if state is not None:
        state = check.dict(state, "random_state")
        check.int(state.get("seed"), "random_state.seed", 0, 2**63 - 1)  # what manual_seed and the backends take
        check.int(state.get("counter"), "random_state.counter", 0, 2**32 - 1)  # JAX folds it in as uint32
    if config.get("compile") is not None:
        _check_compile(check, config["compile"])
    if config.get("optimizer_state") is not None:
        opt = check.dict(config["optimizer_state"], "optimizer_state")
        check.int(opt.get("iterations"), "optimizer_state.iterations")
        for key, step in check.dict(opt.get("steps", {}), "optimizer_state.steps").items():
            check.int(step, f"optimizer_state.steps[{key!r}]")
        for key, slots in check.dict(opt.get("state"), "optimizer_state.state").items():
            check.names(slots, f"optimizer_state.state[{key!r}]")


def check_architecture(arch: Any, path: str) -> None:
    """The ``architecture`` field: a Sequential's layers and input shape, or a graph's layers and nodes."""
    check = _Checker(path)
    check.no_long_integers(arch, "architecture")
    _check_architecture(check, arch)


def _check_architecture(check: _Checker, arch: Any) -> None:
    arch = check.dict(arch, "architecture")
    check.str(arch.get("name", ""), "architecture.name")
    layers = check.list(arch.get("layers"), "architecture.layers")
    graph = arch.get("class_name") == "Model"
    for i, spec in enumerate(layers):
        check.layer(spec, f"architecture.layers[{i}]", named=graph)
    if not graph:
        if arch.get("input_shape") is not None:
            check.shape(arch["input_shape"], "architecture.input_shape")
        return
    calls: dict[str, int] = {}
    known = {spec["name"] for spec in layers}
    for i, node in enumerate(check.list(arch.get("nodes"), "architecture.nodes")):
        field = f"architecture.nodes[{i}]"
        node = check.dict(node, field)
        name = check.str(node.get("layer"), f"{field}.layer")
        if name not in known:
            raise check.fail(f"{field}.layer", f"names layer {name!r:.60}, which the architecture does not list")
        for j, ref in enumerate(check.list(node.get("inbound", []), f"{field}.inbound")):
            _check_ref(check, ref, f"{field}.inbound[{j}]", calls)
        calls[name] = calls.get(name, 0) + 1
    for end in ("inputs", "outputs"):
        refs = arch.get(end)
        several = isinstance(refs, list) and bool(refs) and isinstance(refs[0], list)
        for j, ref in enumerate(refs if several else [refs]):
            _check_ref(check, ref, f"architecture.{end}" + (f"[{j}]" if several else ""), calls)


def _check_ref(check: _Checker, ref: Any, field: str, calls: Mapping[str, int]) -> None:
    """``[layer name, call index]`` of a call made earlier in the node list."""
    ref = check.list(ref, field)
    if len(ref) != 2:
        raise check.fail(field, f"must be [layer name, call index], got {len(ref)} items")
    name = check.str(ref[0], f"{field}[0]")
    check.int(ref[1], f"{field}[1]", 0, max(calls.get(name, 0) - 1, 0))
    if calls.get(name, 0) == 0:
        raise check.fail(field, f"reads layer {name!r:.60} before any node calls it")


def _check_compile(check: _Checker, spec: Any) -> None:
    spec = check.dict(spec, "compile")
    losses = spec.get("loss")
    for j, loss in enumerate(losses if isinstance(losses, list) else [losses]):
        field = "compile.loss" + (f"[{j}]" if isinstance(losses, list) else "")
        loss = check.dict(loss, field)
        check.str(loss.get("name"), f"{field}.name")
        check.dict(loss.get("config") or {}, f"{field}.config")
    optimizer = check.dict(spec.get("optimizer"), "compile.optimizer")
    check.str(optimizer.get("name"), "compile.optimizer.name")
    metrics = check.list(spec.get("metrics", []), "compile.metrics")
    if len({isinstance(metric, list) for metric in metrics}) > 1:
        raise check.fail("compile.metrics", "must be a list of metrics or a list of lists (one per output), not both")
    for j, metric in enumerate(metrics):
        group = metric if isinstance(metric, list) else [metric]
        for k, one in enumerate(group):
            field = f"compile.metrics[{j}]" + (f"[{k}]" if isinstance(metric, list) else "")
            one = check.dict(one, field)
            if one.get("class_name") is not None:
                check.str(one["class_name"], f"{field}.class_name")
                check.dict(one.get("config") or {}, f"{field}.config")
    weights = spec.get("loss_weights")
    if weights is not None and not isinstance(weights, (list, dict)):
        raise check.fail("compile.loss_weights", f"must be a list, an object or null, got {type(weights).__name__}")
