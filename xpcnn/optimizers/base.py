"""The optimizer base class: state layout, masked writes, the moving average of the weights, the registry
of names that ``get`` reads. The update rules live in ``rules`` and ``loss_scale``."""

from __future__ import annotations

import contextlib
import contextvars
import inspect
import math
from collections.abc import Iterator, Mapping
from typing import Any, ClassVar

import array_api_compat
import array_api_extra as xpx

from .._checks import check_flag
from ..backend import asarray, copy_array

__all__ = ["OPTIMIZERS", "Optimizer", "get"]

Array = Any
_STATE_KEYS = {"config", "iterations", "state", "steps"}
#: Within ``Optimizer.apply(..., update_if=ok)``: the 0-d boolean every write is masked with.
_UPDATE_IF: contextvars.ContextVar[Array | None] = contextvars.ContextVar("update_if", default=None)


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise ValueError(message)


def _write(x: Array, value: Array) -> Array:
    """``value`` written into ``x`` where arrays are writeable (callers holding ``x`` see the update), else
    ``value`` itself: on JAX a whole-array ``.at[...].set`` would only add a slow scatter. Inside an
    ``apply(..., update_if=ok)`` it writes ``where(ok, value, x)``: a skipped step changes nothing."""
    ok = _UPDATE_IF.get()
    if ok is not None:
        value = array_api_compat.array_namespace(x, value).where(ok, value, x)
    return xpx.at(x)[...].set(value) if array_api_compat.is_writeable_array(x) else value


@contextlib.contextmanager
def _updates_only_if(ok: Array | None) -> Iterator[None]:
    token = _UPDATE_IF.set(ok)
    try:
        yield
    finally:
        _UPDATE_IF.reset(token)


def _set_slot(slots: dict[str, Array], name: str, value: Array) -> Array:
    """Write ``value`` into buffer ``name``, rebind and return it."""
    slots[name] = _write(slots[name], value)
    return slots[name]


def _sqrt(value: Any) -> Any:
    """Square root of a Python float (exact as before) or of a 0-d array (a step number traced by a jit)."""
    if isinstance(value, float):
        return math.sqrt(value)
    return array_api_compat.array_namespace(value).sqrt(value)


def _zeros_like(p: Array) -> Array:
    xp = array_api_compat.array_namespace(p)
    return xp.zeros(p.shape, dtype=p.dtype, device=array_api_compat.device(p))


def _owned_copy(buffer: Any, dtype: Any) -> Array:
    """``buffer`` on the current backend and device, copied so that no two optimizers share memory."""
    return copy_array(asarray(buffer, dtype=dtype))


