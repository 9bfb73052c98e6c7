"""Symbolic calls (``xpcnn.Input`` and layers called on it) as mutation testing (``nox -s mutation``) found them
unchecked: the shapes ``Input`` takes, the nodes a call records, merge layers called on arrays, and the errors
that name the layer, the tensors and their shapes."""

from __future__ import annotations

import re

import numpy as np
import pytest
from layer_checks import host

import xpcnn
from xpcnn.layers import Add, Dense, Input


def test_input_shapes():
    assert Input(4).shape == (4,)
    assert Input((1, 3), name="image").shape == (1, 3)
    assert Input((1, 3), name="image").name == "image"
    assert repr(Input((3, 8, 8), name="img")) == "<SymbolicTensor shape=(None, 3, 8, 8) from 'img'>"
    assert Input(3).node.several is False and Input(3).node.inputs == []


@pytest.mark.parametrize(("shape", "error"), [((), ValueError), ((True, 2), ValueError), ((2.5,), ValueError),
                                              ((0, 2), ValueError), (2.5, TypeError)])
def test_input_refuses_shapes_that_are_not_positive_ints(shape, error):
    message = ("Input: shape must be a tuple of ints (per sample, no batch axis), got 2.5" if error is TypeError else
               f"Input: shape must be a non-empty tuple of positive ints (per sample, no batch axis), got {shape!r}")
    with pytest.raises(error, match=f"^{re.escape(message)}$"):
        Input(shape)


def test_a_call_records_a_node_and_builds_the_layer():
    a, b = Input(3, name="a"), Input(3, name="b")
    dense, add = Dense(2, name="d"), Add(name="add")
    out = dense(a)
    assert out.shape == (2,) and dense.input_shape == (3,)
    node = out.node
    assert node.layer is dense and node.inputs == [a] and node.several is False and dense._nodes == [node]
    merged = add([a, b])
    assert merged.shape == (3,) and merged.node.several is True and merged.node.inputs == [a, b]
    again = add([b, a])  # a merge layer built for two (3,) inputs takes two (3,) inputs again
    assert again.shape == (3,) and add._nodes == [merged.node, again.node]


def test_merge_layers_called_on_a_list_of_arrays_compute(backend):
    x = xpcnn.asarray(np.ones((2, 3), dtype=np.float32))
    np.testing.assert_array_equal(host(Add()([x, x])), 2.0)


def test_symbolic_call_errors_name_the_layer_and_the_tensors(backend):
    a, b, c = Input(3, name="ia"), Input(3, name="ib"), Input(4, name="ic")
    with pytest.raises(ValueError, match=re.escape(
            "layer 'd1' (Dense) takes one input, got 2: 'ia' (None, 3), 'img' (None, 3, 4, 4)")):
        Dense(2, name="d1")([a, Input((3, 4, 4), name="img")])
    built = Dense(2, name="d2")
    built(a)
    with pytest.raises(ValueError, match=re.escape(
            "layer 'd2' (Dense) cannot take 'ic' (None, 4): it was built for per-sample input (3,), not (4,)")):
        built(c)
    add = Add(name="add2")
    add([a, b])
    with pytest.raises(ValueError, match=re.escape(
            "layer 'add2' (Add) cannot take 'ia' (None, 3), 'ic' (None, 4): it was built for per-sample input "
            "[(3,), (3,)], not [(3,), (4,)]")):
        add([a, c])
    with pytest.raises(TypeError, match=re.escape(
            "layer 'd3' (Dense): called on a mix of symbolic tensors and arrays; call it on xpcnn.Input tensors "
            "(or the outputs of layers called on them) only")):
        Dense(2, name="d3")([a, xpcnn.asarray(np.ones((1, 3), dtype=np.float32))])
