"""No hidden host synchronisation inside a training step.

A host read is any conversion of device data to Python or NumPy: ``bool()``, ``float()``, ``int()``,
``.item()``, ``__array__``/DLPack export to NumPy. Where the backend lets us hook those conversions
(array-api-strict's Python ``Array`` class, ``torch.Tensor``) the test counts them; on CuPy it runs under
``cupyx.allow_synchronize(False)``. NumPy and CPU JAX have no hook (their arrays already live on the host),
so they skip with that reason.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import numpy as np
import pytest

import xpcnn
from xpcnn import mixed_precision
from xpcnn.layers import BatchNorm2D, Conv2D, Dense, Dropout, Flatten, MaxPool2D, ReLU
from xpcnn.optimizers import LossScaleOptimizer

HOST_READS = ("__bool__", "__float__", "__int__", "__index__", "__complex__", "__array__", "__dlpack__",
              "item", "tolist", "numpy")


@contextlib.contextmanager
def count_host_reads(backend: xpcnn.Backend) -> Iterator[list[str]]:
    """Count conversions of the backend's arrays to host values while the block runs."""
    if backend.name == "array_api_strict":
        from array_api_strict._array_object import Array as cls
    elif backend.name == "torch":
        import torch

        cls = torch.Tensor
    else:
        pytest.skip(f"no hook to observe host reads of {backend.name} arrays on this machine")
    reads: list[str] = []
    hooked = [name for name in HOST_READS if hasattr(cls, name)]
    own = {name: cls.__dict__[name] for name in hooked if name in cls.__dict__}

    def counting(name, original):
        def wrapper(self, *args, **kwargs):
            reads.append(name)
            return original(self, *args, **kwargs)

        return wrapper

    for name in hooked:
        setattr(cls, name, counting(name, getattr(cls, name)))
    try:
        yield reads
    finally:
        for name in hooked:
            if name in own:
                setattr(cls, name, own[name])
            else:
                delattr(cls, name)  # inherited from a C base class (torch.Tensor)


#: dtype policies (``xpcnn.mixed_precision``) the steps run under; "loss_scale": float32 with a
#: LossScaleOptimizer, whose skip decision must stay on the device (every backend can run it)
PRECISIONS = ["float32", "loss_scale", "mixed_bfloat16", "mixed_float16"]


def _model(precision: str = "float32") -> xpcnn.Sequential:
    policy = "float32" if precision == "loss_scale" else precision
    if policy != "float32":
        try:
            xpcnn.backend.half_dtype(mixed_precision.Policy(policy).compute_dtype)
        except ValueError as exc:
            pytest.skip(str(exc))
    mixed_precision.set_global_policy(policy)
    try:
        model = xpcnn.Sequential(
            [Conv2D(4, 3, padding="same"), BatchNorm2D(), ReLU(), MaxPool2D(2), Dropout(0.25), Flatten(), Dense(3)],
            input_shape=(1, 8, 8),
        )
    finally:
        mixed_precision.set_global_policy("float32")
    optimizer = LossScaleOptimizer("adam") if precision == "loss_scale" else "adam"
    model.compile(loss="cross_entropy", optimizer=optimizer, metrics=["accuracy"])
    return model


def _data(n: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return rng.standard_normal((n, 1, 8, 8)).astype(np.float32), rng.integers(0, 3, size=n)


def test_the_hook_sees_host_reads(backend):
    x = xpcnn.asarray(np.ones(3, dtype=np.float32))
    with count_host_reads(backend) as reads:
        float(backend.xp.sum(x))
        bool(backend.xp.all(x > 0))
        xpcnn.to_numpy(x)
    assert len(reads) >= 3, reads
    with count_host_reads(backend) as reads:
        backend.xp.sum(x * 2.0)
    assert reads == []


@pytest.mark.parametrize("precision", PRECISIONS)
def test_train_steps_read_nothing_back(backend, precision):
    model = _model(precision)
    x, y = _data(16)
    xb, yb = xpcnn.asarray(x), xpcnn.asarray(y)
    model.train_on_batch(xb, yb)  # first step outside: optimizer state is created lazily
    with count_host_reads(backend) as reads:
        for _ in range(3):
            logs = model.train_on_batch(xb, yb)
    assert reads == [], f"host reads inside training steps: {reads}"
    assert np.isfinite(float(logs["loss"]))


@pytest.mark.parametrize("precision", PRECISIONS)
def test_fit_reads_per_epoch_not_per_batch(backend, precision):
    """The same epochs over 4x more batches must not read more values back to the host."""
    x, y = _data(64)
    counts = []
    for batch_size in (32, 8):
        model = _model(precision)
        with count_host_reads(backend) as reads:
            model.fit(x, y, batch_size=batch_size, epochs=2, validation_data=_data(16), verbose=0)
            model.evaluate(x, y, batch_size=batch_size)
        counts.append(len(reads))
    assert counts[1] == counts[0], f"host reads grow with the number of batches: {counts}"
    assert counts[0] <= 3 * 2 + 3, f"more than a few host reads per epoch: {counts[0]}"


def test_cupy_training_step_without_synchronisation(backend):
    if backend.name != "cupy":
        pytest.skip("cupyx.allow_synchronize only guards CuPy (needs a CUDA GPU)")
    import cupyx

    model = _model()
    x, y = _data(16)
    xb, yb = xpcnn.asarray(x), xpcnn.asarray(y)
    model.train_on_batch(xb, yb)
    with cupyx.allow_synchronize(False):
        for _ in range(3):
            logs = model.train_on_batch(xb, yb)
    assert np.isfinite(float(logs["loss"]))


def test_the_model_level_variants_run_as_named(backend, compile_jit):
    """conftest's ``[eager]`` variant must really turn ``compile``'s default to eager steps on JAX (it sets the
    default by the parameter's name, whatever arguments ``compile`` gains after ``jit``)."""
    model = _model()
    assert model.step_functions.jit is (backend.name == "jax" and compile_jit != "eager")
