"""MaxPool2D, AvgPool2D and the global pools: numerical gradients, PyTorch oracle, ties, device, errors."""

from __future__ import annotations

import numpy as np
import pytest

import xpcnn
from layer_checks import assert_forward_backward_on_device, assert_matches_torch, assert_on_device, check_numerical_gradients, host, rtol_for
from xpcnn.layers.base import get_layer_class
from xpcnn.layers.pool import AvgPool2D, GlobalAvgPool2D, GlobalMaxPool2D, MaxPool2D
from xpcnn.ops import pool as pool_ops

# (batch, channels, H, W, kernel, stride, padding)
POOL_CASES = [
    pytest.param(2, 3, 8, 8, 2, None, 0, id="k2-default-stride-tiles"),
    pytest.param(2, 2, 7, 9, 2, 2, 0, id="tiles-with-floor-crop"),
    pytest.param(1, 2, 9, 9, 3, 3, 0, id="batch1-k3-tiles"),
    pytest.param(2, 2, 7, 6, 3, 2, 1, id="k3-s2-p1-nonsquare"),
    pytest.param(2, 3, 6, 5, 3, 1, 1, id="overlapping-s1-p1"),
    pytest.param(1, 2, 5, 5, 2, 1, 1, id="even-kernel-s1-p1"),
    pytest.param(2, 1, 10, 9, 4, 3, 2, id="k4-s3-p2"),
    pytest.param(1, 2, 9, 8, (3, 2), (2, 3), (1, 0), id="batch1-rect"),
    pytest.param(2, 2, 5, 7, (1, 3), 1, (0, 1), id="k1x3-s1"),
]
POOL_LAYERS = {"max": (MaxPool2D, "max_pool2d"), "avg": (AvgPool2D, "avg_pool2d")}


def _input(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape)


