"""BatchNorm1D/2D: numerical gradients (training mode), PyTorch oracle incl. running statistics, errors."""

from __future__ import annotations

import numpy as np
import pytest

import xpcnn
from conftest import BACKEND
from layer_checks import assert_matches_torch, assert_on_device, check_numerical_gradients, host, rtol_for
from xpcnn.layers.normalization import BatchNorm1D, BatchNorm2D

# (layer class, input shape, momentum, eps)
BN_CASES = [
    pytest.param(BatchNorm2D, (2, 3, 4, 4), 0.1, 1e-5, id="2d"),
    pytest.param(BatchNorm2D, (1, 2, 3, 2), 0.1, 1e-5, id="2d-batch1"),
    pytest.param(BatchNorm2D, (3, 1, 1, 2), 0.3, 1e-3, id="2d-one-channel-momentum0.3"),
    pytest.param(BatchNorm1D, (5, 3), 0.1, 1e-5, id="1d-features"),
    pytest.param(BatchNorm1D, (2, 4), 1.0, 1e-2, id="1d-batch2-momentum1"),
    pytest.param(BatchNorm1D, (1, 2, 4), 0.1, 1e-5, id="1d-sequence-batch1"),
    pytest.param(BatchNorm1D, (3, 2, 5), 0.0, 1e-5, id="1d-sequence-momentum0"),
]


