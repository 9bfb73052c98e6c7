"""Optimizers with exactly ``torch.optim``'s update rules, written once on the Array API.

``step(params, grads)`` takes and returns dicts keyed by parameter name (``"0.weight"``). Buffers are created
on a parameter's first step, on its device and dtype. Updates are in place where the backend allows (NumPy,
CuPy, torch, array-api-strict) and functional on JAX, so always rebind to the returned dict. Step counts are
Python ints and hyper-parameters Python floats: a step never reads an array value back to the host.
``apply`` is the same update as a function of explicit state (parameters, buffers, step numbers, learning
rate in; new parameters and buffers out), which is what a training step compiled with ``jax.jit`` calls, with
the step numbers and the learning rate as traced 0-d arrays so that neither change forces a new trace.

Every optimizer can also keep an exponential moving average of the weights, as Keras's ``use_ema``
(``ema = p`` after a parameter's first averaged step, ``ema = ema_momentum * ema + (1 - ema_momentum) * p``
after each later one): ``averaged_params`` gives it, and ``Sequential.fit`` leaves it in the model when
training ends. Averaging the last hundred or so steps smooths the noise of the final mini-batches out of the
weights. ``use_ema`` may be switched on or off between steps: the average (re)starts from the weights then.
"""

from __future__ import annotations

import contextlib
import contextvars
import inspect
import math
from collections.abc import Iterator, Mapping
from typing import Any, ClassVar

import array_api_compat
import array_api_extra as xpx

from ._checks import check_flag
from .backend import asarray, copy_array

__all__ = ["OPTIMIZERS", "SGD", "Adam", "AdamW", "LossScaleOptimizer", "Optimizer", "RMSprop", "get"]

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


class SGD(Optimizer):
    """Stochastic gradient descent with optional heavy-ball or Nesterov momentum (``torch.optim.SGD``)."""

    name = "sgd"

    def __init__(self, lr: float = 0.01, momentum: float = 0.0, nesterov: bool = False,
                 weight_decay: float = 0.0, use_ema: bool = False, ema_momentum: float = 0.99) -> None:
        super().__init__(lr, weight_decay, use_ema, ema_momentum)
        nesterov = check_flag(nesterov, "nesterov", type(self).__name__)
        _require(momentum >= 0.0, f"SGD: momentum must be >= 0, got {momentum}")
        _require(not nesterov or momentum > 0.0, "SGD: nesterov=True needs momentum > 0")
        self.momentum = float(momentum)
        self.nesterov = nesterov

    def _slot_names(self) -> tuple[str, ...]:
        return ("momentum_buffer",) if self.momentum else ()

    def _update(self, p: Array, grad: Array, slots: dict[str, Array], step: Any, lr: Any) -> Array:
        grad = self._with_l2(p, grad)
        if self.momentum:
            buf = self._momentum(slots, self.momentum, grad)
            grad = grad + self.momentum * buf if self.nesterov else buf
        return _write(p, p - lr * grad)


class Adam(Optimizer):
    """Adam with bias corrections and optional AMSGrad (``torch.optim.Adam``); L2 weight decay."""

    name = "adam"
    decoupled_weight_decay: ClassVar[bool] = False

    def __init__(self, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0, amsgrad: bool = False, use_ema: bool = False,
                 ema_momentum: float = 0.99) -> None:
        super().__init__(lr, weight_decay, use_ema, ema_momentum)
        owner = type(self).__name__
        _require(len(betas) == 2 and all(0.0 <= b < 1.0 for b in betas),
                 f"{owner}: betas must be two numbers in [0, 1), got {betas}")
        _require(eps > 0.0, f"{owner}: eps must be > 0, got {eps}")
        self.betas = (float(betas[0]), float(betas[1]))
        self.eps = float(eps)
        self.amsgrad = check_flag(amsgrad, "amsgrad", type(self).__name__)

    def _slot_names(self) -> tuple[str, ...]:
        return ("exp_avg", "exp_avg_sq") + (("max_exp_avg_sq",) if self.amsgrad else ())

    def _update(self, p: Array, grad: Array, slots: dict[str, Array], step: Any, lr: Any) -> Array:
        xp = array_api_compat.array_namespace(p, grad)
        beta1, beta2 = self.betas
        decayed = p  # AdamW's decay joins the single write of p below
        if not self.decoupled_weight_decay:
            grad = self._with_l2(p, grad)
        elif self.weight_decay:
            decayed = p * (1.0 - lr * self.weight_decay)
        # the same forms as torch's exp_avg.lerp_ and exp_avg_sq.mul_().addcmul_()
        m = _set_slot(slots, "exp_avg", slots["exp_avg"] + (1.0 - beta1) * (grad - slots["exp_avg"]))
        v = _set_slot(slots, "exp_avg_sq", beta2 * slots["exp_avg_sq"] + (1.0 - beta2) * (grad * grad))
        if self.amsgrad:
            v = _set_slot(slots, "max_exp_avg_sq", xp.maximum(slots["max_exp_avg_sq"], v))
        denom = xp.sqrt(v) / _sqrt(1.0 - beta2**step) + self.eps
        return _write(p, decayed - lr / (1.0 - beta1**step) * (m / denom))