class Optimizer:
    """The step loop, lazy per-parameter state, step counts and (de)serialisation.

    Subclasses name their buffers (``_slot_names``, as in torch's ``optimizer.state``) and give the update
    of one parameter (``_update``). ``lr`` is a plain float that schedules may change between steps.
    """

    name: ClassVar[str]

    def __init__(self, lr: float, weight_decay: float, use_ema: bool = False, ema_momentum: float = 0.99) -> None:
        owner = type(self).__name__
        _require(lr >= 0.0, f"{owner}: lr must be >= 0, got {lr}")
        _require(weight_decay >= 0.0, f"{owner}: weight_decay must be >= 0, got {weight_decay}")
        _require(0.0 <= ema_momentum < 1.0, f"{owner}: ema_momentum must be in [0, 1), got {ema_momentum}")
        self.lr = float(lr)
        self.weight_decay = float(weight_decay)
        self.use_ema = check_flag(use_ema, "use_ema", type(self).__name__)
        self.ema_momentum = float(ema_momentum)
        self.iterations = 0
        self.state: dict[str, dict[str, Array]] = {}
        self._steps: dict[str, int] = {}  # per parameter, like torch: a step without its gradient skips it

    def step(self, params: dict[str, Array], grads: dict[str, Array]) -> dict[str, Array]:
        """Updated ``params`` (same keys); entries without a gradient come back unchanged."""
        steps = self.next_steps([key for key in params if grads.get(key) is not None])
        updated, state = self.apply(params, grads, self.state, steps, self.lr)
        self.commit(state, steps)
        return updated

    # --- the step as a function of explicit state (what a compiled training step calls) ----------------
    def next_steps(self, keys: list[str]) -> dict[str, int]:
        """The per-parameter step numbers (from 1) that the coming update of ``keys`` will use."""
        return {key: self._steps.get(key, 0) + 1 for key in keys}

    def init_state(self, params: Mapping[str, Array]) -> dict[str, dict[str, Array]]:
        """The state with zero buffers for every parameter that has none yet (as the first step would make
        them), so that a compiled step sees the same structure from its first call on."""
        state = dict(self.state)
        for key, p in params.items():
            if key not in state:
                state[key] = {name: _zeros_like(p) for name in self._slot_names()}
        return state

    def apply(self, params: Mapping[str, Array], grads: Mapping[str, Array],
              state: Mapping[str, dict[str, Array]], steps: Mapping[str, Any], lr: Any,
              update_if: Array | None = None) -> tuple[dict[str, Array], dict[str, dict[str, Array]]]:
        """One update as a function: the new parameters and the new state, from the current ones, the
        gradients, each parameter's step number (``next_steps``) and the learning rate. Step numbers and
        ``lr`` may be Python numbers or 0-d arrays (traced under ``jax.jit``). Buffers are still written in
        place where the backend allows, as in ``step``; ``self`` is not changed. With ``update_if`` (a 0-d
        boolean array) every write keeps the old value where it is False: the step is skipped on the device,
        without reading the flag back (what loss scaling does with a step whose gradients overflowed)."""
        with _updates_only_if(update_if):
            return self._apply(params, grads, state, steps, lr)

    def loss_scale(self, state: Mapping[str, Any]) -> Any:
        """What the loss gradient is multiplied by before the backward pass (``LossScaleOptimizer``)."""
        return 1.0

    def _apply(self, params: Mapping[str, Array], grads: Mapping[str, Array],
               state: Mapping[str, dict[str, Array]], steps: Mapping[str, Any], lr: Any
               ) -> tuple[dict[str, Array], dict[str, dict[str, Array]]]:
        updated, new_state = dict(params), dict(state)
        for key, p in params.items():
            grad = grads.get(key)
            if grad is None:
                continue
            slots = dict(state[key]) if key in state else {name: _zeros_like(p) for name in self._slot_names()}
            updated[key] = self._update(p, grad, slots, steps[key], lr)
            if not self.use_ema:
                slots.pop("ema", None)
            elif "ema" not in slots:
                slots["ema"] = copy_array(updated[key])
            else:
                m = self.ema_momentum
                _set_slot(slots, "ema", m * slots["ema"] + (1.0 - m) * updated[key])
            new_state[key] = slots
        return updated, new_state

    def commit(self, state: dict[str, dict[str, Array]], steps: Mapping[str, int]) -> None:
        """Take the state an ``apply`` returned, and count the step."""
        self.state = state
        self._steps.update(steps)
        self.iterations += 1

    def averaged_params(self, params: Mapping[str, Array]) -> dict[str, Array]:
        """``params`` with each entry the optimizer has averaged replaced by a copy of its moving average
        (``use_ema``); entries never stepped, or every entry without ``use_ema``, come back as given."""
        averaged = dict(params)
        if not self.use_ema:
            return averaged
        for key in params:
            ema = self.state.get(key, {}).get("ema")
            if ema is not None:
                averaged[key] = copy_array(ema)
        return averaged

    def get_config(self) -> dict[str, Any]:
        """The constructor's arguments plus ``name``, JSON-friendly: ``get(config)`` rebuilds the optimizer."""
        config: dict[str, Any] = {"name": self.name}
        for arg in self._hyperparameter_names():
            value = getattr(self, arg)
            config[arg] = list(value) if isinstance(value, tuple) else value
        return config

    def state_dict(self) -> dict[str, Any]:
        """``{"config", "iterations", "state": {key: {buffer: array}}, "steps": {key: int}}``.

        The arrays are the live buffers (as in torch): convert or copy them before the next step.
        """
        return {
            "config": self.get_config(),
            "iterations": self.iterations,
            "state": {key: dict(slots) for key, slots in self.state.items()},
            "steps": dict(self._steps),
        }

    def load_state_dict(self, state: Mapping[str, Any], params: Mapping[str, Array] | None = None) -> None:
        """Restore hyper-parameters, counters and buffers (copied onto the current backend and device).

        Everything is validated before anything changes. With ``params`` each buffer must match its
        parameter's shape and takes its dtype. ``steps`` may be absent (then every key has ``iterations``).
        """
        owner = f"{type(self).__name__}.load_state_dict"
        keys = set(state)
        _require(keys <= _STATE_KEYS and keys >= _STATE_KEYS - {"steps"},
                 f"{owner}: expected keys {sorted(_STATE_KEYS)} ('steps' optional), got {sorted(keys)}")
        config = dict(state["config"])
        kind = config.pop("name", None)
        _require(kind == self.name, f"{owner}: the state is for optimizer {kind!r}, not {self.name!r}")
        try:
            fresh = type(self)(**config)
        except TypeError as exc:
            raise ValueError(f"{owner}: bad hyper-parameters for {self.name!r}: {exc}") from exc
        slot_names = set(fresh._slot_names())
        buffers = {}
        for key, slots in state["state"].items():
            _require(set(slots) - {"ema"} == slot_names,
                     f"{owner}: parameter {key!r} has buffers {sorted(slots)}, expected {sorted(slot_names)}"
                     f" (and 'ema' with use_ema)")
            _require(params is None or key in params, f"{owner}: state for unknown parameter {key!r}")
            like = params[key] if params is not None else next(iter(slots.values()), None)
            for name, buffer in slots.items():
                _require(tuple(buffer.shape) == tuple(like.shape),
                         f"{owner}: buffer {name!r} of {key!r} has shape {tuple(buffer.shape)}, "
                         f"expected {tuple(like.shape)}")
            dtype = params[key].dtype if params is not None else None
            buffers[key] = {name: _owned_copy(buffer, dtype) for name, buffer in slots.items()
                            if name != "ema" or fresh.use_ema}
        iterations = int(state["iterations"])
        steps = state.get("steps", {})
        for arg in self._hyperparameter_names():
            setattr(self, arg, getattr(fresh, arg))
        self.iterations = iterations
        self.state = buffers
        self._steps = {key: int(steps.get(key, iterations)) for key in buffers}

    # --- what subclasses provide -------------------------------------------------------------------------
    def _slot_names(self) -> tuple[str, ...]:
        raise NotImplementedError

    def _update(self, p: Array, grad: Array, slots: dict[str, Array], step: Any, lr: Any) -> Array:
        """The updated ``p``; writes its buffers through ``_set_slot``. ``step`` counts from 1."""
        raise NotImplementedError

    # --- shared pieces ------------------------------------------------------------------------------------
    @classmethod
    def _hyperparameter_names(cls) -> list[str]:
        return list(inspect.signature(cls).parameters)

    def _with_l2(self, p: Array, grad: Array) -> Array:
        """torch's coupled weight decay: the L2 term ``weight_decay * p`` joins the gradient."""
        return grad + self.weight_decay * p if self.weight_decay else grad

    @staticmethod
    def _momentum(slots: dict[str, Array], momentum: float, direction: Array) -> Array:
        """Heavy-ball buffer ``b = momentum * b + direction`` (dampening 0); zero-initialised, so the
        first step's buffer is exactly ``direction``, as torch's SGD clones the gradient."""
        return _set_slot(slots, "momentum_buffer", momentum * slots["momentum_buffer"] + direction)


#: name -> class, for ``get`` and for model files; each module of update rules adds its own.
OPTIMIZERS: dict[str, type[Optimizer]] = {}


def get(identifier: str | Mapping[str, Any] | Optimizer, **kwargs: Any) -> Optimizer:
    """An optimizer from a name (``"adam"``, any case) and keyword arguments, a ``get_config()`` dict, or an
    instance (returned as is)."""
    if isinstance(identifier, Optimizer):
        _require(not kwargs, "get: keyword arguments apply to an optimizer name, not to an instance")
        return identifier
    if isinstance(identifier, Mapping):
        config = dict(identifier)
        identifier = config.pop("name", None)
        kwargs = {**config, **kwargs}
    cls = OPTIMIZERS.get(identifier.lower()) if isinstance(identifier, str) else None
    _require(cls is not None, f"unknown optimizer {identifier!r}; known: {sorted(OPTIMIZERS)}")
    return cls(**kwargs)
