"""Conv2D and Conv2DTranspose: numerical gradients, PyTorch oracle, device discipline, errors."""

from __future__ import annotations

import numpy as np
import pytest

import xpcnn
from layer_checks import assert_matches_torch, assert_on_device, check_numerical_gradients, host, rtol_for
from xpcnn.layers.conv import Conv2D, Conv2DTranspose
from xpcnn.ops.windows import resolve_padding

# (batch, in_channels, H, W, out_channels, kernel, stride, padding, dilation, groups)
CONV_CASES = [
    pytest.param(2, 3, 7, 7, 4, 3, 1, 1, 1, 1, id="k3-s1-p1"),
    pytest.param(2, 2, 8, 6, 3, 2, 2, 0, 1, 1, id="even-kernel-s2-nonsquare"),
    pytest.param(1, 2, 9, 8, 2, (3, 2), 3, (2, 1), 1, 1, id="batch1-s3-rect"),
    pytest.param(2, 4, 9, 9, 6, 3, 1, 2, 2, 2, id="dilation2-groups2"),
    pytest.param(2, 3, 6, 7, 3, 3, 2, 1, 1, 3, id="depthwise"),
    pytest.param(2, 2, 7, 6, 3, 3, 1, "same", 1, 1, id="same-s1"),
    pytest.param(2, 2, 8, 7, 3, 4, 2, "same", 1, 1, id="same-s2-even-kernel"),
    pytest.param(1, 2, 9, 9, 2, 3, 3, "valid", 1, 1, id="valid-s3"),
]


def _input(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape)


def _torch_conv(stride, padding, dilation, groups, in_hw, kernel):
    import torch.nn.functional as F

    def forward(x, weight, bias):
        if isinstance(padding, str):
            top, bottom, left, right = resolve_padding(padding, in_hw, kernel, _pair(stride), _pair(dilation))
            return F.conv2d(F.pad(x, (left, right, top, bottom)), weight, bias, stride, 0, dilation, groups)
        return F.conv2d(x, weight, bias, stride, padding, dilation, groups)

    return forward


def _pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


@pytest.mark.parametrize("n, c, h, w, o, k, s, p, d, g", CONV_CASES)
def test_conv2d_numerical_gradients(backend64, n, c, h, w, o, k, s, p, d, g):
    layer = Conv2D(o, k, stride=s, padding=p, dilation=d, groups=g)
    check_numerical_gradients(layer, _input((n, c, h, w)))


@pytest.mark.parametrize("dtype_fixture", ["backend", "backend64"])
@pytest.mark.parametrize("n, c, h, w, o, k, s, p, d, g", CONV_CASES)
def test_conv2d_matches_torch(request, dtype_fixture, n, c, h, w, o, k, s, p, d, g):
    pytest.importorskip("torch")
    backend = request.getfixturevalue(dtype_fixture)
    layer = Conv2D(o, k, stride=s, padding=p, dilation=d, groups=g)
    layer.build((c, h, w))
    layer.params["bias"] = xpcnn.asarray(_input((o,), seed=3))  # zeros would hide bias mistakes
    forward = _torch_conv(s, p, d, g, (h, w), _pair(k))
    assert_matches_torch(layer, _input((n, c, h, w)), forward, rtol=rtol_for(backend))


# (batch, in_channels, H, W, out_channels, kernel, stride, padding, output_padding, dilation, groups)
TRANSPOSE_CASES = [
    pytest.param(2, 3, 4, 4, 2, 3, 1, 0, 0, 1, 1, id="k3-s1"),
    pytest.param(2, 2, 4, 5, 3, 3, 2, 1, 1, 1, 1, id="s2-p1-outpad1"),
    pytest.param(1, 4, 3, 3, 4, (2, 3), (2, 3), 0, (1, 2), 1, 2, id="rect-groups2"),
    pytest.param(2, 2, 4, 3, 2, 3, 1, 1, 0, 2, 1, id="dilation2"),
    pytest.param(2, 2, 3, 3, 4, 4, 2, 1, 0, 1, 1, id="even-kernel-upsample"),
]


@pytest.mark.parametrize("n, c, h, w, o, k, s, p, op, d, g", TRANSPOSE_CASES)
def test_conv2d_transpose_numerical_gradients(backend64, n, c, h, w, o, k, s, p, op, d, g):
    layer = Conv2DTranspose(o, k, stride=s, padding=p, output_padding=op, dilation=d, groups=g)
    check_numerical_gradients(layer, _input((n, c, h, w)))


