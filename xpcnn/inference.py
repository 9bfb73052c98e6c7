"""``evaluate`` and ``predict``: the engine's loops that do not train, mixed into ``Trainer`` beside ``fit``.

As in training, the batch values stay on the device: losses and metrics are summed there and read back once
(``read_means``), outputs are concatenated there. With ``distributed`` each rank computes its share of every
batch and every rank gets the whole result.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from ._checks import check_int
from .backend import get_backend, to_numpy
from .callbacks import CallbackList, ProgressBar
from .data import EpochIterator
from .distributed import data_parallel
from .step_functions import StepFunctions
from .step_functions import batch_size as batch_size_of
from .trainer_inputs import TrainerInputs, check_verbose

__all__ = ["Inference", "read_means"]

Array = Any


def read_means(groups: Sequence[tuple[str, dict[str, Array] | None, int]]) -> dict[str, float]:
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


def _checked_sizes(batch_size: Any, steps: Any, verbose: Any, what: str) -> tuple[int | None, int | None, int]:
    """``batch_size`` and ``steps`` (None or a positive int) and ``verbose``, checked for ``what``."""
    batch_size, steps = (None if v is None else check_int(v, name, 1, what)
                         for v, name in ((batch_size, "batch_size"), (steps, "steps")))
    return batch_size, steps, check_verbose(verbose)


class Inference(TrainerInputs):
    """``evaluate``/``predict`` for a model that also has ``Trainer``'s ``step_functions`` and checks."""

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

        The batch values are summed on the device and read back once.

        Parameters
        ----------
        x : array, list of arrays, or a stream
            What ``fit`` takes: arrays with ``y``, or a stream of ``(x, y)`` batches.
        y : array or list of arrays, optional
            The targets of array inputs.
        batch_size : int, optional
            Samples per batch for array inputs; 32 by default.
        verbose : {0, 1, 2}, default 0
            0 silent, else a progress bar.
        callbacks : list of Callback, optional
            They get ``on_test_begin``/``_end`` and the ``on_test_batch_*`` hooks.
        distributed : optional
            A communicator from ``xpcnn.distributed.init()``: with several ranks each rank evaluates its share
            of every batch and every rank returns the sums over all of them.
        steps : int, optional
            Batches of a stream to read (default: all).

        Returns
        -------
        dict of str to float
            The mean loss and metrics over the samples.

        Raises
        ------
        RuntimeError
            If the model is not compiled.
        ValueError
            If the inputs do not fit the model, or ``verbose`` is not 0, 1 or 2.

        Examples
        --------
        >>> from xpcnn.layers import Dense, Flatten
        >>> model = xpcnn.Sequential([Flatten(), Dense(10)], input_shape=(1, 28, 28))
        >>> model.compile(loss="cross_entropy", optimizer="sgd", metrics=["accuracy"])
        >>> scores = model.evaluate(np.zeros((20, 1, 28, 28), dtype="float32"), np.arange(20) % 10)
        >>> sorted(scores)
        ['accuracy', 'loss']
        """
        self._require_compiled("evaluate")
        batch_size, steps, verbose = _checked_sizes(batch_size, steps, verbose, "evaluate")
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
        result = read_means([("", sums, seen)])
        cbs.on_test_end(dict(result))
        return result

    def predict(self, x: Any, batch_size: int | None = None, verbose: int = 0,
                callbacks: Sequence[Any] | None = None, distributed: Any = None, steps: int | None = None) -> Array:
        """The outputs for every sample of ``x``, concatenated on the device (an array of the current backend).

        Parameters
        ----------
        x : array, list of arrays, or a stream
            Arrays, or a stream of batches (``x`` alone or ``(x, y)``, whose ``y`` is ignored).
        batch_size : int, optional
            Samples per batch for array inputs; 32 by default.
        verbose : {0, 1, 2}, default 0
            0 silent, else a progress bar (when ``tqdm`` is installed).
        callbacks : list of Callback, optional
            They get ``on_predict_begin``/``_end`` and, per batch, ``on_predict_batch_begin``/``_end`` with
            ``{"outputs": <the batch's outputs on the device>, "size": n}``.
        distributed : optional
            A communicator from ``xpcnn.distributed.init()``: with several ranks each rank computes its share
            of every batch and every rank returns all the outputs.
        steps : int, optional
            Batches of a stream to read (default: all).

        Returns
        -------
        array or list of arrays
            The outputs, samples in the order of ``x``; a list of one array per output for several outputs.

        Raises
        ------
        ValueError
            If the input's per-sample shape does not fit the model, or ``verbose`` is not 0, 1 or 2.

        Examples
        --------
        >>> from xpcnn.layers import Dense, Flatten
        >>> model = xpcnn.Sequential([Flatten(), Dense(10)], input_shape=(1, 28, 28))
        >>> model.predict(np.zeros((100, 1, 28, 28), dtype="float32"), batch_size=32).shape
        (100, 10)
        """
        batch_size, steps, verbose = _checked_sizes(batch_size, steps, verbose, "predict")
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
