"""Batch-norm statistics re-estimated for the weights in the model: ``update_bn`` against PyTorch's, and the
``fit`` that swaps a weight average in."""

from __future__ import annotations

import numpy as np
import pytest

import xpcnn
from layer_checks import host
from xpcnn import optimizers
from xpcnn.batch_norm_stats import update_bn
from xpcnn.layers import BatchNorm1D, BatchNorm2D, Conv2D, Dense, Dropout, Flatten, ReLU
from xpcnn.model import Sequential

torch = pytest.importorskip("torch")
swa_utils = pytest.importorskip("torch.optim.swa_utils")


def _bn_net() -> Sequential:
    return Sequential([Conv2D(4, 3, padding=1), BatchNorm2D(momentum=0.3), ReLU(), Flatten(), Dense(5),
                       BatchNorm1D(), Dense(3)], input_shape=(2, 5, 5))


def _torch_twin(model: Sequential) -> torch.nn.Module:
    twin = torch.nn.Sequential(torch.nn.Conv2d(2, 4, 3, padding=1), torch.nn.BatchNorm2d(4, momentum=0.3),
                               torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(100, 5), torch.nn.BatchNorm1d(5),
                               torch.nn.Linear(5, 3)).double()
    twin.load_state_dict({k: torch.tensor(host(v)) for k, v in model.state_dict().items()}, strict=False)
    return twin


def _data(n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, 2, 5, 5)), rng.integers(0, 3, n)


def _running_stats(model) -> dict[str, np.ndarray]:
    return {k: host(v) for k, v in model.buffers.items()}


@pytest.mark.parametrize("samples", [37, 33])  # a last batch of 5; a last batch of 1, left out (as it must be)
def test_update_bn_matches_torch(backend64, samples):
    model = _bn_net()
    x, _ = _data(samples)
    twin = _torch_twin(model)
    update_bn(model, x, batch_size=8)
    full = samples - (samples % 8 == 1)
    swa_utils.update_bn([torch.from_numpy(x[i:min(i + 8, full)]) for i in range(0, full, 8)], twin)
    for key, value in _running_stats(model).items():
        np.testing.assert_allclose(value, twin.state_dict()[key].numpy(), rtol=1e-10, atol=1e-12, err_msg=key)
    assert [layer.momentum for layer in model.layers if hasattr(layer, "momentum")] == [0.3, 0.1]


def test_update_bn_leaves_a_model_without_batch_norm_alone(backend):
    model = Sequential([Flatten(), Dropout(0.5), Dense(3)], input_shape=(2, 5, 5))
    state = xpcnn.random.get_state()
    update_bn(model, _data(8)[0])
    assert xpcnn.random.get_state() == state  # no forward ran: no dropout mask was drawn


def test_fit_with_use_ema_ends_with_statistics_of_the_averaged_weights(backend64):
    xpcnn.manual_seed(0)
    model = _bn_net()
    model.compile("cross_entropy", optimizers.Adam(0.05, use_ema=True, ema_momentum=0.5))
    x, y = _data(40)
    model.fit(x, y, batch_size=16, epochs=2, verbose=0)
    twin = _torch_twin(model)  # the averaged weights
    trained_stats = _running_stats(model)
    swa_utils.update_bn([torch.from_numpy(x[i:i + 16]) for i in range(0, 40, 16)], twin)
    for key, value in trained_stats.items():
        np.testing.assert_allclose(value, twin.state_dict()[key].numpy(), rtol=1e-10, atol=1e-12, err_msg=key)
