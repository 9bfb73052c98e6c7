"""Saving and loading models: ONE file, a zip of ``.npy`` arrays plus a JSON ``config`` entry.

The file is what ``np.savez`` writes to a file object (so the name is kept exactly as given, whatever its
extension) and it is read back with ``np.load(..., allow_pickle=False)``: loading never executes anything.
The ``config`` entry (UTF-8 JSON stored as a uint8 array) holds the architecture (layer class names, their
``get_config()`` and the input shape), the compile configuration (loss, optimizer, metrics), the epoch
count, the ``xpcnn.random`` state and the names of the arrays that hold the weights, buffers and optimizer
state. Writes go to a temporary file in the destination folder (``.<name>.<pid>.<random>.xpcnn-tmp``), then
``os.replace``: a failed save leaves an existing file intact, readers never see half a file, and the temporary
file of a save killed outright is removed by the next save of that name.

Arrays are stored on the host in their own dtype; loading rebuilds the model on the CURRENT backend and
device, so a model trained on one backend predicts the same on another.
"""

from __future__ import annotations

import copy
import json
import os
import re
import tempfile
from collections.abc import Mapping
from typing import Any

import numpy as np

from . import losses as losses_module
from . import metrics as metrics_module
from . import optimizers as optimizers_module
from . import random
from .backend import get_backend, to_numpy
from .model import LayerGraph, Model, Sequential
from .safetensors_io import read_safetensors, write_safetensors

__all__ = ["load_model", "load_weights", "save_model", "save_weights"]

FORMAT_MODEL = "xpcnn.model"
FORMAT_WEIGHTS = "xpcnn.weights"
FORMAT_VERSION = 1

# --- writing ----------------------------------------------------------------------------------------------

def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_TEMP_SUFFIX = ".xpcnn-tmp"  # ".<name>.<pid>.<random>.xpcnn-tmp" beside the target while a save writes


def _json(config: Any, path: str) -> str:
    try:
        return json.dumps(config, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"cannot save to {path}: the configuration is not JSON-serialisable ({exc})") from exc


def _atomic_savez(path: str, config: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> None:
    """Write ``config`` (as JSON) and ``arrays`` as one ``np.savez`` archive at ``path``, atomically."""
    entries = {"config": np.frombuffer(_json(config, path).encode("utf-8"), dtype=np.uint8), **arrays}
    _atomic_write(path, lambda f: np.savez(f, **entries))


def _atomic_write(path: str, write: Any) -> None:
    """Call ``write(f)`` on a temp file beside ``path``, then rename it to ``path``.

    The temp file is named after the target and the writing process, so that a save killed outright
    (SIGKILL) leaves a file users recognise, which the next save of that target removes. Errors name the
    user's path, never the temp file."""
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"cannot save to {path}: the folder {folder} does not exist")
    if os.path.isdir(path):
        raise IsADirectoryError(f"cannot save to {path}: it is a directory")
    _remove_stale_temporaries(folder, os.path.basename(path))
    tmp = None
    try:
        mode = os.stat(path).st_mode & 0o777 if os.path.isfile(path) else 0o666 & ~_umask()
        fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.{os.getpid()}.", suffix=_TEMP_SUFFIX,
                                   dir=folder)
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException as exc:
        if tmp is not None:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
        if isinstance(exc, OSError):
            raise type(exc)(f"cannot save to {path}: {exc.strerror or exc}") from exc
        raise


def _remove_stale_temporaries(folder: str, name: str) -> None:
    """Remove the temp files of saves of ``name`` whose process is gone (killed mid-write). Only where a
    process can be asked whether it lives without harm (POSIX: signal 0); a live writer's file is kept."""
    if os.name != "posix":
        return
    pattern = re.compile(rf"\.{re.escape(name)}\.(\d+)\.[^.]+{re.escape(_TEMP_SUFFIX)}")
    for entry in os.listdir(folder):
        match = pattern.fullmatch(entry)
        if match is None or int(match.group(1)) == os.getpid():
            continue
        try:
            os.kill(int(match.group(1)), 0)
            continue  # its writer still runs
        except ProcessLookupError:
            pass
        except (PermissionError, OverflowError):
            continue
        try:
            os.unlink(os.path.join(folder, entry))
        except OSError:
            pass


