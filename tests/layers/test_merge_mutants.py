"""Merge layer behaviours that mutation testing (``nox -s mutation``) found unchecked: ``Concatenate`` along an axis
other than the channels, of three inputs, and its axis errors; the input errors of every merge layer word for
word."""

from __future__ import annotations

import re

import numpy as np
import pytest
from layer_checks import host

import xpcnn
from xpcnn.layers import Add, Concatenate, Subtract


def _arrays(*shapes, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(s) for s in shapes]


@pytest.mark.parametrize(("axis", "shapes"), [
    (2, [(2, 3, 1, 5), (2, 3, 4, 5), (2, 3, 2, 5)]),
    (-1, [(2, 3, 4, 1), (2, 3, 4, 2), (2, 3, 4, 3)]),
    (3, [(2, 3, 4, 2), (2, 3, 4, 2)]),
])
def test_concatenate_along_any_sample_axis(backend64, axis, shapes):
    values = _arrays(*shapes)
    layer = Concatenate(axis=axis)
    y = layer.forward([xpcnn.asarray(v) for v in values], training=True)
    expected = np.concatenate(values, axis=axis)
    np.testing.assert_array_equal(host(y), expected)
    assert layer.output_shape == expected.shape[1:]
    dy = np.arange(expected.size, dtype=np.float64).reshape(expected.shape)
    grads = layer.backward(xpcnn.asarray(dy))
    bounds = np.cumsum([v.shape[axis] for v in values])[:-1]
    for grad, part in zip(grads, np.split(dy, bounds, axis=axis)):
        np.testing.assert_array_equal(host(grad), part)


def test_concatenate_axis_errors(backend):
    x = xpcnn.asarray(np.zeros((2, 3, 4, 4), dtype=np.float32))
    with pytest.raises(ValueError, match=re.escape("Concatenate: axis 4 is outside inputs of 4 axes (batch included)")):
        Concatenate(axis=4).forward([x, x])
    with pytest.raises(ValueError, match=re.escape(
            "Concatenate: axis -4 is outside inputs of 4 axes (batch included)")):
        Concatenate(axis=-4).forward([x, x])
    with pytest.raises(ValueError, match=re.escape(
            "Concatenate: inputs must have one number of axes, got per-sample shapes [(3, 4, 4), (3, 16)]")):
        Concatenate().forward([x, xpcnn.asarray(np.zeros((2, 3, 16), dtype=np.float32))])


def test_merge_input_errors(backend):
    x = xpcnn.asarray(np.zeros((2, 3), dtype=np.float32))
    with pytest.raises(TypeError, match="^Add: expected a list of arrays, got tuple_iterator$"):
        Add().forward(iter((x, x)))
    with pytest.raises(TypeError, match="^Add: expected arrays, got float$"):
        Add().forward([x, 1.0])
    one_d = xpcnn.asarray(np.zeros(2, dtype=np.float32))
    with pytest.raises(ValueError, match=re.escape(
            "Add: inputs need one batch size and a batch axis, got shapes [(2,), (2,)]")):
        Add().forward([one_d, one_d])
    with pytest.raises(ValueError, match=re.escape(
            "Subtract: inputs need one batch size and a batch axis, got shapes [(2, 3), (4, 3)]")):
        Subtract().forward([x, xpcnn.asarray(np.zeros((4, 3), dtype=np.float32))])
    add = Add()
    add.forward([x, x], training=True)
    with pytest.raises(ValueError, match=re.escape("Add: built for per-sample inputs [(3,), (3,)], got [(3,), (1,)]")):
        add.forward([x, xpcnn.asarray(np.zeros((2, 1), dtype=np.float32))])
    with pytest.raises(ValueError, match=re.escape(
            "Add: output gradient has shape (2, 4), but the last forward produced (2, 3)")):
        add.backward(xpcnn.asarray(np.zeros((2, 4), dtype=np.float32)))
