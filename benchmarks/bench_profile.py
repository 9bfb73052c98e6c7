"""Per-op time profile of xpcnn training steps, by monkeypatching (this process only, undone afterwards).

Every wrapped function records its *exclusive* time (its own wall time minus that of wrapped functions it
called), under one category, so that categories add up without double counting; whatever no wrapper saw
(the fit loop, batching, model and layer bookkeeping that calls no op) is the "other" bucket, computed as
step time minus the sum. Wrapped: the backend namespace's matrix products, ``xpcnn.ops.windows`` (im2col,
col2im, padding), the public functions of every ``xpcnn.ops`` module, the optimizer's update methods, and
``Layer.forward``/``Layer.backward`` (the layer code around the ops). On a GPU each wrapper synchronises
the device before and after (on JAX it blocks on its arguments and results), so time lands where the
work is done; the profiled step is then a little slower than the real, asynchronous one.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import pkgutil
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

CATEGORY_ORDER = [
    "matmul (BLAS)",
    "im2col (window extraction)",
    "col2im (window scatter-add)",
    "pad/unpad",
    "pooling",
    "conv (reshape, bias)",
    "dense (bias)",
    "activations",
    "batchnorm",
    "loss",
    "optimizer",
    "layer code outside ops",
]
OTHER = "other (fit loop, batching, unwrapped)"

_WINDOW_CATEGORIES = {
    "im2col": "im2col (window extraction)",
    "col2im": "col2im (window scatter-add)",
    "pad2d": "pad/unpad",
    "unpad2d": "pad/unpad",
}
_MODULE_CATEGORIES = {
    "conv": "conv (reshape, bias)",
    "pool": "pooling",
    "linear": "dense (bias)",
    "activations": "activations",
    "normalization": "batchnorm",
    "losses": "loss",
}
_MATMUL_NAMES = ("matmul", "tensordot", "vecdot", "einsum", "dot")
_OPTIMIZER_METHODS = ("step", "update", "apply_gradients", "apply", "_update", "_update_param", "_step")


class _DictSlot:
    """Lets ``restore`` put a dict entry back as it puts back a module or class attribute (a registry's key may
    be any hashable, a layer class for instance, which ``setattr`` would refuse)."""

    def __init__(self, d: dict) -> None:
        self.d = d

    def put(self, key: Any, value: Any) -> None:
        self.d[key] = value


class OpProfiler:
    def __init__(self, sync: Callable[[], None] | None = None, block: Callable[[Any], Any] | None = None) -> None:
        """``sync()`` waits for all queued device work (CuPy, torch on CUDA); ``block(tree)`` waits for the
        arrays in a pytree (JAX's asynchronous dispatch). Either makes time land where the work is done."""
        self.sync = sync
        self.block = block
        self.enabled = False
        self.exclusive: dict[str, float] = defaultdict(float)
        self.inclusive: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)
        self._stack: list[float] = []
        self._undo: list[tuple[Any, str, Any]] = []

    # --- timing --------------------------------------------------------------------------------------
    def wrap(self, fn: Callable, category: str | Callable[..., str], label: str | Callable[..., str]) -> Callable:
        prof = self

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if not prof.enabled:
                return fn(*args, **kwargs)
            if prof.sync is not None:
                prof.sync()
            if prof.block is not None:
                prof.block((args, kwargs))
            prof._stack.append(0.0)
            t0 = time.perf_counter()
            result = None
            try:
                result = fn(*args, **kwargs)
                return result
            finally:
                if prof.sync is not None:
                    prof.sync()
                if prof.block is not None:
                    prof.block(result)
                dt = time.perf_counter() - t0
                child = prof._stack.pop()
                cat = category(*args) if callable(category) else category
                lab = label(*args) if callable(label) else label
                prof.exclusive[cat] += dt - child
                prof.inclusive[lab] += dt
                prof.calls[lab] += 1
                if prof._stack:
                    prof._stack[-1] += dt

        wrapper.__wrapped_by_bench__ = fn  # type: ignore[attr-defined]
        return wrapper

    def reset(self) -> None:
        self.exclusive.clear()
        self.inclusive.clear()
        self.calls.clear()

    # --- patching ------------------------------------------------------------------------------------
    def _set(self, owner: Any, name: str, value: Any) -> None:
        previous = vars(owner)[name] if isinstance(owner, type) else getattr(owner, name)  # keep staticmethods
        self._undo.append((owner, name, previous))
        setattr(owner, name, value)

    def patch_function(self, fn: Callable, category: str, label: str) -> int:
        """Replace ``fn`` by its wrapper wherever an ``xpcnn`` module holds it (``from .windows import im2col``)."""
        wrapper = self.wrap(fn, category, label)
        count = 0
        for mod_name, mod in list(sys.modules.items()):
            if mod is None or not (mod_name == "xpcnn" or mod_name.startswith("xpcnn.")):
                continue
            for attr, value in list(vars(mod).items()):
                if value is fn:
                    self._set(mod, attr, wrapper)
                    count += 1
                elif isinstance(value, dict) and not attr.startswith("__"):  # registries: name -> function
                    for key, item in list(value.items()):
                        if item is fn:
                            self._undo.append((_DictSlot(value), key, item))
                            value[key] = wrapper
                            count += 1
                elif isinstance(value, type) and value.__module__ == mod_name:  # e.g. _pool = staticmethod(op)
                    for cattr, cvalue in list(vars(value).items()):
                        if cvalue is fn:
                            self._set(value, cattr, wrapper)
                            count += 1
                        elif isinstance(cvalue, staticmethod) and cvalue.__func__ is fn:
                            self._set(value, cattr, staticmethod(wrapper))
                            count += 1
        return count

    def patch_method(self, cls: type, name: str, category: str | Callable[..., str],
                     label: str | Callable[..., str]) -> None:
        self._set(cls, name, self.wrap(getattr(cls, name), category, label))

    def restore(self) -> None:
        while self._undo:
            owner, name, value = self._undo.pop()
            if isinstance(owner, _DictSlot):
                owner.put(name, value)
            else:
                setattr(owner, name, value)

    def install(self, xp: Any, optimizer: Any) -> list[str]:
        """Wrap everything listed in the module docstring; returns what was wrapped, for the report."""
        import xpcnn.ops
        from xpcnn.layers.base import Layer

        wrapped: list[str] = []
        for name in _MATMUL_NAMES:
            fn = getattr(xp, name, None)
            if callable(fn):
                self._set(xp, name, self.wrap(fn, "matmul (BLAS)", f"xp.{name}"))
                wrapped.append(f"xp.{name}")
        for info in pkgutil.iter_modules(xpcnn.ops.__path__):
            try:
                mod = importlib.import_module(f"xpcnn.ops.{info.name}")
            except ImportError:  # the native kernels of a library that is not installed here
                continue
            for name in getattr(mod, "__all__", []):
                fn = getattr(mod, name, None)
                if not inspect.isfunction(fn) or fn.__module__ != mod.__name__:
                    continue
                if info.name == "windows":
                    if name not in _WINDOW_CATEGORIES:
                        continue  # index arithmetic (as_pair, resolve_padding...): cheap, left in its caller
                    category = _WINDOW_CATEGORIES[name]
                else:
                    category = _MODULE_CATEGORIES.get(info.name, f"ops.{info.name}")
                if self.patch_function(fn, category, f"ops.{info.name}.{name}"):
                    wrapped.append(f"ops.{info.name}.{name}")
        for cls in type(optimizer).__mro__:
            if cls is object:
                continue
            for name in _OPTIMIZER_METHODS:
                if name in vars(cls) and callable(vars(cls)[name]):
                    self.patch_method(cls, name, "optimizer", f"{type(optimizer).__name__}.{name}")
                    wrapped.append(f"{cls.__name__}.{name}")
        for name in ("forward", "backward"):
            self.patch_method(Layer, name, "layer code outside ops",
                              lambda layer, *a, _n=name: f"{type(layer).__name__}.{_n}")
            wrapped.append(f"Layer.{name}")
        return wrapped

    # --- report --------------------------------------------------------------------------------------
    def table(self, steps: int, step_s: float) -> dict[str, Any]:
        """Per-step ms and % of step time by category, 'other' closing the sum; plus per-function totals."""
        rows = []
        order = CATEGORY_ORDER + sorted(set(self.exclusive) - set(CATEGORY_ORDER))
        accounted = 0.0
        for cat in order:
            if cat not in self.exclusive:
                continue
            seconds = self.exclusive[cat] / steps
            accounted += seconds
            rows.append({"category": cat, "ms_per_step": seconds * 1e3, "percent": 100 * seconds / step_s})
        other = step_s - accounted
        rows.append({"category": OTHER, "ms_per_step": other * 1e3, "percent": 100 * other / step_s})
        functions = sorted(
            ({"function": k, "calls_per_step": self.calls[k] / steps, "inclusive_ms_per_step": v / steps * 1e3}
             for k, v in self.inclusive.items()),
            key=lambda r: -r["inclusive_ms_per_step"],
        )
        return {"categories": rows, "functions": functions}


def format_table(rows: list[dict[str, Any]], step_ms: float) -> str:
    lines = [f"  {'category':<40} {'ms/step':>10} {'% step':>8}"]
    for r in rows:
        lines.append(f"  {r['category']:<40} {r['ms_per_step']:>10.2f} {r['percent']:>7.1f}%")
    lines.append(f"  {'total (measured step time)':<40} {step_ms:>10.2f} {100.0:>7.1f}%")
    return "\n".join(lines)


def format_functions(functions: list[dict[str, Any]], limit: int = 12) -> str:
    lines = [f"  {'function (inclusive, nested calls counted in each)':<52} {'calls/step':>10} {'ms/step':>10}"]
    for r in functions[:limit]:
        lines.append(f"  {r['function']:<52} {r['calls_per_step']:>10.1f} {r['inclusive_ms_per_step']:>10.2f}")
    return "\n".join(lines)
