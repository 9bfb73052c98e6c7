"""Merge layers: several inputs into one, for skip connections (``Add``), U-Net joins (``Concatenate``) and
squeeze-and-excitation gates (``Multiply``).

A merge layer takes a list of arrays with the same batch size. The elementwise ones (all but
``Concatenate``) take per-sample shapes with one number of axes whose sizes agree or are 1, and broadcast the
1s as NumPy does, as Keras's merge layers do: ``Multiply()([x, gate])`` scales the channels of ``x (N, C, H, W)``
by ``gate (N, C, 1, 1)``. The gradient of a broadcast input is summed over the axes it was broadcast along.
Any other mismatch is an error that names the shapes. ``backward`` returns one gradient per input.
``Maximum`` sends each gradient to the first input holding the maximum (as max pooling does); where an input
is NaN the output is NaN and no input gets a gradient.

Squeeze-and-excitation is built from these public layers rather than being one layer: pooling, two 1x1
``Conv2D`` and a broadcasting ``Multiply``, each named as torchvision names its modules (``<block>.fc1``,
``<block>.fc2``), so that the state-dict keys are torchvision's (``<block>.fc1.weight``, ...) and every part
exports, prints and freezes like any layer.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import array_api_compat

from .base import Layer, cast_floating

__all__ = ["Add", "Average", "Concatenate", "Maximum", "Multiply", "Subtract"]


class _Merge(Layer):
    """The list-in, one-out contract; subclasses give ``_merge`` and ``_split`` (the gradients)."""

    takes_several_inputs: ClassVar[bool] = True
    max_inputs: ClassVar[int | None] = None

    def build(self, input_shape: Any) -> tuple[int, ...]:
        """Check the per-sample shapes of the inputs; return the output's."""
        shapes = [tuple(int(d) for d in s) for s in input_shape]
        wanted = "2" if self.max_inputs == 2 else "at least 2"
        if len(shapes) < 2 or (self.max_inputs is not None and len(shapes) > self.max_inputs):
            raise ValueError(f"{self._name()}: takes {wanted} inputs, got {len(shapes)}")
        out = self._merged_shape(shapes)
        self.input_shape, self.output_shape = tuple(shapes), out
        return out

    def _merged_shape(self, shapes: list[tuple[int, ...]]) -> tuple[int, ...]:
        """The broadcast of the per-sample shapes: one number of axes, each of one size or 1."""
        if len({len(s) for s in shapes}) == 1:
            out = tuple(max(sizes) for sizes in zip(*shapes))
            if all(d in (1, o) for s in shapes for d, o in zip(s, out)):
                return out
        raise ValueError(f"{self._name()}: inputs must have one per-sample shape, or one number of axes whose "
                         f"sizes agree or are 1 (broadcast, as a (C, 1, 1) gate over (C, H, W)); got {shapes}")

    def _unbroadcast(self, grads: list[Any]) -> list[Any]:
        """Each input's gradient from its output-shaped one: summed over the axes that input was broadcast
        along (its size 1 where the output's is not)."""
        xp = array_api_compat.array_namespace(*grads)
        out = []
        for g, shape in zip(grads, self.input_shape):
            axes = tuple(1 + i for i, (d, o) in enumerate(zip(shape, self.output_shape)) if d != o)
            out.append(xp.sum(g, axis=axes, keepdims=True) if axes else g)
        return out

    def forward(self, inputs: Any, training: bool = False) -> Any:
        """The merged array of the list ``inputs``; with ``training`` it also keeps what ``backward`` needs."""
        if not isinstance(inputs, (list, tuple)):
            raise TypeError(f"{self._name()}: expected a list of arrays, got {type(inputs).__name__}")
        xs = list(inputs)
        for x in xs:
            if not array_api_compat.is_array_api_obj(x):
                raise TypeError(f"{self._name()}: expected arrays, got {type(x).__name__}")
        if any(x.ndim < 2 or x.shape[0] != xs[0].shape[0] for x in xs):
            raise ValueError(f"{self._name()}: inputs need one batch size and a batch axis, got shapes "
                             f"{[tuple(x.shape) for x in xs]}")
        shapes = [tuple(x.shape[1:]) for x in xs]
        if not self.built:
            self.build(shapes)
        elif shapes != list(self.input_shape):
            raise ValueError(f"{self._name()}: built for per-sample inputs {list(self.input_shape)}, got {shapes}")
        input_dtypes = [x.dtype for x in xs]
        if self.dtype_policy.mixed:
            self._computing = self._compute_dtype()
            xs = [cast_floating(x, self._computing) for x in xs]
        y = self._merge(xs)
        if training:
            self._cache = (xs, y)
            self._out_shape = tuple(y.shape)
            self._input_dtype = input_dtypes if self.dtype_policy.mixed else None
        return y

    def backward(self, dy: Any) -> list[Any]:
        """One input gradient per input, for the output gradient ``dy`` of the latest training forward."""
        if self._out_shape is None:
            raise RuntimeError(f"{self._name()}: backward() needs a forward(inputs, training=True) first")
        if tuple(dy.shape) != self._out_shape:
            raise ValueError(f"{self._name()}: output gradient has shape {tuple(dy.shape)}, but the last forward "
                             f"produced {self._out_shape}")
        if self._input_dtype is None:
            return self._unbroadcast(self._split(dy, *self._cache))
        dxs = self._unbroadcast(self._split(cast_floating(dy, self._computing), *self._cache))
        return [cast_floating(dx, dtype) for dx, dtype in zip(dxs, self._input_dtype)]

    def _merge(self, xs: list[Any]) -> Any:
        raise NotImplementedError

    def _split(self, dy: Any, xs: list[Any], y: Any) -> list[Any]:
        raise NotImplementedError


