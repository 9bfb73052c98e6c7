"""The training engine: ``compile``, ``fit``, ``evaluate``, ``predict`` and the one-batch calls, for any model.

``Trainer`` is mixed into a model class, as Keras's ``Trainer`` is into its ``Model``. It needs from the model
only the layer-graph protocol: ``name``, ``built``, ``build(shape)``, ``compute_output_shape(shape)``,
``forward(x, training)``, ``backward(dy)``, ``params``, ``grads``, ``buffers``, ``set_params`` and
``set_buffers``, so that ``Sequential`` and graph models train with the same code. The steps themselves are
functions of explicit state (``xpcnn.step_functions``), eager or compiled with ``jax.jit``.

Training never waits for the host between batches: the data are checked once (``xpcnn.trainer_inputs``) and moved to the device once,
the loss and the metrics of a batch stay 0-d device arrays, and the epoch totals are device sums weighted by
the batch size, read back once at the end of the epoch. Everything that reads values on the host (label
ranges, shapes) happens before training starts, and before any state changes.
"""

from __future__ import annotations

import numbers
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import numpy as np

from . import losses as losses_module
from ._checks import check_flag, check_int
from . import optimizers as optimizers_module
from .backend import get_backend, to_numpy
from .batch_norm_stats import update_bn
from .callbacks import CallbackList, History, ProgressBar
from .data import EpochIterator, is_stream, split_validation
from .trainer_inputs import TrainerInputs
from .objectives import Objectives
from .distributed import data_parallel
from .step_functions import StepFunctions
from .step_functions import batch_size as batch_size_of

__all__ = ["Trainer"]

Array = Any
JIT_CHOICES = (True, False, "auto")


def _check_verbose(verbose: Any) -> int:
    if verbose not in (0, 1, 2):
        raise ValueError(f"verbose must be 0, 1 or 2, got {verbose!r}")
    return int(verbose)


def _read_means(groups: Sequence[tuple[str, dict[str, Array] | None, int]]) -> dict[str, float]:
    """Divide device sums by their sample counts, reading all of them back in ONE host transfer."""
    backend = get_backend()
    xp = backend.xp
    keys, values = [], []
    for prefix, sums, count in groups:
        if not sums:
            continue
        for k, v in sums.items():
            keys.append((prefix + k, count))
            values.append(xp.astype(xp.reshape(v, ()), backend.dtype) if v.dtype != backend.dtype
                          else xp.reshape(v, ()))
    if not values:
        return {}
    host = np.asarray(to_numpy(xp.stack(values)), dtype=np.float64)
    return {key: float(host[i]) / count for i, (key, count) in enumerate(keys)}