class _ArrayTable:
    """Collects host arrays under short names ``a0, a1, ...``; the config refers to them by name."""

    def __init__(self) -> None:
        self.arrays: dict[str, np.ndarray] = {}

    def add(self, value: Any) -> str:
        name = f"a{len(self.arrays)}"
        self.arrays[name] = np.ascontiguousarray(to_numpy(value))
        return name


def _require_built(model: LayerGraph, what: str) -> None:
    if not isinstance(model, LayerGraph):
        raise TypeError(f"{what} takes an xpcnn model (Sequential or Model), got {type(model).__name__}")
    if not model.built:
        raise ValueError(f"{what}: the model is not built yet (no weights); pass input_shape=... or run a batch")


def _base_config(kind: str, model: LayerGraph) -> dict[str, Any]:
    from . import __version__

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


def _is_safetensors(path: str) -> bool:
    return str(path).lower().endswith(".safetensors")


def save_model(model: LayerGraph, path: Any) -> None:
    """Write the whole model to ONE file at exactly ``path`` (see the module docstring)."""
    _require_built(model, "save")
    path = _destination(path)
    if _is_safetensors(path):
        raise ValueError(f"cannot save to {path}: safetensors holds weights only; use model.save_weights(path), or "
                         "save the whole model under another name")
    table = _ArrayTable()
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
    _atomic_savez(path, config, table.arrays)


def save_weights(model: LayerGraph, path: Any) -> None:
    """Write parameters and buffers (with the architecture, for checks) to ONE file at exactly ``path``:
    the safetensors format when ``path`` ends in ``.safetensors`` (state-dict keys; the xpcnn version and the
    architecture in its metadata), else xpcnn's own."""
    _require_built(model, "save_weights")
    path = _destination(path)
    if _is_safetensors(path):
        from . import __version__

        tensors = {key: np.asarray(to_numpy(value)) for key, value in _weights(model).items()}
        metadata = {"format": FORMAT_WEIGHTS, "xpcnn_version": __version__,
                    "architecture": _json(model.get_config(), path)}
        _atomic_write(path, lambda f: write_safetensors(f, tensors, metadata))
        return
    table = _ArrayTable()
    config = _base_config(FORMAT_WEIGHTS, model)
    config["weights"] = {key: table.add(value) for key, value in _weights(model).items()}
    _atomic_savez(path, config, table.arrays)


def _weights(model: LayerGraph) -> dict[str, Any]:
    return {**model.params, **model.buffers}


# --- reading ----------------------------------------------------------------------------------------------

