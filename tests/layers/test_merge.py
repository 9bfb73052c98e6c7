"""Merge layers: outputs and every input gradient against central differences (float64) and PyTorch autograd;
shape errors that name the layer and the shapes."""

from __future__ import annotations

import numpy as np
import pytest

import xpcnn
from layer_checks import assert_on_device, host, rtol_for
from xpcnn.layers import Add, Average, Concatenate, Maximum, Multiply, Subtract

SHAPE = (3, 2, 4, 5)
GATE = (3, 2, 1, 1)  # squeeze-and-excitation's (N, C, 1, 1) over (N, C, H, W)

# layer factory, the shapes of the inputs, the PyTorch expression of the same merge
CASES = {
    "add": (Add, [SHAPE] * 3, lambda ts: ts[0] + ts[1] + ts[2]),
    "subtract": (Subtract, [SHAPE] * 2, lambda ts: ts[0] - ts[1]),
    "multiply": (Multiply, [SHAPE] * 3, lambda ts: ts[0] * ts[1] * ts[2]),
    "average": (Average, [SHAPE] * 3, lambda ts: (ts[0] + ts[1] + ts[2]) / 3),
    "maximum": (Maximum, [SHAPE] * 3, lambda ts: __import__("torch").stack(ts).amax(0)),
    "concatenate": (lambda: Concatenate(axis=1), [SHAPE] * 2, lambda ts: __import__("torch").cat(ts, 1)),
    "concatenate_last": (lambda: Concatenate(axis=-1), [SHAPE] * 2, lambda ts: __import__("torch").cat(ts, -1)),
    "multiply_gate": (Multiply, [SHAPE, GATE], lambda ts: ts[0] * ts[1]),
    "multiply_gate_first": (Multiply, [GATE, SHAPE], lambda ts: ts[0] * ts[1]),
    "add_broadcast": (Add, [SHAPE, (3, 1, 4, 1), (3, 2, 1, 5)], lambda ts: ts[0] + ts[1] + ts[2]),
    "subtract_broadcast": (Subtract, [(3, 1, 1, 5), SHAPE], lambda ts: ts[0] - ts[1]),
    "average_broadcast": (Average, [GATE, (3, 1, 4, 5)], lambda ts: (ts[0] + ts[1]) / 2),
    "maximum_broadcast": (Maximum, [SHAPE, GATE, (3, 1, 4, 1)],
                          lambda ts: __import__("torch").maximum(__import__("torch").maximum(ts[0], ts[1]), ts[2])),
}


def _inputs(shapes: list[tuple[int, ...]], seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(shape) for shape in shapes]


def _run(layer, xs: list[np.ndarray], dy: np.ndarray | None = None):
    y = layer.forward([xpcnn.asarray(x) for x in xs], training=True)
    if dy is None:
        dy = np.random.default_rng(9).standard_normal(tuple(y.shape))
    return host(y), dy, [host(g) for g in layer.backward(xpcnn.asarray(dy))]


@pytest.mark.parametrize("case", sorted(CASES))
def test_gradients_match_central_differences(backend64, case):
    make, shapes, _ = CASES[case]
    xs = _inputs(shapes)
    layer = make()
    _, dy, grads = _run(layer, xs)
    eps = 1e-6
    rng = np.random.default_rng(3)
    for i in range(len(xs)):
        assert grads[i].shape == xs[i].shape, f"{case}: gradient {grads[i].shape} of input {xs[i].shape}"
        for _ in range(8):
            index = tuple(rng.integers(0, d) for d in xs[i].shape)
            plus = [x.copy() for x in xs]
            minus = [x.copy() for x in xs]
            plus[i][index] += eps
            minus[i][index] -= eps
            numeric = (np.sum(host(layer.forward([xpcnn.asarray(x) for x in plus])) * dy)
                       - np.sum(host(layer.forward([xpcnn.asarray(x) for x in minus])) * dy)) / (2 * eps)
            np.testing.assert_allclose(grads[i][index], numeric, rtol=1e-6, atol=1e-8, err_msg=f"{case} input {i}")


