"""The training, test and prediction steps as functions of explicit state, run eagerly or compiled by JAX.

``train_step(model, state, x, y)`` is one optimisation step with everything it changes passed in and handed
back: parameters, buffers (batch-norm statistics), optimizer buffers, the per-parameter step numbers and the
learning rate (``TrainState``); the random stream comes in as a counter. The model object only serves as the
program (its layers' forward and backward). ``StepFunctions`` runs these steps for a compiled model: eagerly
on every backend, where the state is the model's and the optimizer's own and results are those of the layer
code run directly, or under ``jax.jit`` on JAX, where the whole step (forward, loss, backward, update,
weight average, metrics and the epoch sums) is one XLA program, traced once per input shape.

Under the jit nothing is read back to the host: the step numbers, the learning rate and the random counter
enter as traced scalars, so schedules and dropout never force a new trace. A new trace happens for a new
batch shape (the smaller last batch), when the optimizer's buffers change structure (the first step of a
weight average creates it), and when the seed or an optimizer's fixed hyper-parameters change.
"""

from __future__ import annotations

import collections
import json
from collections.abc import Mapping
from typing import Any, NamedTuple

import array_api_compat

from . import random
from .backend import get_backend

__all__ = ["StepFunctions", "TrainState", "accumulate", "batch_size", "train_step"]

Array = Any


class TrainState(NamedTuple):
    """Everything a training step reads and writes besides the batch (a pytree under JAX)."""

    params: dict[str, Array]
    buffers: dict[str, Array]
    slots: dict[str, dict[str, Array]]  # the optimizer's buffers per parameter
    steps: dict[str, Any]  # each parameter's step number for this update (from 1)
    lr: Any


def gradient_step(model: Any, state: TrainState, x: Any, y: Any, scale: float = 1.0
                  ) -> tuple[dict[str, Array], dict[str, Array], dict[str, Array]]:
    """The first half of a training step: the gradients of the batch's loss at ``state`` (times ``scale``: a
    rank's share of a global batch; times the optimizer's loss scale, which a ``LossScaleOptimizer`` divides
    out) for the parameters of the layers that are not frozen (the optimizer updates those only), the buffers
    the forward pass moved (batch norm), and the batch's loss and metrics as 0-d arrays."""
    model.set_params(state.params)
    model.set_buffers(state.buffers)
    pred = model.forward(x, training=True)
    logs, dpred = model.objectives(pred, y)
    loss_scale = model.optimizer.loss_scale(state.slots)  # 1.0, or a 0-d array: never compared on the host
    factors = [f for f in (scale, loss_scale) if not (isinstance(f, float) and f == 1.0)]
    for factor in factors:
        dpred = [d * factor for d in dpred] if isinstance(dpred, list) else dpred * factor
    model.backward(dpred, input_grad=False)
    trainable = model.trainable_params
    return {k: g for k, g in model.grads.items() if k in trainable}, model.buffers, logs


def train_step(model: Any, state: TrainState, x: Any, y: Any) -> tuple[TrainState, dict[str, Array]]:
    """One optimisation step of ``model`` from ``state`` on the batch ``(x, y)`` (lists for several inputs or
    outputs): the new state and the batch's loss and metrics as 0-d arrays."""
    grads, buffers, logs = gradient_step(model, state, x, y)
    params, slots = model.optimizer.apply(state.params, grads, state.slots, state.steps, state.lr)
    return state._replace(params=params, buffers=buffers, slots=slots), logs


def test_step(model: Any, x: Any, y: Any) -> dict[str, Array]:
    """Loss and metrics of ``model`` on ``(x, y)`` in inference mode, as 0-d arrays."""
    return model.objectives.evaluate(model.forward(x, training=False), y)


def _without_lr(config: dict[str, Any]) -> dict[str, Any]:
    """An optimizer's config less its learning rate (an input of the compiled step), a wrapped one's too."""
    return {k: _without_lr(v) if isinstance(v, dict) else v for k, v in config.items() if k != "lr"}


def batch_size(x: Any) -> int:
    """The number of samples in a batch of one array or of a list of them."""
    return int((x[0] if isinstance(x, (list, tuple)) else x).shape[0])


def accumulate(sums: Mapping[str, Array] | None, logs: Mapping[str, Array], size: int) -> dict[str, Array]:
    """Epoch sums: each batch mean weighted by the batch's size, added on the device."""
    if sums is None:
        return {k: v * size for k, v in logs.items()}
    return {k: sums[k] + v * size for k, v in logs.items()}


