"""Learning-rate schedules as callbacks, with ``torch.optim.lr_scheduler``'s learning rates: per epoch
(``StepLR``, ``CosineAnnealingLR``, ``ReduceLROnPlateau``, any ``LearningRateScheduler``) or per step
(``OneCycleLR``)."""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from typing import Any

from .._checks import check_flag, check_int, check_number
from .base import Callback, _emit
from .monitor import MonitorCallback

__all__ = ["CosineAnnealingLR", "LearningRateScheduler", "OneCycleLR", "ReduceLROnPlateau", "StepLR"]


def _get_lr(model: Any) -> float:
    return float(model.optimizer.lr)


def _set_lr(model: Any, lr: float) -> None:
    model.optimizer.lr = lr


class LearningRateScheduler(Callback):
    """Set ``model.optimizer.lr = schedule(epoch, lr)`` at the beginning of every epoch.

    At epoch end ``logs["lr"]`` is set to the epoch's rate.

    Parameters
    ----------
    schedule : callable
        Takes the 0-based epoch and the current learning rate (a one-argument ``schedule(epoch)`` is
        accepted too) and returns the new rate (a finite number >= 0, else fit raises a ValueError).
    verbose : int, default 0
        Above 0, print the rate set at each epoch.

    Raises
    ------
    ValueError
        If ``schedule`` is not callable.

    Examples
    --------
    >>> from xpcnn.callbacks import LearningRateScheduler
    >>> from xpcnn.layers import Dense, Flatten
    >>> from xpcnn.optimizers import SGD
    >>> model = xpcnn.Sequential([Flatten(), Dense(2)], input_shape=(1, 4, 4))
    >>> model.compile(loss="cross_entropy", optimizer=SGD(lr=0.1))
    >>> halve = LearningRateScheduler(lambda epoch, lr: lr / 2 if epoch else lr)
    >>> x, y = np.zeros((8, 1, 4, 4), dtype="float32"), np.arange(8) % 2
    >>> [round(lr, 4) for lr in model.fit(x, y, epochs=3, callbacks=[halve], verbose=0).history["lr"]]
    [0.1, 0.05, 0.025]
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

    Parameters
    ----------
    step_size : int
        Epochs between two reductions.
    gamma : float, default 0.1
        The factor, > 0.
    verbose : int, default 0
        Above 0, print the rate set at each epoch.

    Raises
    ------
    ValueError
        If ``step_size`` < 1 or ``gamma`` is not > 0.
    TypeError
        If a number has the wrong type.
    """

    def __init__(self, step_size: int, gamma: float = 0.1, verbose: int = 0) -> None:
        self.step_size = check_int(step_size, "step_size", 1, "StepLR")
        self.gamma = check_number(gamma, "gamma", "StepLR")
        if self.gamma == 0:
            raise ValueError("StepLR: gamma must be > 0, got 0")
        super().__init__(self._step, verbose=verbose)

    def _step(self, epoch: int, lr: float) -> float:
        return lr * self.gamma if epoch > 0 and epoch % self.step_size == 0 else lr


class CosineAnnealingLR(LearningRateScheduler):
    """Cosine annealing from the initial rate to ``eta_min`` over ``T_max`` epochs (torch's closed form).

    Epoch ``e`` trains with ``eta_min + (lr0 - eta_min) * (1 + cos(pi * e / T_max)) / 2``; past ``T_max``
    the cosine rises again, as in torch.

    Parameters
    ----------
    T_max : int
        Epochs from the initial rate down to ``eta_min``.
    eta_min : float, default 0.0
        The lowest rate.
    base_lr : float, optional
        ``lr0``; the optimizer's rate when training first begins, unless given.
    verbose : int, default 0
        Above 0, print the rate set at each epoch.

    Raises
    ------
    ValueError
        If ``T_max`` < 1 or a rate is negative or not finite.
    """

    state_attributes = ("base_lr",)

    def __init__(self, T_max: int, eta_min: float = 0.0, base_lr: float | None = None, verbose: int = 0) -> None:
        self.T_max = check_int(T_max, "T_max", 1, "CosineAnnealingLR")
        self.eta_min = check_number(eta_min, "eta_min", "CosineAnnealingLR")
        self.base_lr = None if base_lr is None else check_number(base_lr, "base_lr", "CosineAnnealingLR")
        super().__init__(self._cosine, verbose=verbose)

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        if self.base_lr is None:
            self.base_lr = _get_lr(self.model)

    def _cosine(self, epoch: int, lr: float) -> float:
        if self.base_lr is None:  # driven without on_train_begin: the first rate seen is the initial one
            self.base_lr = lr
        return self.eta_min + (self.base_lr - self.eta_min) * (1 + math.cos(math.pi * epoch / self.T_max)) / 2


