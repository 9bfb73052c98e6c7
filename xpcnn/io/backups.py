"""Backup files of a running ``fit`` (``xpcnn.callbacks.BackupAndRestore``).

A backup is a whole-model file (``load_model`` reads it as one) with one more config field, ``run``: the
training input's position, the epoch and batch counters, the epoch's partial sums and every callback's state
(``xpcnn.run_state``). Callback states are JSON where they can be; arrays are stored beside the weights and
named ``{"__array__": "a12"}``, and infinities and NaN (a best value not yet set) ``{"__float__": "inf"}``.

Reading one checks everything before anything changes: the config field by field, the architecture against
the model's, and every array whole (its CRC-32 included), so a damaged backup is refused by name.
"""

from __future__ import annotations

import json
import math
import numbers
from collections.abc import Mapping
from typing import Any

import array_api_compat
import numpy as np

from ..model import LayerGraph
from .archive import Archive
from .loading import _weights_of
from .saving import ArrayTable, atomic_savez, model_config
from .schema import FORMAT_MODEL, _Checker, check_config

__all__ = ["read_backup", "write_backup"]

_ARRAY, _FLOAT = "__array__", "__float__"


def write_backup(path: str, model: LayerGraph, state: Mapping[str, Any]) -> None:
    """Write ``model`` and the ``state`` of its running fit (``model.training_state()``, taken just now) to
    ``path``, atomically."""
    table = ArrayTable()
    config = model_config(model, table)
    config["run"] = {"data": state["data"], "validation": state["validation"], "progress": state["progress"],
                     "sums": _encode(state["sums"], table, "sums"), "ranks": _encode(state["ranks"], table, "ranks"),
                     "callbacks": _encode(state["callbacks"], table, "callbacks")}
    atomic_savez(path, config, table.arrays)


def read_backup(path: str, model: LayerGraph) -> dict[str, Any]:
    """The state of the fit saved in ``path``, as ``model.training_state()`` gives it (arrays as NumPy):
    read whole and checked; ValueError names the file and what is wrong with it."""
    with Archive(path) as archive:
        config = archive.config
        check_config(config, path)
        if config["format"] != FORMAT_MODEL or not isinstance(config.get("run"), dict):
            raise ValueError(f"{path} is not a backup of a running fit (no field run)")
        _check_run(config, path)
        if config["architecture"] != json.loads(json.dumps(model.get_config())):
            raise ValueError(f"{path} is a backup of another model: its architecture differs from "
                             f"{model.name}'s")
        weights = {key: np.asarray(member) for key, member in _weights_of(archive).items()}
        opt = config["optimizer_state"]
        optimizer = {
            "config": config["compile"]["optimizer"], "iterations": opt["iterations"], "steps": opt.get("steps", {}),
            "state": {key: {slot: np.asarray(archive.member(name, f"optimizer_state.state[{key!r}][{slot!r}]"))
                            for slot, name in slots.items()} for key, slots in opt["state"].items()},
        }
        run = config["run"]
        sums = _decode(run["sums"], archive, "run.sums")
        ranks = _decode(run.get("ranks"), archive, "run.ranks")
        callbacks = _decode(run["callbacks"], archive, "run.callbacks")
    return {"model": weights, "optimizer": optimizer, "random": config["random_state"], "data": run["data"],
            "validation": run.get("validation"), "progress": run["progress"], "sums": sums, "ranks": ranks,
            "callbacks": callbacks}


def _check_run(config: Mapping[str, Any], path: str) -> None:
    check = _Checker(path)
    for field in ("compile", "optimizer_state", "random_state"):
        if config.get(field) is None:
            raise check.fail(field, "is missing, which every backup holds")
    run = check.dict(config["run"], "run")
    progress = check.dict(run.get("progress"), "run.progress")
    for key in ("epoch", "batch", "seen", "completed_epochs", "epochs"):
        check.int(progress.get(key), f"run.progress.{key}")
    if progress["epoch"] > progress["epochs"] or progress["completed_epochs"] > progress["epochs"]:
        raise check.fail("run.progress.epoch", f"must lie within the fit's {progress['epochs']} epochs")
    if progress.get("steps") is not None:
        check.int(progress["steps"], "run.progress.steps")
    if not isinstance(progress.get("stop_training"), bool):
        raise check.fail("run.progress.stop_training", "must be true or false")
    for field in ("data", "validation"):
        position = run.get(field)
        if position is not None:
            position = check.dict(position, f"run.{field}")
            check.int(position.get("epoch"), f"run.{field}.epoch")
            check.int(position.get("batch"), f"run.{field}.batch")
            if position.get("seed") is not None:
                check.int(position["seed"], f"run.{field}.seed")
    ranks = run.get("ranks")
    if ranks is not None:
        ranks = check.dict(ranks, "run.ranks")
        for key in ("seen", "counters"):
            for i, value in enumerate(check.list(ranks.get(key), f"run.ranks.{key}")):
                check.int(value, f"run.ranks.{key}[{i}]")
    for key, state in check.dict(run.get("callbacks"), "run.callbacks").items():
        check.dict(state, f"run.callbacks[{key!r}]")
    sums = run.get("sums")
    if sums is not None:
        for key, value in check.dict(sums, "run.sums").items():
            if not (isinstance(value, dict) and set(value) in ({_ARRAY}, {_FLOAT})
                    or isinstance(value, (int, float)) and not isinstance(value, bool)):
                raise check.fail(f"run.sums[{key!r}]", "must be a number or name an array")


def _encode(value: Any, table: ArrayTable, field: str) -> Any:
    """``value`` as JSON: arrays into ``table``, non-finite floats tagged, tuples as lists."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        value = float(value)
        return value if math.isfinite(value) else {_FLOAT: repr(value)}
    if isinstance(value, np.ndarray) or array_api_compat.is_array_api_obj(value):
        return {_ARRAY: table.add(value)}
    if isinstance(value, Mapping):
        for key in value:
            if not isinstance(key, str) or key in (_ARRAY, _FLOAT):
                raise TypeError(f"a backup cannot hold {field}: its key {key!r} is not a string or is reserved")
        return {key: _encode(v, table, f"{field}[{key!r}]") for key, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_encode(v, table, f"{field}[{i}]") for i, v in enumerate(value)]
    raise TypeError(f"a backup cannot hold {field}: a {type(value).__name__} (callback states hold numbers, "
                    "strings, None, lists, dicts with string keys and arrays)")


def _decode(value: Any, archive: Archive, field: str) -> Any:
    """What ``_encode`` wrote, the arrays read (and checked) from ``archive``."""
    if isinstance(value, dict):
        if set(value) == {_ARRAY}:
            return np.asarray(archive.member(value[_ARRAY], field))
        if set(value) == {_FLOAT}:
            if value[_FLOAT] not in ("inf", "-inf", "nan"):
                raise ValueError(f"{archive.path}: field {field} holds the float {value[_FLOAT]!r:.40}, not inf, -inf "
                                 "or nan (damaged file)")
            return float(value[_FLOAT])
        return {key: _decode(v, archive, f"{field}[{key!r}]") for key, v in value.items()}
    if isinstance(value, list):
        return [_decode(v, archive, f"{field}[{i}]") for i, v in enumerate(value)]
    return value
