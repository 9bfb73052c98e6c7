"""Dropout behaviour that mutation testing (``nox -s mutation``) found unchecked: a rate of 0 in training is the
identity and draws nothing, so the random stream of the rest of the model stays as it was."""

from __future__ import annotations

import numpy as np
from layer_checks import host

import xpcnn
from xpcnn.layers import Dropout


def test_rate_zero_draws_no_mask(backend):
    x = np.random.default_rng(0).standard_normal((4, 5)).astype(np.float32)
    xpcnn.manual_seed(1)
    before = xpcnn.random.get_state()
    y = Dropout(0.0).forward(xpcnn.asarray(x), training=True)
    np.testing.assert_array_equal(host(y), x)
    after = xpcnn.random.get_state()
    xpcnn.random.set_state(before)
    expected = xpcnn.to_numpy(xpcnn.random.bernoulli((3,), 0.5))
    xpcnn.random.set_state(after)
    np.testing.assert_array_equal(xpcnn.to_numpy(xpcnn.random.bernoulli((3,), 0.5)), expected)