class AdamW(Adam):
    """Adam with decoupled weight decay: ``p *= 1 - lr * weight_decay`` first (``torch.optim.AdamW``)."""

    name = "adamw"
    decoupled_weight_decay = True

    def __init__(self, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.01, amsgrad: bool = False, use_ema: bool = False,
                 ema_momentum: float = 0.99) -> None:
        super().__init__(lr, betas, eps, weight_decay, amsgrad, use_ema, ema_momentum)


class RMSprop(Optimizer):
    """RMSprop, eps outside the square root, optional centering and momentum (``torch.optim.RMSprop``)."""

    name = "rmsprop"

    def __init__(self, lr: float = 0.01, alpha: float = 0.99, eps: float = 1e-8, momentum: float = 0.0,
                 centered: bool = False, weight_decay: float = 0.0, use_ema: bool = False,
                 ema_momentum: float = 0.99) -> None:
        super().__init__(lr, weight_decay, use_ema, ema_momentum)
        _require(0.0 <= alpha < 1.0, f"RMSprop: alpha must be in [0, 1), got {alpha}")
        _require(eps > 0.0, f"RMSprop: eps must be > 0, got {eps}")
        _require(momentum >= 0.0, f"RMSprop: momentum must be >= 0, got {momentum}")
        self.alpha = float(alpha)
        self.eps = float(eps)
        self.momentum = float(momentum)
        self.centered = check_flag(centered, "centered", type(self).__name__)

    def _slot_names(self) -> tuple[str, ...]:
        return (("square_avg",) + (("momentum_buffer",) if self.momentum else ())
                + (("grad_avg",) if self.centered else ()))

    def _update(self, p: Array, grad: Array, slots: dict[str, Array], step: Any, lr: Any) -> Array:
        xp = array_api_compat.array_namespace(p, grad)
        grad = self._with_l2(p, grad)
        alpha = self.alpha
        square_avg = _set_slot(slots, "square_avg",
                               alpha * slots["square_avg"] + (1.0 - alpha) * (grad * grad))
        if self.centered:
            grad_avg = _set_slot(slots, "grad_avg",
                                 slots["grad_avg"] + (1.0 - alpha) * (grad - slots["grad_avg"]))
            square_avg = square_avg - grad_avg * grad_avg
        direction = grad / (xp.sqrt(square_avg) + self.eps)
        if self.momentum:
            direction = self._momentum(slots, self.momentum, direction)
        return _write(p, p - lr * direction)


_SCALING_KEY = "loss_scale"  # its entry in the state; parameter keys always hold a dot, so none is this
_SCALING_SLOTS = ("scale", "good_steps", "skipped")