class ReduceLROnPlateau(MonitorCallback):
    """Multiply the learning rate by ``factor`` when ``monitor`` stops improving (torch semantics).

    As ``torch.optim.lr_scheduler.ReduceLROnPlateau(mode, factor, patience, threshold=min_delta,
    threshold_mode, cooldown, min_lr, eps)`` stepped with the monitored value at every epoch end: after
    more than ``patience`` epochs without improvement the rate becomes ``max(lr * factor, min_lr)`` (for
    the next epoch; skipped when the change is below ``eps``), then ``cooldown`` epochs pass before bad
    epochs count again. With ``threshold_mode="rel"`` (torch's default) an improvement beats
    ``best * (1 - min_delta)`` (mode min) or ``best * (1 + min_delta)`` (mode max); with ``"abs"`` it beats
    ``best -/+ min_delta``.

    Parameters
    ----------
    monitor : str, default "val_loss"
        The epoch-log value to watch.
    factor : float, default 0.1
        The multiplier, in (0, 1).
    patience : int, default 10
        Epochs without improvement tolerated before a reduction.
    min_delta : float, default 1e-4
        torch's ``threshold``.
    cooldown : int, default 0
        Epochs after a reduction before bad epochs count again.
    min_lr : float, default 0.0
        The rate never goes below it.
    mode : {"auto", "min", "max"}, default "auto"
        Whether lower or higher is better; ``"auto"`` takes higher for accuracy-like names.
    threshold_mode : {"rel", "abs"}, default "rel"
        A relative or an absolute ``min_delta``.
    eps : float, default 1e-8
        A change smaller than this is skipped.
    verbose : int, default 0
        Above 0, print a line at each reduction.

    Raises
    ------
    ValueError
        If ``factor`` is not in (0, 1), ``mode`` or ``threshold_mode`` is unknown, or a number is out of range.
    """

    state_attributes = ("best", "num_bad_epochs", "cooldown_counter")

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
        owner = "ReduceLROnPlateau"
        super().__init__(monitor, mode, owner)
        factor = check_number(factor, "factor", owner)
        if not 0 < factor < 1:
            raise ValueError(f"{owner}: factor must be in (0, 1) to reduce the learning rate, got {factor!r}")
        self.factor = factor
        self.patience = check_int(patience, "patience", 0, owner)
        self.min_delta = check_number(min_delta, "min_delta", owner)
        self.cooldown = check_int(cooldown, "cooldown", 0, owner)
        self.min_lr = check_number(min_lr, "min_lr", owner)
        if threshold_mode not in ("rel", "abs"):
            raise ValueError(f"{owner}: threshold_mode must be 'rel' or 'abs', got {threshold_mode!r}")
        self.threshold_mode = threshold_mode
        self.eps = check_number(eps, "eps", owner)
        self.verbose = verbose
        self._reset()

    def _reset(self) -> None:
        self.best = self._worst()
        self.num_bad_epochs = 0
        self.cooldown_counter = 0
        self._warned_missing = False

    @property
    def in_cooldown(self) -> bool:
        """Whether the epochs of ``cooldown`` after the last reduction are still running (no new reduction then)."""
        return self.cooldown_counter > 0

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        self._reset()

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        current = self._current(logs)
        if current is None:
            return
        if self._improves(current, self.best, self.min_delta, relative=self.threshold_mode == "rel"):
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