class Trainer(TrainerInputs):
    """``compile``/``fit``/``evaluate``/``predict``/``train_on_batch``/``test_on_batch`` for a model."""

    def __init__(self) -> None:
        self.loss: Any = None  # the loss, or a list of one per output
        self.optimizer: Any = None
        self.metrics: list[Any] = []  # the metrics, or a list of them per output
        self.objectives: Objectives | None = None
        self.jit: bool | str = "auto"
        self.stop_training = False
        self.epoch = 0  # number of epochs completed by fit (saved in checkpoints)
        self.history: Any = None
        self._step_functions: tuple[Any, StepFunctions] | None = None
        self.distributed: Any = None  # the communicator of a data-parallel fit while it runs (callbacks ask it)

    # --- compile -----------------------------------------------------------------------------------------
    def compile(self, loss: Any, optimizer: Any, metrics: Any = None, loss_weights: Any = None,
                jit: bool | str = "auto") -> None:
        """Choose the loss (object or name), the optimizer (object or name) and the metrics to report.

        Metrics: ``"accuracy"`` (binary accuracy with binary cross-entropy), ``"top_k_accuracy"`` (k=5,
        reported as ``"top_5_accuracy"``) or ``xpcnn.metrics.TopKAccuracy(k)``. A cross-entropy given by name
        takes probabilities when the model's output comes out of a softmax (a sigmoid for the binary one),
        logits otherwise. With several outputs ``loss``, ``metrics`` and ``loss_weights`` may be given per
        output, as lists or dicts by output name (``xpcnn.objectives``). ``jit``: ``"auto"`` compiles the train,
        test and predict steps with ``jax.jit`` on the JAX backend and runs them eagerly elsewhere; ``True``
        insists on compiling (JAX only), ``False`` always runs eagerly.
        """
        if jit not in JIT_CHOICES or isinstance(jit, int) and not isinstance(jit, bool):
            raise ValueError(f"jit must be True, False or 'auto', got {jit!r}")
        if jit is True and get_backend().name != "jax":
            raise ValueError(f"jit=True compiles with jax.jit and needs the jax backend; the current backend is "
                             f"{get_backend().name!r} (use jit='auto' or False)")
        activations = self.output_activations()
        objectives = Objectives(loss, metrics, loss_weights, self.output_names, activations)
        for loss_obj, kind in zip(objectives.losses, activations):
            if (kind is not None and losses_module.PROBABILITY_ACTIVATION.get(loss_obj.name) == kind
                    and getattr(loss_obj, "from_logits", False)):
                warnings.warn(f"{self.name}: the model's output comes out of a {kind}, but the loss object takes "
                              f"logits (from_logits=True): the {kind} is applied twice. Pass the loss by name, or "
                              "with from_logits=False", UserWarning, stacklevel=2)
        opt = optimizers_module.get(optimizer)
        self.objectives, self.optimizer, self.jit = objectives, opt, jit
        single = objectives.single
        self.loss = objectives.losses[0] if single else objectives.losses
        self.metrics = objectives.metrics[0] if single else objectives.metrics
        self._step_functions = None

    @property
    def compiled(self) -> bool:
        return self.loss is not None and self.optimizer is not None

    def _require_compiled(self, what: str) -> None:
        if not self.compiled:
            raise RuntimeError(f"{self.name}: call compile(loss=..., optimizer=...) before {what}()")

    @property
    def metrics_names(self) -> list[str]:
        return self.objectives.log_names if self.objectives is not None else ["loss"]

    @property
    def step_functions(self) -> StepFunctions:
        """The train/test/predict steps for the current backend (made anew when the backend or the
        compilation changes); ``.jit`` tells whether they are compiled, ``.traces`` how often they traced."""
        backend = get_backend()
        key = (backend, self.objectives, self.optimizer, self.jit)
        cached = self._step_functions
        if cached is None or cached[0] != key:
            jit = backend.name == "jax" if self.jit == "auto" else bool(self.jit)
            if jit and backend.name != "jax":
                raise ValueError(f"{self.name} was compiled with jit=True, which needs the jax backend; the current "
                                 f"backend is {backend.name!r}")
            cached = self._step_functions = (key, StepFunctions(self, jit))
        return cached[1]

    # --- one batch -----------------------------------------------------------------------------------
    def train_on_batch(self, x: Any, y: Any) -> dict[str, Array]:
        """One optimisation step on one batch; returns ``{"loss": ..., <metric>: ...}`` as 0-d DEVICE arrays.

        Nothing is read back: call ``float()`` on the values only when you log them. Host-side label
        checks run only for NumPy/list targets (free there); device targets are not inspected.
        """
        self._require_compiled("train_on_batch")
        return self.step_functions.train(*self._batch(x, y), None)[0]

    def test_on_batch(self, x: Any, y: Any) -> dict[str, Array]:
        """Loss and metrics of one batch in inference mode, as 0-d device arrays (no update)."""
        self._require_compiled("test_on_batch")
        return self.step_functions.test(*self._batch(x, y), None)[0]

    # --- fit / evaluate / predict --------------------------------------------------------------------
    def fit(
        self,
        x: Any = None,
        y: Any = None,
        batch_size: int | None = None,
        epochs: int = 1,
        validation_data: Any = None,
        validation_split: float = 0.0,
        shuffle: bool = True,
        callbacks: Sequence[Any] | None = None,
        verbose: int = 1,
        initial_epoch: int = 0,
        check_finite: bool = True,
        distributed: Any = None,
        sync_batch_norm: bool = False,
        transform: Callable[[Any], Any] | None = None,
        steps_per_epoch: int | None = None,
        validation_steps: int | None = None,
    ) -> Any:
        """Train for ``epochs - initial_epoch`` epochs; return a ``History`` (``history.history["loss"]`` ...).

        ``x``: arrays (NumPy, lists, or arrays of the current backend; ``y`` the targets, ``batch_size``
        default 32, moved to the device once), or a stream of ``(x, y)`` batches with ``y=None`` and no
        ``batch_size``: an ``xpcnn.DataLoader`` (arrays, or a dataset read by workers), a Keras
        ``PyDataset``-style object (``len()`` batches, ``[i]`` the i-th), or any iterable (a generator, a
        PyTorch ``DataLoader``). ``steps_per_epoch`` batches make an epoch (default: one pass; with it, a
        stream goes on across epochs). ``shuffle`` applies to arrays only, as in Keras.
        ``validation_split`` holds out the LAST fraction of the array samples (before shuffling), like Keras;
        ``validation_data`` (a pair of arrays, or a stream, ``validation_steps`` batches of it) takes
        precedence. ``verbose``: 0 silent, 1 progress bar, 2 one line per epoch.
        With an optimizer that averages the weights (``use_ema=True``) the epochs train and validate the
        raw weights, and the model holds the averaged ones when a ``fit`` that took a step returns (Keras's
        behaviour), with batch-norm running statistics re-estimated for them by one forward pass over the
        training data (``xpcnn.batch_norm_stats.update_bn``, as ``torch.optim.swa_utils.update_bn``).
        Raises ValueError before anything changes when x and y differ in length, labels are out of range, or
        (unless ``check_finite=False``) x, a floating y or the validation data hold NaN or infinity; a stream
        is checked by its first batch before training, and for NaN batch by batch as it is read.

        ``distributed``: a communicator from ``xpcnn.distributed.init()``. On several ranks (``mpiexec``) the
        model trains data-parallel: rank 0's weights, buffers and random stream everywhere at the start, the
        same data order on every rank, each rank a contiguous share of every global batch of ``batch_size``
        (read only by that rank, for a ``DataLoader``), gradients averaged over the global batch (by sample
        count), the same update on every rank; the logs and validation summed over the ranks, batch-norm
        running statistics averaged at each epoch's end; only rank 0 prints and writes files. An error on one
        rank ends every rank. Steps run eagerly.
        ``sync_batch_norm=True``: batch norm's training statistics over the global batch instead of each rank's.
        ``transform``: data augmentation applied on the device to each training batch's inputs (for example
        ``xpcnn.transforms.Compose([RandomFlip(), RandomRotation(10)])``), never to validation data.
        """
        parallel = data_parallel(distributed)
        args = (x, y, batch_size, epochs, validation_data, validation_split, shuffle, callbacks, verbose,
                initial_epoch, check_finite, parallel, sync_batch_norm, transform, steps_per_epoch, validation_steps)
        if parallel is None:
            return self._checked_fit(*args)
        try:
            return self._checked_fit(*args)
        except Exception as exc:  # no rank may wait forever on one that failed
            parallel.comm.abort(f"{type(exc).__name__}: {exc}")
            raise

    def _checked_fit(self, x: Any, y: Any, batch_size: Any, epochs: Any, validation_data: Any, validation_split: Any,
                     shuffle: bool, callbacks: Any, verbose: Any, initial_epoch: Any, check_finite: bool,
                     parallel: Any, sync_batch_norm: bool, transform: Any, steps_per_epoch: Any,
                     validation_steps: Any) -> Any:
        """``fit``: the checks before anything changes, then the epochs."""
        self._require_compiled("fit")
        if transform is not None and not callable(transform):
            raise TypeError(f"fit: transform must be a callable (an xpcnn.transforms object) or None, "
                            f"got {transform!r}")
        if batch_size is not None:
            batch_size = check_int(batch_size, "batch_size", 1, "fit")
        epochs = check_int(epochs, "epochs", 0, "fit")
        initial_epoch = check_int(initial_epoch, "initial_epoch", 0, "fit")
        steps_per_epoch, validation_steps = (None if v is None else check_int(v, name, 1, "fit") for v, name in
                                             ((steps_per_epoch, "steps_per_epoch"), (validation_steps, "validation_steps")))
        shuffle = check_flag(shuffle, "shuffle", "fit")
        check_finite = check_flag(check_finite, "check_finite", "fit")
        sync_batch_norm = check_flag(sync_batch_norm, "sync_batch_norm", "fit")
        if isinstance(validation_split, bool) or not isinstance(validation_split, numbers.Real):
            raise TypeError(f"fit: validation_split must be a number in [0, 1), got {validation_split!r}")
        if not 0.0 <= float(validation_split) < 1.0:
            raise ValueError(f"fit: validation_split must be a number in [0, 1), got {validation_split!r}")
        verbose = _check_verbose(verbose)
        if validation_split > 0.0 and validation_data is None:
            if is_stream(x):
                raise ValueError(f"fit: validation_split splits arrays; x is a {type(x).__name__}: pass "
                                 "validation_data instead")
            (x, y), validation_data = split_validation(*self._checked_pair(x, y), validation_split)
        train = self._epoch_iterator(x, y, "fit", batch_size=batch_size, steps=steps_per_epoch, shuffle=shuffle,
                                     check_finite=check_finite, transform=transform, parallel=parallel,
                                     carry_on=True)
        val = None
        if validation_data is not None:
            if is_stream(validation_data):
                val_x, val_y = validation_data, None
            elif isinstance(validation_data, (tuple, list)) and len(validation_data) == 2:
                val_x, val_y = validation_data
            else:
                raise ValueError("validation_data must be a pair (x_val, y_val) or a stream of (x, y) batches")
            if isinstance(val_x, Iterator) and validation_steps is None and epochs - initial_epoch > 1:
                raise ValueError("fit: validation_data is a generator, which can be read once only, and validation "
                                 "reads its data every epoch; give a DataLoader or a re-iterable, or validation_steps")
            val = self._epoch_iterator(val_x, val_y, "fit(validation_data)", steps=validation_steps,
                                       batch_size=None if is_stream(val_x) else train.batch_size or 32,
                                       check_finite=check_finite, parallel=parallel, names=("x_val", "y_val"))
        callback_list = list(callbacks or [])
        for cb in callback_list:
            if not hasattr(cb, "set_model"):
                raise TypeError(f"callbacks must be xpcnn.callbacks.Callback objects, got {type(cb).__name__}")
        if parallel is not None:
            parallel.check(train.batch_size, train.num_samples, sync_batch_norm=sync_batch_norm)
        norms = parallel.synchronised_batch_norm(self) if parallel is not None and sync_batch_norm else []
        try:
            return self._fit(train, val, epochs, callback_list, verbose, initial_epoch, parallel)
        finally:
            for data in (train, val):
                if data is not None:
                    data.close()  # a loader's workers end here, even while an exception is held
            for layer in norms:
                layer.sync = None

    def _fit(self, train: EpochIterator, val: EpochIterator | None, epochs: int, callback_list: list[Any],
             verbose: int, initial_epoch: int, parallel: Any) -> Any:
        # --- from here on, state changes ---
        self._build_for(train.first_batch()[0])
        self.distributed = None if parallel is None else parallel.comm
        steps = self.step_functions if parallel is None else StepFunctions(self, jit=False)
        if parallel is not None:
            parallel.start(self)
        history = History()
        if parallel is not None and not parallel.comm.is_main:
            callback_list = [cb for cb in callback_list if not cb.writes_files]
        if verbose and (parallel is None or parallel.comm.is_main):
            callback_list.insert(0, ProgressBar(verbose=verbose))
        callback_list.append(history)
        cbs = CallbackList(callback_list, model=self, params={
            "epochs": epochs, "steps": train.steps, "batch_size": train.batch_size, "samples": train.num_samples,
            "verbose": verbose, "metrics": self.metrics_names,
        })
        self.history = history
        self.stop_training = False
        cbs.on_train_begin({})
        epoch_logs: dict[str, float] = {}
        first_iteration = self.optimizer.iterations
        for epoch in range(initial_epoch, epochs):
            cbs.on_epoch_begin(epoch, {})
            sums, seen = None, 0
            for step, (xb, yb) in enumerate(train.epoch()):
                size = batch_size_of(xb)
                cbs.on_train_batch_begin(step, {"size": size})
                if parallel is None:
                    logs, sums = steps.train(xb, yb, sums)
                else:
                    global_size = parallel.global_size(size)
                    logs, sums = steps.train_shared(xb, yb, sums, parallel.comm, global_size)
                seen += size
                cbs.on_train_batch_end(step, {**(logs or {}), "size": size})
                if self.stop_training:
                    break
            if not seen:  # an input that cannot start again has run out (EpochIterator warned)
                break
            groups = [("", sums, seen)]
            if val is not None:
                cbs.on_test_begin({})
                groups.append(("val_", *self._evaluate_sums(val, cbs, steps)))
            if parallel is not None:
                groups = [(prefix, *parallel.reduce(group_sums, count)) for prefix, group_sums, count in groups]
                parallel.average_buffers(self)
            epoch_logs = _read_means(groups)
            if val is not None:
                cbs.on_test_end({k[4:]: v for k, v in epoch_logs.items() if k.startswith("val_")})
            epoch_logs["lr"] = float(self.optimizer.lr)
            self.epoch = epoch + 1
            cbs.on_epoch_end(epoch, epoch_logs)
            if self.stop_training or train.exhausted:
                break
        trained = self.optimizer.iterations > first_iteration
        if trained and self.optimizer.use_ema:  # as in Keras, before on_train_end (EarlyStopping may restore)
            self.set_params(self.optimizer.averaged_params(self.params))
            # the averaged weights' statistics: over arrays in order, else one more pass over the stream
            update_bn(self, train.inputs if train.inputs is not None else (xb for xb, _ in train.epoch(augment=False)),
                      train.batch_size or 32)
            if parallel is not None:
                parallel.average_buffers(self)  # each rank's share gave its own statistics
        cbs.on_train_end(dict(epoch_logs))
        self.distributed = None
        return history

    def _evaluate_sums(self, data: EpochIterator, cbs: Any = None,
                       steps: StepFunctions | None = None) -> tuple[dict[str, Array] | None, int]:
        steps = steps or self.step_functions
        sums, seen = None, 0
        for step, (xb, yb) in enumerate(data.epoch()):
            size = batch_size_of(xb)
            if not size:
                continue  # a rank's empty share of a last, small batch
            if cbs is not None:
                cbs.on_test_batch_begin(step, {"size": size})
            logs, sums = steps.test(xb, yb, sums)
            seen += size
            if cbs is not None:
                cbs.on_test_batch_end(step, {**logs, "size": size})
        return sums, seen

    def evaluate(self, x: Any = None, y: Any = None, batch_size: int | None = None, verbose: int = 0,
                 callbacks: Sequence[Any] | None = None, distributed: Any = None,
                 steps: int | None = None) -> dict[str, float]:
        """Loss and metrics over ``(x, y)`` in inference mode: ``{"loss": float, "accuracy": float, ...}``.

        ``x`` takes what ``fit`` takes (arrays with ``y``, or a stream of ``(x, y)`` batches, ``steps`` of
        them). The batch values are summed on the device and read back once. With ``distributed`` (several
        ranks) each rank evaluates its share of every batch and every rank returns the sums over all of them.
        """
        self._require_compiled("evaluate")
        if batch_size is not None:
            batch_size = check_int(batch_size, "batch_size", 1, "evaluate")
        if steps is not None:
            steps = check_int(steps, "steps", 1, "evaluate")
        verbose = _check_verbose(verbose)
        parallel = data_parallel(distributed)
        data = self._epoch_iterator(x, y, "evaluate", batch_size=batch_size, steps=steps, check_finite=False,
                                    parallel=parallel)
        self._build_for(data.first_batch()[0])
        callback_list = list(callbacks or [])
        if verbose and (parallel is None or parallel.comm.is_main):
            callback_list.insert(0, ProgressBar(verbose=verbose))
        cbs = CallbackList(callback_list, model=self, params={"steps": data.steps, "verbose": verbose,
                                                               "batch_size": data.batch_size})
        cbs.on_test_begin({})
        try:
            sums, seen = self._evaluate_sums(data, cbs)
        finally:
            data.close()
        if parallel is not None:
            sums, seen = parallel.reduce(sums, seen)
        result = _read_means([("", sums, seen)])
        cbs.on_test_end(dict(result))
        return result

    def predict(self, x: Any, batch_size: int | None = None, verbose: int = 0,
                callbacks: Sequence[Any] | None = None, distributed: Any = None, steps: int | None = None) -> Array:
        """The outputs for every sample of ``x``, concatenated on the device (an array of the current backend).

        ``x``: arrays, or a stream of batches (``x`` alone or ``(x, y)``, whose ``y`` is ignored), ``steps``
        of them. ``callbacks`` get ``on_predict_begin``/``_end`` and, per batch,
        ``on_predict_batch_begin``/``_end`` with ``{"outputs": <the batch's outputs on the device>, "size":
        n}``. With ``distributed`` (several ranks) each rank computes its share of every batch and every rank
        returns all the outputs.
        """
        if batch_size is not None:
            batch_size = check_int(batch_size, "batch_size", 1, "predict")
        if steps is not None:
            steps = check_int(steps, "steps", 1, "predict")
        verbose = _check_verbose(verbose)
        parallel = data_parallel(distributed)
        data = self._epoch_iterator(x, None, "predict", batch_size=batch_size, steps=steps, targets=False,
                                    check_finite=False, parallel=parallel)
        first = data.first_batch()[0]
        # a clear error before anything changes
        self.compute_output_shape([tuple(a.shape[1:]) for a in first] if isinstance(first, list)
                                  else tuple(first.shape[1:]))
        self._build_for(first)
        cbs = CallbackList(list(callbacks or []), model=self, params={"steps": data.steps, "verbose": verbose,
                                                                      "batch_size": data.batch_size})
        forward = self.step_functions.predict
        cbs.on_predict_begin({})
        outputs, spans = [], []
        try:
            for step, (xb, _) in enumerate(_maybe_progress(data.epoch(), verbose, "predict", data.steps)):
                size = batch_size_of(xb)
                if not size:
                    continue  # a rank's empty share of a last, small batch
                cbs.on_predict_batch_begin(step, {"size": size})
                outputs.append(forward(xb))
                if parallel is not None:
                    spans.append(data.span(step))
                cbs.on_predict_batch_end(step, {"outputs": outputs[-1], "size": size})
        finally:
            data.close()
        cbs.on_predict_end({})
        if parallel is not None:
            join = lambda parts: parallel.assemble(parts, spans, data.num_samples)  # noqa: E731
        else:
            join = _joined
        if not self._has_several_outputs():
            return join(outputs)
        return [join([o[i] for o in outputs]) for i in range(len(self.output_names))]


def _joined(batches: list[Array]) -> Array:
    return batches[0] if len(batches) == 1 else get_backend().xp.concat(batches, axis=0)


def _maybe_progress(batches: Iterable[Any], verbose: int, desc: str, total: int | None) -> Iterable[Any]:
    if not verbose:
        return batches
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return batches
    return tqdm(batches, total=total, desc=desc, leave=False)
