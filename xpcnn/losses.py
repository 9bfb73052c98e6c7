"""Loss objects for training: ``forward(pred, target)`` -> 0-d array, ``backward()`` -> ``d loss / d pred``.

Validation looks at shapes, dtypes and devices only, never at values (that would be a host sync); the
model checks label ranges on the host. The loss stays a 0-d device array: read it once per logging interval.
"""

from __future__ import annotations

from typing import Any, ClassVar

import array_api_compat

from ._checks import check_flag
from .backend import dtype_name
from .ops import losses as loss_ops

__all__ = ["BinaryCrossEntropy", "CrossEntropy", "Loss", "MSE", "get"]


class Loss:
    """Base class: validates and casts the target, keeps what ``backward`` needs from the latest forward."""

    name: ClassVar[str]

    def __init__(self) -> None:
        self._cache: tuple[Any, Any] | None = None

    def forward(self, pred: Any, target: Any) -> Any:
        """The mean loss as a 0-d array on ``pred``'s device; ``backward`` then differentiates it.

        Parameters
        ----------
        pred : array
            The model's output, batch axis first, floating.
        target : array
            The targets, of the same namespace and device (the shapes each loss takes are in its class).

        Returns
        -------
        array
            A 0-d array; nothing is read back to the host.

        Raises
        ------
        TypeError
            If an argument is not an array, the two come from different array libraries, ``pred`` is not
            floating, or the target's dtype does not fit.
        ValueError
            If the devices, the batch sizes or the shapes differ.
        """
        target = self._validated_target(pred, target)
        self._cache = (pred, target)
        return self._loss(pred, target)

    __call__ = forward

    def backward(self) -> Any:
        """``d loss / d pred`` for the latest ``forward``, with ``pred``'s shape and dtype.

        Returns
        -------
        array

        Raises
        ------
        RuntimeError
            If ``forward`` has not run.
        """
        if self._cache is None:
            raise RuntimeError(f"{self._owner()}: backward() needs a forward(pred, target) first")
        return self._gradient(*self._cache)

    def get_config(self) -> dict[str, Any]:
        """Constructor arguments that rebuild this loss (JSON-friendly)."""
        return {}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{self._owner()}({args})"

    # --- hooks for subclasses -----------------------------------------------------------------------
    def _check_shapes(self, pred: Any, target: Any) -> None:
        """Raise ValueError unless ``target`` fits ``pred``; both have the same batch size already."""
        if tuple(target.shape) != tuple(pred.shape):
            raise ValueError(
                f"{self._owner()}: target must have pred's shape {tuple(pred.shape)}, got {tuple(target.shape)}"
            )

    def _loss(self, pred: Any, target: Any) -> Any:
        raise NotImplementedError

    def _gradient(self, pred: Any, target: Any) -> Any:
        raise NotImplementedError

    # --- validation shared by every loss ------------------------------------------------------------
    def _owner(self) -> str:
        return type(self).__name__

    def _validated_target(self, pred: Any, target: Any) -> Any:
        """``target`` checked against ``pred`` (namespace, device, dtype kind, shapes) and cast to its dtype."""
        owner = self._owner()
        for role, value in (("pred", pred), ("target", target)):
            if not array_api_compat.is_array_api_obj(value):
                raise TypeError(f"{owner}: {role} must be an array, got {type(value).__name__}")
        try:
            xp = array_api_compat.array_namespace(pred, target)
        except TypeError:
            raise TypeError(
                f"{owner}: pred and target come from different array libraries "
                f"({type(pred).__name__} and {type(target).__name__}); convert the target with xpcnn.asarray"
            ) from None
        if array_api_compat.device(pred) != array_api_compat.device(target):
            raise ValueError(
                f"{owner}: pred is on {array_api_compat.device(pred)!r} but target on "
                f"{array_api_compat.device(target)!r}"
            )
        if not xp.isdtype(pred.dtype, "real floating"):
            raise TypeError(f"{owner}: pred must be a floating array, got dtype {dtype_name(pred.dtype)}")
        if not xp.isdtype(target.dtype, ("real floating", "integral", "bool")):
            raise TypeError(f"{owner}: target must be real or boolean, got dtype {dtype_name(target.dtype)}")
        if pred.ndim == 0 or pred.shape[0] == 0:
            raise ValueError(f"{owner}: pred needs a non-empty batch axis, got shape {tuple(pred.shape)}")
        if target.ndim == 0 or target.shape[0] != pred.shape[0]:
            raise ValueError(
                f"{owner}: pred has batch size {pred.shape[0]} (shape {tuple(pred.shape)}) but target has "
                f"shape {tuple(target.shape)}"
            )
        self._check_shapes(pred, target)
        if target.ndim == pred.ndim and target.dtype != pred.dtype:  # values per element, not class indices
            target = xp.astype(target, pred.dtype)
        return target


