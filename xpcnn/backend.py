"""The one module that knows backend names.

A backend is an Array API namespace plus a device and a default floating dtype. The current backend lives
in a ContextVar so that ``use_backend`` is safe across threads and asyncio tasks; ``set_backend`` also
changes the process-wide default that fresh threads start from.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import importlib
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import array_api_compat
import numpy as np

__all__ = [
    "Backend",
    "BackendUnavailableError",
    "KNOWN_BACKENDS",
    "asarray",
    "available_backends",
    "copy_array",
    "get_backend",
    "half_dtype",
    "set_backend",
    "to_device",
    "to_numpy",
    "use_backend",
]


class BackendUnavailableError(RuntimeError):
    """A known backend cannot start here (library missing, no GPU); the message says how to fix it."""


@dataclasses.dataclass(frozen=True)
class Backend:
    """What layers need to create arrays: the namespace, its device and the default float dtype."""

    name: str
    xp: Any
    device: Any
    dtype: Any

    def __repr__(self) -> str:
        return f"Backend(name={self.name!r}, device={self.device!r}, dtype={dtype_name(self.dtype)!r})"


def dtype_name(dtype: Any) -> str:
    """'float32' for any namespace's float32 (NumPy, torch, JAX and array-api-strict spell it differently)."""
    try:
        return np.dtype(dtype).name
    except TypeError:
        return str(dtype).rsplit(".", 1)[-1]


# --- per-backend loaders: import lazily, resolve the device, or say why not ---------------------------

def _load_numpy(device: Any) -> tuple[Any, Any]:
    import array_api_compat.numpy as xp

    if device not in (None, "cpu"):
        raise ValueError(f"the numpy backend runs on 'cpu' only, got device={device!r}")
    return xp, "cpu"


def _load_cupy(device: Any) -> tuple[Any, Any]:
    cupy = _require("cupy", "cupy", "CuPy and a CUDA GPU: pip install 'xpcnn[cuda12]' or 'xpcnn[cuda13]'")
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:  # CUDARuntimeError without a driver
        raise BackendUnavailableError(
            f"backend 'cupy' cannot start: no usable CUDA driver or GPU on this machine ({exc})"
        ) from exc
    if count == 0:
        raise BackendUnavailableError("backend 'cupy' cannot start: CUDA reports no GPU on this machine")
    if device is None:
        index = 0
    elif isinstance(device, int):
        index = device
    elif isinstance(device, str) and (device == "cuda" or device.startswith("cuda:")):
        index = int(device.partition(":")[2] or 0)
    elif isinstance(device, cupy.cuda.Device):
        index = device.id
    else:
        raise ValueError(f"backend 'cupy' takes a device like 0, 'cuda' or 'cuda:1', got {device!r}")
    if not 0 <= index < count:
        raise ValueError(f"backend 'cupy': GPU {index} requested but this machine has {count}")
    import array_api_compat.cupy as xp

    return xp, cupy.cuda.Device(index)