class LossScaleOptimizer(Optimizer):
    """Dynamic loss scaling around another optimizer (Keras's ``LossScaleOptimizer``, torch's ``GradScaler``).

    float16 holds nothing below 6e-8, so small gradients would flush to zero: the loss gradient is
    multiplied by the scale before the backward pass and the update divides it out, in float32. A step whose
    gradients hold an inf or a NaN changes nothing (parameters, buffers and the inner optimizer's step count
    stay, as ``GradScaler`` skips ``optimizer.step()``) and halves the scale; ``dynamic_growth_steps`` good
    steps in a row double it. The decision stays on the device (masked writes: no host read, one trace under
    ``jax.jit``). The scale, the count of good steps and of skipped ones are float32 0-d arrays in the
    state's ``"loss_scale"`` entry, so model files and backups keep them. ``compile`` wraps the optimizer
    in one by itself under a ``mixed_float16`` policy.
    """

    name = "loss_scale"

    def __init__(self, inner_optimizer: Any, initial_scale: float = 2.0**15,
                 dynamic_growth_steps: int = 2000) -> None:
        inner = get(dict(inner_optimizer) if isinstance(inner_optimizer, Mapping) else inner_optimizer)
        _require(not isinstance(inner, LossScaleOptimizer), "LossScaleOptimizer: the inner optimizer is "
                 "already a LossScaleOptimizer")
        _require(isinstance(initial_scale, (int, float)) and not isinstance(initial_scale, bool)
                 and 1.0 <= initial_scale < float(2**127),
                 f"LossScaleOptimizer: initial_scale must be a number in [1, 2**127), got {initial_scale!r}")
        _require(isinstance(dynamic_growth_steps, int) and not isinstance(dynamic_growth_steps, bool)
                 and dynamic_growth_steps >= 1,
                 f"LossScaleOptimizer: dynamic_growth_steps must be an int >= 1, got {dynamic_growth_steps!r}")
        self.inner_optimizer = inner
        self.initial_scale = float(initial_scale)
        self.dynamic_growth_steps = dynamic_growth_steps
        self.iterations = 0
        self.state: dict[str, dict[str, Array]] = {}
        self._steps: dict[str, int] = {}

    # the inner optimizer's hyper-parameters, read and set through the wrapper (schedules set ``lr``)
    lr = property(lambda self: self.inner_optimizer.lr,
                  lambda self, value: setattr(self.inner_optimizer, "lr", value),
                  doc="The inner optimizer's learning rate (schedules set it through the wrapper).")
    use_ema = property(lambda self: self.inner_optimizer.use_ema, doc="The inner optimizer's ``use_ema``.")
    ema_momentum = property(lambda self: self.inner_optimizer.ema_momentum,
                            doc="The inner optimizer's ``ema_momentum``.")

    @property
    def dynamic_scale(self) -> Any:
        """The current loss scale: a 0-d array after the first step, ``initial_scale`` before it."""
        scaling = self.state.get(_SCALING_KEY)
        return self.initial_scale if scaling is None else scaling["scale"]

    def loss_scale(self, state: Mapping[str, Any]) -> Any:
        scaling = state.get(_SCALING_KEY)
        return self.initial_scale if scaling is None else scaling["scale"]

    def _slot_names(self) -> tuple[str, ...]:
        return self.inner_optimizer._slot_names()

    def init_state(self, params: Mapping[str, Array]) -> dict[str, dict[str, Array]]:
        state = super().init_state(params)
        if _SCALING_KEY not in state and params:
            state[_SCALING_KEY] = self._fresh_scaling(next(iter(params.values())))
        return state

    def _fresh_scaling(self, like: Array) -> dict[str, Array]:
        xp = array_api_compat.array_namespace(like)
        device = array_api_compat.device(like)
        values = (self.initial_scale, 0.0, 0.0)
        return {name: xp.asarray(v, dtype=xp.float32, device=device) for name, v in zip(_SCALING_SLOTS, values)}

    def apply(self, params: Mapping[str, Array], grads: Mapping[str, Array],
              state: Mapping[str, dict[str, Array]], steps: Mapping[str, Any], lr: Any,
              update_if: Array | None = None) -> tuple[dict[str, Array], dict[str, dict[str, Array]]]:
        """Unscale ``grads``, take the inner update where every gradient is finite (and ``update_if``), and
        move the scale on (``GradScaler.update``'s rule)."""
        grads = {k: g for k, g in grads.items() if g is not None}
        if not grads:
            return dict(params), dict(state)
        like = next(iter(grads.values()))
        xp = array_api_compat.array_namespace(like)
        scaling = state.get(_SCALING_KEY) or self._fresh_scaling(like)
        scale, good, skipped = (scaling[name] for name in _SCALING_SLOTS)
        unscaled = {k: g * (1.0 / scale) for k, g in grads.items()}
        finite = None
        for g in unscaled.values():
            ok = xp.all(xp.isfinite(g))
            finite = ok if finite is None else xp.logical_and(finite, ok)
        if update_if is not None:
            finite = xp.logical_and(finite, update_if)
        # the inner optimizer counts the steps it took: bias corrections as if skipped steps never happened
        inner_steps = {k: steps[k] - skipped for k in grads}
        inner_state = {k: v for k, v in state.items() if k != _SCALING_KEY}
        params, new_state = self.inner_optimizer.apply(params, unscaled, inner_state, inner_steps, lr,
                                                       update_if=finite)
        zero = xp.zeros_like(good)
        good = xp.where(finite, good + 1.0, zero)
        grown = scale * 2.0
        grow = xp.logical_and(good >= float(self.dynamic_growth_steps), xp.isfinite(grown))
        new_scale = xp.where(finite, xp.where(grow, grown, scale), scale * 0.5)
        new_state[_SCALING_KEY] = {"scale": new_scale, "good_steps": xp.where(grow, zero, good),
                                   "skipped": skipped + xp.where(finite, zero, xp.ones_like(good))}
        return params, new_state

    def get_config(self) -> dict[str, Any]:
        return {"name": self.name, "inner_optimizer": self.inner_optimizer.get_config(),
                "initial_scale": self.initial_scale, "dynamic_growth_steps": self.dynamic_growth_steps}

    def load_state_dict(self, state: Mapping[str, Any], params: Mapping[str, Array] | None = None) -> None:
        """As ``Optimizer.load_state_dict``; the ``"loss_scale"`` entry holds three 0-d arrays."""
        owner = "LossScaleOptimizer.load_state_dict"
        _require(isinstance(state, Mapping) and isinstance(state.get("config"), Mapping),
                 f"{owner}: expected a state dict with a 'config'")
        config = dict(state["config"])
        _require(config.pop("name", None) == self.name,
                 f"{owner}: the state is for optimizer {state['config'].get('name')!r}, not {self.name!r}")
        try:
            fresh = LossScaleOptimizer(**config)
        except TypeError as exc:
            raise ValueError(f"{owner}: bad hyper-parameters: {exc}") from exc
        buffers = dict(state.get("state", {}))
        scaling = buffers.pop(_SCALING_KEY, None)
        if scaling is not None:
            _require(isinstance(scaling, Mapping) and set(scaling) == set(_SCALING_SLOTS),
                     f"{owner}: the 'loss_scale' entry must hold {list(_SCALING_SLOTS)}, got "
                     f"{sorted(scaling) if isinstance(scaling, Mapping) else scaling!r}")
            for name in _SCALING_SLOTS:
                _require(tuple(getattr(scaling[name], "shape", (None,))) == (),
                         f"{owner}: loss_scale[{name!r}] must be a 0-d array")
        inner = fresh.inner_optimizer
        inner.load_state_dict({"config": config["inner_optimizer"], "iterations": state["iterations"],
                               "state": buffers, **({"steps": state["steps"]} if "steps" in state else {})}, params)
        self.inner_optimizer, self.initial_scale = inner, fresh.initial_scale
        self.dynamic_growth_steps = fresh.dynamic_growth_steps
        self.iterations, self._steps = inner.iterations, dict(inner._steps)
        self.state, inner.state = dict(inner.state), {}
        if scaling is not None:
            self.state[_SCALING_KEY] = {name: _owned_copy(scaling[name], "float32") for name in _SCALING_SLOTS}


OPTIMIZERS: dict[str, type[Optimizer]] = {cls.name: cls
                                          for cls in (SGD, Adam, AdamW, RMSprop, LossScaleOptimizer)}


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
