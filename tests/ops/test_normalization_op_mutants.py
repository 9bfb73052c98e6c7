"""Batch-norm op behaviours that mutation testing (``nox -s mutation``) found unchecked, called as the public
function: PyTorch's defaults (momentum 0.1, eps 1e-5, no saved state returned) and its errors word for word."""

from __future__ import annotations

import re

import numpy as np
import pytest
from layer_checks import host

import xpcnn
from xpcnn.ops import normalization as norm


def test_batch_norm_defaults_are_torchs(backend64):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    x, w, b = rng.standard_normal((4, 3, 2, 2)), rng.standard_normal(3), rng.standard_normal(3)
    mean, var = rng.standard_normal(3), rng.uniform(0.5, 2.0, 3)
    out = norm.batch_norm(*(xpcnn.asarray(v) for v in (x, w, b, mean, var)), True)
    assert len(out) == 3  # no saved state unless asked
    tm, tv = torch.from_numpy(mean.copy()), torch.from_numpy(var.copy())
    want = torch.nn.functional.batch_norm(torch.from_numpy(x), tm, tv, torch.from_numpy(w), torch.from_numpy(b),
                                          training=True)
    np.testing.assert_allclose(host(out[0]), want.numpy(), rtol=1e-10)
    np.testing.assert_allclose(host(out[1]), tm.numpy(), rtol=1e-12)
    np.testing.assert_allclose(host(out[2]), tv.numpy(), rtol=1e-12)


def test_batch_norm_errors():
    no_stats = "batch_norm: without running statistics only the batch's can normalise (training=True)"
    with pytest.raises(ValueError, match=f"^{re.escape(no_stats)}$"):
        norm.batch_norm(xpcnn.asarray(np.ones((2, 3))), None, None, None, None, False)
    one_value = ("batch_norm: training needs more than one value per channel to estimate the batch variance, got "
                 "input of shape (1, 3)")
    with pytest.raises(ValueError, match=f"^{re.escape(one_value)}$"):
        norm.check_training_batch((1, 3))