def _distinct(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    """Values at least 1/size apart, so no finite difference of a max straddles a tie."""
    size = int(np.prod(shape))
    return (np.random.default_rng(seed).permutation(size).reshape(shape) - size / 2) / size


def _tied(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    """ReLU of small integers: many exact ties, including windows that are all zeros."""
    return np.maximum(np.random.default_rng(seed).integers(-3, 3, size=shape), 0).astype(np.float64)


def _torch_pool(kind: str, k, s, p):
    import torch.nn.functional as F

    op = F.max_pool2d if kind == "max" else F.avg_pool2d
    return lambda x: op(x, k, s, p)


@pytest.mark.parametrize("kind", POOL_LAYERS)
@pytest.mark.parametrize("n, c, h, w, k, s, p", POOL_CASES)
def test_pool_numerical_gradients(backend64, kind, n, c, h, w, k, s, p):
    layer = POOL_LAYERS[kind][0](k, stride=s, padding=p)
    check_numerical_gradients(layer, _distinct((n, c, h, w)))


@pytest.mark.parametrize("dtype_fixture", ["backend", "backend64"])
@pytest.mark.parametrize("kind", POOL_LAYERS)
@pytest.mark.parametrize("n, c, h, w, k, s, p", POOL_CASES)
def test_pool_matches_torch(request, dtype_fixture, kind, n, c, h, w, k, s, p):
    pytest.importorskip("torch")
    backend = request.getfixturevalue(dtype_fixture)
    layer = POOL_LAYERS[kind][0](k, stride=s, padding=p)
    assert_matches_torch(layer, _input((n, c, h, w)), _torch_pool(kind, k, s, p), rtol=rtol_for(backend))



def _same_pads(size: int, k: int, s: int) -> tuple[int, int]:
    total = max((-(-size // s) - 1) * s + k - size, 0)
    return total // 2, total - total // 2


def _torch_same(kind: str, k: int, s: int, hw: tuple[int, int]):
    """Keras's "same" pooling written with torch: pad (with -inf, or zeros counted out of the mean), pool."""
    import torch.nn.functional as F

    (top, bottom), (left, right) = _same_pads(hw[0], k, s), _same_pads(hw[1], k, s)
    pads = (left, right, top, bottom)
    if kind == "max":
        return lambda x: F.max_pool2d(F.pad(x, pads, value=float("-inf")), k, s)
    return lambda x: F.avg_pool2d(F.pad(x, pads), k, s) / F.avg_pool2d(F.pad(x.new_ones(x.shape), pads), k, s)


# (layer, input shape, the torch reference)
OPTION_CASES = [
    pytest.param(lambda: MaxPool2D(3, 2, 1, dilation=2), (2, 2, 9, 8),
                 lambda: (lambda x: __import__("torch").nn.functional.max_pool2d(x, 3, 2, 1, 2)), id="max-dilation2"),
    pytest.param(lambda: MaxPool2D((3, 2), (2, 3), (1, 1), dilation=(1, 2), ceil_mode=True), (1, 2, 9, 10),
                 lambda: (lambda x: __import__("torch").nn.functional.max_pool2d(x, (3, 2), (2, 3), (1, 1), (1, 2),
                                                                                   True)), id="max-rect-dilation-ceil"),
    pytest.param(lambda: MaxPool2D(2, ceil_mode=True), (2, 1, 7, 9),
                 lambda: (lambda x: __import__("torch").nn.functional.max_pool2d(x, 2, ceil_mode=True)), id="max-ceil"),
    pytest.param(lambda: MaxPool2D(3, 2, 1, ceil_mode=True), (1, 2, 8, 8),
                 lambda: (lambda x: __import__("torch").nn.functional.max_pool2d(x, 3, 2, 1, ceil_mode=True)),
                 id="max-ceil-padded"),
    pytest.param(lambda: MaxPool2D(3, 1, "same", dilation=2), (1, 2, 6, 7),  # pads 2: beyond torch's own kernels
                 lambda: (lambda x: __import__("torch").nn.functional.max_pool2d(
                     __import__("torch").nn.functional.pad(x, (2, 2, 2, 2), value=float("-inf")), 3, 1, 0, 2)),
                 id="max-same-dilation2"),
    pytest.param(lambda: AvgPool2D(3, 2, 1, count_include_pad=False), (2, 2, 7, 6),
                 lambda: (lambda x: __import__("torch").nn.functional.avg_pool2d(x, 3, 2, 1, count_include_pad=False)),
                 id="avg-exclude-pad"),
    pytest.param(lambda: AvgPool2D(2, ceil_mode=True), (2, 1, 7, 9),
                 lambda: (lambda x: __import__("torch").nn.functional.avg_pool2d(x, 2, ceil_mode=True)), id="avg-ceil"),
    pytest.param(lambda: AvgPool2D(3, 2, 1, ceil_mode=True), (1, 2, 8, 9),
                 lambda: (lambda x: __import__("torch").nn.functional.avg_pool2d(x, 3, 2, 1, ceil_mode=True)),
                 id="avg-ceil-include-pad"),
    pytest.param(lambda: AvgPool2D(3, 2, 1, ceil_mode=True, count_include_pad=False), (1, 2, 8, 9),
                 lambda: (lambda x: __import__("torch").nn.functional.avg_pool2d(x, 3, 2, 1, ceil_mode=True,
                                                                                   count_include_pad=False)),
                 id="avg-ceil-exclude-pad"),
    *[pytest.param(lambda kind=kind, k=k, s=s: POOL_LAYERS[kind][0](k, s, "same"), shape,
                   lambda kind=kind, k=k, s=s, shape=shape: _torch_same(kind, k, s, shape[2:]),
                   id=f"{kind}-same-k{k}-s{s}-{shape[2]}x{shape[3]}")
      for kind in POOL_LAYERS for k, s, shape in [(3, 2, (2, 2, 7, 8)), (2, 1, (1, 2, 5, 5)), (2, 2, (1, 1, 5, 6))]],
]


@pytest.mark.parametrize("make, shape, reference", OPTION_CASES)
def test_pool_options_numerical_gradients(backend64, make, shape, reference):
    check_numerical_gradients(make(), _distinct(shape))


@pytest.mark.parametrize("dtype_fixture", ["backend", "backend64"])
@pytest.mark.parametrize("make, shape, reference", OPTION_CASES)
def test_pool_options_match_torch(request, dtype_fixture, make, shape, reference):
    pytest.importorskip("torch")
    backend = request.getfixturevalue(dtype_fixture)
    assert_matches_torch(make(), _input(shape), reference(), rtol=rtol_for(backend))


def test_pool_options_in_config_and_shapes(backend):
    layer = MaxPool2D(3, 2, "same", dilation=2, ceil_mode=True)
    assert layer.build((4, 7, 8)) == (4, 4, 4)
    assert layer.get_config() == {"kernel_size": (3, 3), "stride": (2, 2), "padding": "same", "dilation": (2, 2),
                                  "ceil_mode": True}
    avg = AvgPool2D(2, count_include_pad=False)
    assert avg.get_config() == {"kernel_size": (2, 2), "stride": (2, 2), "padding": (0, 0), "count_include_pad": False}
    for one in (layer, avg):
        assert type(one)(**one.get_config()).get_config() == one.get_config()
    assert MaxPool2D(2).get_config() == {"kernel_size": (2, 2), "stride": (2, 2), "padding": (0, 0)}

@pytest.mark.parametrize("dtype_fixture", ["backend", "backend64"])
@pytest.mark.parametrize("n, c, h, w, k, s, p", POOL_CASES)
def test_max_pool_sends_tied_gradients_to_the_first_maximum_like_torch(request, dtype_fixture, n, c, h, w, k, s, p):
    pytest.importorskip("torch")
    backend = request.getfixturevalue(dtype_fixture)
    x = _tied((n, c, h, w))
    assert_matches_torch(MaxPool2D(k, stride=s, padding=p), x, _torch_pool("max", k, s, p), rtol=rtol_for(backend))



@pytest.mark.parametrize("n, c, h, w, k, s, p", [case for case in POOL_CASES if "p1" in case.id or "p2" in case.id])
def test_max_pool_window_of_minus_infinity_beside_padding_sends_its_gradient_to_a_real_pixel(
        backend, n, c, h, w, k, s, p):
    """Windows that hold only -inf and reach into the padding: PyTorch picks the window's first real pixel."""
    torch = pytest.importorskip("torch")
    x = _input((n, c, h, w))
    x[:, :, : h // 2, :] = -np.inf  # the top half: its windows are -inf beside the top and side padding
    layer = MaxPool2D(k, stride=s, padding=p)
    y = layer.forward(xpcnn.asarray(x), training=True)
    dy = np.random.default_rng(1).uniform(1.0, 2.0, tuple(y.shape))
    dx = host(layer.backward(xpcnn.asarray(dy)))
    tx = torch.tensor(x, requires_grad=True)
    ty = torch.nn.functional.max_pool2d(tx, k, s, p)
    ty.backward(torch.tensor(dy))
    np.testing.assert_allclose(host(y), ty.detach().numpy(), rtol=rtol_for(backend))
    np.testing.assert_allclose(dx, tx.grad.numpy(), rtol=rtol_for(backend))
    recomputed = pool_ops.max_pool2d_backward(xpcnn.asarray(dy), xpcnn.asarray(x), k, s, p)  # from x, no indices
    np.testing.assert_allclose(host(recomputed), tx.grad.numpy(), rtol=rtol_for(backend))

@pytest.mark.parametrize("kind", POOL_LAYERS)
@pytest.mark.parametrize(
    "shape, k",
    [((2, 3, 8, 8), 2), ((1, 2, 7, 9), 2), ((2, 2, 9, 6), 3), ((1, 1, 6, 8), (3, 4)), ((2, 2, 5, 5), 5)],
)
def test_tiling_fast_path_equals_the_strided_slice_path(backend, monkeypatch, kind, shape, k):
    """stride == kernel without padding reshapes the input into windows; the strided-slice path must agree
    exactly (average pooling on JAX to rounding: XLA divides by multiplying with the reciprocal). That path
    runs on NumPy arrays on the host, from the same float32 values: on torch both calls would run PyTorch's
    own kernel, so on the session alone the two could not differ."""
    op = getattr(pool_ops, POOL_LAYERS[kind][1])
    op_backward = getattr(pool_ops, POOL_LAYERS[kind][1] + "_backward")
    assert pool_ops.pool_geometry(shape[2:], k).tiles_input
    x_np = (_tied(shape) if kind == "max" else _input(shape)).astype(np.float32)
    dy_np = _input(tuple(op(x_np, k).shape), seed=1).astype(np.float32)
    x, dy = xpcnn.asarray(x_np), xpcnn.asarray(dy_np)
    tiled = (op(x, k), op_backward(dy, x, k))
    monkeypatch.setattr(pool_ops.PoolGeometry, "tiles_input", property(lambda self: False))
    sliced = (op(x_np, k), op_backward(dy_np, x_np, k))
    rtol = 1e-6 if kind == "avg" and backend.name == "jax" else 0.0
    for a, b in zip(tiled, sliced):
        assert_on_device(a, backend)
        np.testing.assert_allclose(host(a), host(b), rtol=rtol, atol=0.0)


GLOBAL_LAYERS = {"avg": GlobalAvgPool2D, "max": GlobalMaxPool2D}
GLOBAL_SHAPES = [(2, 3, 4, 5), (1, 2, 1, 1), (2, 1, 7, 3)]


def _torch_global(kind: str):
    import torch.nn.functional as F

    op = F.adaptive_avg_pool2d if kind == "avg" else F.adaptive_max_pool2d
    return lambda x: op(x, 1).flatten(1)


@pytest.mark.parametrize("kind", GLOBAL_LAYERS)
@pytest.mark.parametrize("shape", GLOBAL_SHAPES)
def test_global_pool_numerical_gradients(backend64, kind, shape):
    check_numerical_gradients(GLOBAL_LAYERS[kind](), _distinct(shape))


@pytest.mark.parametrize("dtype_fixture", ["backend", "backend64"])
@pytest.mark.parametrize("data", [_input, _tied])
@pytest.mark.parametrize("kind", GLOBAL_LAYERS)
@pytest.mark.parametrize("shape", GLOBAL_SHAPES)
def test_global_pool_matches_torch(request, dtype_fixture, data, kind, shape):
    pytest.importorskip("torch")
    backend = request.getfixturevalue(dtype_fixture)
    assert_matches_torch(GLOBAL_LAYERS[kind](), data(shape), _torch_global(kind), rtol=rtol_for(backend))


def test_global_max_pool_gradient_goes_to_the_first_maximum(backend):
    x = np.zeros((1, 2, 2, 3))
    x[0, 1] = [[0.0, 2.0, 1.0], [2.0, 0.0, 2.0]]
    layer = GlobalMaxPool2D()
    layer.forward(xpcnn.asarray(x), training=True)
    dx = host(layer.backward(xpcnn.asarray(np.array([[3.0, 5.0]]))))
    expected = np.zeros_like(x)
    expected[0, 0, 0, 0] = 3.0
    expected[0, 1, 0, 1] = 5.0
    np.testing.assert_array_equal(dx, expected)


@pytest.mark.parametrize(
    "layer",
    [MaxPool2D(3, stride=2, padding=1), AvgPool2D(2, stride=1, padding=1), MaxPool2D(2), AvgPool2D(2),
     GlobalAvgPool2D(), GlobalMaxPool2D()],
    ids=repr,
)
def test_pool_layers_keep_everything_on_the_device(backend, layer):
    assert_forward_backward_on_device(layer, xpcnn.asarray(_tied((2, 3, 6, 7))), backend)


def test_pool_shapes_config_and_repr(backend):
    layer = MaxPool2D(2)
    assert layer.build((16, 28, 28)) == (16, 14, 14)
    assert layer.num_params == 0 and layer.params == {}
    assert repr(layer) == "MaxPool2D(kernel_size=(2, 2), stride=(2, 2), padding=(0, 0))"
    assert AvgPool2D(3, stride=2, padding=1).build((4, 7, 8)) == (4, 4, 4)
    assert MaxPool2D((3, 2), stride=(1, 2)).build((1, 5, 5)) == (1, 3, 2)
    assert GlobalAvgPool2D().build((8, 5, 3)) == (8,)
    assert repr(GlobalMaxPool2D()) == "GlobalMaxPool2D()"
    rebuilt = get_layer_class("AvgPool2D")(**AvgPool2D(3, 1, 1).get_config())
    assert rebuilt.get_config() == {"kernel_size": (3, 3), "stride": (1, 1), "padding": (1, 1)}
    y = MaxPool2D(2).forward(xpcnn.asarray(_input((3, 2, 5, 4))))
    assert tuple(y.shape) == (3, 2, 2, 2)


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: MaxPool2D(0), "MaxPool2D: kernel_size must be >= 1"),
        (lambda: AvgPool2D(2, stride=0), "AvgPool2D: stride must be >= 1"),
        (lambda: MaxPool2D(3, stride=(1, 0)), "stride must be >= 1"),
        (lambda: AvgPool2D(3, padding=-1), "AvgPool2D: padding must be >= 0"),
        (lambda: MaxPool2D(3, padding=2), r"MaxPool2D: padding \(2, 2\) must be at most half the kernel size"),
        (lambda: AvgPool2D((4, 2), padding=(2, 2)), "at most half the kernel size"),
        (lambda: MaxPool2D(2.5), "MaxPool2D: kernel_size must be an int or a pair"),
        (lambda: MaxPool2D(2, padding="full"), "padding must be an int or a pair"),
        (lambda: MaxPool2D(2, dilation=0), "MaxPool2D: dilation must be >= 1"),
        (lambda: MaxPool2D(2, ceil_mode=1), "MaxPool2D: ceil_mode must be True or False"),
        (lambda: AvgPool2D(2, count_include_pad=None), "AvgPool2D: count_include_pad must be True or False"),
        (lambda: AvgPool2D(2, dilation=2), "unexpected keyword argument 'dilation'"),
    ],
)
def test_constructor_rejects_bad_arguments(make, message):
    with pytest.raises((ValueError, TypeError), match=message):
        make()


@pytest.mark.parametrize("layer_class", [MaxPool2D, AvgPool2D])
def test_pool_rejects_bad_inputs_before_changing_state(backend, layer_class):
    name = layer_class.__name__
    layer = layer_class(3, stride=2)
    with pytest.raises(ValueError, match=rf"{name}: expected 4-D input .* got input of shape \(3, 8, 8\)"):
        layer.forward(xpcnn.asarray(_input((3, 8, 8))))
    with pytest.raises(
        ValueError, match=rf"{name}: kernel \(3, 3\) is larger than the padded input \(2, 4\) .*\(2, 4\)"
    ):
        layer.forward(xpcnn.asarray(_input((1, 1, 2, 4))))
    assert not layer.built
    layer.forward(xpcnn.asarray(_input((1, 1, 5, 5))))
    with pytest.raises(ValueError, match=rf"{name}: kernel \(3, 3\) is larger than the padded input \(5, 2\)"):
        layer.forward(xpcnn.asarray(_input((1, 1, 5, 2))))
    assert layer.output_shape == (1, 2, 2)


@pytest.mark.parametrize("layer_class", [GlobalAvgPool2D, GlobalMaxPool2D])
def test_global_pool_rejects_wrong_ndim(backend, layer_class):
    with pytest.raises(ValueError, match=rf"{layer_class.__name__}: expected 4-D input .* \(2, 3\)"):
        layer_class().forward(xpcnn.asarray(_input((2, 3))))


@pytest.mark.parametrize(
    "op", [pool_ops.max_pool2d, pool_ops.avg_pool2d, pool_ops.global_avg_pool2d, pool_ops.global_max_pool2d]
)
def test_ops_reject_non_images(backend, op):
    args = () if op.__name__.startswith("global") else (2,)
    with pytest.raises(ValueError, match=rf"{op.__name__}: input must be 4-D \(N, C, H, W\), got shape \(2, 5, 5\)"):
        op(xpcnn.asarray(_input((2, 5, 5))), *args)