def _require(module: str, backend: str, install: str) -> Any:
    """Import ``module`` or say which extra to install; a missing library never breaks ``import xpcnn``."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise BackendUnavailableError(f"backend {backend!r} needs {install} ({exc})") from exc


def _load_torch(device: Any) -> tuple[Any, Any]:
    torch = _require("torch", "torch", "PyTorch: pip install 'xpcnn[torch]'")
    try:
        dev = torch.device("cpu" if device is None else device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"backend 'torch' does not know device {device!r}: {exc}") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise BackendUnavailableError(
            f"backend 'torch' cannot use device {device!r}: this PyTorch build sees no CUDA GPU"
        )
    import array_api_compat.torch as xp

    return xp, dev


def _load_jax(device: Any) -> tuple[Any, Any]:
    jax = _require("jax", "jax", "JAX: pip install 'xpcnn[jax]'")
    xp = _require("jax.numpy", "jax", "JAX: pip install 'xpcnn[jax]'")
    try:
        if device is None:
            dev = jax.devices()[0]
        elif isinstance(device, int):
            dev = jax.devices()[device]
        elif isinstance(device, str):
            platform, _, index = device.partition(":")
            dev = jax.devices(platform)[int(index or 0)]
        else:
            dev = device
    except (RuntimeError, IndexError, ValueError) as exc:
        raise BackendUnavailableError(f"backend 'jax' has no device {device!r}: {exc}") from exc
    return xp, dev


def _load_array_api_strict(device: Any) -> tuple[Any, Any]:
    xp = _require("array_api_strict", "array_api_strict", "array-api-strict: pip install 'xpcnn[strict]'")
    devices = xp.__array_namespace_info__().devices()
    if device is None:
        return xp, xp.__array_namespace_info__().default_device()
    dev = device if isinstance(device, xp.Device) else xp.Device(str(device))
    if dev not in devices:
        raise ValueError(f"backend 'array_api_strict' has devices {[str(d) for d in devices]}, got {device!r}")
    return xp, dev


_LOADERS: dict[str, Callable[[Any], tuple[Any, Any]]] = {
    "numpy": _load_numpy,
    "cupy": _load_cupy,
    "torch": _load_torch,
    "jax": _load_jax,
    "array_api_strict": _load_array_api_strict,
}
KNOWN_BACKENDS: tuple[str, ...] = tuple(_LOADERS)


def _make_backend(name: str, device: Any, dtype: Any) -> Backend:
    if name not in _LOADERS:
        raise ValueError(f"unknown backend {name!r}; known backends are {list(KNOWN_BACKENDS)}")
    xp, dev = _LOADERS[name](device)
    dt = _resolve_float_dtype(xp, dtype, name)
    try:
        probe = xp.zeros((), dtype=dt, device=dev)
    except Exception as exc:  # e.g. array_api_strict's no_float64 device refusing float64
        raise ValueError(f"backend {name!r} on device {dev!r} cannot hold dtype {dtype_name(dt)}: {exc}") from exc
    if probe.dtype != dt:  # JAX silently downcasts float64 unless x64 is enabled
        raise ValueError(
            f"backend {name!r} turned {dtype_name(dt)} into {dtype_name(probe.dtype)}"
            + ("; call jax.config.update('jax_enable_x64', True) first" if name == "jax" else "")
        )
    return Backend(name=name, xp=xp, device=dev, dtype=dt)


def _resolve_float_dtype(xp: Any, dtype: Any, name: str) -> Any:
    if isinstance(dtype, str):
        if dtype not in ("float32", "float64"):
            raise ValueError(f"dtype must be 'float32' or 'float64', got {dtype!r}")
        return getattr(xp, dtype)
    for candidate in ("float32", "float64"):
        if dtype == getattr(xp, candidate):
            return dtype
    raise TypeError(f"dtype must be 'float32', 'float64' or one of backend {name!r}'s float dtypes, got {dtype!r}")


_default: Backend | None = None
_current: contextvars.ContextVar[Backend | None] = contextvars.ContextVar("xpcnn_backend", default=None)


def get_backend() -> Backend:
    """The backend in force here: the innermost ``use_backend``, else the last ``set_backend``, else NumPy."""
    global _default
    backend = _current.get()
    if backend is not None:
        return backend
    if _default is None:
        _default = _make_backend("numpy", None, "float32")
    return _default


def set_backend(name: str, device: Any = None, dtype: Any = "float32") -> Backend:
    """Switch the current backend; on any error the previous backend stays active."""
    global _default
    backend = _make_backend(name, device, dtype)
    _default = backend
    _current.set(backend)
    return backend


@contextlib.contextmanager
def use_backend(name: str, device: Any = None, dtype: Any = "float32") -> Iterator[Backend]:
    """``set_backend`` for a ``with`` block only (context-local: threads and tasks do not see it)."""
    token = _current.set(_make_backend(name, device, dtype))
    try:
        yield _current.get()
    finally:
        _current.reset(token)


def available_backends() -> list[str]:
    """Names of the backends that start on this machine now (with their default device)."""
    names = []
    for name in KNOWN_BACKENDS:
        try:
            _make_backend(name, None, "float32")
        except (BackendUnavailableError, ValueError):
            continue
        names.append(name)
    return names


# --- half-precision dtypes for mixed precision ---------------------------------------------------------

_HALF_REFUSED = {
    ("array_api_strict", "float16"): "the Array API standard has no float16 (nor bfloat16)",
    ("array_api_strict", "bfloat16"): "the Array API standard has no bfloat16 (nor float16)",
    ("numpy", "bfloat16"): "NumPy has no bfloat16 dtype (ml_dtypes' bfloat16 is not an Array API dtype); use "
                           "mixed_float16 on NumPy, or the torch or JAX backend",
    ("cupy", "bfloat16"): "CuPy has no bfloat16 dtype; use mixed_float16 on CuPy, or the torch or JAX backend",
}


def half_dtype(kind: str, backend: Backend | None = None) -> Any:
    """The namespace's ``float16`` or ``bfloat16`` (``kind``) that a mixed-precision policy computes in on
    ``backend`` (the current one by default), or a ValueError saying why it has none. Mixed precision keeps
    float32 master weights, so the backend's own dtype must be float32. NumPy's float16 works but has no
    half-precision BLAS: a ``RuntimeWarning`` says so (once per call site, Python's default filter)."""
    backend = get_backend() if backend is None else backend
    if kind not in ("float16", "bfloat16"):
        raise ValueError(f"a half-precision dtype is 'float16' or 'bfloat16', got {kind!r}")
    if dtype_name(backend.dtype) != "float32":
        raise ValueError(f"mixed precision keeps float32 master weights, but backend {backend.name!r} was set with "
                         f"dtype={dtype_name(backend.dtype)!r}; use set_backend(..., dtype='float32')")
    refused = _HALF_REFUSED.get((backend.name, kind))
    if refused is not None:
        raise ValueError(f"backend {backend.name!r} cannot compute in {kind}: {refused}")
    if backend.name == "numpy":
        warnings.warn("mixed_float16 on NumPy is correct but slow (NumPy has no half-precision matrix "
                      "products); it is meant for checking a model, not for training speed", RuntimeWarning,
                      stacklevel=3)
    return getattr(backend.xp, kind)


# --- moving data between the host and backends ------------------------------------------------------

def to_numpy(x: Any) -> np.ndarray:
    """A NumPy copy (or view, for NumPy input) of an array from any backend, or of a list/scalar."""
    if isinstance(x, np.ndarray):
        return x
    if array_api_compat.is_cupy_array(x):
        return x.get()
    if array_api_compat.is_torch_array(x):
        x = x.detach().cpu()
        if str(x.dtype) == "torch.bfloat16":  # NumPy has no bfloat16; float32 holds each value exactly
            x = x.float()
        return x.numpy()
    if type(x).__module__.startswith("array_api_strict"):
        return np.array(np.from_dlpack(x))  # it refuses __array__ off its default device
    return np.asarray(x)


def copy_array(x: Any) -> Any:
    """An independent copy of an array of any backend, on its own device: nothing that later writes into
    ``x`` in place (an optimizer step, say) can reach it."""
    xp = array_api_compat.array_namespace(x)
    return xp.asarray(x, copy=True, device=array_api_compat.device(x))


def to_device(x: Any, device: Any) -> Any:
    """``x`` on ``device`` of its own namespace; a no-op when it is already there."""
    if array_api_compat.device(x) == device:
        return x
    return array_api_compat.to_device(x, device)


def asarray(obj: Any, dtype: Any = None) -> Any:
    """``obj`` as an array of the current backend, on its device.

    Floating data takes the backend's default float dtype unless ``dtype`` is given, so that a weight set
    by hand matches the layer's parameters; integer and boolean data keep their dtype.
    """
    backend = get_backend()
    xp = backend.xp
    if _is_array_of(obj, xp):
        arr = to_device(obj, backend.device)
    elif array_api_compat.is_array_api_obj(obj) and not isinstance(obj, np.ndarray):
        arr = _from_other_backend(obj, backend)
    else:
        host = np.asarray(obj)
        if any(step < 0 for step in host.strides):  # a flipped view (np.flip): torch takes no negative strides
            host = np.ascontiguousarray(host)
        if host.dtype == np.float64 and dtype is None:
            host = host.astype(dtype_name(backend.dtype))  # never ask a float64-less device for float64
        arr = xp.asarray(host, device=backend.device)
    if dtype is not None:
        target = getattr(xp, dtype) if isinstance(dtype, str) else dtype
    elif xp.isdtype(arr.dtype, "real floating"):
        target = backend.dtype
    else:
        return arr
    return arr if arr.dtype == target else xp.astype(arr, target)


def _is_array_of(obj: Any, xp: Any) -> bool:
    if not array_api_compat.is_array_api_obj(obj):
        return False
    try:
        return array_api_compat.array_namespace(obj) is xp
    except TypeError:
        return False


def _from_other_backend(obj: Any, backend: Backend) -> Any:
    """Zero-copy through DLPack when both sides share a device, else through the host."""
    xp = backend.xp
    try:
        arr = xp.from_dlpack(obj)
        return to_device(arr, backend.device)
    except Exception:  # different devices, unsupported dtype, or a library without DLPack export
        return xp.asarray(to_numpy(obj), device=backend.device)
