"""Writing model and weights files (see ``xpcnn.io`` for the format)."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

import numpy as np

from .. import metrics as metrics_module
from .. import random
from ..backend import get_backend, to_numpy
from ..model import LayerGraph
from .atomic import atomic_write
from .safetensors import write_safetensors
from .schema import FORMAT_MODEL, FORMAT_VERSION, FORMAT_WEIGHTS

__all__ = ["is_safetensors", "save_model", "save_weights"]


def _json(config: Any, path: str) -> str:
    try:
        return json.dumps(config, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"cannot save to {path}: the configuration is not JSON-serialisable ({exc})") from exc


def atomic_savez(path: str, config: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> None:
    """Write ``config`` (as JSON) and ``arrays`` as one ``np.savez`` archive at ``path``, atomically."""
    entries = {"config": np.frombuffer(_json(config, path).encode("utf-8"), dtype=np.uint8), **arrays}
    atomic_write(path, lambda f: np.savez(f, **entries))


class ArrayTable:
    """Collects host arrays under short names ``a0, a1, ...``; the config refers to them by name."""

    def __init__(self) -> None:
        self.arrays: dict[str, np.ndarray] = {}

    def add(self, value: Any) -> str:
        name = f"a{len(self.arrays)}"
        self.arrays[name] = np.asarray(to_numpy(value), order="C")  # ascontiguousarray would make 0-d arrays 1-d
        return name


def _require_built(model: LayerGraph, what: str) -> None:
    if not isinstance(model, LayerGraph):
        raise TypeError(f"{what} takes an xpcnn model (Sequential or Model), got {type(model).__name__}")
    if not model.built:
        raise ValueError(f"{what}: the model is not built yet (no weights); pass input_shape=... or run a batch")


def _base_config(kind: str, model: LayerGraph) -> dict[str, Any]:
    from .. import __version__

    backend = get_backend()
    return {
        "format": kind,
        "version": FORMAT_VERSION,
        "xpcnn_version": __version__,
        "saved_from": {"backend": backend.name, "device": str(backend.device)},
        "architecture": model.get_config(),
    }


def _metric_config(metric: Any) -> dict[str, Any]:
    cls = type(metric)
    if getattr(metrics_module, cls.__name__, None) is cls:
        return {"class_name": cls.__name__, "config": metric.get_config()}
    return {"class_name": None, "name": getattr(metric, "name", repr(metric))}


def _destination(path: Any) -> str:
    path = os.fspath(path)
    if not path:
        raise ValueError("cannot save: the path is empty")
    return path


def is_safetensors(path: str) -> bool:
    return str(path).lower().endswith(".safetensors")


def save_model(model: LayerGraph, path: Any) -> None:
    """Write the whole model to ONE file at exactly ``path`` (see the module docstring).

    Parameters
    ----------
    model : Sequential or Model
    path : str or os.PathLike
        Any name but ``*.safetensors`` (weights only); written atomically.

    Raises
    ------
    TypeError
        If ``model`` is not an xpcnn model.
    ValueError
        If the model is not built, ``path`` is empty or names a safetensors file, or the config is not
        JSON-serialisable.
    """
    _require_built(model, "save")
    path = _destination(path)
    if is_safetensors(path):
        raise ValueError(f"cannot save to {path}: safetensors holds weights only; use model.save_weights(path), or "
                         "save the whole model under another name")
    table = ArrayTable()
    atomic_savez(path, model_config(model, table), table.arrays)


def model_config(model: LayerGraph, table: ArrayTable) -> dict[str, Any]:
    """The config of a whole-model file, its arrays (weights, optimizer state) added to ``table``."""
    config = _base_config(FORMAT_MODEL, model)
    config["weights"] = {key: table.add(value) for key, value in _weights(model).items()}
    config["compile"] = None
    config["optimizer_state"] = None
    if model.compiled:
        objectives = model.objectives
        config["compile"] = {
            **objectives.config(),
            "optimizer": model.optimizer.get_config(),
            "metrics": ([_metric_config(m) for m in objectives.metrics[0]] if objectives.single
                        else [[_metric_config(m) for m in ms] for ms in objectives.metrics]),
        }
        state = model.optimizer.state_dict()
        config["optimizer_state"] = {
            "iterations": int(state["iterations"]),
            "steps": {k: int(v) for k, v in state.get("steps", {}).items()},
            "state": {key: {slot: table.add(arr) for slot, arr in slots.items()}
                      for key, slots in state["state"].items()},
        }
    config["epoch"] = int(model.epoch)
    config["random_state"] = random.get_state()
    return config


def save_weights(model: LayerGraph, path: Any) -> None:
    """Write parameters and buffers (with the architecture, for checks) to ONE file at exactly ``path``:
    the safetensors format when ``path`` ends in ``.safetensors`` (state-dict keys; the xpcnn version and the
    architecture in its metadata), else xpcnn's own.

    Parameters
    ----------
    model : Sequential or Model
    path : str or os.PathLike

    Raises
    ------
    TypeError
        If ``model`` is not an xpcnn model.
    ValueError
        If the model is not built or ``path`` is empty.
    """
    _require_built(model, "save_weights")
    path = _destination(path)
    if is_safetensors(path):
        from .. import __version__

        tensors = {key: np.asarray(to_numpy(value)) for key, value in _weights(model).items()}
        metadata = {"format": FORMAT_WEIGHTS, "xpcnn_version": __version__,
                    "architecture": _json(model.get_config(), path)}
        atomic_write(path, lambda f: write_safetensors(f, tensors, metadata))
        return
    table = ArrayTable()
    config = _base_config(FORMAT_WEIGHTS, model)
    config["weights"] = {key: table.add(value) for key, value in _weights(model).items()}
    atomic_savez(path, config, table.arrays)


def _weights(model: LayerGraph) -> dict[str, Any]:
    return {**model.params, **model.buffers}
