"""Metrics computed on the device: each call returns the batch mean as a 0-d array of the predictions' namespace.

Nothing here reads a value back to the host; ``Sequential.fit`` accumulates the 0-d results (weighted by the
batch size) and reads the sums once per epoch. Targets are integer class labels ``(N,)`` or one-hot /
probability rows ``(N, C)`` for the categorical metrics, and 0/1 values shaped like the predictions for the
binary one.
"""

from __future__ import annotations

import math
from typing import Any

import array_api_compat

__all__ = ["Accuracy", "BinaryAccuracy", "Metric", "TopKAccuracy", "get"]


def _float_dtype(xp: Any, pred: Any) -> Any:
    if xp.isdtype(pred.dtype, "real floating"):
        return pred.dtype
    return xp.float32


def _labels(xp: Any, pred: Any, target: Any, who: str) -> Any:
    """Class indices ``(N,)`` from integer labels or from one-hot rows (their argmax)."""
    if target.ndim == pred.ndim:
        if tuple(target.shape) != tuple(pred.shape):
            raise ValueError(f"{who}: one-hot targets of shape {tuple(target.shape)} do not match predictions "
                             f"of shape {tuple(pred.shape)}")
        return xp.argmax(target, axis=-1)
    if target.ndim == pred.ndim - 1:
        if tuple(target.shape) != tuple(pred.shape[:-1]):
            raise ValueError(f"{who}: labels of shape {tuple(target.shape)} do not match predictions of shape "
                             f"{tuple(pred.shape)}")
        return target
    raise ValueError(f"{who}: targets of shape {tuple(target.shape)} are neither labels nor one-hot rows for "
                     f"predictions of shape {tuple(pred.shape)}")


class Metric:
    """A batch metric: ``metric(pred, target)`` -> 0-d device array (mean over the batch).

    A subclass sets ``name`` (the log's key) and defines ``__call__``.
    """

    name: str = "metric"

    def __call__(self, pred: Any, target: Any) -> Any:
        raise NotImplementedError

    def get_config(self) -> dict[str, Any]:
        """The constructor's arguments, saved in model files (the class name is saved beside them)."""
        return {}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


class Accuracy(Metric):
    """Fraction of rows whose arg-max prediction is the target class (integer labels or one-hot rows).

    Raises
    ------
    ValueError
        When called with targets whose shape fits neither labels ``(N,)`` nor one-hot rows ``(N, C)``.

    Examples
    --------
    >>> from xpcnn.metrics import Accuracy
    >>> pred = xpcnn.asarray(np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]]))
    >>> float(Accuracy()(pred, xpcnn.asarray(np.array([0, 1, 1]))))
    0.6666666...
    """

    name = "accuracy"

    def __call__(self, pred: Any, target: Any) -> Any:
        xp = array_api_compat.array_namespace(pred, target)
        predicted = xp.argmax(pred, axis=-1)
        labels = _labels(xp, pred, target, "accuracy")
        if labels.dtype != predicted.dtype:
            labels = xp.astype(labels, predicted.dtype)
        return xp.mean(xp.astype(predicted == labels, _float_dtype(xp, pred)))


class BinaryAccuracy(Metric):
    """Fraction of predictions on the right side of ``threshold`` (0.5 for probabilities, 0.0 for logits).

    Parameters
    ----------
    threshold : float, default 0.5
        A prediction above it counts as 1; a target counts as 1 above 0.5.
    name : str, default "accuracy"
        The log's key.

    Raises
    ------
    ValueError
        When called with targets whose size differs from the predictions'.
    """

    name = "accuracy"

    def __init__(self, threshold: float = 0.5, name: str = "accuracy") -> None:
        self.threshold = float(threshold)
        self.name = name

    def __call__(self, pred: Any, target: Any) -> Any:
        xp = array_api_compat.array_namespace(pred, target)
        if tuple(target.shape) != tuple(pred.shape):
            if math.prod(target.shape) != math.prod(pred.shape):
                raise ValueError(f"binary accuracy: targets of shape {tuple(target.shape)} do not match "
                                 f"predictions of shape {tuple(pred.shape)}")
            target = xp.reshape(target, tuple(pred.shape))
        dtype = _float_dtype(xp, pred)
        predicted = pred > self.threshold
        truth = xp.astype(target, dtype) > 0.5
        return xp.mean(xp.astype(predicted == truth, dtype))

    def get_config(self) -> dict[str, Any]:
        """``threshold`` and ``name``, as the constructor takes them."""
        return {"threshold": self.threshold, "name": self.name}


