"""DataLoader on the session's backend: device placement, coverage, reproducibility, transforms per batch."""

from __future__ import annotations

import array_api_compat
import numpy as np
import pytest

import xpcnn
from xpcnn.data import DataLoader
from xpcnn.transforms import Compose, RandomCrop, RandomFlip


def _dataset(n: int = 10) -> tuple[np.ndarray, np.ndarray]:
    x = np.arange(n * 2 * 3, dtype=np.float64).reshape(n, 2, 3)  # float64 on purpose: must become float32
    y = np.arange(n, dtype=np.int64)
    return x, y


# --- DataLoader ----------------------------------------------------------------------------------------

def test_batches_live_on_device_with_right_dtypes(backend):
    x, y = _dataset()
    loader = DataLoader(x, y, batch_size=4)
    for xb, yb in loader:
        assert array_api_compat.device(xb) == backend.device
        assert array_api_compat.device(yb) == backend.device
        assert xb.dtype == backend.dtype
        assert backend.xp.isdtype(yb.dtype, "integral")


def test_each_epoch_covers_every_sample_once(backend):
    x, y = _dataset(10)
    loader = DataLoader(x, y, batch_size=3, shuffle=True)
    assert len(loader) == 4
    epochs = []
    for _ in range(2):
        batches = list(loader)
        assert [xpcnn.to_numpy(yb).shape[0] for _, yb in batches] == [3, 3, 3, 1]
        labels = np.concatenate([xpcnn.to_numpy(yb) for _, yb in batches])
        assert sorted(labels.tolist()) == list(range(10))
        for xb, yb in batches:  # x rows stay paired with their labels
            np.testing.assert_array_equal(xpcnn.to_numpy(xb), x[xpcnn.to_numpy(yb)].astype(np.float32))
        epochs.append(labels)
    assert not np.array_equal(epochs[0], epochs[1])  # a new permutation each epoch


def test_shuffle_is_reproducible_after_manual_seed(backend):
    x, y = _dataset(20)
    loader = DataLoader(x, y, batch_size=5)
    xpcnn.manual_seed(123)
    first = [xpcnn.to_numpy(yb) for _, yb in loader]
    xpcnn.manual_seed(123)
    second = [xpcnn.to_numpy(yb) for _, yb in loader]
    np.testing.assert_array_equal(np.concatenate(first), np.concatenate(second))


def test_no_shuffle_keeps_order_and_drop_last(backend):
    x, y = _dataset(10)
    loader = DataLoader(x, y, batch_size=4, shuffle=False, drop_last=True)
    assert len(loader) == 2
    batches = list(loader)
    assert len(batches) == 2
    np.testing.assert_array_equal(np.concatenate([xpcnn.to_numpy(yb) for _, yb in batches]), np.arange(8))
    assert tuple(batches[0][0].shape) == (4, 2, 3)


def test_x_only_and_backend_input(backend):
    x = xpcnn.asarray(np.ones((7, 3), dtype=np.float32))
    loader = DataLoader(x, batch_size=7, shuffle=False)
    (xb,) = list(loader)
    assert tuple(xb.shape) == (7, 3)
    assert array_api_compat.device(xb) == backend.device


def test_transform_is_applied_to_x_only(backend):
    x, y = _dataset(4)
    loader = DataLoader(x, y, batch_size=4, shuffle=False, transform=lambda xb: xb * 2.0)
    ((xb, yb),) = list(loader)
    np.testing.assert_allclose(xpcnn.to_numpy(xb), 2 * x)
    np.testing.assert_array_equal(xpcnn.to_numpy(yb), y)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"batch_size": 0}, ValueError, "batch_size"),
        ({"batch_size": 2.0}, TypeError, "batch_size"),
        ({"batch_size": True}, TypeError, "batch_size"),
        ({"transform": 3}, TypeError, "transform"),
    ],
)
def test_bad_arguments(kwargs, error, match):
    x, y = _dataset(4)
    with pytest.raises(error, match=match):
        DataLoader(x, y, **kwargs)


def test_length_mismatch_names_shapes():
    with pytest.raises(ValueError, match=r"\(4, 2, 3\).*\(3,\)"):
        DataLoader(np.zeros((4, 2, 3)), np.zeros(3))


def test_loader_with_transforms_end_to_end(backend):
    host = np.random.default_rng(0).random((10, 1, 8, 8), dtype=np.float32)
    loader = DataLoader(host, np.arange(10), batch_size=4, transform=Compose([RandomCrop(padding=1), RandomFlip()]))
    shapes = [tuple(xb.shape) for xb, _ in loader]
    assert shapes == [(4, 1, 8, 8), (4, 1, 8, 8), (2, 1, 8, 8)]
