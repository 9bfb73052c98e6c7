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

The package: ``base`` (the ``Optimizer`` class, the registry of names), ``rules`` (SGD, Adam, AdamW, RMSprop),
``loss_scale`` (``LossScaleOptimizer``).
"""

from .base import OPTIMIZERS, Optimizer, get
from .loss_scale import LossScaleOptimizer
from .rules import SGD, Adam, AdamW, RMSprop

__all__ = ["OPTIMIZERS", "SGD", "Adam", "AdamW", "LossScaleOptimizer", "Optimizer", "RMSprop", "get"]

# Named where users import them from (``xpcnn.optimizers.Adam``, as before the module became a package): in
# reprs, and in the documentation, which describes each object once under that name.
for _public in (Optimizer, SGD, Adam, AdamW, RMSprop, LossScaleOptimizer, get):
    _public.__module__ = __name__
del _public
