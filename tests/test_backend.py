"""The backend switch: names, devices, dtypes, errors, context nesting, seeding and host round trips."""

from __future__ import annotations

import sys
import threading

import array_api_compat
import numpy as np
import pytest

import xpcnn
from conftest import BACKEND, DEVICE
from xpcnn.layers.conv import Conv2D


def test_numpy_is_the_default_and_available_backends_lists_it():
    assert xpcnn.get_backend().name == "numpy"
    assert xpcnn.get_backend().dtype == np.float32
    available = xpcnn.available_backends()
    assert "numpy" in available
    assert BACKEND in available
    assert set(available) <= set(xpcnn.backend.KNOWN_BACKENDS)


def test_use_backend_nests_and_restores():
    before = xpcnn.get_backend()
    with xpcnn.use_backend(BACKEND, device=DEVICE) as outer:
        assert xpcnn.get_backend() is outer
        with xpcnn.use_backend("numpy", dtype="float64") as inner:
            assert xpcnn.get_backend() is inner
            assert inner.dtype == np.float64
        assert xpcnn.get_backend() is outer
    assert xpcnn.get_backend() == before


def test_use_backend_is_context_local_across_threads(backend):
    seen = {}
    thread = threading.Thread(target=lambda: seen.setdefault("name", xpcnn.get_backend().name))
    thread.start()
    thread.join()
    assert seen["name"] == "numpy"  # the other thread does not see this test's use_backend
    assert xpcnn.get_backend().name == BACKEND


def test_set_backend_switches_and_returns_the_backend():
    try:
        chosen = xpcnn.set_backend(BACKEND, device=DEVICE)
        assert xpcnn.get_backend() == chosen
        assert chosen.name == BACKEND
        assert chosen.xp is array_api_compat.array_namespace(chosen.xp.zeros(1, device=chosen.device))
    finally:
        xpcnn.set_backend("numpy")


def test_unknown_backend_lists_the_known_ones_and_keeps_the_previous():
    before = xpcnn.get_backend()
    with pytest.raises(ValueError, match=r"unknown backend 'tensorflow'.*'numpy', 'cupy', 'torch', 'jax'"):
        xpcnn.set_backend("tensorflow")
    assert xpcnn.get_backend() == before


def test_cupy_without_a_gpu_says_why_and_keeps_the_previous(monkeypatch):
    pytest.importorskip("numpy")
    try:
        import cupy  # noqa: F401

        has_gpu = cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:
        has_gpu = False
    if has_gpu:
        pytest.skip("this machine has a CUDA GPU: cupy starts")
    before = xpcnn.get_backend()
    with pytest.raises(xpcnn.BackendUnavailableError, match="cupy") as info:
        xpcnn.set_backend("cupy")
    assert "pip install" in str(info.value) or "GPU" in str(info.value)
    assert xpcnn.get_backend() == before


def test_missing_library_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "jax", None)  # makes `import jax` fail
    monkeypatch.setitem(sys.modules, "jax.numpy", None)
    with pytest.raises(xpcnn.BackendUnavailableError, match=r"pip install 'xpcnn\[jax\]'"):
        xpcnn.set_backend("jax")
    assert xpcnn.get_backend().name == "numpy"


@pytest.mark.parametrize("dtype", ["float16", "int32", 3])
def test_bad_dtype_is_rejected(dtype):
    with pytest.raises((ValueError, TypeError), match="dtype"):
        xpcnn.set_backend("numpy", dtype=dtype)


def test_numpy_refuses_a_gpu_device():
    with pytest.raises(ValueError, match="numpy backend runs on 'cpu' only"):
        xpcnn.set_backend("numpy", device="cuda")


def test_float64_default_dtype(backend64):
    w = _built_weight()
    assert w.dtype == backend64.dtype == backend64.xp.float64


def test_array_api_strict_refuses_float64_on_no_float64():
    pytest.importorskip("array_api_strict")
    with pytest.raises(ValueError, match="cannot hold dtype float64"):
        xpcnn.set_backend("array_api_strict", device="no_float64", dtype="float64")
    assert xpcnn.get_backend().name == "numpy"