def _read(path: Any) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The JSON config and the arrays of an xpcnn file, or a ValueError saying why it is not one."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"no such file: {path}")
    with open(path, "rb") as f:
        magic = f.read(6)
    if magic.startswith(b"\x93NUMPY"):
        raise ValueError(f"{path} holds a single NumPy array (.npy), not an xpcnn model/weights file")
    if not magic.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        raise ValueError(f"{path} is not an xpcnn model/weights file (not a zip archive written by xpcnn; "
                         f"it starts with {magic!r})")
    try:
        loaded = np.load(path, allow_pickle=False)
    except Exception as exc:  # BadZipFile when the end of the archive is missing
        raise ValueError(f"{path} is damaged or truncated: not a readable xpcnn model/weights file "
                         f"({type(exc).__name__}: {exc})") from exc
    if not isinstance(loaded, np.lib.npyio.NpzFile):
        raise ValueError(f"{path} holds a single NumPy array, not an xpcnn model/weights file")
    try:
        with loaded:
            arrays = {name: loaded[name] for name in loaded.files}
    except Exception as exc:  # BadZipFile, CRC errors, EOFError, zlib errors on a truncated file
        raise ValueError(f"{path} is damaged or truncated ({type(exc).__name__}: {exc})") from exc
    raw = arrays.pop("config", None)
    if raw is None or raw.dtype != np.uint8 or raw.ndim != 1:
        raise ValueError(f"{path} is a NumPy .npz archive but not an xpcnn file (it has no xpcnn config entry)")
    try:
        config = json.loads(raw.tobytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: the config entry is not valid JSON; the file is damaged ({exc})") from exc
    if not isinstance(config, dict) or config.get("format") not in (FORMAT_MODEL, FORMAT_WEIGHTS):
        raise ValueError(f"{path} is not an xpcnn model/weights file (unknown format "
                         f"{config.get('format') if isinstance(config, dict) else None!r})")
    version = config.get("version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise ValueError(f"{path} was written in file format version {version!r}; this xpcnn reads up to "
                         f"{FORMAT_VERSION}: upgrade xpcnn")
    return config, arrays


def _array(arrays: Mapping[str, np.ndarray], name: Any, path: str) -> np.ndarray:
    if not isinstance(name, str) or name not in arrays:
        raise ValueError(f"{path}: the config names array {name!r}, which the file does not hold (damaged file)")
    return arrays[name]


def _weights_from(config: Mapping[str, Any], arrays: Mapping[str, np.ndarray], path: str) -> dict[str, np.ndarray]:
    weights = config.get("weights")
    if not isinstance(weights, dict):
        raise ValueError(f"{path}: no weights table in the config (damaged file)")
    return {str(key): _array(arrays, name, path) for key, name in weights.items()}


def _prefix_classes(config: Mapping[str, Any]) -> dict[str, str] | None:
    """The class name of the layer behind each key prefix in a saved architecture (index or layer name)."""
    try:
        arch = config["architecture"]
        if arch.get("class_name") == "Model":
            return {str(spec["name"]): str(spec["class_name"]) for spec in arch["layers"]}
        return {str(i): str(spec["class_name"]) for i, spec in enumerate(arch["layers"])}
    except (KeyError, TypeError, AttributeError):
        return None


def load_weights(model: LayerGraph, path: Any) -> None:
    """Load parameters and buffers saved by ``save_weights`` or ``save`` into ``model``.

    The file must come from the same architecture (layer types holding weights, keys and shapes); else a
    ValueError says what differs and the model is left untouched. An unbuilt model is built with the input
    shape recorded in the file.
    """
    if not isinstance(model, LayerGraph):
        raise TypeError(f"load_weights takes an xpcnn model (Sequential or Model), got {type(model).__name__}")
    path = os.fspath(path)
    config, weights = _read_weights(path)
    saved_classes = _prefix_classes(config)
    if saved_classes is not None:
        current_classes = {prefix: type(layer).__name__ for prefix, layer in model.keyed_layers()}
        diffs = []
        for prefix in sorted({k.split(".", 1)[0] for k in weights}, key=lambda p: (len(p), p)):
            saved, current = saved_classes.get(prefix), current_classes.get(prefix)
            if saved != current:
                diffs.append(f"layer {prefix} is {saved} in the file but {current} in the model")
        if diffs:
            raise ValueError(f"{path} holds weights of another architecture: " + "; ".join(diffs))
    if model.built:
        _load_state(model, weights, path)
        return
    arch = config.get("architecture")
    shape = arch.get("input_shape") if isinstance(arch, dict) else None
    if shape is None:
        raise ValueError(f"load_weights: the model is not built and {path} records no input shape; build it first")
    snapshot = [copy.deepcopy(layer.__dict__) for layer in model.layers]
    random_state = random.get_state()
    try:
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


def _read_weights(path: str) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The config (architecture, when the file records it) and the weights of either format."""
    if not _is_safetensors(path):
        config, arrays = _read(path)
        return config, _weights_from(config, arrays, path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"no such file: {path}")
    weights, metadata = read_safetensors(path)
    if "architecture" not in metadata:
        return {}, weights  # written by another library: keys and shapes are still checked
    try:
        return {"architecture": json.loads(metadata["architecture"])}, weights
    except (json.JSONDecodeError, RecursionError) as exc:
        raise ValueError(f"{path}: the architecture in the safetensors metadata is not valid JSON ({exc})") from exc


def _load_state(model: LayerGraph, weights: Mapping[str, np.ndarray], path: str) -> None:
    try:
        model.load_state_dict(weights)
    except ValueError as exc:
        raise ValueError(f"{path}: weights of another architecture: {exc}") from exc


def load_model(path: Any, restore_random_state: bool = False) -> LayerGraph:
    """Rebuild a model saved with ``model.save(path)`` on the CURRENT backend and device.

    Weights, buffers, the compile configuration, the optimizer state and the epoch count are restored.
    With ``restore_random_state=True`` the global ``xpcnn.random`` stream continues exactly where it was
    when the model was saved, so ``fit(..., initial_epoch=model.epoch)`` resumes an interrupted run
    exactly; otherwise loading leaves the random stream as it was.
    """
    path = os.fspath(path)
    if _is_safetensors(path):
        raise ValueError(f"{path} is a safetensors file: weights only; build the model and call "
                         "model.load_weights(path)")
    config, arrays = _read(path)
    if config["format"] != FORMAT_MODEL:
        raise ValueError(f"{path} holds weights only (written by save_weights); build the model and call "
                         "model.load_weights(path), or save with model.save(path)")
    random_state = random.get_state()
    try:
        arch = config["architecture"]
        model = (Model if arch.get("class_name") == "Model" else Sequential).from_config(arch)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ValueError(f"{path}: cannot rebuild the architecture ({type(exc).__name__}: {exc})") from exc
    finally:
        random.set_state(random_state)  # fresh initial weights must not move the user's random stream
    if not model.built:
        raise ValueError(f"{path}: the saved architecture has no input shape")
    _load_state(model, _weights_from(config, arrays, path), path)
    compile_config = config.get("compile")
    if compile_config:
        try:
            spec = compile_config["loss"]
            loss = [_rebuild_loss(s) for s in spec] if isinstance(spec, list) else _rebuild_loss(spec)
            optimizer = optimizers_module.get(dict(compile_config["optimizer"]))
            metrics = _rebuild_metrics(compile_config.get("metrics", []))
            model.compile(loss, optimizer, metrics, loss_weights=compile_config.get("loss_weights"))
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ValueError(f"{path}: cannot rebuild the compile configuration ({exc})") from exc
        opt_state = config.get("optimizer_state")
        if opt_state:
            try:
                state = {
                    "config": optimizer.get_config(),
                    "iterations": int(opt_state["iterations"]),
                    "steps": {k: int(v) for k, v in opt_state.get("steps", {}).items()},
                    "state": {key: {slot: _array(arrays, name, path) for slot, name in slots.items()}
                              for key, slots in opt_state["state"].items()},
                }
                optimizer.load_state_dict(state, params=model.params)
            except (KeyError, TypeError, AttributeError) as exc:
                raise ValueError(f"{path}: the optimizer state is damaged ({exc})") from exc
    model.epoch = int(config.get("epoch", 0))
    if restore_random_state:
        random.set_state(config["random_state"])
    return model


def _rebuild_loss(spec: Mapping[str, Any]) -> Any:
    loss = losses_module.get(spec["name"])
    cfg = spec.get("config") or {}
    return type(loss)(**cfg) if cfg else loss


def _rebuild_metrics(specs: list[Any]) -> list[Any]:
    """The saved metrics: a list, or a list per output (of a model with several outputs)."""
    if specs and all(isinstance(s, list) for s in specs):
        return [_rebuild_metrics(s) for s in specs]
    return [m for m in (_rebuild_metric(spec) for spec in specs) if m]


def _rebuild_metric(spec: Mapping[str, Any]) -> Any:
    name = spec.get("class_name")
    if name is None:
        import warnings

        warnings.warn(f"the saved model used a custom metric {spec.get('name')!r}, which cannot be restored; "
                      "compile again to use it", RuntimeWarning, stacklevel=3)
        return None
    cls = getattr(metrics_module, name, None)
    if not isinstance(cls, type) or not issubclass(cls, metrics_module.Metric):
        raise ValueError(f"unknown metric class {name!r}")
    return cls(**(spec.get("config") or {}))