class Add(_Merge):
    """The sum of the inputs (a residual connection: ``Add()([x, f(x)])``).

    Parameters
    ----------
    name : str, optional
        The layer's name (a model's parameter keys use it); by default made from the class name.

    Raises
    ------
    ValueError
        When called with fewer than two inputs, batch sizes that differ, or per-sample shapes that do not
        broadcast.
    TypeError
        When called with something other than a list of arrays.

    Examples
    --------
    >>> from xpcnn.layers import Add
    >>> x = xpcnn.asarray(np.ones((2, 4, 8, 8)))
    >>> float(xpcnn.to_numpy(Add()([x, x, x])).max())
    3.0
    """

    def _merge(self, xs: list[Any]) -> Any:
        y = xs[0] + xs[1]
        for x in xs[2:]:
            y = y + x
        return y

    def _split(self, dy: Any, xs: list[Any], y: Any) -> list[Any]:
        return [dy] * len(xs)


class Subtract(_Merge):
    """The first input minus the second (exactly two inputs).

    Parameters
    ----------
    name : str, optional
        The layer's name (a model's parameter keys use it); by default made from the class name.
    """

    max_inputs = 2

    def _merge(self, xs: list[Any]) -> Any:
        return xs[0] - xs[1]

    def _split(self, dy: Any, xs: list[Any], y: Any) -> list[Any]:
        return [dy, -dy]


class Multiply(_Merge):
    """The elementwise product of the inputs; a ``(N, C, 1, 1)`` gate broadcasts over ``(N, C, H, W)``
    (squeeze-and-excitation's scaling, see the module's docstring).

    Parameters
    ----------
    name : str, optional
        The layer's name (a model's parameter keys use it); by default made from the class name.

    Examples
    --------
    >>> from xpcnn.layers import Multiply
    >>> x, gate = xpcnn.asarray(np.ones((2, 4, 8, 8))), xpcnn.asarray(np.full((2, 4, 1, 1), 0.5))
    >>> Multiply()([x, gate]).shape
    (2, 4, 8, 8)
    """

    def _merge(self, xs: list[Any]) -> Any:
        return math.prod(xs[1:], start=xs[0])

    def _split(self, dy: Any, xs: list[Any], y: Any) -> list[Any]:
        return [math.prod((x for j, x in enumerate(xs) if j != i), start=dy) for i in range(len(xs))]


class Average(_Merge):
    """The elementwise mean of the inputs.

    Parameters
    ----------
    name : str, optional
        The layer's name (a model's parameter keys use it); by default made from the class name.
    """

    def _merge(self, xs: list[Any]) -> Any:
        return Add._merge(self, xs) / len(xs)

    def _split(self, dy: Any, xs: list[Any], y: Any) -> list[Any]:
        return [dy / len(xs)] * len(xs)


