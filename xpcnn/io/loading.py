"""Reading model and weights files within a budget (see ``xpcnn.io`` for the format).

The config is checked field by field (``schema``) before anything is built; the architecture is rebuilt with
a limit on the values of any one parameter (``max_array_elements``), refused before it is allocated; each
array is read only when the model asks for it, after its header matched the shape expected (``archive``).
Before that, every array the config names is checked against its zip CRC-32 (``Archive.verify``), those the
loader would not read included. A model given to ``load_weights`` is left unchanged by every refusal.
"""

from __future__ import annotations

import copy
import json
import math
import os
import warnings
from collections.abc import Mapping
from typing import Any

from .. import losses as losses_module
from .. import metrics as metrics_module
from .. import optimizers as optimizers_module
from .. import random
from ..layers.base import parameter_limit
from ..model import LayerGraph, Model, Sequential
from .archive import Archive, ArchiveMember
from .safetensors import read_safetensors
from .saving import is_safetensors
from .schema import FORMAT_MODEL, check_architecture, check_config, loads_config
from .torch_checkpoint import is_torch_checkpoint, load_torch_checkpoint

__all__ = ["MAX_ARRAY_ELEMENTS", "load_model", "load_weights"]

MAX_ARRAY_ELEMENTS = 2**31  # values in any one parameter a file may ask for, unless the caller raises it


def _weights_of(archive: Archive) -> dict[str, ArchiveMember]:
    return {str(key): archive.member(name, f"weights[{key!r}]") for key, name in archive.config["weights"].items()}