class StepFunctions:
    """The steps of one compiled model on the current backend, eager or compiled (``jit=True``, JAX only).

    ``traces`` counts how often each compiled step was traced (a test asserts it does not grow per batch).
    """

    def __init__(self, model: Any, jit: bool) -> None:
        self.model = model
        self.jit = bool(jit)
        self.traces: collections.Counter[str] = collections.Counter()
        self._draws = 0  # random draws one compiled training step makes (known once it is traced)
        if self.jit:
            import jax

            self._train = jax.jit(self._compiled_train, static_argnums=0)
            self._test = jax.jit(self._compiled_test, static_argnums=0)
            self._predict = jax.jit(self._compiled_predict, static_argnums=0)

    # --- what the trainer calls ------------------------------------------------------------------------
    def train(self, x: Array, y: Array, sums: dict[str, Array] | None) -> tuple[dict[str, Array], dict[str, Array]]:
        """One training step on ``(x, y)``; the model, its optimizer and the random stream move on. Returns
        the batch's logs and ``sums`` with the batch added (``None`` starts new sums)."""
        model, optimizer = self.model, self.model.optimizer
        steps = optimizer.next_steps(list(model.trainable_params))
        if not self.jit:
            state = TrainState(model.params, model.buffers, optimizer.state, steps, optimizer.lr)
            new, logs = train_step(model, state, x, y)
            sums = accumulate(sums, logs, batch_size(x))
        else:
            state = TrainState(model.params, model.buffers, optimizer.init_state(model.trainable_params), steps,
                               optimizer.lr)
            counter = random.get_state()["counter"]
            try:
                new, logs, sums = self._train(self._static(), state, counter, x, y, self._sums(sums))
            except BaseException:
                self._restore(state.params, state.buffers)
                raise
            random.advance(self._draws)
        model.set_params(new.params)
        model.set_buffers(new.buffers)
        optimizer.commit(new.slots, steps)
        return logs, sums

    def train_shared(self, x: Array, y: Array, sums: dict[str, Array] | None, comm: Any,
                     global_size: int) -> tuple[dict[str, Array] | None, dict[str, Array] | None]:
        """One data-parallel training step (eager): this rank's share ``(x, y)`` of a global batch of
        ``global_size`` samples; the loss gradient, weighted by the rank's share of the samples before the
        backward pass (what synchronised batch norm needs), gives gradients whose sum over the ranks is the
        one-process gradient of the global batch; every rank applies the same update."""
        model, optimizer = self.model, self.model.optimizer
        steps = optimizer.next_steps(list(model.trainable_params))
        state = TrainState(model.params, model.buffers, optimizer.state, steps, optimizer.lr)
        size = batch_size(x)
        if size:
            grads, buffers, logs = gradient_step(model, state, x, y, size / global_size)
            sums = accumulate(sums, logs, size)
        else:  # the last, smaller global batch left this rank nothing: it still takes part in the sum
            xp = array_api_compat.array_namespace(*state.params.values())
            grads = {k: xp.zeros_like(p) for k, p in model.trainable_params.items()}
            buffers, logs = state.buffers, None
        keys = list(grads)
        summed = comm.allreduce_sum([grads[k] for k in keys])
        params, slots = optimizer.apply(state.params, dict(zip(keys, summed)), state.slots, steps, state.lr)
        model.set_params(params)
        model.set_buffers(buffers)
        optimizer.commit(slots, steps)
        return logs, sums

    def test(self, x: Array, y: Array, sums: dict[str, Array] | None) -> tuple[dict[str, Array], dict[str, Array]]:
        """Loss and metrics of one batch in inference mode, and ``sums`` with them added."""
        if not self.jit:
            logs = test_step(self.model, x, y)
            return logs, accumulate(sums, logs, batch_size(x))
        params, buffers = self.model.params, self.model.buffers
        try:
            return self._test(self._static(), params, buffers, x, y, self._sums(sums))
        finally:
            self._restore(params, buffers)

    def predict(self, x: Array) -> Array:
        """The model's outputs for the batch ``x`` in inference mode."""
        if not self.jit:
            return self.model.forward(x, training=False)
        params, buffers = self.model.params, self.model.buffers
        try:
            return self._predict(self._static(), params, buffers, x)
        finally:
            self._restore(params, buffers)

    # --- the compiled bodies (traced by jax.jit; ``static`` keys what the trace bakes in) ---------------
    def _compiled_train(self, static: str, state: TrainState, counter: Array, x: Array, y: Array,
                        sums: dict[str, Array]) -> tuple[TrainState, dict[str, Array], dict[str, Array]]:
        self.traces["train"] += 1
        with random.traced_counter(counter) as drawn:
            new, logs = train_step(self.model, state, x, y)
            self._draws = drawn()
        return new, logs, accumulate(sums, logs, batch_size(x))

    def _compiled_test(self, static: str, params: dict[str, Array], buffers: dict[str, Array], x: Array, y: Array,
                       sums: dict[str, Array]) -> tuple[dict[str, Array], dict[str, Array]]:
        self.traces["test"] += 1
        self._restore(params, buffers)
        logs = test_step(self.model, x, y)
        return logs, accumulate(sums, logs, batch_size(x))

    def _compiled_predict(self, static: str, params: dict[str, Array], buffers: dict[str, Array], x: Array) -> Array:
        self.traces["predict"] += 1
        self._restore(params, buffers)
        return self.model.forward(x, training=False)

    # --- helpers --------------------------------------------------------------------------------------
    def _restore(self, params: dict[str, Array], buffers: dict[str, Array]) -> None:
        """Put these arrays back into the model: a trace leaves its stand-ins in the layers."""
        self.model.set_params(params)
        self.model.set_buffers(buffers)

    def _static(self) -> str:
        """What a trace bakes in and must be traced again for when it changes: the random seed, the
        optimizer's hyper-parameters (all but the learning rate, which is an input) and the frozen layers."""
        optimizer = self.model.optimizer
        config = None if optimizer is None else _without_lr(optimizer.get_config())
        frozen = [layer.name for layer in self.model.layers if not layer.trainable]
        return json.dumps([random.get_state()["seed"], config, frozen], sort_keys=True)

    def _sums(self, sums: dict[str, Array] | None) -> dict[str, Array]:
        """Zero sums for every log, so that the first batch of an epoch has the structure of the others."""
        if sums is not None:
            return sums
        backend = get_backend()
        zero = backend.xp.zeros((), dtype=backend.dtype, device=backend.device)
        return {name: zero for name in self.model.metrics_names}