def _input(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    """Off-centre, scaled data: a normalisation that forgot to centre or scale shows."""
    return 3.0 * np.random.default_rng(seed).standard_normal(shape) + 1.5


def _built(cls, shape, momentum, eps, affine_seed: int = 4):
    """A layer with random weight, bias and running statistics (the initial ones would hide mistakes)."""
    layer = cls(momentum=momentum, eps=eps)
    layer.build(shape[1:])
    rng = np.random.default_rng(affine_seed)
    channels = shape[1]
    layer.params["weight"] = xpcnn.asarray(rng.uniform(0.5, 2.0, channels))
    layer.params["bias"] = xpcnn.asarray(rng.standard_normal(channels))
    layer.buffers["running_mean"] = xpcnn.asarray(rng.standard_normal(channels))
    layer.buffers["running_var"] = xpcnn.asarray(rng.uniform(0.5, 2.0, channels))
    return layer


@pytest.mark.parametrize("cls, shape, momentum, eps", BN_CASES)
def test_batch_norm_numerical_gradients(backend64, cls, shape, momentum, eps):
    check_numerical_gradients(_built(cls, shape, momentum, eps), _input(shape))


@pytest.mark.parametrize("dtype_fixture", ["backend", "backend64"])
@pytest.mark.parametrize("cls, shape, momentum, eps", BN_CASES)
def test_batch_norm_training_step_matches_torch(request, dtype_fixture, cls, shape, momentum, eps):
    torch = pytest.importorskip("torch")
    import torch.nn.functional as F

    backend = request.getfixturevalue(dtype_fixture)
    layer = _built(cls, shape, momentum, eps)
    running_mean = torch.tensor(host(layer.buffers["running_mean"]))
    running_var = torch.tensor(host(layer.buffers["running_var"]))

    def forward(x, weight, bias):
        return F.batch_norm(x, running_mean, running_var, weight, bias, training=True, momentum=momentum, eps=eps)

    rtol = rtol_for(backend)
    assert_matches_torch(layer, _input(shape), forward, rtol=rtol)
    for name, reference in (("running_mean", running_mean), ("running_var", running_var)):
        np.testing.assert_allclose(host(layer.buffers[name]), reference.numpy(), rtol=rtol, atol=rtol, err_msg=name)


@pytest.mark.parametrize("dtype_fixture", ["backend", "backend64"])
@pytest.mark.parametrize("cls, shape, momentum, eps", BN_CASES)
def test_batch_norm_inference_uses_running_statistics_like_torch(request, dtype_fixture, cls, shape, momentum, eps):
    torch = pytest.importorskip("torch")
    import torch.nn.functional as F

    backend = request.getfixturevalue(dtype_fixture)
    layer = _built(cls, shape, momentum, eps)
    before = {k: host(v) for k, v in layer.buffers.items()}
    x = _input(shape)
    y = host(layer.forward(xpcnn.asarray(x)))
    reference = F.batch_norm(
        torch.tensor(x), *(torch.tensor(before[k]) for k in ("running_mean", "running_var")),
        *(torch.tensor(host(layer.params[k])) for k in ("weight", "bias")), training=False, eps=eps,
    )
    rtol = rtol_for(backend)
    np.testing.assert_allclose(y, reference.numpy(), rtol=rtol, atol=rtol)
    for name, value in before.items():
        np.testing.assert_array_equal(host(layer.buffers[name]), value, err_msg=f"{name} changed in inference")



@pytest.mark.parametrize("dtype_fixture", ["backend", "backend64"])
@pytest.mark.parametrize("cls, shape", [(BatchNorm2D, (3, 2, 4, 5)), (BatchNorm1D, (6, 3)), (BatchNorm1D, (2, 3, 4))])
@pytest.mark.parametrize("affine, track", [(False, True), (True, False), (False, False)])
def test_affine_and_running_statistics_options_match_torch(request, dtype_fixture, cls, shape, affine, track):
    torch = pytest.importorskip("torch")
    backend = request.getfixturevalue(dtype_fixture)
    layer = cls(momentum=0.3, affine=affine, track_running_stats=track)
    layer.build(shape[1:])
    assert set(layer.params) == ({"weight", "bias"} if affine else set())
    assert set(layer.buffers) == ({"running_mean", "running_var"} if track else set())
    reference = (torch.nn.BatchNorm2d if cls is BatchNorm2D else torch.nn.BatchNorm1d)(
        shape[1], momentum=0.3, affine=affine, track_running_stats=track).double()
    rtol = rtol_for(backend)
    for training in (True, False):  # inference: the running statistics, or the batch's without them
        reference.train(training)
        x = _input(shape, seed=int(training))
        tx = torch.tensor(x, requires_grad=True)
        ty = reference(tx)
        y = layer.forward(xpcnn.asarray(x), training=training)
        np.testing.assert_allclose(host(y), ty.detach().numpy(), rtol=rtol, atol=rtol)
        for name, value in layer.buffers.items():
            np.testing.assert_allclose(host(value), getattr(reference, name).numpy(), rtol=rtol, atol=rtol)
        if training:
            dy = np.random.default_rng(3).standard_normal(shape)
            ty.backward(torch.tensor(dy))
            np.testing.assert_allclose(host(layer.backward(xpcnn.asarray(dy))), tx.grad.numpy(), rtol=rtol, atol=rtol)
            for name, value in layer.grads.items():
                np.testing.assert_allclose(host(value), getattr(reference, name).grad.numpy(), rtol=rtol, atol=rtol)
    assert layer.get_config() == {"momentum": 0.3, "eps": 1e-5, **({} if affine else {"affine": False}),
                                  **({} if track else {"track_running_stats": False})}


@pytest.mark.parametrize("affine, track", [(False, True), (False, False)])
def test_options_numerical_gradients(backend64, affine, track):
    layer = BatchNorm2D(affine=affine, track_running_stats=track)
    layer.build((2, 3, 3))
    check_numerical_gradients(layer, _input((3, 2, 3, 3)))


def test_options_must_be_booleans():
    with pytest.raises(TypeError, match="BatchNorm2D: affine must be True or False, got NoneType None"):
        BatchNorm2D(affine=None)
    with pytest.raises(TypeError, match="BatchNorm1D: track_running_stats must be True or False, got int 0"):
        BatchNorm1D(track_running_stats=0)

def test_training_output_is_normalised_per_channel(backend64):
    y = host(BatchNorm2D().forward(xpcnn.asarray(_input((4, 3, 5, 5))), training=True))
    np.testing.assert_allclose(y.mean(axis=(0, 2, 3)), 0.0, atol=1e-12)
    np.testing.assert_allclose(y.var(axis=(0, 2, 3)), 1.0, rtol=1e-5)


def test_running_statistics_converge_to_the_data_statistics(backend64):
    layer = BatchNorm1D(momentum=0.5)
    x = xpcnn.asarray(_input((50, 2)))
    for _ in range(40):
        layer.forward(x, training=True)
    data = _input((50, 2))
    np.testing.assert_allclose(host(layer.buffers["running_mean"]), data.mean(axis=0), rtol=1e-8)
    np.testing.assert_allclose(host(layer.buffers["running_var"]), data.var(axis=0, ddof=1), rtol=1e-8)


def test_params_and_buffers_follow_torch_names_layouts_and_initial_values(backend):
    layer = BatchNorm2D()
    assert layer.build((3, 8, 8)) == (3, 8, 8)
    expected = {"weight": 1.0, "bias": 0.0}
    assert set(layer.params) == set(expected) and set(layer.grads) == set()
    for name, value in expected.items():
        np.testing.assert_array_equal(host(layer.params[name]), np.full(3, value))
    assert set(layer.buffers) == {"running_mean", "running_var"}
    np.testing.assert_array_equal(host(layer.buffers["running_mean"]), np.zeros(3))
    np.testing.assert_array_equal(host(layer.buffers["running_var"]), np.ones(3))
    assert layer.num_params == 6
    assert repr(layer) == "BatchNorm2D(momentum=0.1, eps=1e-05)"
    assert BatchNorm1D().build((4,)) == (4,) and BatchNorm1D().build((4, 7)) == (4, 7)


@pytest.mark.parametrize("cls, shape", [(BatchNorm2D, (2, 3, 4, 4)), (BatchNorm1D, (4, 3)), (BatchNorm1D, (2, 3, 4))])
def test_batch_norm_keeps_everything_on_the_device(backend, cls, shape):
    layer = cls()
    y = layer.forward(xpcnn.asarray(_input(shape)), training=True)
    dx = layer.backward(backend.xp.ones_like(y))
    for array in (y, dx, *layer.params.values(), *layer.grads.values(), *layer.buffers.values()):
        assert_on_device(array, backend)
        assert array.dtype == backend.dtype
    assert tuple(layer.buffers["running_mean"].shape) == (3,)


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: BatchNorm2D(momentum=1.5), r"BatchNorm2D: momentum must be a number in \[0, 1\], got 1.5"),
        (lambda: BatchNorm1D(momentum=None), "BatchNorm1D: momentum must be a number"),
        (lambda: BatchNorm2D(eps=0), "BatchNorm2D: eps must be a positive number, got 0"),
        (lambda: BatchNorm1D(eps="1e-5"), "eps must be a positive number"),
    ],
)
def test_constructor_rejects_bad_arguments(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_batch_norm_rejects_bad_inputs_before_changing_state(backend):
    layer2d = BatchNorm2D()
    with pytest.raises(ValueError, match=r"BatchNorm2D: expected 4-D input .* got input of shape \(2, 3\)"):
        layer2d.forward(xpcnn.asarray(_input((2, 3))))
    layer1d = BatchNorm1D()
    with pytest.raises(ValueError, match=r"BatchNorm1D: expected 2 or 3-D input .* \(2, 3, 4, 4\)"):
        layer1d.forward(xpcnn.asarray(_input((2, 3, 4, 4))))
    with pytest.raises(ValueError, match=r"BatchNorm1D: training needs more than one value per channel .*\(1, 3\)"):
        layer1d.forward(xpcnn.asarray(_input((1, 3))), training=True)
    assert not layer1d.built and not layer2d.built
    layer1d.forward(xpcnn.asarray(_input((1, 3))))  # inference with one sample is fine
    layer1d.forward(xpcnn.asarray(_input((4, 3))), training=True)
    state = {**layer1d.params, **layer1d.buffers}
    with pytest.raises(ValueError, match=r"BatchNorm1D: built for 3 channels, got input with 2 .*\(2,\)"):
        layer1d.forward(xpcnn.asarray(_input((4, 2))), training=True)
    assert {**layer1d.params, **layer1d.buffers} == state


@pytest.mark.skipif(BACKEND != "jax", reason="jax.jit rejects any host sync: the check needs JAX")
def test_batch_norm_traces_under_jit_without_host_syncs(backend):
    import jax

    def step(x):
        layer = BatchNorm2D()
        y = layer.forward(x, training=True)
        return y, layer.backward(y), layer.buffers["running_var"]

    x = xpcnn.asarray(_input((2, 3, 2, 2)))
    eager = BatchNorm2D()
    y = eager.forward(x, training=True)
    for traced, expected in zip(jax.jit(step)(x), (y, eager.backward(y), eager.buffers["running_var"])):
        np.testing.assert_allclose(host(traced), host(expected), rtol=1e-5, atol=1e-6)


def test_backward_from_the_forward_statistics_equals_the_recomputed_one(backend64):
    from xpcnn.ops import normalization as norm_ops

    rng = np.random.default_rng(6)
    x = xpcnn.asarray(_input((4, 3, 5, 2), 1))
    weight, bias = xpcnn.asarray(rng.standard_normal(3)), xpcnn.asarray(rng.standard_normal(3))
    stats = (xpcnn.asarray(np.zeros(3)), xpcnn.asarray(np.ones(3)))
    dy = xpcnn.asarray(rng.standard_normal((4, 3, 5, 2)))
    before = host(x), host(dy)
    *_, saved = norm_ops.batch_norm(x, weight, bias, *stats, True, return_saved=True)
    assert saved is not None, "a training forward hands over its batch statistics for the backward"
    from_saved = norm_ops.batch_norm_backward(dy, x, weight, saved=saved)
    assert norm_ops.batch_norm(x, weight, bias, *stats, False, return_saved=True)[3] is None  # inference: nothing
    for arg, value in zip((x, dy), before):  # the in-place updates touch the ops' own temporaries only
        np.testing.assert_array_equal(host(arg), value)
    for got, want in zip(from_saved, norm_ops.batch_norm_backward(dy, x, weight)):
        np.testing.assert_allclose(host(got), host(want), rtol=1e-12, atol=1e-12)



def test_sync_batch_norm_on_one_process_is_batch_norm(backend64):
    """With a sum over one process (the identity) the synchronised op is the plain one, forward and backward."""
    from xpcnn.ops import normalization as norm_ops

    rng = np.random.default_rng(8)
    x, dy = xpcnn.asarray(_input((4, 3, 3, 2))), xpcnn.asarray(rng.standard_normal((4, 3, 3, 2)))
    weight, bias = xpcnn.asarray(rng.uniform(0.5, 2.0, 3)), xpcnn.asarray(rng.standard_normal(3))
    stats = (xpcnn.asarray(np.zeros(3)), xpcnn.asarray(np.ones(3)))
    *plain, saved = norm_ops.batch_norm(x, weight, bias, *stats, True, 0.2, 1e-5, return_saved=True)
    *synced, sync_saved = norm_ops.sync_batch_norm(x, weight, bias, *stats, 0.2, 1e-5, list)
    for got, want in zip(synced, plain):
        np.testing.assert_allclose(host(got), host(want), rtol=1e-10, atol=1e-12)
    for got, want in zip(norm_ops.sync_batch_norm_backward(dy, x, weight, sync_saved, list),
                         norm_ops.batch_norm_backward(dy, x, weight, 1e-5, saved=saved)):
        np.testing.assert_allclose(host(got), host(want), rtol=1e-10, atol=1e-12)

# --- a frozen batch norm (trainable = False) runs in inference mode in training too ----------------------------

def _frozen(cls, shape, momentum, eps):
    layer = _built(cls, shape, momentum, eps)
    layer.trainable = False
    return layer


@pytest.mark.parametrize("cls, shape, momentum, eps", BN_CASES)
def test_frozen_batch_norm_numerical_gradients(backend64, cls, shape, momentum, eps):
    check_numerical_gradients(_frozen(cls, shape, momentum, eps), _input(shape))


@pytest.mark.parametrize("dtype_fixture", ["backend", "backend64"])
@pytest.mark.parametrize("cls, shape, momentum, eps", BN_CASES + [
    pytest.param(BatchNorm2D, (2, 3, 4, 4), 0.01, 1e-3, id="2d-mobilenet-v3-eps-momentum"),
    pytest.param(BatchNorm1D, (1, 3), 0.1, 1e-5, id="1d-one-value-per-channel"),
])
def test_frozen_batch_norm_trains_as_torch_in_eval_mode(request, dtype_fixture, cls, shape, momentum, eps):
    """Training forward and backward of a frozen layer = torch's batch norm in eval() mode under autograd; the
    running statistics stay as they were."""
    pytest.importorskip("torch")
    import torch.nn.functional as F

    backend = request.getfixturevalue(dtype_fixture)
    layer = _frozen(cls, shape, momentum, eps)
    before = {k: host(v) for k, v in layer.buffers.items()}
    running = [torch_tensor(before[k]) for k in ("running_mean", "running_var")]

    def forward(x, weight, bias):
        return F.batch_norm(x, *running, weight, bias, training=False, momentum=momentum, eps=eps)

    assert_matches_torch(layer, _input(shape), forward, rtol=rtol_for(backend))
    for name, value in before.items():
        np.testing.assert_array_equal(host(layer.buffers[name]), value, err_msg=f"{name} changed while frozen")
    layer.trainable = True  # unfrozen: batch statistics again, and the running ones move
    if momentum > 0 and shape[0] * int(np.prod(shape[2:])) > 1:
        layer.forward(xpcnn.asarray(_input(shape)), training=True)
        assert not np.array_equal(host(layer.buffers["running_mean"]), before["running_mean"])


def torch_tensor(value):
    import torch

    return torch.tensor(value, dtype=torch.float64)


def test_frozen_batch_norm_without_running_statistics_keeps_using_the_batch(backend64):
    """With no running statistics there is nothing to infer with: torch's eval() mode uses the batch's, and so
    does a frozen layer."""
    x = _input((3, 2, 4, 4))
    plain, frozen = BatchNorm2D(track_running_stats=False), BatchNorm2D(track_running_stats=False)
    frozen.trainable = False
    dy = xpcnn.asarray(np.random.default_rng(1).standard_normal(x.shape))
    for layer in (plain, frozen):
        layer.build(x.shape[1:])
    y = [host(layer.forward(xpcnn.asarray(x), training=True)) for layer in (plain, frozen)]
    np.testing.assert_array_equal(y[0], y[1])
    np.testing.assert_array_equal(host(plain.backward(dy)), host(frozen.backward(dy)))


def test_frozen_batch_norm_keeps_everything_on_the_device(backend):
    layer = BatchNorm2D()
    layer.trainable = False
    y = layer.forward(xpcnn.asarray(_input((2, 3, 4, 4))), training=True)
    dx = layer.backward(backend.xp.ones_like(y))
    for array in (y, dx, *layer.params.values(), *layer.grads.values(), *layer.buffers.values()):
        assert_on_device(array, backend)
        assert array.dtype == backend.dtype


def test_eps_and_momentum_round_trip_through_the_config():
    layer = BatchNorm2D(eps=1e-3, momentum=0.01)
    assert layer.get_config() == {"momentum": 0.01, "eps": 1e-3}
    rebuilt = BatchNorm2D(**layer.get_config())
    assert (rebuilt.eps, rebuilt.momentum) == (1e-3, 0.01)
