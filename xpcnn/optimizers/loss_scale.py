"""Dynamic loss scaling for float16 training, as an optimizer that wraps another."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import array_api_compat

from .base import OPTIMIZERS, Array, Optimizer, _owned_copy, _require, get

__all__ = ["LossScaleOptimizer"]


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


OPTIMIZERS[LossScaleOptimizer.name] = LossScaleOptimizer
