"""The update rules of ``torch.optim`` that xpcnn offers: SGD, Adam, AdamW, RMSprop."""

from __future__ import annotations

from typing import Any, ClassVar

import array_api_compat

from .._checks import check_flag
from .base import OPTIMIZERS, Array, Optimizer, _require, _set_slot, _sqrt, _write

__all__ = ["SGD", "Adam", "AdamW", "RMSprop"]


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


OPTIMIZERS.update({cls.name: cls for cls in (SGD, Adam, AdamW, RMSprop)})
