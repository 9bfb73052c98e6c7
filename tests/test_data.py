"""DataLoader and transforms on the session's backend: device placement, coverage, reproducibility."""

from __future__ import annotations

import array_api_compat
import numpy as np
import pytest

import xpcnn
from xpcnn.data import DataLoader
from xpcnn.transforms import Compose, RandomCrop, RandomFlip, RandomRotation, RandomTranslation


def _dataset(n: int = 10) -> tuple[np.ndarray, np.ndarray]:
    x = np.arange(n * 2 * 3, dtype=np.float64).reshape(n, 2, 3)  # float64 on purpose: must become float32
    y = np.arange(n, dtype=np.int64)
    return x, y


def _images(backend, n: int = 6, c: int = 2, h: int = 8, w: int = 8):
    host = np.random.default_rng(1).random((n, c, h, w), dtype=np.float32) + 0.5  # no zeros: fills show
    return host, xpcnn.asarray(host)


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


# --- transforms ------------------------------------------------------------------------------------------

ALL_TRANSFORMS = [
    RandomFlip(p=0.5),
    RandomFlip(horizontal=False, vertical=True),
    RandomCrop(padding=2),
    RandomRotation(30.0),
    RandomRotation(30.0, interpolation="nearest"),
    RandomTranslation(0.25, 0.25),
    Compose([RandomCrop(padding=2), RandomFlip()]),
]


@pytest.mark.parametrize("transform", ALL_TRANSFORMS, ids=repr)
def test_transform_keeps_shape_dtype_device_and_changes_data(backend, transform):
    host, x = _images(backend, n=16)
    out = transform(x)
    assert tuple(out.shape) == tuple(x.shape)
    assert out.dtype == x.dtype
    assert array_api_compat.device(out) == backend.device
    assert not np.array_equal(xpcnn.to_numpy(out), host)


def test_flip_with_p1_is_a_flip(backend):
    host, x = _images(backend)
    np.testing.assert_array_equal(xpcnn.to_numpy(RandomFlip(p=1.0)(x)), host[..., ::-1])
    both = RandomFlip(horizontal=True, vertical=True, p=1.0)(x)
    np.testing.assert_array_equal(xpcnn.to_numpy(both), host[..., ::-1, ::-1])
    np.testing.assert_array_equal(xpcnn.to_numpy(RandomFlip(p=0.0)(x)), host)


def test_flip_is_per_sample(backend):
    host, x = _images(backend, n=64)
    out = xpcnn.to_numpy(RandomFlip(p=0.5)(x))
    flipped = np.array([np.array_equal(o, h[..., ::-1]) for o, h in zip(out, host)])
    kept = np.array([np.array_equal(o, h) for o, h in zip(out, host)])
    assert np.all(flipped ^ kept)
    assert 0 < flipped.sum() < 64


def test_crop_without_padding_is_identity(backend):
    host, x = _images(backend)
    np.testing.assert_array_equal(xpcnn.to_numpy(RandomCrop(padding=0)(x)), host)


def test_crop_is_a_shifted_window_with_zero_fill(backend):
    host, x = _images(backend, n=32)
    out = xpcnn.to_numpy(RandomCrop(padding=2)(x))
    padded = np.pad(host, ((0, 0), (0, 0), (2, 2), (2, 2)))
    offsets = set()
    for o, p in zip(out, padded):
        matches = [(i, j) for i in range(5) for j in range(5) if np.array_equal(o, p[:, i:i + 8, j:j + 8])]
        assert matches, "every crop is a window of the zero-padded image"
        offsets.add(matches[0])
    assert len(offsets) > 1  # offsets are drawn per sample


def test_crop_to_smaller_size(backend):
    host, x = _images(backend)
    out = RandomCrop(size=(5, 6), padding=0)(x)
    assert tuple(out.shape) == (6, 2, 5, 6)
    with pytest.raises(ValueError, match="exceeds"):
        RandomCrop(size=12, padding=1)(x)


def test_translation_with_zero_factors_is_identity(backend):
    host, x = _images(backend)
    np.testing.assert_array_equal(xpcnn.to_numpy(RandomTranslation(0.0, 0.0)(x)), host)


def test_translation_shifts_with_zero_fill(backend):
    host, x = _images(backend)
    out = xpcnn.to_numpy(RandomTranslation((0.25, 0.25), (-0.25, -0.25))(x))  # 2 down, 2 left
    expected = np.zeros_like(host)
    expected[:, :, 2:, :-2] = host[:, :, :-2, 2:]
    np.testing.assert_array_equal(out, expected)


def test_rotation_by_tiny_angle_is_identity(backend):
    host, x = _images(backend)
    np.testing.assert_allclose(xpcnn.to_numpy(RandomRotation(1e-4)(x)), host, atol=1e-3)
    np.testing.assert_array_equal(xpcnn.to_numpy(RandomRotation(1e-4, interpolation="nearest")(x)), host)


@pytest.mark.parametrize("interpolation", ["bilinear", "nearest"])
def test_rotation_by_90_degrees_is_rot90(backend, interpolation):
    host, x = _images(backend)
    out = xpcnn.to_numpy(RandomRotation((90.0, 90.0), interpolation=interpolation)(x))
    np.testing.assert_allclose(out, np.rot90(host, k=1, axes=(2, 3)), atol=1e-5)  # counter-clockwise


def test_transform_argument_errors(backend):
    with pytest.raises(ValueError):
        RandomFlip(horizontal=False, vertical=False)
    with pytest.raises(ValueError):
        RandomFlip(p=1.5)
    with pytest.raises(ValueError):
        RandomCrop(padding=-1)
    with pytest.raises(ValueError):
        RandomRotation(10, interpolation="cubic")
    with pytest.raises(TypeError):
        Compose([1])
    with pytest.raises(ValueError, match="NCHW"):
        RandomFlip()(xpcnn.asarray(np.zeros((2, 3), dtype=np.float32)))


def test_loader_with_transforms_end_to_end(backend):
    host = np.random.default_rng(0).random((10, 1, 8, 8), dtype=np.float32)
    loader = DataLoader(host, np.arange(10), batch_size=4, transform=Compose([RandomCrop(padding=1), RandomFlip()]))
    shapes = [tuple(xb.shape) for xb, _ in loader]
    assert shapes == [(4, 1, 8, 8), (4, 1, 8, 8), (2, 1, 8, 8)]
