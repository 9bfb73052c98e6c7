"""Losses: numerical gradients, PyTorch oracle, stability, device discipline, lookup and validation errors."""

from __future__ import annotations

import numpy as np
import pytest

import xpcnn
from conftest import BACKEND
from layer_checks import assert_on_device, host, rtol_for
from xpcnn.losses import MSE, BinaryCrossEntropy, CrossEntropy, Loss, get


def _normal(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape)


def _probabilities(shape: tuple[int, ...], seed: int = 1) -> np.ndarray:
    """Rows that sum to one (soft class targets)."""
    e = np.exp(_normal(shape, seed))
    return e / e.sum(axis=1, keepdims=True)


def _uniform(shape: tuple[int, ...], low: float, high: float, seed: int = 2) -> np.ndarray:
    return np.random.default_rng(seed).uniform(low, high, shape)


def _labels(n: int, classes: int, seed: int = 3) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, classes, n).astype(np.int64)


# (id, loss factory, pred on the host, target on the host)
CASES = [
    pytest.param(CrossEntropy, _normal((4, 5)), _labels(4, 5), id="ce-indices"),
    pytest.param(CrossEntropy, _normal((1, 3)), _labels(1, 3), id="ce-indices-batch1"),
    pytest.param(CrossEntropy, 3 * _normal((3, 4)), _probabilities((3, 4)), id="ce-probabilities"),
    pytest.param(CrossEntropy, _normal((3, 4)), np.eye(4)[[0, 3, 1]], id="ce-one-hot"),
    pytest.param(lambda: CrossEntropy(from_logits=False), _probabilities((4, 5), seed=8), _labels(4, 5),
                 id="ce-from-probabilities"),
    pytest.param(lambda: CrossEntropy(from_logits=False), _probabilities((3, 4), seed=9), _probabilities((3, 4)),
                 id="ce-from-probabilities-soft-targets"),
    pytest.param(BinaryCrossEntropy, 3 * _normal((4, 1)), _uniform((4, 1), 0, 1), id="bce-logits"),
    pytest.param(BinaryCrossEntropy, _normal((1, 3)), np.array([[0.0, 1.0, 1.0]]), id="bce-logits-batch1"),
    pytest.param(lambda: BinaryCrossEntropy(from_logits=False), _uniform((3, 2), 0.05, 0.95),
                 _uniform((3, 2), 0, 1, seed=5), id="bce-probabilities"),
    pytest.param(MSE, _normal((5,)), _normal((5,), seed=6), id="mse-1d"),
    pytest.param(MSE, _normal((2, 3, 2, 2)), _normal((2, 3, 2, 2), seed=6), id="mse-4d"),
]


def _torch_loss(loss: Loss, torch_target):
    import torch.nn.functional as F

    if isinstance(loss, CrossEntropy):
        if not loss.from_logits:  # what torch users write for probabilities: the log-likelihood of their log
            if torch_target.ndim == 1:
                return lambda pred: F.nll_loss(pred.log(), torch_target)
            return lambda pred: -(torch_target * pred.log()).sum(1).mean()
        return lambda pred: F.cross_entropy(pred, torch_target)
    if isinstance(loss, BinaryCrossEntropy):
        if loss.from_logits:
            return lambda pred: F.binary_cross_entropy_with_logits(pred, torch_target)
        return lambda pred: F.binary_cross_entropy(pred, torch_target)
    return lambda pred: F.mse_loss(pred, torch_target)


def _loss_and_grad(loss: Loss, pred: np.ndarray, target: np.ndarray) -> tuple[float, np.ndarray]:
    value = loss.forward(xpcnn.asarray(pred), xpcnn.asarray(target))
    return float(host(value)), host(loss.backward())


