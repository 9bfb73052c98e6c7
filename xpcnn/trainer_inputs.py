"""The engine's inputs: checked once, before anything changes, and turned into one ``EpochIterator``.

``TrainerInputs`` is mixed into ``Trainer``: it knows the model's inputs and outputs (names, shapes, the loss)
and checks what ``fit``, ``evaluate``, ``predict`` and the one-batch calls are given against them; the
engine then only iterates (``xpcnn.data.adapters``).
"""

from __future__ import annotations

import numbers
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np

from ._checks import check_flag, check_int
from .backend import asarray
from .data import DataLoader, EpochIterator, check_finite, check_samples, check_targets, is_stream, split_validation
from .data.adapters import host_batch
from .data.device import inputs_on_device
from .step_functions import batch_size as batch_size_of

__all__ = ["TrainerInputs", "check_verbose"]


def check_verbose(verbose: Any) -> int:
    if verbose not in (0, 1, 2):
        raise ValueError(f"verbose must be 0, 1 or 2, got {verbose!r}")
    return int(verbose)


class TrainerInputs:
    """Input checks and adapters for a model that has ``input_names``, ``output_names``, ``objectives``,
    ``compute_output_shape``, ``build`` and (for ``fit``'s checks) ``_require_compiled``."""

    def _has_several_inputs(self) -> bool:
        return not getattr(self, "_single_input", True)

    def _has_several_outputs(self) -> bool:
        return not getattr(self, "_single_output", True)

    def _per_name(self, value: Any, names: list[str], what: str) -> list[Any]:
        """Several inputs (outputs) given as a list in order or a dict by name, as a list."""
        if isinstance(value, Mapping):
            unknown, missing = sorted(set(value) - set(names)), [n for n in names if n not in value]
            if unknown or missing:
                raise ValueError(f"{self.name}: {what} by name must be exactly {names}; missing {missing}, "
                                 f"unknown {unknown}")
            return [value[n] for n in names]
        if not isinstance(value, (list, tuple)) or len(value) != len(names):
            raise ValueError(f"{self.name}: {what} must be a list of {len(names)} arrays ({names}) or a dict by "
                             f"name, got {type(value).__name__}"
                             + (f" of {len(value)}" if isinstance(value, (list, tuple)) else ""))
        return list(value)

    def _checked_inputs(self, x: Any, xname: str = "x") -> Any:
        """The inputs checked (sample axis, floating values): one array, or a list for several inputs."""
        if not self._has_several_inputs():
            return check_samples(x, xname, inputs=True)
        names = self.input_names
        xs = [check_samples(a, f"{xname}[{n!r}]", inputs=True) for a, n in zip(self._per_name(x, names, xname), names)]
        lengths = {n: int(a.shape[0]) for a, n in zip(xs, names)}
        if len(set(lengths.values())) > 1:
            raise ValueError(f"{self.name}: the inputs hold different numbers of samples: {lengths}")
        return xs

    def _checked_pair(self, x: Any, y: Any, xname: str = "x", yname: str = "y") -> tuple[Any, Any]:
        x = self._checked_inputs(x, xname)
        first = x[0] if isinstance(x, list) else x
        shapes = [tuple(a.shape[1:]) for a in x] if isinstance(x, list) else tuple(x.shape[1:])
        out = self.compute_output_shape(shapes)
        if not self._has_several_outputs():
            y = check_samples(y, yname)
            return x, check_targets(first, y, out, getattr(self.loss, "name", None), xname, yname)
        names = self.output_names
        ys = [check_samples(a, f"{yname}[{n!r}]") for a, n in zip(self._per_name(y, names, yname), names)]
        return x, [check_targets(first, t, o, loss.name, xname, f"{yname}[{n!r}]")
                   for t, o, loss, n in zip(ys, out, self.objectives.losses, names)]

    def _check_finite(self, x: Any, y: Any, xname: str = "x", yname: str = "y") -> None:
        """No NaN or infinity in the checked inputs and targets (see ``data.check_finite``)."""
        for arrays, what, names in ((x, xname, "input_names"), (y, yname, "output_names")):
            if isinstance(arrays, list):  # several inputs (outputs), named as the model names them
                for a, n in zip(arrays, getattr(self, names)):
                    check_finite(a, f"{what}[{n!r}]")
            elif arrays is not None:
                check_finite(arrays, what)

    def _epoch_iterator(self, x: Any, y: Any, what: str, *, batch_size: int | None, steps: int | None,
                        targets: bool = True, shuffle: bool = False, check_finite: bool = True,
                        transform: Any = None, parallel: Any = None, names: tuple[str, str] = ("x", "y"),
                        carry_on: bool = False) -> EpochIterator:
        """The input of ``fit``/``evaluate``/``predict`` as one ``EpochIterator``, checked before anything
        changes: arrays whole (shapes, labels, NaN), a stream by its first batch (and NaN batch by batch)."""
        shard = None if parallel is None else parallel.shard
        if is_stream(x):
            if y is not None:
                raise ValueError(f"{what}: y must be None when x is a {type(x).__name__}: its batches hold the targets")
            if batch_size is not None:
                raise ValueError(f"{what}: batch_size belongs to the input ({type(x).__name__}) when x is not arrays; "
                                 "leave it out")
            stream = EpochIterator(x, steps, what, transform, check_finite, shard, carry_on)
            bx, by = stream.first_batch()
            if targets and by is None:
                raise ValueError(f"{what}: the input's batches must be (x, y) pairs, got inputs alone")
            if targets:
                self._checked_pair(host_batch(bx), host_batch(by), "x (first batch)", "y (first batch)")
            else:
                self._checked_inputs(host_batch(bx), "x (first batch)")
            if parallel is not None:
                parallel.check(stream.batch_size, stream.num_samples)
            return stream
        batch_size = 32 if batch_size is None else batch_size
        if targets:
            x, y = self._checked_pair(x, y, *names)
        else:
            x = self._checked_inputs(x, names[0])
        if check_finite:
            self._check_finite(x, y, *names)
        if parallel is not None:
            parallel.check(batch_size, batch_size_of(x))
        loader = DataLoader(x, y, batch_size=batch_size, shuffle=shuffle, check_finite=False)  # checked above
        return EpochIterator(loader, steps, what, transform, check_finite, shard, carry_on, inputs=x)

    def _build_for(self, x: Any) -> None:
        if not self.built and not isinstance(x, list):
            self.build(tuple(x.shape[1:]))

    def _batch(self, x: Any, y: Any) -> tuple[Any, Any]:
        if self._has_several_inputs() or self._has_several_outputs():
            x, y = self._checked_pair(x, y)
            return ([inputs_on_device(a) for a in x] if isinstance(x, list) else inputs_on_device(x),
                    [asarray(a) for a in y] if isinstance(y, list) else asarray(y))
        x, y = check_samples(x, "x", inputs=True), check_samples(y, "y")
        if isinstance(y, np.ndarray):
            x, y = self._checked_pair(x, y)
        elif x.shape[0] != y.shape[0]:
            raise ValueError(f"x and y must have the same length, got {x.shape[0]} and {y.shape[0]}")
        xb = inputs_on_device(x)
        self._build_for(xb)
        return xb, asarray(y)

    def _fit_inputs(self, x: Any, y: Any, batch_size: Any, epochs: Any, validation_data: Any, validation_split: Any,
                    shuffle: bool, callbacks: Any, verbose: Any, initial_epoch: Any, check_finite: bool,
                    parallel: Any, sync_batch_norm: bool, transform: Any, steps_per_epoch: Any,
                    validation_steps: Any) -> tuple[EpochIterator, EpochIterator | None, list[Any], int, int, int]:
        """``fit``'s checks, before anything changes: the training and validation inputs and the callbacks."""
        self._require_compiled("fit")
        if transform is not None and not callable(transform):
            raise TypeError(f"fit: transform must be a callable (an xpcnn.transforms object) or None, "
                            f"got {transform!r}")
        if batch_size is not None:
            batch_size = check_int(batch_size, "batch_size", 1, "fit")
        epochs = check_int(epochs, "epochs", 0, "fit")
        initial_epoch = check_int(initial_epoch, "initial_epoch", 0, "fit")
        steps_per_epoch, validation_steps = (
            None if v is None else check_int(v, name, 1, "fit")
            for v, name in ((steps_per_epoch, "steps_per_epoch"), (validation_steps, "validation_steps")))
        shuffle = check_flag(shuffle, "shuffle", "fit")
        check_finite = check_flag(check_finite, "check_finite", "fit")
        check_flag(sync_batch_norm, "sync_batch_norm", "fit")
        if isinstance(validation_split, bool) or not isinstance(validation_split, numbers.Real):
            raise TypeError(f"fit: validation_split must be a number in [0, 1), got {validation_split!r}")
        if not 0.0 <= float(validation_split) < 1.0:
            raise ValueError(f"fit: validation_split must be a number in [0, 1), got {validation_split!r}")
        verbose = check_verbose(verbose)
        if validation_split > 0.0 and validation_data is None:
            if is_stream(x):
                raise ValueError(f"fit: validation_split splits arrays; x is a {type(x).__name__}: pass "
                                 "validation_data instead")
            (x, y), validation_data = split_validation(*self._checked_pair(x, y), validation_split)
        callback_list = list(callbacks or [])
        for cb in callback_list:
            if not hasattr(cb, "set_model"):
                raise TypeError(f"callbacks must be xpcnn.callbacks.Callback objects, got {type(cb).__name__}")
        train = self._epoch_iterator(x, y, "fit", batch_size=batch_size, steps=steps_per_epoch, shuffle=shuffle,
                                     check_finite=check_finite, transform=transform, parallel=parallel,
                                     carry_on=True)
        try:
            val = None
            if validation_data is not None:
                if is_stream(validation_data):
                    val_x, val_y = validation_data, None
                elif isinstance(validation_data, (tuple, list)) and len(validation_data) == 2:
                    val_x, val_y = validation_data
                else:
                    raise ValueError("validation_data must be a pair (x_val, y_val) or a stream of (x, y) batches")
                if isinstance(val_x, Iterator) and validation_steps is None and epochs - initial_epoch > 1:
                    raise ValueError("fit: validation_data is a generator, which can be read once only, and "
                                     "validation reads its data every epoch; give a DataLoader or a re-iterable, or "
                                     "validation_steps")
                val = self._epoch_iterator(val_x, val_y, "fit(validation_data)", steps=validation_steps,
                                           batch_size=None if is_stream(val_x) else train.batch_size or 32,
                                           check_finite=check_finite, parallel=parallel, names=("x_val", "y_val"))
            if parallel is not None:
                parallel.check(train.batch_size, train.num_samples, sync_batch_norm=sync_batch_norm)
        except BaseException:
            train.close()
            raise
        return train, val, callback_list, epochs, initial_epoch, verbose
