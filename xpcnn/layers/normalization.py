"""Batch normalisation layers, thin over ``xpcnn.ops.normalization``.

PyTorch names and layouts: params ``weight`` (ones) and ``bias`` (zeros), buffers ``running_mean`` (zeros)
and ``running_var`` (ones), all ``(C,)`` with C the channel axis 1 of the input. ``affine=False`` has no
params; ``track_running_stats=False`` has no buffers and normalises with the batch's statistics in training
and in inference alike, as torch's layers do.

A frozen layer (``trainable = False``) with running statistics runs in inference mode even in training, as
Keras's rule for fine-tuning says: it normalises with the running statistics, leaves them as they are, and
its backward is that of the inference-mode normalisation (gradients for ``weight`` and ``bias`` are computed
as usual; the engine does not apply them). ``momentum`` and ``eps`` are saved in configs (MobileNetV3 and
EfficientNet use ``eps=1e-3, momentum=0.01``).
"""

from __future__ import annotations

import numbers
from typing import Any

from .._checks import check_flag
from ..ops import normalization as norm_ops
from .base import Layer

__all__ = ["BatchNorm1D", "BatchNorm2D"]

_FROZEN = object()  # in place of the cache's sync: the forward ran in inference mode (a frozen layer)


class _BatchNorm(Layer):
    """Batch statistics when training (and a momentum update of the running ones), running ones otherwise."""

    def __init__(self, momentum: float = 0.1, eps: float = 1e-5, affine: bool = True,
                 track_running_stats: bool = True, *, name: str | None = None) -> None:
        super().__init__(name)
        name = type(self).__name__
        if not isinstance(momentum, numbers.Real) or isinstance(momentum, bool) or not 0.0 <= momentum <= 1.0:
            raise ValueError(f"{name}: momentum must be a number in [0, 1], got {momentum!r}")
        if not isinstance(eps, numbers.Real) or isinstance(eps, bool) or not eps > 0.0:
            raise ValueError(f"{name}: eps must be a positive number, got {eps!r}")
        self.momentum = float(momentum)
        self.eps = float(eps)
        self.affine = check_flag(affine, "affine", name)
        self.track_running_stats = check_flag(track_running_stats, "track_running_stats", name)

    #: In a data-parallel fit with ``sync_batch_norm=True``: the sum over the ranks (``allreduce_sum``), so
    #: that training statistics are those of the global batch; None otherwise.
    sync: Any = None

    def forward(self, x: Any, training: bool = False) -> Any:
        """As ``Layer.forward``; a batch normalised with its own statistics must hold more than one value per
        channel."""
        batch_statistics = (training and not self._frozen()) or not self.track_running_stats
        if batch_statistics and not (training and self.sync is not None):
            norm_ops.check_training_batch(tuple(getattr(x, "shape", ())), owner=self._name())
        return super().forward(x, training)

    def _frozen(self) -> bool:
        """Whether training runs in inference mode: frozen, with running statistics to normalise with."""
        return not self.trainable and self.track_running_stats

    def _check_input(self, sample_shape: tuple[int, ...]) -> None:
        if self.built and sample_shape[0] != self.input_shape[0]:
            raise ValueError(
                f"{self._name()}: built for {self.input_shape[0]} channels, got input with {sample_shape[0]} "
                f"(per-sample shape {sample_shape})"
            )

    def _build(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        channels = (input_shape[0],)
        if self.affine:
            self.params["weight"] = self._ones(channels)
            self.params["bias"] = self._zeros(channels)
        if self.track_running_stats:
            self.buffers["running_mean"] = self._zeros(channels)
            self.buffers["running_var"] = self._ones(channels)
        return input_shape

    def _forward(self, x: Any, training: bool) -> Any:
        weight = self.params.get("weight")
        stats = (self.buffers.get("running_mean"), self.buffers.get("running_var"))
        if training and self._frozen():
            y = norm_ops.batch_norm(x, weight, self.params.get("bias"), *stats, False, self.momentum, self.eps)[0]
            self._cache = (x, weight, stats, _FROZEN)
            return y
        if training and self.sync is not None:
            y, running_mean, running_var, saved = norm_ops.sync_batch_norm(
                x, weight, self.params.get("bias"), *stats, self.momentum, self.eps, self.sync)
        else:
            batch_statistics = training or not self.track_running_stats
            y, running_mean, running_var, saved = norm_ops.batch_norm(
                x, weight, self.params.get("bias"), *stats, batch_statistics, self.momentum, self.eps,
                return_saved=True,
            )
        if training:
            if self.track_running_stats:
                self.buffers["running_mean"], self.buffers["running_var"] = running_mean, running_var
            self._cache = (x, weight, saved, self.sync)
        return y

    def _backward(self, dy: Any) -> Any:
        x, weight, saved, sync = self._cache
        if sync is _FROZEN:  # saved: the running statistics it normalised with
            dx, dweight, dbias = norm_ops.batch_norm_inference_backward(dy, x, weight, *saved, self.eps)
        elif sync is not None:
            dx, dweight, dbias = norm_ops.sync_batch_norm_backward(dy, x, weight, saved, sync)
        else:
            dx, dweight, dbias = norm_ops.batch_norm_backward(dy, x, weight, self.eps, saved=saved)
        if self.affine:
            self.grads["weight"], self.grads["bias"] = dweight, dbias
        return dx

    def get_config(self) -> dict[str, Any]:
        options = {"affine": self.affine} if not self.affine else {}
        if not self.track_running_stats:
            options["track_running_stats"] = False
        return {"momentum": self.momentum, "eps": self.eps, **options}


class BatchNorm2D(_BatchNorm):
    """Batch normalisation of NCHW feature maps per channel (torch.nn.BatchNorm2d).

    Parameters
    ----------
    momentum : float, default 0.1
        Weight of the batch's statistics in the running ones, in [0, 1] (torch's convention: Keras's
        momentum is ``1 - momentum``).
    eps : float, default 1e-5
        Added to the variance.
    affine : bool, default True
        Learn ``weight`` and ``bias``.
    track_running_stats : bool, default True
        Keep running statistics for inference.
    name : str, optional
        The layer's name (a model's parameter keys use it); by default made from the class name.

    Raises
    ------
    ValueError
        If ``momentum`` is outside [0, 1] or ``eps`` is not positive; when called in training, for a batch
        with a single value per channel.

    Examples
    --------
    >>> from xpcnn.layers import BatchNorm2D
    >>> layer = BatchNorm2D()
    >>> layer(xpcnn.asarray(np.ones((2, 3, 4, 4))), training=True).shape, sorted(layer.buffers)
    ((2, 3, 4, 4), ['running_mean', 'running_var'])
    """

    input_ndim = 3


class BatchNorm1D(_BatchNorm):
    """Batch normalisation of (N, C) features or (N, C, L) sequences per channel (torch.nn.BatchNorm1d).

    Parameters
    ----------
    momentum : float, default 0.1
        Weight of the batch's statistics in the running ones, in [0, 1] (torch's convention: Keras's
        momentum is ``1 - momentum``).
    eps : float, default 1e-5
        Added to the variance.
    affine : bool, default True
        Learn ``weight`` and ``bias``.
    track_running_stats : bool, default True
        Keep running statistics for inference.
    name : str, optional
        The layer's name (a model's parameter keys use it); by default made from the class name.

    Raises
    ------
    ValueError
        If ``momentum`` is outside [0, 1] or ``eps`` is not positive; when called in training, for a batch
        with a single value per channel.
    """

    input_ndim = (1, 2)
