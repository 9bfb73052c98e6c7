"""AdaptiveAvgPool2D and AdaptiveMaxPool2D: torch's windows for any output size, numerical gradients, PyTorch
oracle (ties included), the tiled and global shortcuts equal to the general path, configs, errors."""

from __future__ import annotations

import numpy as np
import pytest

import xpcnn
from layer_checks import assert_forward_backward_on_device, assert_matches_torch, check_numerical_gradients, host
from layer_checks import rtol_for
from test_pool import _distinct, _tied
from xpcnn.layers import AdaptiveAvgPool2D, AdaptiveMaxPool2D
from xpcnn.ops import adaptive_pool as adaptive_ops
from xpcnn.ops.windows import adaptive_windows

# (batch, channels, H, W, output_size)
CASES = [
    pytest.param(2, 3, 7, 5, (3, 2), id="7x5-to-3x2-overlapping"),
    pytest.param(1, 2, 5, 5, 3, id="5x5-to-3"),
    pytest.param(2, 2, 6, 4, (3, 2), id="6x4-to-3x2-tiles"),
    pytest.param(1, 2, 2, 3, (5, 4), id="2x3-to-5x4-larger"),
    pytest.param(2, 3, 4, 5, 1, id="global"),
    pytest.param(1, 2, 6, 5, (None, 3), id="keep-height"),
    pytest.param(1, 2, 9, 9, (4, None), id="keep-width"),
    pytest.param(2, 2, 7, 6, (7, 6), id="identity"),
]
LAYERS = {"avg": AdaptiveAvgPool2D, "max": AdaptiveMaxPool2D}


def _torch_pool(kind: str, output_size):
    import torch.nn.functional as F

    op = F.adaptive_max_pool2d if kind == "max" else F.adaptive_avg_pool2d
    return lambda x: op(x, output_size)


def test_windows_follow_torchs_rule():
    assert adaptive_windows(7, 3) == (slice(0, 3), slice(2, 5), slice(4, 7))
    assert adaptive_windows(5, 3) == (slice(0, 2), slice(1, 4), slice(3, 5))
    assert adaptive_windows(2, 5) == (slice(0, 1), slice(0, 1), slice(0, 2), slice(1, 2), slice(1, 2))
    assert adaptive_windows(6, 3) == (slice(0, 2), slice(2, 4), slice(4, 6))
    for size in range(1, 12):
        for out in range(1, 12):
            windows = adaptive_windows(size, out)
            assert windows[0].start == 0 and windows[-1].stop == size
            assert all(w.stop > w.start for w in windows)


@pytest.mark.parametrize("kind", LAYERS)
@pytest.mark.parametrize("n, c, h, w, out", CASES)
def test_adaptive_pool_numerical_gradients(backend64, kind, n, c, h, w, out):
    check_numerical_gradients(LAYERS[kind](out), _distinct((n, c, h, w)))


@pytest.mark.parametrize("dtype_fixture", ["backend", "backend64"])
@pytest.mark.parametrize("kind", LAYERS)
@pytest.mark.parametrize("n, c, h, w, out", CASES)
def test_adaptive_pool_matches_torch(request, dtype_fixture, kind, n, c, h, w, out):
    pytest.importorskip("torch")
    backend = request.getfixturevalue(dtype_fixture)
    layer = LAYERS[kind](out)
    expected = tuple(d if o is None else o for d, o in zip((h, w), out if isinstance(out, tuple) else (out, out)))
    assert layer.build((c, h, w)) == (c, *expected)
    assert_matches_torch(layer, np.random.default_rng(1).standard_normal((n, c, h, w)), _torch_pool(kind, out),
                         rtol=rtol_for(backend))


@pytest.mark.parametrize("n, c, h, w, out", CASES)
def test_adaptive_max_pool_sends_tied_gradients_where_torch_does(backend64, n, c, h, w, out):
    """Windows full of equal values (and of zeros): each gradient to the window's first maximum in row-major
    order, on every path (general, tiled, global)."""
    pytest.importorskip("torch")
    assert_matches_torch(AdaptiveMaxPool2D(out), _tied((n, c, h, w)), _torch_pool("max", out), rtol=1e-12)


