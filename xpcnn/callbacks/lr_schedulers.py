"""Learning-rate schedules as callbacks, with ``torch.optim.lr_scheduler``'s learning rates."""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from typing import Any

from .base import Callback, _check_int, _check_number, _emit, _monitor_value, _resolve_mode

__all__ = ["CosineAnnealingLR", "LearningRateScheduler", "ReduceLROnPlateau", "StepLR"]


def _get_lr(model: Any) -> float:
    return float(model.optimizer.lr)


def _set_lr(model: Any, lr: float) -> None:
    model.optimizer.lr = lr


class LearningRateScheduler(Callback):
    """Set ``model.optimizer.lr = schedule(epoch, lr)`` at the beginning of every epoch.

    ``schedule`` takes the 0-based epoch and the current learning rate (a one-argument ``schedule(epoch)``
    is accepted too) and returns the new rate. At epoch end ``logs["lr"]`` is set to the epoch's rate.
    """

    def __init__(self, schedule: Callable[..., float], verbose: int = 0) -> None:
        super().__init__()
        if not callable(schedule):
            raise ValueError(f"{type(self).__name__}: schedule must be callable, got {schedule!r}")
        self.schedule = schedule
        self.verbose = verbose
        self._takes_lr = self._arity(schedule) != 1

    @staticmethod
    def _arity(fn: Callable[..., Any]) -> int:
        try:
            params = inspect.signature(fn).parameters.values()
        except (TypeError, ValueError):
            return 2
        if any(p.kind is p.VAR_POSITIONAL for p in params):
            return 2
        return sum(p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty
                   for p in params)

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        lr = _get_lr(self.model)
        new = self.schedule(epoch, lr) if self._takes_lr else self.schedule(epoch)
        try:
            new = float(new)
        except (TypeError, ValueError):
            raise ValueError(f"{type(self).__name__}: the schedule must return a number, got {new!r}") from None
        if not math.isfinite(new) or new < 0:
            raise ValueError(f"{type(self).__name__}: the schedule returned an invalid learning rate {new!r} "
                             f"at epoch {epoch}")
        _set_lr(self.model, new)
        if self.verbose > 0:
            _emit(f"Epoch {epoch + 1}: {type(self).__name__} setting learning rate to {new:.6g}.")

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        if logs is not None:
            logs["lr"] = _get_lr(self.model)


class StepLR(LearningRateScheduler):
    """Multiply the learning rate by ``gamma`` every ``step_size`` epochs (``torch.optim.lr_scheduler.StepLR``).

    Epoch ``e`` trains with ``lr0 * gamma ** (e // step_size)``, computed step by step as torch does.
    """

    def __init__(self, step_size: int, gamma: float = 0.1, verbose: int = 0) -> None:
        self.step_size = _check_int("step_size", step_size, 1, "StepLR")
        self.gamma = _check_number("gamma", gamma, "StepLR")
        if self.gamma == 0:
            raise ValueError("StepLR: gamma must be > 0, got 0")
        super().__init__(self._step, verbose=verbose)

    def _step(self, epoch: int, lr: float) -> float:
        return lr * self.gamma if epoch > 0 and epoch % self.step_size == 0 else lr


class CosineAnnealingLR(LearningRateScheduler):
    """Cosine annealing from the initial rate to ``eta_min`` over ``T_max`` epochs (torch's closed form).

    Epoch ``e`` trains with ``eta_min + (lr0 - eta_min) * (1 + cos(pi * e / T_max)) / 2``; past ``T_max``
    the cosine rises again, as in torch. ``lr0`` (``base_lr``) is the optimizer's rate when training
    first begins, unless given.
    """

    def __init__(self, T_max: int, eta_min: float = 0.0, base_lr: float | None = None, verbose: int = 0) -> None:
        self.T_max = _check_int("T_max", T_max, 1, "CosineAnnealingLR")
        self.eta_min = _check_number("eta_min", eta_min, "CosineAnnealingLR")
        self.base_lr = None if base_lr is None else _check_number("base_lr", base_lr, "CosineAnnealingLR")
        super().__init__(self._cosine, verbose=verbose)

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        if self.base_lr is None:
            self.base_lr = _get_lr(self.model)

    def _cosine(self, epoch: int, lr: float) -> float:
        if self.base_lr is None:  # driven without on_train_begin: the first rate seen is the initial one
            self.base_lr = lr
        return self.eta_min + (self.base_lr - self.eta_min) * (1 + math.cos(math.pi * epoch / self.T_max)) / 2


