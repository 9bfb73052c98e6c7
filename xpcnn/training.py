"""The training engine: ``compile``, ``fit`` and the one-batch calls, for any model (``evaluate`` and ``predict``
come from ``xpcnn.inference``, the state of a running fit from ``xpcnn.run_state``).

``Trainer`` is mixed into a model class, as Keras's ``Trainer`` is into its ``Model``. It needs from the model
only the layer-graph protocol: ``name``, ``built``, ``build(shape)``, ``compute_output_shape(shape)``,
``forward(x, training)``, ``backward(dy)``, ``params``, ``grads``, ``buffers``, ``set_params`` and
``set_buffers``, so that ``Sequential`` and graph models train with the same code. The steps themselves are
functions of explicit state (``xpcnn.step_functions``), eager or compiled with ``jax.jit``.

Training never waits for the host between batches: the data are checked once (``xpcnn.trainer_inputs``) and
moved to the device once, the loss and the metrics of a batch stay 0-d device arrays, and the epoch totals are
device sums weighted by the batch size, read back once at the end of the epoch. Everything that reads values on
the host (label ranges, shapes) happens before training starts, and before any state changes.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from typing import Any


from . import losses as losses_module
from ._checks import check_flag
from . import optimizers as optimizers_module
from .backend import get_backend
from .batch_norm_stats import update_bn
from .callbacks import CallbackList, History, ProgressBar
from .data import EpochIterator
from .inference import Inference, read_means
from .objectives import Objectives
from .preemption import SigtermFlag, TrainingPreempted, sigterm_flag
from .run_state import FitRun, Progress
from .distributed import data_parallel
from .step_functions import StepFunctions
from .step_functions import batch_size as batch_size_of

__all__ = ["Trainer"]

Array = Any
JIT_CHOICES = (True, False, "auto")


def _agreed(parallel: Any, check: Callable[[], Any]) -> Any:
    """``check()``'s result; in a data-parallel fit an error raised on every rank (a batch size that does not
    divide, say) is raised on every rank, where it can be caught, and one raised on some ranks only ends them
    all (``MPI_Abort``), since the others would wait for them forever."""
    if parallel is None:
        return check()
    try:
        result, error = check(), None
    except Exception as exc:
        result, error = None, exc
    failed = parallel.count_ranks(error is not None)
    if failed == parallel.comm.size:
        raise error
    if error is not None:
        parallel.comm.abort(f"{type(error).__name__}: {error}")
        raise error
    if failed:  # the failed ranks end every rank, this one included, with their own message
        parallel.comm.barrier()
        raise RuntimeError(f"the input checks failed on {failed} of {parallel.comm.size} ranks")
    return result


class Trainer(Inference):
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
        self.preempted = False  # True from the step at which a SIGTERM is acted on (callbacks save then)
        self._fit_run: FitRun | None = None

    # --- compile -----------------------------------------------------------------------------------------
    def compile(self, loss: Any, optimizer: Any, metrics: Any = None, loss_weights: Any = None,
                jit: bool | str = "auto", auto_scale_loss: bool = True) -> None:
        """Choose the loss (object or name), the optimizer (object or name) and the metrics to report.

        A cross-entropy given by name takes probabilities when the model's output comes out of a softmax (a
        sigmoid for the binary one), logits otherwise. With several outputs ``loss``, ``metrics`` and
        ``loss_weights`` may be given per output, as lists or dicts by output name (``xpcnn.objectives``).

        Parameters
        ----------
        loss : str or Loss
            ``"cross_entropy"``, ``"binary_cross_entropy"``, ``"mse"``, Keras's spellings of them, or a loss
            object (``xpcnn.losses.get``).
        optimizer : str or Optimizer
            ``"sgd"``, ``"adam"``, ... or an optimizer object (``xpcnn.optimizers.get``).
        metrics : list, optional
            ``"accuracy"`` (binary accuracy with binary cross-entropy), ``"top_k_accuracy"`` (k=5, reported
            as ``"top_5_accuracy"``) or metric objects such as ``xpcnn.metrics.TopKAccuracy(k)``.
        loss_weights : list or dict, optional
            The weight of each output's loss in the total (several outputs only).
        jit : {"auto", True, False}, default "auto"
            ``"auto"`` compiles the train, test and predict steps with ``jax.jit`` on the JAX backend and runs
            them eagerly elsewhere; ``True`` insists on compiling (JAX only), ``False`` always runs eagerly.
        auto_scale_loss : bool, default True
            Keras's name: when a layer computes in float16 (``xpcnn.mixed_precision``), wrap the optimizer in
            a ``LossScaleOptimizer`` unless it is one.

        Raises
        ------
        ValueError
            If a name is unknown, per-output arguments do not match the outputs, or ``jit`` is invalid
            (``True`` off the JAX backend).

        Examples
        --------
        >>> from xpcnn.layers import Dense, Flatten
        >>> model = xpcnn.Sequential([Flatten(), Dense(10)], input_shape=(1, 28, 28))
        >>> model.compile(loss="cross_entropy", optimizer="adam", metrics=["accuracy"])
        >>> model.metrics_names
        ['loss', 'accuracy']
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
        if (check_flag(auto_scale_loss, "auto_scale_loss", "compile") and self.computes_in_float16
                and not isinstance(opt, optimizers_module.LossScaleOptimizer)):
            opt = optimizers_module.LossScaleOptimizer(opt)
        self.objectives, self.optimizer, self.jit = objectives, opt, jit
        single = objectives.single
        self.loss = objectives.losses[0] if single else objectives.losses
        self.metrics = objectives.metrics[0] if single else objectives.metrics
        self._step_functions = None

    @property
    def compiled(self) -> bool:
        """Whether ``compile`` gave the model a loss and an optimizer."""
        return self.loss is not None and self.optimizer is not None

    def _require_compiled(self, what: str) -> None:
        if not self.compiled:
            raise RuntimeError(f"{self.name}: call compile(loss=..., optimizer=...) before {what}()")

    @property
    def metrics_names(self) -> list[str]:
        """The names of the logs a step reports: ``"loss"``, then the metrics'."""
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

        Parameters
        ----------
        x : array or list of arrays
            One batch of inputs, batch axis first.
        y : array or list of arrays
            Its targets (class indices for a cross-entropy).

        Returns
        -------
        dict of str to array
            The batch's loss and metrics, 0-d arrays on the device.

        Raises
        ------
        RuntimeError
            If the model is not compiled.

        Examples
        --------
        >>> from xpcnn.layers import Dense, Flatten
        >>> model = xpcnn.Sequential([Flatten(), Dense(10)], input_shape=(1, 28, 28))
        >>> model.compile(loss="cross_entropy", optimizer="sgd", metrics=["accuracy"])
        >>> logs = model.train_on_batch(np.zeros((8, 1, 28, 28), dtype="float32"), np.arange(8))
        >>> sorted(logs), logs["loss"].shape
        (['accuracy', 'loss'], ())
        """
        self._require_compiled("train_on_batch")
        return self.step_functions.train(*self._batch(x, y), None)[0]

    def test_on_batch(self, x: Any, y: Any) -> dict[str, Array]:
        """Loss and metrics of one batch in inference mode, as 0-d device arrays (no update).

        Parameters
        ----------
        x : array or list of arrays
            One batch of inputs, batch axis first.
        y : array or list of arrays
            Its targets.

        Returns
        -------
        dict of str to array
            As ``train_on_batch``.

        Raises
        ------
        RuntimeError
            If the model is not compiled.
        """
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

        With an optimizer that averages the weights (``use_ema=True``) the epochs train and validate the
        raw weights, and the model holds the averaged ones when a ``fit`` that took a step returns (Keras's
        behaviour), with batch-norm running statistics re-estimated for them by one forward pass over the
        training data (``xpcnn.batch_norm_stats.update_bn``, as ``torch.optim.swa_utils.update_bn``).

        Parameters
        ----------
        x : array, list of arrays, or a stream
            Arrays (NumPy, lists, or arrays of the current backend; moved to the device once), or a stream of
            ``(x, y)`` batches with ``y=None`` and no ``batch_size``: an ``xpcnn.DataLoader`` (arrays, or a
            dataset read by workers), a Keras ``PyDataset``-style object (``len()`` batches, ``[i]`` the
            i-th), or any iterable (a generator, a PyTorch ``DataLoader``).
        y : array or list of arrays, optional
            The targets of array inputs.
        batch_size : int, optional
            Samples per batch for array inputs; 32 by default.
        epochs : int, default 1
            The epoch to end at: the run trains epochs ``initial_epoch`` to ``epochs - 1``.
        validation_data : tuple or stream, optional
            A pair ``(x_val, y_val)`` of arrays, or a stream (``validation_steps`` batches of it); evaluated
            at the end of every epoch as ``val_<name>`` logs. Takes precedence over ``validation_split``.
        validation_split : float, default 0.0
            Holds out the LAST fraction of the array samples (before shuffling), like Keras.
        shuffle : bool, default True
            Shuffle array inputs each epoch (arrays only, as in Keras).
        callbacks : list of Callback, optional
            ``xpcnn.callbacks`` objects.
        verbose : {0, 1, 2}, default 1
            0 silent, 1 progress bar, 2 one line per epoch.
        initial_epoch : int, default 0
            The epoch to start from (resuming a run).
        check_finite : bool, default True
            Check x, a floating y and the validation data for NaN and infinity.
        distributed : optional
            A communicator from ``xpcnn.distributed.init()``. On several ranks (``mpiexec``) the model trains
            data-parallel: rank 0's weights, buffers and random stream everywhere at the start, the same data
            order on every rank, each rank a contiguous share of every global batch of ``batch_size`` (read
            only by that rank, for a ``DataLoader``), gradients averaged over the global batch (by sample
            count), the same update on every rank; the logs and validation summed over the ranks, batch-norm
            running statistics averaged at each epoch's end; only rank 0 prints and writes files. An error on
            one rank ends every rank. Steps run eagerly.
        sync_batch_norm : bool, default False
            Batch norm's training statistics over the global batch instead of each rank's.
        transform : callable, optional
            Data augmentation applied on the device to each training batch's inputs (for example
            ``xpcnn.transforms.Compose([RandomFlip(), RandomRotation(10)])``), never to validation data.
        steps_per_epoch : int, optional
            Batches per epoch (default: one pass; with it, a stream goes on across epochs).
        validation_steps : int, optional
            Batches of ``validation_data`` per validation.

        Returns
        -------
        History
            ``history.history`` maps each log name (``"loss"``, the metrics, ``"val_..."``, ``"lr"``) to its
            value at each epoch's end; ``history.epoch`` lists the epochs.

        Raises
        ------
        RuntimeError
            If the model is not compiled.
        ValueError
            Before anything changes, when x and y differ in length, labels are out of range, or (unless
            ``check_finite=False``) x, a floating y or the validation data hold NaN or infinity; a stream is
            checked by its first batch before training, and for NaN batch by batch as it is read. Also for an
            argument out of its range (``validation_split`` outside ``[0, 1)``, ``verbose`` not 0, 1 or 2).
        TypeError
            If an argument has the wrong type (a count that is no int, a callback that is no ``Callback``).
        xpcnn.TrainingPreempted
            When a SIGTERM stops the run (``xpcnn.preemption``).

        Examples
        --------
        >>> from xpcnn.layers import Dense, Flatten
        >>> model = xpcnn.Sequential([Flatten(), Dense(10)], input_shape=(1, 28, 28))
        >>> model.compile(loss="cross_entropy", optimizer="adam", metrics=["accuracy"])
        >>> x = np.random.default_rng(0).random((64, 1, 28, 28), dtype=np.float32)
        >>> y = np.arange(64) % 10
        >>> history = model.fit(x, y, batch_size=16, epochs=2, validation_split=0.25, verbose=0)
        >>> sorted(history.history), history.epoch
        (['accuracy', 'loss', 'lr', 'val_accuracy', 'val_loss'], [0, 1])
        """
        parallel = data_parallel(distributed)
        train, val, callback_list, epochs, initial_epoch, verbose = _agreed(parallel, lambda: self._fit_inputs(
            x, y, batch_size, epochs, validation_data, validation_split, shuffle, callbacks, verbose, initial_epoch,
            check_finite, parallel, sync_batch_norm, transform, steps_per_epoch, validation_steps))
        norms = parallel.synchronised_batch_norm(self) if parallel is not None and sync_batch_norm else []
        try:
            return self._fit(train, val, epochs, callback_list, verbose, initial_epoch, parallel)
        except Exception as exc:
            if parallel is not None and not isinstance(exc, TrainingPreempted):  # every rank stops at that step
                parallel.comm.abort(f"{type(exc).__name__}: {exc}")  # no rank may wait forever on one that failed
            raise
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
        self.stop_training = self.preempted = False
        first_iteration = self.optimizer.iterations
        run = self._fit_run = FitRun(self, train, val, cbs, parallel, initial_epoch)
        try:
            with sigterm_flag() as sigterm:
                cbs.on_train_begin({})  # a BackupAndRestore puts back a run here (load_training_state)
                epoch_logs = self._epochs(run, val, epochs, steps, sigterm)
                self._stop_if_preempted(sigterm, cbs, parallel, "the last epoch")  # the backups are still there
                trained = self.optimizer.iterations > first_iteration
                if trained and self.optimizer.use_ema:  # as in Keras, before on_train_end (EarlyStopping may restore)
                    self.set_params(self.optimizer.averaged_params(self.params))
                    # the averaged weights' statistics: over arrays in order, else one more pass over the stream
                    update_bn(self, train.inputs if train.inputs is not None
                              else (xb for xb, _ in train.epoch(augment=False)), train.batch_size or 32)
                    if parallel is not None:
                        parallel.average_buffers(self)  # each rank's share gave its own statistics
                    self._stop_if_preempted(sigterm, cbs, parallel, "the weight average's batch-norm statistics")
                cbs.on_train_end(dict(epoch_logs))  # (BackupAndRestore deletes its backups here)
                if sigterm.raised:  # too late to stop: the run is complete
                    self.preempted = True
                    warnings.warn(f"{self.name}: a SIGTERM arrived as fit ended; the training is complete "
                                  "(model.preempted is True: save and exit)", RuntimeWarning, stacklevel=3)
        finally:
            self.distributed = self._fit_run = None
        return history

    def _epochs(self, run: FitRun, val: EpochIterator | None, epochs: int, steps: StepFunctions,
                sigterm: SigtermFlag) -> dict[str, float]:
        """The epochs of ``fit`` from where ``run`` stands; the last epoch's logs."""
        train, cbs, parallel = run.train, run.callbacks, run.parallel
        epoch_logs: dict[str, float] = {}
        for epoch in range(run.progress.epoch, epochs):
            if self.stop_training:  # a resumed run that had stopped at its last backup
                break
            cbs.on_epoch_begin(epoch, {})
            progress = run.enter_epoch(epoch)
            for step, (xb, yb) in enumerate(() if self.stop_training else train.epoch(done=progress.batch),
                                           start=progress.batch):
                size = batch_size_of(xb)
                cbs.on_train_batch_begin(step, {"size": size})
                if parallel is None:
                    logs, progress.sums = steps.train(xb, yb, progress.sums)
                    self.preempted = sigterm.raised
                else:
                    global_size, self.preempted, empty_share = parallel.global_batch(size, sigterm.raised)
                    logs, progress.sums = steps.train_shared(xb, yb, progress.sums, parallel.comm, global_size)
                    if empty_share:
                        parallel.align_random()
                progress.seen += size
                progress.batch = step + 1
                cbs.on_train_batch_end(step, {**(logs or {}), "size": size})
                if self.preempted:
                    self._preempted(sigterm, cbs, f"epoch {epoch + 1}, batch {step + 1}")
                if self.stop_training:
                    break
            if not progress.batch:  # an input that cannot start again has run out (EpochIterator warned)
                break
            groups = [("", progress.sums, progress.seen)]
            if val is not None:
                cbs.on_test_begin({})
                groups.append(("val_", *self._evaluate_sums(val, cbs, steps)))
            if parallel is not None:
                groups = [(prefix, *parallel.reduce(group_sums, count)) for prefix, group_sums, count in groups]
                parallel.average_buffers(self)
            epoch_logs = read_means(groups)
            if val is not None:
                cbs.on_test_end({k[4:]: v for k, v in epoch_logs.items() if k.startswith("val_")})
            epoch_logs["lr"] = float(self.optimizer.lr)
            self.epoch = epoch + 1
            run.progress = Progress(epoch + 1)
            self.preempted = sigterm.raised if parallel is None else parallel.count_ranks(sigterm.raised) > 0
            cbs.on_epoch_end(epoch, epoch_logs)
            if self.preempted:
                self._preempted(sigterm, cbs, f"the end of epoch {epoch + 1}")
            if self.stop_training or train.exhausted:
                break
        return epoch_logs

    def _stop_if_preempted(self, sigterm: SigtermFlag, cbs: CallbackList, parallel: Any, where: str) -> None:
        """After the epochs: a SIGTERM that came since the last step ends fit before the backups are deleted."""
        if sigterm.raised if parallel is None else parallel.count_ranks(sigterm.raised) > 0:
            self.preempted = True
            self._preempted(sigterm, cbs, where)

    def _preempted(self, sigterm: SigtermFlag, cbs: CallbackList, where: str) -> None:
        backups = [cb.backup_dir for cb in cbs if getattr(cb, "backup_dir", None) is not None]
        saved = (f"the newest backup in {backups[0]} goes on from there: run the same command again" if backups else
                 "nothing was saved (add xpcnn.callbacks.BackupAndRestore to go on from here next time)")
        raise TrainingPreempted(f"{self.name}: fit stopped on SIGTERM after {where}; {saved}")

    # --- a running fit's state (BackupAndRestore) -----------------------------------------------------------
    def training_state(self) -> dict[str, Any]:
        """Everything a backup of the running ``fit`` holds (``xpcnn.run_state``): for callbacks, at the end
        of a training batch or of an epoch.

        Returns
        -------
        dict
            What ``load_training_state`` takes.

        Raises
        ------
        RuntimeError
            Outside a running ``fit``.
        """
        if self._fit_run is None:
            raise RuntimeError(f"{self.name}: training_state() is for callbacks while fit runs")
        return self._fit_run.state()

    def load_training_state(self, state: dict[str, Any]) -> None:
        """Go on from ``state`` (what ``training_state()`` gave, or a backup read back): for a callback's
        ``on_train_begin``.

        Parameters
        ----------
        state : dict
            What ``training_state()`` returned.

        Raises
        ------
        RuntimeError
            Outside a running ``fit``.
        """
        if self._fit_run is None:
            raise RuntimeError(f"{self.name}: load_training_state() is for callbacks in on_train_begin of a fit")
        self._fit_run.load_state(state)