def _named_arrays(config: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Every array a checked config names, with the field that names it: weights, then optimizer slots."""
    named = [(name, f"weights[{key!r}]") for key, name in config["weights"].items()]
    state = (config.get("optimizer_state") or {}).get("state", {}) if config["format"] == FORMAT_MODEL else {}
    named += [(name, f"optimizer_state.state[{key!r}][{slot!r}]")
              for key, slots in state.items() for slot, name in slots.items()]
    return named


def _open_checked(path: str) -> Archive:
    """The file open, its config checked field by field and every array it names checked against its CRC-32."""
    archive = Archive(path)
    try:
        check_config(archive.config, path)
        archive.verify(_named_arrays(archive.config))
    except BaseException:
        archive.__exit__()
        raise
    return archive


def _prefix_classes(config: Mapping[str, Any]) -> dict[str, str] | None:
    """The class name of the layer behind each key prefix in a saved architecture (index or layer name)."""
    arch = config.get("architecture")
    if not isinstance(arch, dict):
        return None
    if arch.get("class_name") == "Model":
        return {str(spec["name"]): str(spec["class_name"]) for spec in arch["layers"]}
    return {str(i): str(spec["class_name"]) for i, spec in enumerate(arch["layers"])}


def load_weights(model: LayerGraph, path: Any) -> None:
    """Load parameters and buffers saved by ``save_weights`` or ``save`` (or a ``.safetensors`` file, or a
    PyTorch checkpoint) into ``model``.

    The file must come from the same architecture (layer types holding weights, keys and shapes); else a
    ValueError says what differs and the model is left untouched. An unbuilt model is built with the input
    shape recorded in the file. A PyTorch checkpoint (``torch.save(model.state_dict(), path)``, recognised by
    its first bytes, or a ``.pt``/``.pth`` file that is no zip) is read by ``load_torch_checkpoint``: its state
    dict, or the one it holds under ``"state_dict"`` or ``"model"``, keys without a ``"module."`` prefix; it
    records no input shape, so the model must be built.

    Parameters
    ----------
    model : Sequential or Model
    path : str or os.PathLike

    Raises
    ------
    TypeError
        If ``model`` is not an xpcnn model.
    FileNotFoundError
        If there is no such file.
    ValueError
        If the file does not fit the model (the model is then left untouched) or fails a check.
    """
    if not isinstance(model, LayerGraph):
        raise TypeError(f"load_weights takes an xpcnn model (Sequential or Model), got {type(model).__name__}")
    path = os.fspath(path)
    if is_safetensors(path):
        if not os.path.exists(path):
            raise FileNotFoundError(f"no such file: {path}")
        weights, metadata = read_safetensors(path)
        _load_into(model, _safetensors_config(metadata, path), weights, path)
        return
    if is_torch_checkpoint(path):
        _load_into(model, {}, load_torch_checkpoint(path), path)
        return
    with _open_checked(path) as archive:
        _load_into(model, archive.config, _weights_of(archive), path)


def _safetensors_config(metadata: Mapping[str, str], path: str) -> dict[str, Any]:
    """The architecture xpcnn wrote into a safetensors file's metadata; none for a file of another library
    (its keys and shapes are still checked)."""
    if "architecture" not in metadata:
        return {}
    try:
        arch = loads_config(metadata["architecture"])
    except (json.JSONDecodeError, RecursionError) as exc:
        raise ValueError(f"{path}: the architecture in the safetensors metadata is not valid JSON ({exc})") from exc
    check_architecture(arch, path)
    return {"architecture": arch}


def _load_into(model: LayerGraph, config: Mapping[str, Any], weights: Mapping[str, Any], path: str) -> None:
    saved_classes = _prefix_classes(config)
    if saved_classes is not None:
        current_classes = {prefix: type(layer).__name__ for prefix, layer in model.keyed_layers()}
        diffs = []
        for prefix in sorted({k.rsplit(".", 1)[0] for k in weights}, key=lambda p: (len(p), p)):
            saved, current = saved_classes.get(prefix), current_classes.get(prefix)
            if saved != current:
                diffs.append(f"layer {prefix} is {saved} in the file but {current} in the model")
        if diffs:
            raise ValueError(f"{path} holds weights of another architecture: " + "; ".join(diffs))
    if model.built:
        _load_state(model, weights, path)
        return
    shape = config.get("architecture", {}).get("input_shape")
    if shape is None:
        raise ValueError(f"load_weights: the model is not built and {path} records no input shape; build it first")
    snapshot = [copy.deepcopy(layer.__dict__) for layer in model.layers]
    random_state = random.get_state()
    try:
        with parameter_limit(MAX_ARRAY_ELEMENTS, _values(weights)):
            model.build(tuple(shape))
        _load_state(model, weights, path)
    except BaseException:
        for layer, state in zip(model.layers, snapshot):
            layer.__dict__.clear()
            layer.__dict__.update(state)
        model.input_shape = model.output_shape = None
        raise
    finally:
        random.set_state(random_state)


def _load_state(model: LayerGraph, weights: Mapping[str, Any], path: str) -> None:
    try:
        model.load_state_dict(weights)
    except ValueError as exc:
        raise ValueError(f"{path}: weights of another architecture: {exc}") from exc


def load_model(path: Any, restore_random_state: bool = False,
               max_array_elements: int = MAX_ARRAY_ELEMENTS) -> LayerGraph:
    """Rebuild a model saved with ``model.save(path)`` on the CURRENT backend and device.

    Weights, buffers, the compile configuration, the optimizer state and the epoch count are restored.
    With ``restore_random_state=True`` the global ``xpcnn.random`` stream continues exactly where it was
    when the model was saved, so ``fit(..., initial_epoch=model.epoch)`` resumes an interrupted run
    exactly (a file that records no random state is refused); otherwise loading leaves the random stream as
    it was. A layer whose parameters would hold more than ``max_array_elements`` values in one array is
    refused before anything is allocated.

    Parameters
    ----------
    path : str or os.PathLike
        A file written by ``model.save`` (or ``xpcnn.io.save_model``).
    restore_random_state : bool, default False
    max_array_elements : int, default MAX_ARRAY_ELEMENTS
        The most values one parameter may hold.

    Returns
    -------
    Sequential or Model
        Built, and compiled when it was saved compiled.

    Raises
    ------
    ValueError
        If the file is not a whole-model file (a weights-only or safetensors file), its config fails a check,
        or it records no random state while ``restore_random_state=True``.

    Examples
    --------
    >>> from xpcnn.layers import Dense, Flatten
    >>> model = xpcnn.Sequential([Flatten(), Dense(10)], input_shape=(1, 28, 28))
    >>> model.compile(loss="cross_entropy", optimizer="adam")
    >>> model.save("model.xpcnn")
    >>> again = xpcnn.load_model("model.xpcnn")
    >>> again.input_shape, again.compiled
    ((1, 28, 28), True)
    """
    path = os.fspath(path)
    if is_safetensors(path):
        raise ValueError(f"{path} is a safetensors file: weights only; build the model and call "
                         "model.load_weights(path)")
    with _open_checked(path) as archive:
        config = archive.config
        if config["format"] != FORMAT_MODEL:
            raise ValueError(f"{path} holds weights only (written by save_weights); build the model and call "
                             "model.load_weights(path), or save with model.save(path)")
        if restore_random_state and config.get("random_state") is None:
            raise ValueError(f"{path} records no random state (field random_state is missing or null), so "
                             "restore_random_state=True cannot continue the stream where it was; load with "
                             "restore_random_state=False")
        weights = _weights_of(archive)  # their headers: the budget of the architecture's allocations
        model = _rebuild_architecture(config["architecture"], path, max_array_elements, _values(weights))
        if not model.built:
            raise ValueError(f"{path}: the saved architecture has no input shape")
        _load_state(model, weights, path)
        if config.get("compile"):
            _restore_compile(model, config, archive)
    model.epoch = int(config.get("epoch", 0))
    if restore_random_state:
        random.set_state(config["random_state"])
    return model


def _values(weights: Mapping[str, Any]) -> int:
    return sum(math.prod(value.shape) for value in weights.values())


def _rebuild_architecture(arch: Mapping[str, Any], path: str, max_array_elements: int, total: int) -> LayerGraph:
    random_state = random.get_state()
    try:
        with parameter_limit(max_array_elements, total):
            return (Model if arch.get("class_name") == "Model" else Sequential).from_config(arch)
    except (KeyError, TypeError, ValueError, IndexError, OverflowError) as exc:
        raise ValueError(f"{path}: field architecture: cannot rebuild it: {exc}") from exc
    finally:
        random.set_state(random_state)  # fresh initial weights must not move the user's random stream


def _restore_compile(model: LayerGraph, config: Mapping[str, Any], archive: Archive) -> None:
    spec, path = config["compile"], archive.path
    try:
        loss = spec["loss"]
        loss = [_rebuild_loss(s) for s in loss] if isinstance(loss, list) else _rebuild_loss(loss)
    except (KeyError, TypeError, ValueError, AttributeError, OverflowError) as exc:
        raise ValueError(f"{path}: field compile.loss: cannot rebuild it: {exc}") from exc
    try:
        optimizer = optimizers_module.get(dict(spec["optimizer"]))
    except (KeyError, TypeError, ValueError, OverflowError) as exc:
        raise ValueError(f"{path}: field compile.optimizer: cannot rebuild it: {exc}") from exc
    try:
        metrics = _rebuild_metrics(spec.get("metrics", []))
        model.compile(loss, optimizer, metrics, loss_weights=spec.get("loss_weights"))
    except (KeyError, TypeError, ValueError, AttributeError, OverflowError) as exc:
        raise ValueError(f"{path}: field compile: cannot compile with it: {exc}") from exc
    opt_state = config.get("optimizer_state")
    if not opt_state:
        return
    slots = {key: {slot: archive.member(name, f"optimizer_state.state[{key!r}][{slot!r}]")
                   for slot, name in named.items()} for key, named in opt_state["state"].items()}
    state = {"config": optimizer.get_config(), "iterations": opt_state["iterations"],
             "steps": opt_state.get("steps", {}), "state": slots}
    try:
        optimizer.load_state_dict(state, params=model.params)
    except ValueError as exc:
        raise ValueError(f"{path}: field optimizer_state does not fit the model: {exc}") from exc


def _rebuild_loss(spec: Mapping[str, Any]) -> Any:
    loss = losses_module.get(spec["name"])
    cfg = spec.get("config") or {}
    return type(loss)(**cfg) if cfg else loss


def _rebuild_metrics(specs: list[Any]) -> list[Any]:
    """The saved metrics: a list, or a list per output (of a model with several outputs)."""
    if specs and all(isinstance(s, list) for s in specs):
        return [_rebuild_metrics(s) for s in specs]
    return [m for m in (_rebuild_metric(spec) for spec in specs) if m]


_METRIC_CLASSES = {name: getattr(metrics_module, name) for name in metrics_module.__all__
                   if isinstance(getattr(metrics_module, name), type) and name != "Metric"}


def _rebuild_metric(spec: Mapping[str, Any]) -> Any:
    name = spec.get("class_name")
    if name is None:
        warnings.warn(f"the saved model used a custom metric {spec.get('name')!r}, which cannot be restored; "
                      "compile again to use it", RuntimeWarning, stacklevel=4)
        return None
    if name not in _METRIC_CLASSES:
        raise ValueError(f"unknown metric class {name!r:.60}; known: {sorted(_METRIC_CLASSES)}")
    return _METRIC_CLASSES[name](**(spec.get("config") or {}))