class Maximum(_Merge):
    """The elementwise maximum; each gradient goes to the first input holding it.

    Parameters
    ----------
    name : str, optional
        The layer's name (a model's parameter keys use it); by default made from the class name.
    """

    def _merge(self, xs: list[Any]) -> Any:
        xp = array_api_compat.array_namespace(*xs)
        y = xs[0]
        for x in xs[1:]:
            y = xp.maximum(y, x)
        return y

    def _split(self, dy: Any, xs: list[Any], y: Any) -> list[Any]:
        xp = array_api_compat.array_namespace(dy, y)
        taken = xp.zeros(tuple(y.shape), dtype=xp.bool, device=array_api_compat.device(y))
        grads = []
        for x in xs:
            winner = (x == y) & ~taken
            taken = taken | winner
            grads.append(xp.where(winner, dy, xp.zeros_like(dy)))
        return grads


class Concatenate(_Merge):
    """The inputs joined along ``axis`` (an axis of the batched arrays, default 1: the channels of NCHW; the
    batch axis 0 cannot be joined). The other axes must agree.

    Parameters
    ----------
    axis : int, default 1
        The axis of the batched arrays to join along; negative counts from the end, 0 is refused.
    name : str, optional
        The layer's name (a model's parameter keys use it); by default made from the class name.

    Raises
    ------
    ValueError
        If ``axis`` is 0 or not an int; when called, for inputs whose other axes differ.

    Examples
    --------
    >>> from xpcnn.layers import Concatenate
    >>> a, b = xpcnn.asarray(np.zeros((2, 3, 8, 8))), xpcnn.asarray(np.zeros((2, 5, 8, 8)))
    >>> Concatenate()([a, b]).shape
    (2, 8, 8, 8)
    """

    def __init__(self, axis: int = 1, *, name: str | None = None) -> None:
        super().__init__(name)
        if not isinstance(axis, int) or isinstance(axis, bool) or axis == 0:
            raise ValueError(f"Concatenate: axis must be a non-zero int (axis 0 is the batch), got {axis!r}")
        self.axis = axis

    def _sample_axis(self, ndim: int) -> int:
        """The joined axis among the per-sample axes (0-based), for samples of ``ndim`` axes."""
        axis = self.axis - 1 if self.axis > 0 else ndim + self.axis
        if not 0 <= axis < ndim:
            raise ValueError(f"Concatenate: axis {self.axis} is outside inputs of {ndim + 1} axes (batch included)")
        return axis

    def _merged_shape(self, shapes: list[tuple[int, ...]]) -> tuple[int, ...]:
        if len({len(s) for s in shapes}) != 1:
            raise ValueError(f"Concatenate: inputs must have one number of axes, got per-sample shapes {shapes}")
        axis = self._sample_axis(len(shapes[0]))
        rest = [s[:axis] + s[axis + 1:] for s in shapes]
        if any(r != rest[0] for r in rest):
            raise ValueError(f"Concatenate: along axis {self.axis} the other axes must agree, got per-sample "
                             f"shapes {shapes}")
        return shapes[0][:axis] + (sum(s[axis] for s in shapes),) + shapes[0][axis + 1:]

    def _merge(self, xs: list[Any]) -> Any:
        xp = array_api_compat.array_namespace(*xs)
        return xp.concat(xs, axis=1 + self._sample_axis(xs[0].ndim - 1))

    def _split(self, dy: Any, xs: list[Any], y: Any) -> list[Any]:
        axis = 1 + self._sample_axis(dy.ndim - 1)
        grads, start = [], 0
        for x in xs:
            index = [slice(None)] * dy.ndim
            index[axis] = slice(start, start + x.shape[axis])
            grads.append(dy[tuple(index)])
            start += x.shape[axis]
        return grads

    def _unbroadcast(self, grads: list[Any]) -> list[Any]:
        return grads  # no input is broadcast: each gradient is its slice of dy

    def get_config(self) -> dict[str, Any]:
        return {"axis": self.axis}