class ReduceLROnPlateau(Callback):
    """Multiply the learning rate by ``factor`` when ``monitor`` stops improving (torch semantics).

    As ``torch.optim.lr_scheduler.ReduceLROnPlateau(mode, factor, patience, threshold=min_delta,
    threshold_mode, cooldown, min_lr, eps)`` stepped with the monitored value at every epoch end: after
    more than ``patience`` epochs without improvement the rate becomes ``max(lr * factor, min_lr)`` (for
    the next epoch; skipped when the change is below ``eps``), then ``cooldown`` epochs pass before bad
    epochs count again. With ``threshold_mode="rel"`` (torch's default) an improvement beats
    ``best * (1 - min_delta)`` (mode min) or ``best * (1 + min_delta)`` (mode max); with ``"abs"`` it beats
    ``best -/+ min_delta``.
    """

    def __init__(
        self,
        monitor: str = "val_loss",
        factor: float = 0.1,
        patience: int = 10,
        min_delta: float = 1e-4,
        cooldown: int = 0,
        min_lr: float = 0.0,
        mode: str = "auto",
        threshold_mode: str = "rel",
        eps: float = 1e-8,
        verbose: int = 0,
    ) -> None:
        super().__init__()
        owner = "ReduceLROnPlateau"
        self.monitor = monitor
        factor = _check_number("factor", factor, owner)
        if not 0 < factor < 1:
            raise ValueError(f"{owner}: factor must be in (0, 1) to reduce the learning rate, got {factor!r}")
        self.factor = factor
        self.patience = _check_int("patience", patience, 0, owner)
        self.min_delta = _check_number("min_delta", min_delta, owner)
        self.cooldown = _check_int("cooldown", cooldown, 0, owner)
        self.min_lr = _check_number("min_lr", min_lr, owner)
        self.mode = _resolve_mode(mode, monitor, owner)
        if threshold_mode not in ("rel", "abs"):
            raise ValueError(f"{owner}: threshold_mode must be 'rel' or 'abs', got {threshold_mode!r}")
        self.threshold_mode = threshold_mode
        self.eps = _check_number("eps", eps, owner)
        self.verbose = verbose
        self._reset()

    def _reset(self) -> None:
        self.best = math.inf if self.mode == "min" else -math.inf
        self.num_bad_epochs = 0
        self.cooldown_counter = 0
        self._warned_missing = False

    @property
    def in_cooldown(self) -> bool:
        return self.cooldown_counter > 0

    def _is_better(self, a: float) -> bool:
        best, d = self.best, self.min_delta
        if self.mode == "min":
            return a < (best * (1 - d) if self.threshold_mode == "rel" else best - d)
        return a > (best * (1 + d) if self.threshold_mode == "rel" else best + d)

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        self._reset()

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        current = _monitor_value(self, logs, self.monitor)
        if current is None:
            return
        if self._is_better(current):
            self.best = current
            self.num_bad_epochs = 0
        else:
            self.num_bad_epochs += 1
        if self.in_cooldown:
            self.cooldown_counter -= 1
            self.num_bad_epochs = 0
        if self.num_bad_epochs > self.patience:
            old = _get_lr(self.model)
            new = max(old * self.factor, self.min_lr)
            if old - new > self.eps:
                _set_lr(self.model, new)
                if self.verbose > 0:
                    _emit(f"Epoch {epoch + 1}: ReduceLROnPlateau reducing learning rate to {new:.6g}.")
            self.cooldown_counter = self.cooldown
            self.num_bad_epochs = 0
