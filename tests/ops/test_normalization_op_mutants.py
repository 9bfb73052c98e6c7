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


def _halves_reduce(other):
    """A sum over two processes, seen from the first: this process's arrays plus what ``other`` contributes."""
    return lambda arrays: [a + b for a, b in zip(arrays, other)]


@pytest.mark.parametrize("affine", [True, False])
def test_sync_batch_norm_of_two_halves_is_batch_norm_of_the_whole(backend64, affine):
    """Half A's view of a batch split over two processes (B's sums handed in by the reduce) gives the rows of A in
    the whole batch's normalisation, the whole batch's running statistics, and A's share of the parameter
    gradients (A's and B's shares sum to the whole's)."""
    rng = np.random.default_rng(1)
    x, dy = 2.0 + 0.5 * rng.standard_normal((6, 3, 2, 2)), rng.standard_normal((6, 3, 2, 2))
    weight, bias = (rng.uniform(0.5, 2.0, 3), rng.standard_normal(3)) if affine else (None, None)
    stats = rng.standard_normal(3), rng.uniform(0.5, 2.0, 3)
    a, b = x[:2], x[2:]

    def arr(v):
        return None if v is None else xpcnn.asarray(v)

    b_sums = [xpcnn.asarray(b.sum(axis=(0, 2, 3))), xpcnn.asarray((b * b).sum(axis=(0, 2, 3))),
              xpcnn.asarray(np.array([b.size / 3]))]
    y, mean, var, saved = norm.sync_batch_norm(arr(a), arr(weight), arr(bias), *map(arr, stats), 0.2, 1e-5,
                                               _halves_reduce(b_sums))
    *whole, whole_saved = norm.batch_norm(*map(arr, (x, weight, bias, *stats)), True, 0.2, 1e-5, return_saved=True)
    np.testing.assert_allclose(host(y), host(whole[0])[:2], rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(host(mean), host(whole[1]), rtol=1e-10)
    np.testing.assert_allclose(host(var), host(whole[2]), rtol=1e-10)
    want = norm.batch_norm_backward(arr(dy), arr(x), arr(weight), 1e-5, saved=whole_saved)
    dy_b, inv_std = dy[2:], 1.0 / np.sqrt(x.var(axis=(0, 2, 3)) + 1e-5)  # B's shares of the parameter gradients
    centered_b = b - x.mean(axis=(0, 2, 3)).reshape(1, 3, 1, 1)
    b_shares = [xpcnn.asarray(dy_b.sum(axis=(0, 2, 3))),
                xpcnn.asarray((dy_b * centered_b).sum(axis=(0, 2, 3)) * inv_std)]
    dx, dweight, dbias = norm.sync_batch_norm_backward(arr(dy[:2]), arr(a), arr(weight), saved,
                                                       _halves_reduce(b_shares))
    np.testing.assert_allclose(host(dx), host(want[0])[:2], rtol=1e-9, atol=1e-12)
    if affine:
        np.testing.assert_allclose(host(dweight) + host(b_shares[1]), host(want[1]), rtol=1e-9)
        np.testing.assert_allclose(host(dbias) + host(b_shares[0]), host(want[2]), rtol=1e-9)
    else:
        assert dweight is None and dbias is None and want[1] is None and want[2] is None


def test_inference_backward_defaults_and_no_affine_part(backend64):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(2)
    x, dy = rng.standard_normal((4, 3, 2, 2)), rng.standard_normal((4, 3, 2, 2))
    mean, var = rng.standard_normal(3), rng.uniform(0.5, 2.0, 3)
    for weight in (rng.uniform(0.5, 2.0, 3), None):
        xt = torch.from_numpy(x).requires_grad_()
        wt = None if weight is None else torch.from_numpy(weight).requires_grad_()
        torch.nn.functional.batch_norm(xt, torch.from_numpy(mean), torch.from_numpy(var), wt, None,
                                       training=False).backward(torch.from_numpy(dy))
        dx, dweight, dbias = norm.batch_norm_inference_backward(
            *(None if v is None else xpcnn.asarray(v) for v in (dy, x, weight, mean, var)))
        np.testing.assert_allclose(host(dx), xt.grad.numpy(), rtol=1e-10)
        if weight is None:
            assert dweight is None and dbias is None
        else:
            np.testing.assert_allclose(host(dweight), wt.grad.numpy(), rtol=1e-10)
            np.testing.assert_allclose(host(dbias), dy.sum(axis=(0, 2, 3)), rtol=1e-12)
    assert norm.batch_norm_backward(xpcnn.asarray(dy), xpcnn.asarray(x), None)[1:] == (None, None)