def test_asarray_places_on_the_device_with_the_default_float_dtype(backend):
    a = xpcnn.asarray(np.arange(6, dtype=np.float64).reshape(2, 3))
    assert array_api_compat.device(a) == backend.device
    assert a.dtype == backend.dtype
    labels = xpcnn.asarray(np.array([1, 2, 3], dtype=np.int64))
    assert backend.xp.isdtype(labels.dtype, "integral")
    from_list = xpcnn.asarray([[1.0, 2.0]])
    assert tuple(from_list.shape) == (1, 2) and from_list.dtype == backend.dtype


def test_asarray_and_to_numpy_round_trip(backend):
    host = np.random.default_rng(0).standard_normal((3, 4)).astype(np.float32)
    back = xpcnn.to_numpy(xpcnn.asarray(host))
    assert isinstance(back, np.ndarray)
    np.testing.assert_array_equal(back, host)


def test_asarray_takes_arrays_of_another_backend(backend):
    import torch

    source = torch.arange(4, dtype=torch.float32)
    moved = xpcnn.asarray(source)
    assert array_api_compat.device(moved) == backend.device
    np.testing.assert_array_equal(xpcnn.to_numpy(moved), np.arange(4, dtype=np.float32))


def test_asarray_keeps_an_array_of_the_backend(backend):
    a = backend.xp.ones((2,), dtype=backend.dtype, device=backend.device)
    assert xpcnn.asarray(a) is a


def _built_weight():
    layer = Conv2D(2, 3)
    layer.build((1, 4, 4))
    return layer.params["weight"]


def test_same_seed_same_initial_weights_on_every_backend(backend):
    xpcnn.manual_seed(123)
    here = xpcnn.to_numpy(_built_weight())
    with xpcnn.use_backend("numpy"):
        xpcnn.manual_seed(123)
        on_numpy = xpcnn.to_numpy(_built_weight())
    np.testing.assert_array_equal(here, on_numpy)
    xpcnn.manual_seed(124)
    assert not np.array_equal(xpcnn.to_numpy(_built_weight()), here)


def test_random_draws_are_on_the_device_and_reproducible(backend):
    xpcnn.manual_seed(5)
    state = xpcnn.random.get_state()
    first = [xpcnn.random.uniform((3, 4)), xpcnn.random.normal((5,)), xpcnn.random.permutation(10)]
    xpcnn.random.set_state(state)
    again = [xpcnn.random.uniform((3, 4)), xpcnn.random.normal((5,)), xpcnn.random.permutation(10)]
    for a, b in zip(first, again):
        assert array_api_compat.device(a) == backend.device
        np.testing.assert_array_equal(xpcnn.to_numpy(a), xpcnn.to_numpy(b))
    assert first[0].dtype == backend.dtype
    assert sorted(xpcnn.to_numpy(first[2]).tolist()) == list(range(10))
    u = xpcnn.to_numpy(first[0])
    assert (u >= 0).all() and (u < 1).all()


def test_random_statistics(backend):
    u = xpcnn.to_numpy(xpcnn.random.uniform((20000,), low=-2.0, high=4.0))
    z = xpcnn.to_numpy(xpcnn.random.normal((20000,), mean=1.0, std=3.0))
    keep = xpcnn.to_numpy(xpcnn.random.bernoulli((20000,), 0.25))
    assert u.min() >= -2.0 and u.max() < 4.0 and abs(u.mean() - 1.0) < 0.1
    assert abs(z.mean() - 1.0) < 0.1 and abs(z.std() - 3.0) < 0.1
    assert keep.dtype == np.bool_ and abs(keep.mean() - 0.25) < 0.02


@pytest.mark.parametrize("bad", [-1, 1.5, "7", True])
def test_manual_seed_rejects_bad_seeds(bad):
    with pytest.raises(ValueError, match="seed must be a non-negative int"):
        xpcnn.manual_seed(bad)


def test_set_state_rejects_garbage():
    with pytest.raises(ValueError, match="random state"):
        xpcnn.random.set_state({"seed": 1})


def test_to_numpy_takes_lists_and_scalars():
    np.testing.assert_array_equal(xpcnn.to_numpy([1, 2]), np.array([1, 2]))
    assert xpcnn.to_numpy(2.5) == np.float64(2.5)