@pytest.mark.parametrize("dtype_fixture", ["backend", "backend64"])
@pytest.mark.parametrize("n, c, h, w, o, k, s, p, op, d, g", TRANSPOSE_CASES)
def test_conv2d_transpose_matches_torch(request, dtype_fixture, n, c, h, w, o, k, s, p, op, d, g):
    pytest.importorskip("torch")
    import torch.nn.functional as F

    backend = request.getfixturevalue(dtype_fixture)
    layer = Conv2DTranspose(o, k, stride=s, padding=p, output_padding=op, dilation=d, groups=g)
    layer.build((c, h, w))
    layer.params["bias"] = xpcnn.asarray(_input((o,), seed=3))

    def forward(x, weight, bias):
        return F.conv_transpose2d(x, weight, bias, s, p, op, g, d)

    assert_matches_torch(layer, _input((n, c, h, w)), forward, rtol=rtol_for(backend))



# (batch, in_channels, H, W, out_channels, kernel, stride, dilation, groups) for padding="same"
SAME_TRANSPOSE_CASES = [
    pytest.param(2, 2, 3, 4, 3, 3, 2, 1, 1, id="k3-s2-asymmetric"),
    pytest.param(1, 2, 3, 3, 2, 4, 2, 1, 1, id="k4-s2-symmetric"),
    pytest.param(2, 2, 3, 2, 2, 1, 2, 1, 1, id="k1-s2-kernel-below-stride"),
    pytest.param(1, 4, 4, 3, 4, (3, 5), (1, 2), (2, 1), 2, id="rect-dilation-groups"),
]


def _torch_transpose_same(s, d, g, in_hw, k):
    """Keras's "same" transposed convolution: the full one, cropped where the "same" convolution it is the
    adjoint of would pad (zeros appended where the full output is shorter)."""
    import torch.nn.functional as F

    (sh, sw), (dh, dw), (kh, kw) = _pair(s), _pair(d), _pair(k)
    out_hw = (in_hw[0] * sh, in_hw[1] * sw)
    top = max((in_hw[0] - 1) * sh + (kh - 1) * dh + 1 - out_hw[0], 0) // 2
    left = max((in_hw[1] - 1) * sw + (kw - 1) * dw + 1 - out_hw[1], 0) // 2

    def forward(x, weight, bias):
        full = F.conv_transpose2d(x, weight, None, (sh, sw), 0, 0, g, (dh, dw))
        full = F.pad(full, (0, max(left + out_hw[1] - full.shape[3], 0), 0, max(top + out_hw[0] - full.shape[2], 0)))
        return full[:, :, top:top + out_hw[0], left:left + out_hw[1]] + bias[None, :, None, None]

    return forward


@pytest.mark.parametrize("n, c, h, w, o, k, s, d, g", SAME_TRANSPOSE_CASES)
def test_conv2d_transpose_same_numerical_gradients(backend64, n, c, h, w, o, k, s, d, g):
    check_numerical_gradients(Conv2DTranspose(o, k, stride=s, padding="same", dilation=d, groups=g),
                              _input((n, c, h, w)))


@pytest.mark.parametrize("dtype_fixture", ["backend", "backend64"])
@pytest.mark.parametrize("n, c, h, w, o, k, s, d, g", SAME_TRANSPOSE_CASES)
def test_conv2d_transpose_same_matches_torch(request, dtype_fixture, n, c, h, w, o, k, s, d, g):
    pytest.importorskip("torch")
    backend = request.getfixturevalue(dtype_fixture)
    layer = Conv2DTranspose(o, k, stride=s, padding="same", dilation=d, groups=g)
    assert layer.build((c, h, w)) == (o, h * _pair(s)[0], w * _pair(s)[1])
    layer.params["bias"] = xpcnn.asarray(_input((o,), seed=3))
    assert_matches_torch(layer, _input((n, c, h, w)), _torch_transpose_same(s, d, g, (h, w), k),
                         rtol=rtol_for(backend))


# (batch, in_channels, H, W, out_channels, kernel, stride, padding, dilation, padding_mode)
MODE_CASES = [
    pytest.param(2, 2, 5, 6, 3, 3, 1, 1, 1, "reflect", id="reflect-p1"),
    pytest.param(1, 2, 6, 5, 2, (5, 3), 1, (2, 1), 1, "replicate", id="replicate-rect"),
    pytest.param(2, 1, 5, 5, 2, 3, 2, 2, 1, "circular", id="circular-p2-s2"),
    pytest.param(1, 2, 7, 6, 2, 3, 1, "same", 1, "reflect", id="reflect-same"),
    pytest.param(1, 2, 6, 7, 3, 3, 1, 2, 2, "circular", id="circular-dilation2"),
    pytest.param(2, 2, 4, 4, 2, 3, 1, 1, 1, "zeros", id="zeros"),
]