@pytest.mark.parametrize("case", sorted(CASES))
def test_matches_torch_autograd(backend, case):
    torch = pytest.importorskip("torch")
    make, shapes, expression = CASES[case]
    xs = _inputs(shapes, seed=1)
    layer = make()
    y, dy, grads = _run(layer, [x.astype(np.float32) for x in xs])
    ts = [torch.tensor(x, dtype=torch.float64, requires_grad=True) for x in xs]
    ty = expression(ts)
    ty.backward(torch.tensor(dy, dtype=torch.float64))
    rtol = rtol_for(backend)
    np.testing.assert_allclose(y, ty.detach().numpy(), rtol=rtol, atol=rtol)
    for i, t in enumerate(ts):
        np.testing.assert_allclose(grads[i], t.grad.numpy(), rtol=rtol, atol=rtol, err_msg=f"input {i}")


def test_outputs_and_gradients_stay_on_the_device(backend):
    layer = Concatenate()
    xs = [xpcnn.asarray(x.astype(np.float32)) for x in _inputs([SHAPE] * 2)]
    y = layer.forward(xs, training=True)
    assert_on_device(y, backend)
    for g in layer.backward(y):
        assert_on_device(g, backend)
    gate = Multiply()
    y = gate.forward([xpcnn.asarray(x.astype(np.float32)) for x in _inputs([SHAPE, GATE])], training=True)
    for g in (y, *gate.backward(y)):
        assert_on_device(g, backend)
        assert g.dtype == backend.dtype


def test_maximum_sends_each_gradient_to_the_first_maximum(backend):
    a = np.array([[1.0, 2.0, 3.0, np.nan]], dtype=np.float32)
    b = np.array([[1.0, 5.0, 3.0, 0.0]], dtype=np.float32)
    layer = Maximum()
    y = layer.forward([xpcnn.asarray(a), xpcnn.asarray(b)], training=True)
    ga, gb = layer.backward(xpcnn.asarray(np.ones((1, 4), dtype=np.float32)))
    np.testing.assert_array_equal(host(y)[0, :3], [1.0, 5.0, 3.0])
    assert np.isnan(host(y)[0, 3])
    np.testing.assert_array_equal(host(ga), [[1.0, 0.0, 1.0, 0.0]])  # ties to the first; NaN: to nobody
    np.testing.assert_array_equal(host(gb), [[0.0, 1.0, 0.0, 0.0]])


def test_concatenate_joins_channels_of_different_widths(backend):
    layer = Concatenate()
    y = layer.forward([xpcnn.asarray(np.ones((2, 3, 4, 4), np.float32)),
                       xpcnn.asarray(np.zeros((2, 5, 4, 4), np.float32))], training=True)
    assert tuple(y.shape) == (2, 8, 4, 4) and layer.output_shape == (8, 4, 4)
    g1, g2 = layer.backward(y)
    assert tuple(g1.shape) == (2, 3, 4, 4) and tuple(g2.shape) == (2, 5, 4, 4)


@pytest.mark.parametrize("make, shapes, match", [
    (Add, [(2, 4, 4), (3, 4, 4)], r"Add: inputs must have one per-sample shape, or one number of axes whose sizes "
                                  r"agree or are 1 .*; got \[\(2, 4, 4\), \(3, 4, 4\)\]"),
    (Multiply, [(2, 4, 4), (2, 1, 1), (2, 3, 1)],
     r"Multiply: inputs must .*got \[\(2, 4, 4\), \(2, 1, 1\), \(2, 3, 1\)\]"),
    (Multiply, [(2, 4, 4), (2,)], r"Multiply: inputs must .*one number of axes.*got \[\(2, 4, 4\), \(2,\)\]"),
    (Subtract, [(2,), (2,), (2,)], r"Subtract: takes 2 inputs, got 3"),
    (Average, [(2,)], r"Average: takes at least 2 inputs, got 1"),
    (Concatenate, [(2, 4, 4), (3, 5, 4)],
     r"Concatenate: along axis 1 the other axes must agree, got per-sample shapes \[\(2, 4, 4\), \(3, 5, 4\)\]"),
])
def test_shape_errors_name_the_layer_and_the_shapes(backend, make, shapes, match):
    layer = make()
    with pytest.raises(ValueError, match=match):
        layer.forward([xpcnn.asarray(np.ones((2, *s), np.float32)) for s in shapes])
    assert not layer.built


def test_bad_arguments(backend):
    with pytest.raises(ValueError, match="Concatenate: axis must be a non-zero int"):
        Concatenate(axis=0)
    with pytest.raises(TypeError, match="Add: expected a list of arrays"):
        Add().forward(xpcnn.asarray(np.ones((2, 3), np.float32)))
    layer = Add()
    with pytest.raises(RuntimeError, match="Add: backward\\(\\) needs a forward"):
        layer.backward(xpcnn.asarray(np.ones((2, 3), np.float32)))
