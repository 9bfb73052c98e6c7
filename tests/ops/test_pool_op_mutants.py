"""Pooling op behaviours that mutation testing (``nox -s mutation``) found unchecked, called as the public functions:
ceil mode dropping a last window that would start in the padding (torch's rule), average pooling counting the padding
by default, "valid" padding, the padding bound checked per axis, and the errors word for word. (Named
``*_op_mutants``: ``tests/layers`` may hold a ``test_pool_mutants.py`` and pytest needs distinct basenames.)"""

from __future__ import annotations

import re

import numpy as np
import pytest
from layer_checks import host

import xpcnn
from xpcnn.ops import pool


def _a(values):
    return xpcnn.asarray(np.asarray(values, dtype=np.float64))


@pytest.mark.parametrize(("op", "torch_op"), [("max", "max_pool2d"), ("avg", "avg_pool2d")])
def test_ceil_mode_drops_a_last_window_that_starts_in_the_padding(backend64, op, torch_op):
    """Height 5, kernel 2, stride 2, padding 1: ceil((5 + 2 - 2) / 2) + 1 = 4 windows, but the fourth would start at
    padded row 6, past the input: torch keeps 3. Width 6 keeps its 4 windows (the fourth starts on row 6 < 6 + 1)."""
    torch = pytest.importorskip("torch")
    x = np.random.default_rng(0).standard_normal((1, 2, 5, 6))
    xt = torch.from_numpy(x).requires_grad_()
    yt = getattr(torch.nn.functional, torch_op)(xt, 2, 2, 1, ceil_mode=True)
    dy = np.random.default_rng(1).standard_normal(tuple(yt.shape))
    yt.backward(torch.from_numpy(dy))
    assert tuple(yt.shape) == (1, 2, 3, 4)
    forward, backward = getattr(pool, f"{op}_pool2d"), getattr(pool, f"{op}_pool2d_backward")
    np.testing.assert_allclose(host(forward(_a(x), 2, 2, 1, ceil_mode=True)), yt.detach().numpy(), rtol=1e-12)
    np.testing.assert_allclose(host(backward(_a(dy), _a(x), 2, 2, 1, ceil_mode=True)), xt.grad.numpy(), rtol=1e-12)


def test_average_pooling_counts_the_padding_by_default(backend64):
    torch = pytest.importorskip("torch")
    x = np.random.default_rng(2).standard_normal((1, 1, 4, 4))
    xt = torch.from_numpy(x).requires_grad_()
    yt = torch.nn.functional.avg_pool2d(xt, 3, 1, 1)
    dy = np.random.default_rng(3).standard_normal(tuple(yt.shape))
    yt.backward(torch.from_numpy(dy))
    np.testing.assert_allclose(host(pool.avg_pool2d(_a(x), 3, 1, 1)), yt.detach().numpy(), rtol=1e-12)
    np.testing.assert_allclose(host(pool.avg_pool2d_backward(_a(dy), _a(x), 3, 1, 1)), xt.grad.numpy(), rtol=1e-12)


def test_valid_padding_is_no_padding(backend64):
    x = _a(np.random.default_rng(4).standard_normal((1, 1, 5, 6)))
    for op in (pool.max_pool2d, pool.avg_pool2d):
        np.testing.assert_array_equal(host(op(x, 2, padding="valid")), host(op(x, 2)))


@pytest.mark.parametrize(("call", "message"), [
    (lambda: pool.max_pool2d(_a(np.ones((1, 1, 4, 6))), (2, 4), padding=(2, 0)),
     "max_pool2d: padding (2, 0) must be at most half the kernel size (2, 4)"),
    (lambda: pool.avg_pool2d(_a(np.ones((1, 1, 4, 6))), (4, 2), padding=(0, 2)),
     "avg_pool2d: padding (0, 2) must be at most half the kernel size (4, 2)"),
    (lambda: pool.max_pool2d(_a(np.ones((1, 1, 1, 2))), 4, padding=(1, 2)),
     ("max_pool2d: kernel (4, 4) is larger than the padded input (3, 6) (input height and width (1, 2), padding "
      "(1, 2))")),
])
def test_errors(backend64, call, message):
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        call()