class OneCycleLR(Callback):
    """Set the learning rate before every training step by the 1cycle policy.

    The rates are those of ``torch.optim.lr_scheduler.OneCycleLR`` with ``cycle_momentum=False``: from
    ``max_lr / div_factor`` up to ``max_lr`` over the first ``pct_start`` of ``total_steps``, then down to
    ``max_lr / (div_factor * final_div_factor)``; with ``three_phase`` back to the initial rate first, then down
    to the minimum.

    ``total_steps`` defaults to ``epochs * steps_per_epoch``, each defaulting to what ``fit`` is asked to
    run. Steps are counted by the optimizer (``optimizer.iterations``) from the first ``fit`` this callback
    sees, so epochs may be split over several ``fit`` calls; past ``total_steps`` the last rate holds (torch
    raises instead). The rate is a plain float set on the host between steps: a compiled step takes it as an
    input and is not traced again.

    Parameters
    ----------
    max_lr : float
        The peak rate.
    total_steps : int, optional
        Steps of the whole cycle.
    epochs, steps_per_epoch : int, optional
        Give ``total_steps`` as their product; each defaults to what ``fit`` runs.
    pct_start : float, default 0.3
        The fraction of the steps spent rising, in (0, 1).
    anneal_strategy : {"cos", "linear"}, default "cos"
        The shape of each phase.
    div_factor : float, default 25.0
        The initial rate is ``max_lr / div_factor``.
    final_div_factor : float, default 1e4
        The last rate is the initial one divided by this.
    three_phase : bool, default False
        Come back down to the initial rate before the final annealing.

    Raises
    ------
    ValueError
        If a number is out of range (``pct_start`` outside (0, 1), a factor not > 0) or
        ``anneal_strategy`` is unknown.

    Examples
    --------
    >>> from xpcnn.callbacks import OneCycleLR
    >>> cycle = OneCycleLR(max_lr=0.1, total_steps=100)
    >>> [round(cycle.lr_at(step), 6) for step in (0, 29, 99)]
    [0.004, 0.1, 0.0]
    """

    state_attributes = ("_origin", "total_steps")

    def __init__(self, max_lr: float, total_steps: int | None = None, epochs: int | None = None,
                 steps_per_epoch: int | None = None, pct_start: float = 0.3, anneal_strategy: str = "cos",
                 div_factor: float = 25.0, final_div_factor: float = 1e4, three_phase: bool = False) -> None:
        super().__init__()
        owner = "OneCycleLR"
        self.max_lr = check_number(max_lr, "max_lr", owner)
        self.total_steps = None if total_steps is None else check_int(total_steps, "total_steps", 1, owner)
        self.epochs = None if epochs is None else check_int(epochs, "epochs", 1, owner)
        self.steps_per_epoch = (None if steps_per_epoch is None
                                else check_int(steps_per_epoch, "steps_per_epoch", 1, owner))
        self.pct_start = check_number(pct_start, "pct_start", owner)
        if not 0.0 < self.pct_start < 1.0:
            raise ValueError(f"{owner}: pct_start must lie in (0, 1), got {pct_start!r}")
        if anneal_strategy not in ("cos", "linear"):
            raise ValueError(f"{owner}: anneal_strategy must be 'cos' or 'linear', got {anneal_strategy!r}")
        self.anneal_strategy = anneal_strategy
        self.div_factor = check_number(div_factor, "div_factor", owner)
        self.final_div_factor = check_number(final_div_factor, "final_div_factor", owner)
        if self.div_factor <= 0 or self.final_div_factor <= 0:
            raise ValueError(f"{owner}: div_factor and final_div_factor must be > 0")
        self.three_phase = check_flag(three_phase, "three_phase", type(self).__name__)
        self._origin: int | None = None

    def _resolved_total(self) -> int:
        if self.total_steps is not None:
            return self.total_steps
        epochs = self.epochs or self.params.get("epochs")
        steps = self.steps_per_epoch or self.params.get("steps")
        if not epochs or not steps:
            raise ValueError("OneCycleLR: give total_steps, or epochs and steps_per_epoch (fit supplies both)")
        return int(epochs) * int(steps)

    def lr_at(self, step: int, total_steps: int | None = None) -> float:
        """The rate of 0-based step ``step`` (torch's closed form, phase by phase).

        Parameters
        ----------
        step : int
            The 0-based step; past the last step the last rate holds.
        total_steps : int, optional
            The length of the cycle, if not the callback's.

        Returns
        -------
        float
        """
        total = self._resolved_total() if total_steps is None else total_steps
        initial = self.max_lr / self.div_factor
        minimum = initial / self.final_div_factor
        if self.three_phase:
            phases = [(self.pct_start * total - 1, initial, self.max_lr),
                      (2 * self.pct_start * total - 2, self.max_lr, initial), (total - 1, initial, minimum)]
        else:
            phases = [(self.pct_start * total - 1, initial, self.max_lr), (total - 1, self.max_lr, minimum)]
        step = min(step, total)
        start = 0.0
        for i, (end, lr_from, lr_to) in enumerate(phases):
            if step <= end or i == len(phases) - 1:
                pct = (step - start) / (end - start)
                if self.anneal_strategy == "linear":
                    return (lr_to - lr_from) * pct + lr_from
                return lr_to + (lr_from - lr_to) / 2.0 * (math.cos(math.pi * pct) + 1)
            start = end
        raise AssertionError("unreachable: the last phase always matches")

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        if self._origin is None:
            self._origin = int(self.model.optimizer.iterations)
        if self.total_steps is None:
            self.total_steps = self._resolved_total()

    def on_train_batch_begin(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        _set_lr(self.model, self.lr_at(int(self.model.optimizer.iterations) - (self._origin or 0)))
