"""Window arithmetic (``ops/windows.py``) that mutation testing (``nox -s mutation``) found unchecked, seen through
``conv2d``: "valid" padding is none, and TensorFlow's "same" padding computed per axis from that axis's kernel,
stride and dilation (the odd pixel last), against torch on the input padded by hand."""

from __future__ import annotations

import numpy as np
import pytest
from layer_checks import host

import xpcnn
from xpcnn.ops import conv


def _a(values):
    return xpcnn.asarray(np.asarray(values, dtype=np.float64))


def test_valid_padding_is_none(backend64):
    rng = np.random.default_rng(0)
    x, w = _a(rng.standard_normal((1, 2, 5, 6))), _a(rng.standard_normal((3, 2, 3, 2)))
    y = conv.conv2d(x, w, padding="valid")
    assert tuple(y.shape) == (1, 3, 3, 5)
    np.testing.assert_array_equal(host(y), host(conv.conv2d(x, w)))


def test_same_padding_per_axis_matches_torch_on_the_padded_input(backend64):
    """Rows: 8 pixels, kernel 3 dilated by 2 (reach 5), stride 2: 4 outputs, 3 pixels of padding, (1, 2).
    Columns: 6 pixels, kernel 2, stride 1: 6 outputs, 1 pixel of padding, (0, 1)."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(1)
    x, w = rng.standard_normal((1, 2, 8, 6)), rng.standard_normal((3, 2, 3, 2))
    y = conv.conv2d(_a(x), _a(w), stride=(2, 1), padding="same", dilation=(2, 1))
    padded = torch.nn.functional.pad(torch.from_numpy(x), (0, 1, 1, 2))
    expected = torch.nn.functional.conv2d(padded, torch.from_numpy(w), stride=(2, 1), dilation=(2, 1)).numpy()
    assert expected.shape == (1, 3, 4, 6)
    np.testing.assert_allclose(host(y), expected, rtol=1e-10, atol=1e-12)
