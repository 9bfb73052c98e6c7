"""``erf``, which the Array API lacks and exact GELU needs: the generic path against ``math.erf`` over a dense
grid, in float32 and float64, on every backend (the namespaces' own ``erf`` is held equal to it in
test_native_kernels.py)."""

from __future__ import annotations

import math

import numpy as np
import pytest

import xpcnn
from xpcnn.ops import _native
from xpcnn.ops.activations import erf

#: measured with NumPy: float64 4.5e-16 relative (3 ulp), float32 1.9e-7 relative and 1.4e-7 absolute (2.4 ulp)
BOUNDS = {"float64": 2e-15, "float32": 4e-7}


def _grid() -> np.ndarray:
    """Every 1e-4 over [-7, 7] (erf is +-1 in float64 from 6 on), and magnitudes from 1e-30 up on a log scale."""
    tiny = np.geomspace(1e-30, 7.0, 20_001)
    return np.concatenate([np.linspace(-7.0, 7.0, 140_001), tiny, -tiny])


@pytest.mark.parametrize("dtype_fixture", ["backend", "backend64"])
def test_erf_is_accurate_to_a_few_ulp(request, dtype_fixture):
    backend = request.getfixturevalue(dtype_fixture)
    dtype = np.float64 if dtype_fixture == "backend64" else np.float32
    x = _grid().astype(dtype)
    exact = np.array([math.erf(float(v)) for v in x])  # erf of the value the backend holds
    with _native.generic_only():
        y = np.asarray(xpcnn.to_numpy(erf(xpcnn.asarray(x))), dtype=np.float64)
    relative = np.abs(y - exact) / np.maximum(np.abs(exact), np.finfo(dtype).tiny)  # erf(0) = 0 exactly
    bound = BOUNDS[xpcnn.backend.dtype_name(backend.dtype)]
    assert relative.max() < bound, f"max relative error {relative.max():.3g} at x = {x[relative.argmax()]!r}"


def test_erf_special_values(backend):
    x = xpcnn.asarray(np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 1.0, -1.0, 6.0, 30.0]))
    with _native.generic_only():
        y = np.asarray(xpcnn.to_numpy(erf(x)), dtype=np.float64)
    np.testing.assert_array_equal(y[:4], [0.0, 0.0, 1.0, -1.0])
    assert np.isnan(y[4])
    np.testing.assert_allclose(y[5:], [math.erf(1.0), -math.erf(1.0), 1.0, 1.0], rtol=4e-7)