@pytest.mark.parametrize("kind", LAYERS)
@pytest.mark.parametrize("in_hw, out", [((6, 4), (3, 2)), ((8, 6), (2, 3)), ((5, 4), (5, 1))])
def test_tiled_shortcut_equals_the_general_path(backend64, monkeypatch, kind, in_hw, out):
    """Output sizes that divide the input's run as plain pooling with kernel = stride; the general path (the
    width's windows, then the height's) gives the same values and gradients, ties included. (The 1x1 shortcut,
    a reduction over the image, is held to torch above.)"""
    x = xpcnn.asarray(_tied((2, 3, *in_hw), seed=4))
    forward, backward = (getattr(adaptive_ops, f"adaptive_{kind}_pool2d{suffix}") for suffix in ("", "_backward"))
    y = forward(x, out)
    dy = xpcnn.asarray(np.random.default_rng(5).standard_normal(tuple(y.shape)))
    dx = backward(dy, x, out)
    calls = []
    original = adaptive_ops._reduce_windows
    monkeypatch.setattr(adaptive_ops, "adaptive_uniform_kernel", lambda in_hw, out_hw: None)
    monkeypatch.setattr(adaptive_ops, "_reduce_windows", lambda *args: calls.append(args[1:]) or original(*args))
    np.testing.assert_allclose(host(forward(x, out)), host(y), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(host(backward(dy, x, out)), host(dx), rtol=1e-12, atol=1e-15)
    reduce = "max" if kind == "max" else "mean"
    assert calls[:2] == [(3, out[1], reduce), (2, out[0], reduce)], "the general path ran"


def test_nan_propagates(backend):
    x = _tied((1, 1, 5, 5))
    x[0, 0, 0, 0] = np.nan
    for layer in (AdaptiveAvgPool2D(3), AdaptiveMaxPool2D(3), AdaptiveMaxPool2D(1), AdaptiveAvgPool2D(1)):
        y = host(layer.forward(xpcnn.asarray(x)))
        assert np.isnan(y[0, 0, 0, 0]), f"{layer!r}: {y}"
        assert np.isnan(y).sum() == 1, "only the window holding the NaN"


@pytest.mark.parametrize("layer", [AdaptiveAvgPool2D((2, 3)), AdaptiveMaxPool2D((3, None)), AdaptiveAvgPool2D(1)],
                         ids=repr)
def test_adaptive_pools_keep_everything_on_the_device(backend, layer):
    assert_forward_backward_on_device(layer, xpcnn.asarray(_tied((2, 3, 7, 5))), backend)


def test_config_repr_and_shapes():
    layer = AdaptiveAvgPool2D(7)
    assert layer.get_config() == {"output_size": (7, 7)} and repr(layer) == "AdaptiveAvgPool2D(output_size=(7, 7))"
    kept = AdaptiveMaxPool2D([None, 2])  # a JSON config gives lists
    assert kept.get_config() == {"output_size": (None, 2)}
    assert AdaptiveMaxPool2D(**kept.get_config()).build((3, 9, 8)) == (3, 9, 2)
    assert AdaptiveAvgPool2D(1).build((16, 7, 7)) == (16, 1, 1) and AdaptiveAvgPool2D(1).num_params == 0


@pytest.mark.parametrize("make, error, message", [
    (lambda: AdaptiveAvgPool2D(0), ValueError, r"AdaptiveAvgPool2D: output_size must be >= 1, got 0"),
    (lambda: AdaptiveMaxPool2D((2, -1)), ValueError, r"AdaptiveMaxPool2D: output_size must be >= 1, got \(2, -1\)"),
    (lambda: AdaptiveAvgPool2D(1.5), TypeError, r"AdaptiveAvgPool2D: output_size must be an int or a pair of ints "
                                                r"\(None keeps an axis\), got 1.5"),
    (lambda: AdaptiveAvgPool2D(None), TypeError, "AdaptiveAvgPool2D: output_size must be an int or a pair"),
    (lambda: AdaptiveMaxPool2D((1, 2, 3)), TypeError, r"output_size must be an int or a pair of ints .*\(1, 2, 3\)"),
    (lambda: AdaptiveMaxPool2D(True), TypeError, "AdaptiveMaxPool2D: output_size must be an int"),
    (lambda: AdaptiveMaxPool2D("7"), TypeError, "AdaptiveMaxPool2D: output_size must be an int"),
])
def test_constructor_rejects_bad_output_sizes(make, error, message):
    with pytest.raises(error, match=message):
        make()


@pytest.mark.parametrize("cls", [AdaptiveAvgPool2D, AdaptiveMaxPool2D])
def test_bad_inputs_are_refused_naming_the_layer(backend, cls):
    layer = cls(2)
    with pytest.raises(ValueError, match=rf"{cls.__name__}: expected 4-D input .* got input of shape \(3, 8\)"):
        layer.forward(xpcnn.asarray(_tied((3, 8))))
    assert not layer.built
    op = getattr(adaptive_ops, f"adaptive_{'avg' if cls is AdaptiveAvgPool2D else 'max'}_pool2d")
    with pytest.raises(ValueError, match=rf"{op.__name__}: input must be 4-D \(N, C, H, W\), got shape \(2, 5, 5\)"):
        op(xpcnn.asarray(_tied((2, 5, 5))), 2)