@pytest.mark.parametrize("make, pred, target", CASES)
def test_loss_numerical_gradients(backend64, make, pred, target):
    loss = make()
    _, grad = _loss_and_grad(loss, pred, target)
    eps = 1e-6
    rng = np.random.default_rng(7)
    directions = [np.eye(pred.size)[i].reshape(pred.shape) for i in range(pred.size)]
    directions += [rng.standard_normal(pred.shape) for _ in range(3)]
    for v in directions:
        plus, _ = _loss_and_grad(loss, pred + eps * v, target)
        minus, _ = _loss_and_grad(loss, pred - eps * v, target)
        numeric = (plus - minus) / (2 * eps)
        np.testing.assert_allclose(np.sum(grad * v), numeric, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("dtype_fixture", ["backend", "backend64"])
@pytest.mark.parametrize("make, pred, target", CASES)
def test_loss_matches_torch(request, dtype_fixture, make, pred, target):
    torch = pytest.importorskip("torch")
    backend = request.getfixturevalue(dtype_fixture)
    loss = make()
    value, grad = _loss_and_grad(loss, pred, target)
    tpred = torch.tensor(pred, requires_grad=True)
    ttarget = torch.tensor(target)
    reference = _torch_loss(loss, ttarget)(tpred)
    reference.backward()
    rtol = rtol_for(backend)
    np.testing.assert_allclose(value, reference.item(), rtol=rtol, err_msg="loss")
    np.testing.assert_allclose(grad, tpred.grad.numpy(), rtol=rtol, atol=rtol * np.abs(grad).max(), err_msg="grad")


@pytest.mark.parametrize("make, pred, target", CASES)
def test_loss_is_a_0d_array_on_the_device(backend, make, pred, target):
    loss = make()
    value = loss.forward(xpcnn.asarray(pred), xpcnn.asarray(target))
    grad = loss.backward()
    assert value.ndim == 0
    assert tuple(grad.shape) == pred.shape
    for array in (value, grad):
        assert_on_device(array, backend)
        assert array.dtype == backend.dtype


def test_extreme_logits_stay_finite_and_exact(backend):
    logits = xpcnn.asarray(np.array([[1e4, -1e4, 0.0], [-1e4, 1e4, 0.0]]))
    labels = xpcnn.asarray(np.array([0, 0]))
    ce = CrossEntropy()
    np.testing.assert_allclose(host(ce.forward(logits, labels)), 1e4, rtol=1e-6)
    np.testing.assert_allclose(host(ce.backward()), [[0, 0, 0], [-0.5, 0.5, 0]], atol=1e-7)
    bce = BinaryCrossEntropy()
    z = xpcnn.asarray(np.array([[1e4], [-1e4], [50.0]]))
    t = xpcnn.asarray(np.array([[0.0], [0.0], [1.0]]))
    np.testing.assert_allclose(host(bce.forward(z, t)), 1e4 / 3, rtol=1e-6)
    np.testing.assert_allclose(host(bce.backward()), [[1 / 3], [0], [0]], atol=1e-7)


@pytest.mark.parametrize("dtype_fixture", ["backend", "backend64"])
def test_probabilities_are_clipped_and_saturated_predictions_still_learn(request, dtype_fixture):
    """p is clipped to [1e-7, 1 - 1e-7] (the bounds rounded to the array's dtype: 1 - 2**-23 in float32), and
    the gradient is the one at the bound: worked out by hand, as torch's own BCE has no clip to compare with."""
    backend = request.getfixturevalue(dtype_fixture)
    dtype = np.dtype(xpcnn.backend.dtype_name(backend.dtype))
    lo, hi = (float(np.asarray(bound, dtype=dtype)) for bound in (1e-7, 1 - 1e-7))
    bce = BinaryCrossEntropy(from_logits=False)
    value, grad = _loss_and_grad(bce, np.array([0.0, 1.0, 1.0]), np.array([1.0, 0.0, 1.0]))
    # -log(p) for t = 1, -log(1 - p) for t = 0, at the clipped p = (lo, hi, hi); the mean over 3
    np.testing.assert_allclose(value, -(np.log(lo) + np.log(1 - hi) + np.log(hi)) / 3, rtol=rtol_for(backend))
    # (p - t) / (p (1 - p)) / 3: -1/p for t = 1, 1/(1 - p) for t = 0
    expected = np.array([-1 / lo, 1 / (1 - hi), -1 / hi]) / 3
    np.testing.assert_allclose(grad, expected, rtol=rtol_for(backend))
    assert grad[0] < 0 < grad[1]  # pushes the wrong, saturated predictions the right way


def test_integer_and_boolean_targets_are_cast(backend):
    pred = xpcnn.asarray(_normal((3, 2)))
    for target in (np.array([[0, 1], [1, 1], [0, 0]]), np.array([[False, True], [True, True], [False, False]])):
        for loss in (BinaryCrossEntropy(), MSE(), CrossEntropy()):
            value = loss.forward(pred, xpcnn.asarray(target))
            assert value.dtype == backend.dtype
            float_value = host(loss.forward(pred, xpcnn.asarray(target.astype(np.float64))))
            np.testing.assert_allclose(host(value), float_value, rtol=1e-6)


def test_get_returns_losses_by_name_or_the_object_itself():
    assert isinstance(get("cross_entropy"), CrossEntropy)
    assert isinstance(get("binary_cross_entropy"), BinaryCrossEntropy)
    assert get("binary_cross_entropy").from_logits is True
    assert isinstance(get("mse"), MSE)
    assert [get(name).name for name in ("cross_entropy", "binary_cross_entropy", "mse")] == [
        "cross_entropy", "binary_cross_entropy", "mse",
    ]
    loss = BinaryCrossEntropy(from_logits=False)
    assert get(loss) is loss
    assert get("mse") is not get("mse")
    assert repr(loss) == "BinaryCrossEntropy(from_logits=False)"
    assert loss.get_config() == {"from_logits": False}
    with pytest.raises(ValueError, match=r"unknown loss 'hinge'; known losses are \['binary_cross_entropy'"):
        get("hinge")
    with pytest.raises(TypeError, match="a loss is one of .* or a Loss object, got int"):
        get(3)
    with pytest.raises(TypeError, match="from_logits must be True or False"):
        BinaryCrossEntropy(from_logits="yes")


@pytest.mark.parametrize(
    "make, pred_shape, target, error, message",
    [
        (CrossEntropy, (4, 3), np.array([0, 1, 2]), ValueError,
         r"CrossEntropy: pred has batch size 4 \(shape \(4, 3\)\) but target has shape \(3,\)"),
        (CrossEntropy, (4,), np.array([0, 1, 2, 0]), ValueError, r"pred must be 2-D logits \(N, C\), got shape \(4,\)"),
        (CrossEntropy, (2, 3, 1), np.array([0, 1]), ValueError, "pred must be 2-D logits"),
        (CrossEntropy, (3, 4), np.array([0.0, 1.0, 2.0]), TypeError,
         r"1-D targets are class indices and must be integers, got dtype float(32|64).*\(N, C\) = \(3, 4\)"),
        (CrossEntropy, (2, 300), np.array([0, 1], dtype=np.uint8), TypeError,
         "class indices of dtype uint8 cannot address 300 classes"),
        (CrossEntropy, (3, 4), np.ones((3, 5)), ValueError,
         r"target must be class indices \(3,\) or probabilities \(3, 4\), got shape \(3, 5\)"),
        (CrossEntropy, (3, 4), np.ones((3, 4, 1)), ValueError, "target must be class indices"),
        (CrossEntropy, (2, 3), np.array(1), ValueError, r"batch size 2 .* target has shape \(\)"),
        (CrossEntropy, (0, 3), np.zeros((0,), dtype=np.int64), ValueError, "pred needs a non-empty batch axis"),
        (BinaryCrossEntropy, (4, 1), np.ones(4), ValueError,
         r"BinaryCrossEntropy: target must have pred's shape \(4, 1\), got \(4,\)"),
        (MSE, (3, 2), np.ones((2, 2)), ValueError, r"MSE: pred has batch size 3"),
        (MSE, (3, 2), np.ones((3, 3)), ValueError, r"MSE: target must have pred's shape \(3, 2\), got \(3, 3\)"),
    ],
)
def test_invalid_targets_raise_clear_errors(backend, make, pred_shape, target, error, message):
    loss = make()
    with pytest.raises(error, match=message):
        loss.forward(xpcnn.asarray(np.zeros(pred_shape)), xpcnn.asarray(target))
    with pytest.raises(RuntimeError, match=r"backward\(\) needs a forward\(pred, target\) first"):
        loss.backward()


def test_pred_and_target_must_be_arrays_of_one_library_and_device(backend):
    pred = xpcnn.asarray(np.zeros((2, 3)))
    with pytest.raises(TypeError, match="CrossEntropy: target must be an array, got list"):
        CrossEntropy().forward(pred, [0, 1])
    with pytest.raises(TypeError, match="MSE: pred must be a floating array, got dtype int64"):
        MSE().forward(xpcnn.asarray(np.zeros((2, 3), dtype=np.int64)), pred)
    import array_api_strict

    foreign = np.zeros((2, 3)) if BACKEND == "array_api_strict" else array_api_strict.asarray(np.zeros((2, 3)))
    with pytest.raises(TypeError, match="MSE: pred and target come from different array libraries"):
        MSE().forward(pred, foreign)


def test_pred_and_target_must_share_a_device():
    import array_api_strict as xp

    pred = xp.zeros((2, 3), device=xp.Device("device1"))
    target = xp.zeros((2, 3), device=xp.Device("CPU_DEVICE"))
    with pytest.raises(ValueError, match="MSE: pred is on .*device1.* but target on .*CPU_DEVICE"):
        MSE().forward(pred, target)


@pytest.mark.skipif(BACKEND != "jax", reason="jax.jit rejects any host sync: the check needs JAX")
@pytest.mark.parametrize("make, pred, target", CASES)
def test_losses_trace_under_jit_without_host_syncs(backend, make, pred, target):
    import jax

    def step(p, t):
        loss = make()
        return loss.forward(p, t), loss.backward()

    value, grad = jax.jit(step)(xpcnn.asarray(pred), xpcnn.asarray(target))
    expected_value, expected_grad = _loss_and_grad(make(), pred, target)
    np.testing.assert_allclose(host(value), expected_value, rtol=1e-5)
    np.testing.assert_allclose(host(grad), expected_grad, rtol=1e-5, atol=1e-7)