@pytest.mark.parametrize("n, c, h, w, o, k, s, p, d, mode", MODE_CASES)
def test_conv2d_padding_modes_numerical_gradients(backend64, n, c, h, w, o, k, s, p, d, mode):
    check_numerical_gradients(Conv2D(o, k, stride=s, padding=p, dilation=d, padding_mode=mode), _input((n, c, h, w)))


@pytest.mark.parametrize("dtype_fixture", ["backend", "backend64"])
@pytest.mark.parametrize("n, c, h, w, o, k, s, p, d, mode", MODE_CASES)
def test_conv2d_padding_modes_match_torch(request, dtype_fixture, n, c, h, w, o, k, s, p, d, mode):
    torch = pytest.importorskip("torch")
    backend = request.getfixturevalue(dtype_fixture)
    layer = Conv2D(o, k, stride=s, padding=p, dilation=d, padding_mode=mode)
    layer.build((c, h, w))
    (ph, pw) = (1, 1) if p == "same" else _pair(p)  # "same" for a 3x3 kernel at stride 1
    reference = torch.nn.Conv2d(c, o, k, s, (ph, pw), d, padding_mode=mode).double()
    assert layer.get_config().get("padding_mode", "zeros") == mode

    def forward(x, weight, bias):
        return torch.func.functional_call(reference, {"weight": weight, "bias": bias}, (x,))

    assert_matches_torch(layer, _input((n, c, h, w)), forward, rtol=rtol_for(backend))


def test_conv2d_padding_mode_limits(backend):
    with pytest.raises(ValueError, match="padding_mode must be one of"):
        Conv2D(2, 3, padding=1, padding_mode="mirror")
    with pytest.raises(ValueError, match=r"Conv2D: reflect padding \(2, 2, 2, 2\) must be smaller than the input's "
                                         r"height and width \(2, 5\)"):
        Conv2D(2, 5, padding=2, padding_mode="reflect").forward(xpcnn.asarray(_input((1, 1, 2, 5))))

def test_conv_layers_keep_everything_on_the_device(backend):
    x = xpcnn.asarray(_input((2, 3, 8, 8)))
    for layer in (Conv2D(4, 3, padding="same"), Conv2DTranspose(3, 3, stride=2, padding=1, output_padding=1)):
        y = layer.forward(x, training=True)
        dx = layer.backward(backend.xp.ones_like(y))
        for array in (y, dx, *layer.params.values(), *layer.grads.values()):
            assert_on_device(array, backend)
            assert array.dtype == backend.dtype


def test_conv2d_shapes_params_and_repr(backend):
    layer = Conv2D(16, 5, padding="same")
    assert layer.build((1, 28, 28)) == (16, 28, 28)
    assert tuple(layer.params["weight"].shape) == (16, 1, 5, 5)
    assert tuple(layer.params["bias"].shape) == (16,)
    assert layer.num_params == 16 * 25 + 16
    assert layer.output_shape == (16, 28, 28)
    assert "Conv2D(out_channels=16, kernel_size=(5, 5)" in repr(layer)
    strided = Conv2D(4, 3, stride=2, padding="same", bias=False)
    assert strided.build((2, 7, 8)) == (4, 4, 4)
    assert "bias" not in strided.params
    transpose = Conv2DTranspose(8, 3, stride=2, padding=1, output_padding=1)
    assert transpose.build((4, 5, 6)) == (8, 10, 12)
    assert tuple(transpose.params["weight"].shape) == (4, 8, 3, 3)


def test_same_padding_puts_the_odd_pixel_last():
    assert resolve_padding("same", (8, 7), (4, 4), (2, 2), (1, 1)) == (1, 1, 1, 2)
    assert resolve_padding("same", (7, 7), (2, 2), (1, 1), (1, 1)) == (0, 1, 0, 1)


def test_same_seed_same_initial_weights(backend):
    xpcnn.manual_seed(42)
    first = xpcnn.to_numpy(_built(Conv2D(3, 3)))
    xpcnn.manual_seed(42)
    second = xpcnn.to_numpy(_built(Conv2D(3, 3)))
    np.testing.assert_array_equal(first, second)


