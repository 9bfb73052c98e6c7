"""Batch-norm running statistics re-estimated for the weights a model holds now.

A weight average (``use_ema``, SWA) is a set of weights no batch has run through: the running means and
variances gathered during training belong to the raw weights, and a BatchNorm network evaluated with them
loses accuracy (91-97% on MNIST where the raw weights give 98%+). ``update_bn`` gives each BatchNorm layer the
statistics of the data under the current weights: one forward pass in training mode, every batch weighing the
same (a cumulative average), as ``torch.optim.swa_utils.update_bn`` does. ``Model.fit`` calls it when it
swaps the average in.
"""

from __future__ import annotations

from typing import Any

from .data import DataLoader, is_stream
from .layers.normalization import BatchNorm1D, BatchNorm2D
from .step_functions import batch_size as batch_size_of

__all__ = ["update_bn"]


def update_bn(model: Any, data: Any, batch_size: int = 32) -> None:
    """Replace the running statistics of every BatchNorm layer of ``model`` by their average over the batches
    of ``data`` run through the model in training mode: input arrays (in order, ``batch_size`` samples each)
    or an iterable of input batches (``x`` or ``(x, y)``: a ``DataLoader``, a generator). Nothing else
    changes but the random stream when the model has dropout; a frozen BatchNorm (``trainable=False``) keeps
    its statistics. A model without batch norm is left untouched.
    A batch of one sample after the first is left out (batch norm cannot train on it)."""
    norms = [layer for layer in model.layers  # a frozen one keeps its statistics (it runs in inference mode)
             if isinstance(layer, (BatchNorm1D, BatchNorm2D)) and layer.track_running_stats and layer.trainable]
    if not norms:
        return
    batches = data if is_stream(data) else DataLoader(data, batch_size=batch_size, shuffle=False, check_finite=False)
    momenta = [layer.momentum for layer in norms]
    count = 0
    try:
        for xb in batches:
            xb = xb[0] if isinstance(xb, tuple) else xb
            if count and batch_size_of(xb) == 1:
                continue
            for layer in norms:
                layer.momentum = 1.0 / (count + 1)  # the first batch replaces the statistics, later ones average in
            model.forward(xb, training=True)
            count += 1
    finally:
        for layer, momentum in zip(norms, momenta):
            layer.momentum = momentum