class CrossEntropy(Loss):
    """Softmax cross-entropy averaged over the batch (F.cross_entropy), from raw logits ``(N, C)`` or, with
    ``from_logits=False``, from probabilities (clipped to [1e-7, 1] before the logarithm).

    ``target``: integer class indices ``(N,)``, or one-hot / class probabilities ``(N, C)``.

    Parameters
    ----------
    from_logits : bool, default True
        Whether ``pred`` holds raw logits (else probabilities, such as a softmax's output).

    Raises
    ------
    TypeError
        If ``from_logits`` is not a bool.

    Examples
    --------
    >>> from xpcnn.losses import CrossEntropy
    >>> loss = CrossEntropy()
    >>> logits = xpcnn.asarray(np.zeros((4, 10)))
    >>> value = loss(logits, xpcnn.asarray(np.array([0, 1, 2, 3])))
    >>> round(float(value), 4)  # log(10): every class equally likely
    2.3026
    >>> loss.backward().shape
    (4, 10)
    """

    name = "cross_entropy"

    def __init__(self, from_logits: bool = True) -> None:
        super().__init__()
        self.from_logits = check_flag(from_logits, "from_logits", type(self).__name__)

    def get_config(self) -> dict[str, Any]:
        return {} if self.from_logits else {"from_logits": False}

    def _check_shapes(self, pred: Any, target: Any) -> None:
        xp = array_api_compat.array_namespace(pred, target)
        if pred.ndim != 2:
            raise ValueError(f"CrossEntropy: pred must be 2-D logits (N, C), got shape {tuple(pred.shape)}")
        if target.ndim == 1:
            if not xp.isdtype(target.dtype, "integral"):
                raise TypeError(
                    f"CrossEntropy: 1-D targets are class indices and must be integers, got dtype "
                    f"{dtype_name(target.dtype)}; give one-hot or probability targets as (N, C) = "
                    f"{tuple(pred.shape)}"
                )
            if xp.iinfo(target.dtype).max < pred.shape[1] - 1:
                raise TypeError(
                    f"CrossEntropy: class indices of dtype {dtype_name(target.dtype)} cannot address "
                    f"{pred.shape[1]} classes; use a wider integer dtype"
                )
            return
        if tuple(target.shape) != tuple(pred.shape):
            raise ValueError(
                f"CrossEntropy: target must be class indices ({pred.shape[0]},) or probabilities "
                f"{tuple(pred.shape)}, got shape {tuple(target.shape)}"
            )

    def _loss(self, pred: Any, target: Any) -> Any:
        return loss_ops.cross_entropy(pred, target, self.from_logits)

    def _gradient(self, pred: Any, target: Any) -> Any:
        return loss_ops.cross_entropy_backward(pred, target, self.from_logits)


class BinaryCrossEntropy(Loss):
    """Binary cross-entropy averaged over all elements; target in [0, 1] with pred's shape.

    Parameters
    ----------
    from_logits : bool, default True
        ``True`` takes raw scores and is exact for any of them (F.binary_cross_entropy_with_logits);
        ``False`` takes probabilities, clipped to [1e-7, 1 - 1e-7] before the logarithm.

    Raises
    ------
    TypeError
        If ``from_logits`` is not a bool.
    """

    name = "binary_cross_entropy"

    def __init__(self, from_logits: bool = True) -> None:
        super().__init__()
        self.from_logits = check_flag(from_logits, "from_logits", type(self).__name__)

    def _loss(self, pred: Any, target: Any) -> Any:
        return loss_ops.binary_cross_entropy(pred, target, self.from_logits)

    def _gradient(self, pred: Any, target: Any) -> Any:
        return loss_ops.binary_cross_entropy_backward(pred, target, self.from_logits)

    def get_config(self) -> dict[str, Any]:
        return {"from_logits": self.from_logits}


class MSE(Loss):
    """Mean squared error over all elements (F.mse_loss); target with pred's shape."""

    name = "mse"

    def _loss(self, pred: Any, target: Any) -> Any:
        return loss_ops.mse(pred, target)

    def _gradient(self, pred: Any, target: Any) -> Any:
        return loss_ops.mse_backward(pred, target)


_LOSSES: dict[str, type[Loss]] = {cls.name: cls for cls in (CrossEntropy, BinaryCrossEntropy, MSE)}
#: Keras's spellings of the same losses
ALIASES = {"categorical_crossentropy": "cross_entropy", "sparse_categorical_crossentropy": "cross_entropy",
           "binary_crossentropy": "binary_cross_entropy", "mean_squared_error": "mse"}
#: the activation whose output a loss can take as probabilities instead of logits
PROBABILITY_ACTIVATION = {"cross_entropy": "softmax", "binary_cross_entropy": "sigmoid"}


def get(loss: str | Loss, output_activation: str | None = None) -> Loss:
    """A loss object from its name ("cross_entropy", "binary_cross_entropy", "mse", or Keras's spellings
    "categorical_crossentropy", "sparse_categorical_crossentropy", "binary_crossentropy",
    "mean_squared_error"), or ``loss`` itself. A cross-entropy named for a model whose output comes out of a
    softmax (a sigmoid for the binary one), ``output_activation``, takes probabilities (``from_logits=False``):
    the tutorials' ``Dense(10, activation="softmax")`` with ``"categorical_crossentropy"`` trains as meant.

    Parameters
    ----------
    loss : str or Loss
        A name, or a loss object (returned as is).
    output_activation : {"softmax", "sigmoid", None}, optional
        What the model's output comes out of.

    Returns
    -------
    Loss

    Raises
    ------
    ValueError
        If the name is unknown.
    TypeError
        If ``loss`` is neither a str nor a ``Loss``.

    Examples
    --------
    >>> from xpcnn import losses
    >>> losses.get("sparse_categorical_crossentropy", output_activation="softmax")
    CrossEntropy(from_logits=False)
    """
    if isinstance(loss, Loss):
        return loss
    if isinstance(loss, str):
        name = ALIASES.get(loss, loss)
        if name not in _LOSSES:
            raise ValueError(f"unknown loss {loss!r}; known losses are {sorted(_LOSSES)} and Keras's "
                             f"{sorted(ALIASES)}")
        if output_activation is not None and PROBABILITY_ACTIVATION.get(name) == output_activation:
            return _LOSSES[name](from_logits=False)
        return _LOSSES[name]()
    raise TypeError(f"a loss is one of {sorted(_LOSSES)} or a Loss object, got {type(loss).__name__}")