class TopKAccuracy(Metric):
    """Fraction of rows whose target class is among the ``k`` highest scores (ties count in its favour).

    Computed without sorting: the target is in the top k when fewer than k classes score strictly higher.

    Parameters
    ----------
    k : int, default 5
        How many of the highest scores count; the log is named ``top_<k>_accuracy``.

    Raises
    ------
    ValueError
        If ``k`` is not a positive int.

    Examples
    --------
    >>> from xpcnn.metrics import TopKAccuracy
    >>> pred = xpcnn.asarray(np.array([[0.5, 0.3, 0.2], [0.5, 0.3, 0.2]]))
    >>> float(TopKAccuracy(2)(pred, xpcnn.asarray(np.array([1, 2]))))
    0.5
    """

    def __init__(self, k: int = 5) -> None:
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValueError(f"TopKAccuracy: k must be a positive int, got {k!r}")
        self.k = k
        self.name = f"top_{k}_accuracy"

    def __call__(self, pred: Any, target: Any) -> Any:
        xp = array_api_compat.array_namespace(pred, target)
        dev = array_api_compat.device(pred)
        dtype = _float_dtype(xp, pred)
        labels = _labels(xp, pred, target, self.name)
        classes = xp.arange(pred.shape[-1], dtype=labels.dtype, device=dev)
        mask = xp.expand_dims(labels, axis=-1) == classes
        true_score = xp.sum(xp.where(mask, pred, xp.zeros_like(pred)), axis=-1, keepdims=True)
        higher = xp.sum(xp.astype(pred > true_score, dtype), axis=-1)
        return xp.mean(xp.astype(higher < self.k, dtype))

    def get_config(self) -> dict[str, Any]:
        """``k``, as the constructor takes it."""
        return {"k": self.k}


def _loss_name(loss: Any) -> str | None:
    if loss is None:
        return None
    return loss if isinstance(loss, str) else getattr(loss, "name", None)


def get(identifier: Any, loss: Any = None) -> Metric:
    """A metric from a name or an object.

    ``"accuracy"`` (alias ``"acc"``) is categorical accuracy, or binary accuracy when ``loss`` is binary
    cross-entropy (threshold 0 if that loss takes logits); ``"top_k_accuracy"`` is ``TopKAccuracy(5)`` and
    ``"top_<k>_accuracy"`` any other k.

    Parameters
    ----------
    identifier : str or Metric or callable
        A name, or a metric object (returned as is; any callable with a ``name`` is accepted).
    loss : str or Loss, optional
        The loss it is reported beside, which picks the kind of ``"accuracy"``.

    Returns
    -------
    Metric

    Raises
    ------
    ValueError
        If the name is unknown.

    Examples
    --------
    >>> from xpcnn import metrics
    >>> metrics.get("top_3_accuracy")
    TopKAccuracy(k=3)
    """
    if isinstance(identifier, Metric):
        return identifier
    if isinstance(identifier, str):
        name = identifier.lower()
        if name in ("accuracy", "acc"):
            if _loss_name(loss) in ("binary_cross_entropy", "bce"):
                logits = bool(getattr(loss, "from_logits", False))
                return BinaryAccuracy(threshold=0.0 if logits else 0.5)
            return Accuracy()
        if name == "binary_accuracy":
            logits = bool(getattr(loss, "from_logits", False))
            return BinaryAccuracy(threshold=0.0 if logits else 0.5, name="binary_accuracy")
        if name in ("categorical_accuracy", "sparse_categorical_accuracy"):
            return Accuracy()
        if name in ("top_k_accuracy", "top_k_categorical_accuracy", "sparse_top_k_categorical_accuracy"):
            return TopKAccuracy(5)
        if name.startswith("top_") and name.endswith("_accuracy"):
            k = name[len("top_"):-len("_accuracy")]
            if k.isdigit() and int(k) >= 1:
                return TopKAccuracy(int(k))
    if callable(identifier) and not isinstance(identifier, (str, type)):
        return identifier  # a user-defined metric object with ``name`` and ``__call__``
    raise ValueError(
        f"unknown metric {identifier!r}; use 'accuracy', 'top_k_accuracy' (k=5), 'top_<k>_accuracy', or a "
        "Metric object such as TopKAccuracy(k)"
    )
