"""What ``compile`` turns the loss and metrics into: one loss and its metrics per model output.

For a model with one output nothing changes from a plain loss: the logs are ``{"loss": ..., <metric>: ...}``
and backward starts from the loss's own gradient. For several outputs, as in Keras: ``loss`` is one loss for
every output, a list in output order or a dict by output name; ``loss_weights`` a list or dict of floats
(default 1); ``metrics`` a list applied to every output, or a list of lists or a dict by output name (where,
as in Keras, an output the dict does not name gets no metrics). The logs are ``"loss"`` (the weighted sum),
``"<output>_loss"`` and ``"<output>_<metric>"``.
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping, Sequence
from typing import Any

from . import losses as losses_module
from . import metrics as metrics_module

__all__ = ["Objectives"]

Array = Any


def _per_output(value: Any, names: list[str], what: str, is_single: Any, unnamed: Any = None) -> list[Any]:
    """``value`` spread over the outputs: the same for each, a list in output order, or a dict by name (which
    must name every output unless ``unnamed`` is given, the value of those it leaves out)."""
    if isinstance(value, Mapping):
        unknown = sorted(set(value) - set(names), key=str)
        missing = [n for n in names if n not in value] if unnamed is None else []
        if unknown or missing:
            problems = [f"{label} {keys}" for label, keys in (("missing", missing), ("unknown", unknown)) if keys]
            raise ValueError(f"{what} by output name must name {'exactly' if unnamed is None else 'only'} the "
                             f"model's outputs {names}; " + ", ".join(problems))
        return [value.get(n, unnamed) for n in names]
    if isinstance(value, (list, tuple)) and not is_single(value):
        if len(value) != len(names):
            raise ValueError(f"{what}: expected one entry per output ({len(names)}: {names}), got {len(value)}")
        return list(value)
    return [value] * len(names)


def _metric_list(value: Any) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, (str, metrics_module.Metric)) or callable(value) and not isinstance(value, (list, tuple)):
        return [value]
    return list(value)


class Objectives:
    """The compiled losses, weights and metrics of a model with outputs ``output_names``."""

    def __init__(self, loss: Any, metrics: Any, loss_weights: Any, output_names: list[str],
                 output_activations: list[str | None]) -> None:
        self.output_names = list(output_names)
        self.single = len(output_names) == 1
        output_activations = [*output_activations, *[None] * (len(output_names) - len(output_activations))]
        raw = _per_output(loss, output_names, "loss", lambda v: False)
        self.losses = [losses_module.get(entry, act) for entry, act in zip(raw, output_activations)]
        if self.single and loss_weights is not None:
            raise ValueError("loss_weights weigh the losses of several outputs; this model has one")
        weights = _per_output(1.0 if loss_weights is None else loss_weights, output_names, "loss_weights",
                              lambda v: False)
        for w in weights:
            if isinstance(w, bool) or not isinstance(w, numbers.Real) or w < 0:
                raise ValueError(f"loss_weights must be non-negative numbers, got {weights}")
        self.weights = [float(w) for w in weights]
        specs = (_per_output(metrics, output_names, "metrics", lambda v: not any(isinstance(e, (list, tuple))
                                                                              for e in v), unnamed=[])
                 if not self.single else [metrics])
        self.metrics = [[metrics_module.get(m, loss_obj) for m in _metric_list(spec)]
                        for spec, loss_obj in zip(specs, self.losses)]
        self.log_names = self._names()
        for n in self.log_names[1:]:
            if n == "loss" or n.startswith("val_") or self.log_names.count(n) > 1:
                raise ValueError(f"metric names must be unique, not 'loss' and not start with 'val_'; got "
                                 f"{self.log_names[1:]}")

    def _names(self) -> list[str]:
        if self.single:
            return ["loss", *(m.name for m in self.metrics[0])]
        names = ["loss", *(f"{o}_loss" for o in self.output_names)]
        for output, metrics in zip(self.output_names, self.metrics):
            names += [f"{output}_{m.name}" for m in metrics]
        return names

    def __call__(self, preds: Any, ys: Any) -> tuple[dict[str, Array], Any]:
        """The batch's logs (0-d arrays) and the gradient(s) backward starts from, for the model's
        prediction(s) ``preds`` and target(s) ``ys`` (lists for several outputs)."""
        if self.single:
            loss = self.losses[0]
            logs = {"loss": loss.forward(preds, ys)}
            for metric in self.metrics[0]:
                logs[metric.name] = metric(preds, ys)
            return logs, loss.backward()
        logs: dict[str, Array] = {}
        grads, total = [], None
        for name, loss, weight, pred, y in zip(self.output_names, self.losses, self.weights, preds, ys):
            value = loss.forward(pred, y)
            logs[f"{name}_loss"] = value
            term = value if weight == 1.0 else value * weight
            total = term if total is None else total + term
            grad = loss.backward()
            grads.append(grad if weight == 1.0 else grad * weight)
        logs = {"loss": total, **logs}
        for name, metrics, pred, y in zip(self.output_names, self.metrics, preds, ys):
            for metric in metrics:
                logs[f"{name}_{metric.name}"] = metric(pred, y)
        return logs, grads

    def evaluate(self, preds: Any, ys: Any) -> dict[str, Array]:
        """The logs alone (inference)."""
        return self(preds, ys)[0]

    def config(self) -> dict[str, Any]:
        """JSON-friendly: what ``xpcnn.io`` saves to compile the model again."""
        losses = [{"name": loss.name, "config": loss.get_config()} for loss in self.losses]
        return {"loss": losses[0] if self.single else losses,
                "loss_weights": None if self.single else self.weights}

    def loss_for(self, output: int) -> Any:
        return self.losses[output]

    @property
    def flat_metrics(self) -> Sequence[Any]:
        return [m for ms in self.metrics for m in ms]