def _built(layer: Conv2D):
    layer.build((2, 5, 5))
    return layer.params["weight"]


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: Conv2D(0, 3), "Conv2D: out_channels must be an integer >= 1, got 0"),
        (lambda: Conv2D(2, 3, groups=1.0), "Conv2D: groups must be an integer, got float 1.0"),
        (lambda: Conv2D(4, 0), "kernel_size must be >= 1"),
        (lambda: Conv2D(4, 3, stride=0), "stride must be >= 1"),
        (lambda: Conv2D(4, 3, dilation=(1, 0)), "dilation must be >= 1"),
        (lambda: Conv2D(4, 3, padding=-1), "padding must be >= 0"),
        (lambda: Conv2D(4, 3, padding="full"), "padding must be"),
        (lambda: Conv2D(4, 3, groups=3), "groups=3 does not divide out_channels=4"),
        (lambda: Conv2D(4, 2.5), "kernel_size must be an int or a pair"),
        (lambda: Conv2DTranspose(4, 3, stride=2, output_padding=2), "output_padding"),
        (lambda: Conv2DTranspose(4, 3, padding="full"), "padding must be"),
        (lambda: Conv2DTranspose(4, 3, stride=2, padding="same", output_padding=1),
         "output_padding \\(1, 1\\) does not apply with padding='same'"),
    ],
)
def test_constructor_rejects_bad_arguments(make, message):
    with pytest.raises((ValueError, TypeError), match=message):
        make()


def test_conv2d_rejects_bad_inputs_before_changing_state(backend):
    layer = Conv2D(4, 3)
    with pytest.raises(ValueError, match=r"Conv2D: expected 4-D input .* got input of shape \(3, 8, 8\)"):
        layer.forward(xpcnn.asarray(_input((3, 8, 8))))
    assert not layer.built
    layer.forward(xpcnn.asarray(_input((2, 3, 8, 8))))
    weight = layer.params["weight"]
    with pytest.raises(ValueError, match="built for 3 input channels, got input with 5"):
        layer.forward(xpcnn.asarray(_input((2, 5, 8, 8))))
    with pytest.raises(ValueError, match=r"kernel \(3, 3\) .* larger than the padded input \(2, 2\)"):
        layer.forward(xpcnn.asarray(_input((2, 3, 2, 2))))
    assert layer.params["weight"] is weight
    grouped = Conv2D(4, 3, groups=2)
    with pytest.raises(ValueError, match="groups=2 does not divide the 3 input channels"):
        grouped.forward(xpcnn.asarray(_input((1, 3, 5, 5))))


def test_backward_needs_a_training_forward_and_matching_gradient(backend):
    layer = Conv2D(2, 3)
    x = xpcnn.asarray(_input((1, 1, 5, 5)))
    layer.forward(x)
    with pytest.raises(RuntimeError, match="forward\\(x, training=True\\) first"):
        layer.backward(xpcnn.asarray(np.ones((1, 2, 3, 3))))
    layer.forward(x, training=True)
    with pytest.raises(ValueError, match=r"output gradient has shape \(1, 2, 4, 4\).*\(1, 2, 3, 3\)"):
        layer.backward(xpcnn.asarray(np.ones((1, 2, 4, 4))))


def test_conv2d_saved_input_and_skipped_input_gradient_change_nothing_else(backend):
    from xpcnn.ops import conv as conv_ops

    rng = np.random.default_rng(4)
    x = xpcnn.asarray(rng.standard_normal((3, 2, 7, 6)))
    w = xpcnn.asarray(rng.standard_normal((4, 2, 3, 3)))
    b = xpcnn.asarray(rng.standard_normal(4))
    args = {"stride": 1, "padding": "same"}
    plain_y = conv_ops.conv2d(x, w, b, **args)
    dy = xpcnn.asarray(rng.standard_normal(tuple(plain_y.shape)))
    plain = conv_ops.conv2d_backward(dy, x, w, **args)
    y, saved = conv_ops.conv2d(x, w, b, **args, return_saved=True)
    np.testing.assert_array_equal(host(y), host(plain_y))
    from xpcnn.ops import _native

    native = _native.kernels(backend.xp) is not None  # JAX's own kernels need nothing saved
    assert (saved is None) == native, "the generic forward hands over the padded input for the backward"
    for got, want in zip(conv_ops.conv2d_backward(dy, x, w, **args, saved=saved), plain):
        np.testing.assert_array_equal(host(got), host(want))
    dx, dw, db = conv_ops.conv2d_backward(dy, x, w, **args, input_grad=False)
    assert dx is None
    np.testing.assert_array_equal(host(dw), host(plain[1]))
    np.testing.assert_array_equal(host(db), host(plain[2]))

    layer = Conv2D(4, 3, padding="same")
    layer.forward(x, training=True)
    full = host(layer.backward(dy))
    grads = {k: host(v) for k, v in layer.grads.items()}
    layer.input_grad = False  # e.g. a model's first layer: nobody reads its input gradient
    layer.forward(x, training=True)
    assert layer.backward(dy) is None and full.shape == (3, 2, 7, 6)
    for k, v in layer.grads.items():
        np.testing.assert_array_equal(host(v), grads[k])
