"""Rescaling and Normalization behaviours that mutation testing (``nox -s mutation``) found unchecked: Rescaling's
offset 0 by default, and the values each refuses, word for word."""

from __future__ import annotations

import re

import numpy as np
import pytest
from layer_checks import host

import xpcnn
from xpcnn.layers import Normalization, Rescaling


def test_rescaling_has_no_offset_by_default(backend):
    x = np.array([[0.0, 1.0, 255.0]], dtype=np.float32)
    np.testing.assert_allclose(host(Rescaling(1 / 255).forward(xpcnn.asarray(x))), x / 255, rtol=1e-6)


@pytest.mark.parametrize(("make", "message"), [
    (lambda: Rescaling("x"), "Rescaling: scale must be a number, got 'x'"),
    (lambda: Rescaling(1.0, offset="x"), "Rescaling: offset must be a number, got 'x'"),
    (lambda: Normalization([], 1.0), "Normalization: mean must be a number or a sequence of numbers, got []"),
    (lambda: Normalization({0.5}, 1.0), "Normalization: mean must be a number or a sequence of numbers, got {0.5}"),
    (lambda: Normalization(b"\x01", 1.0),
     "Normalization: mean must be a number or a sequence of numbers, got b'\\x01'"),
    (lambda: Normalization([True], 1.0), "Normalization: mean must be a number or a sequence of numbers, got [True]"),
    (lambda: Normalization(0.5, "x"), "Normalization: variance must be a number or a sequence of numbers, got 'x'"),
])
def test_refused_values_are_named(make, message):
    with pytest.raises(TypeError, match=f"^{re.escape(message)}$"):
        make()
