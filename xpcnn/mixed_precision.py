"""Dtype policies, with Keras's names: what layers compute in, and what their weights are kept in.

Under ``"mixed_float16"`` or ``"mixed_bfloat16"`` convolutions, dense layers, pooling and the layers between
them compute in the half dtype, on half-precision copies of float32 weights cast at each forward (the master
weights stay float32, and so do their gradients and the optimizer's update). Batch norm takes and hands on
the half dtype but computes its statistics and normalisation in float32 (its parameters' dtype, as PyTorch's
kernels do); softmax, sigmoid and the preprocessing layers compute in float32; a model's outputs, and so its
loss and metrics, are float32. ``"float32"``, the default, casts nothing: every array
keeps the backend's dtype (float64 too, under ``set_backend(..., dtype="float64")``).

A layer takes the global policy when it is created (as in Keras); ``layer.dtype_policy`` and
``model.dtype_policy`` change it afterwards, and model files keep it. ``compile`` under a policy that
computes in float16 wraps the optimizer in ``LossScaleOptimizer`` (float16 gradients underflow without
loss scaling; bfloat16 has float32's exponent range and needs none).
"""

from __future__ import annotations

from typing import Any

from .optimizers import LossScaleOptimizer

__all__ = ["POLICY_NAMES", "LossScaleOptimizer", "Policy", "global_policy", "set_global_policy"]

#: Each policy's compute dtype (None: the backend's own dtype, nothing is cast).
_COMPUTE = {"float32": None, "mixed_float16": "float16", "mixed_bfloat16": "bfloat16"}
POLICY_NAMES: tuple[str, ...] = tuple(_COMPUTE)


class Policy:
    """A named dtype policy (``keras.mixed_precision.Policy``): ``compute_dtype`` (``"float16"``,
    ``"bfloat16"``; ``None`` under ``"float32"``: the backend's dtype) and ``variable_dtype``."""

    def __init__(self, name: str) -> None:
        if name not in _COMPUTE:
            raise ValueError(f"unknown dtype policy {name!r}; known: {list(POLICY_NAMES)}")
        self.name = name

    @property
    def compute_dtype(self) -> str | None:
        """``"float16"``, ``"bfloat16"``, or None under ``"float32"`` (nothing is cast)."""
        return _COMPUTE[self.name]

    @property
    def variable_dtype(self) -> str:
        """What the weights are kept in: float32 (the master weights)."""
        return "float32"

    @property
    def mixed(self) -> bool:
        """Whether layers under it compute in a half dtype on float32 weights."""
        return self.compute_dtype is not None

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Policy) and other.name == self.name

    def __hash__(self) -> int:
        return hash(self.name)

    def __repr__(self) -> str:
        return f'<Policy "{self.name}">'


def as_policy(value: Any, owner: str) -> Policy:
    """A ``Policy`` from itself or its name; a TypeError/ValueError naming ``owner`` otherwise."""
    if isinstance(value, Policy):
        return value
    if not isinstance(value, str):
        raise TypeError(f"{owner}: a dtype policy is a Policy or one of {list(POLICY_NAMES)}, got {value!r}")
    if value not in _COMPUTE:
        raise ValueError(f"{owner}: unknown dtype policy {value!r}; known: {list(POLICY_NAMES)}")
    return Policy(value)


_global = Policy("float32")


def set_global_policy(policy: Policy | str) -> None:
    """The policy of the layers created from now on (those that exist keep theirs)."""
    global _global
    _global = as_policy(policy, "set_global_policy")


def global_policy() -> Policy:
    """The policy new layers take."""
    return _global
