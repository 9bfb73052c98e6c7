"""ReLU + MaxPool2D run as one step by Sequential: identical outputs and gradients to the layers one by one."""

from __future__ import annotations

import numpy as np
import pytest

import xpcnn
from layer_checks import assert_on_device, host
from xpcnn.layers import Conv2D, Dense, Flatten, LeakyReLU, MaxPool2D, ReLU
from xpcnn.layers.fusion import fuse
from xpcnn.model import Sequential


def _layers() -> list:
    return [
        Conv2D(4, 3, padding="same"), ReLU(), MaxPool2D(2),                  # 2x2 tiles
        Conv2D(5, 3, padding="same"), ReLU(), MaxPool2D(3, 2, padding=1),    # overlapping, padded windows
        Conv2D(3, 1), LeakyReLU(0.1), MaxPool2D(2),                          # not a ReLU: not fused
        Flatten(), Dense(6),
    ]


def test_fuse_merges_exactly_relu_then_max_pool():
    layers = _layers()
    steps = fuse(layers)
    assert len(steps) == len(layers) - 2
    assert steps[0] is layers[0] and steps[2] is layers[3] and steps[4:] == layers[6:]
    assert steps[1].pool is layers[2] and steps[3].pool is layers[5]
    assert fuse([MaxPool2D(2), ReLU()])[1].__class__ is ReLU  # the other order stays as it is


def test_fused_model_equals_the_layers_one_by_one(backend64):
    xpcnn.manual_seed(0)
    model = Sequential(_layers(), input_shape=(2, 9, 8))
    rng = np.random.default_rng(1)
    values = rng.standard_normal((3, 2, 9, 8))
    values[0, :, :4, :4] = -np.abs(values[0, :, :4, :4])  # whole windows negative: the ReLU kills their gradient
    values[1, :, 4:, 4:] = 0.0  # ties at zero
    x = xpcnn.asarray(values)
    dy = xpcnn.asarray(rng.standard_normal((3, 6)))

    y_plain = x
    for layer in model.layers:
        y_plain = layer.forward(y_plain, training=True)
    dx_plain = dy
    for layer in reversed(model.layers):
        dx_plain = layer.backward(dx_plain)
    grads_plain = {k: host(v) for k, v in model.grads.items()}

    y = model.forward(x, training=True)
    dx = model.backward(dy)
    assert_on_device(y, backend64)
    assert_on_device(dx, backend64)
    np.testing.assert_array_equal(host(y), host(y_plain))
    np.testing.assert_array_equal(host(dx), host(dx_plain))
    for key, value in model.grads.items():
        np.testing.assert_array_equal(host(value), grads_plain[key], err_msg=key)
    np.testing.assert_array_equal(host(model.forward(x)), host(y_plain))  # inference runs fused too


def test_fused_step_checks_the_gradient_it_gets(backend):
    model = Sequential([ReLU(), MaxPool2D(2)], input_shape=(1, 4, 4))
    with pytest.raises(RuntimeError, match="needs a forward"):
        model.backward(xpcnn.asarray(np.ones((1, 1, 2, 2), dtype=np.float32)))
    model.forward(xpcnn.asarray(np.ones((1, 1, 4, 4), dtype=np.float32)), training=True)
    with pytest.raises(ValueError, match=r"output gradient has shape \(1, 1, 3, 3\).*\(1, 1, 2, 2\)"):
        model.backward(xpcnn.asarray(np.ones((1, 1, 3, 3), dtype=np.float32)))


# --- in inference, activations and Add write into an input the executor hands over ---------------------


def _in_place_model():
    """A graph where some steps may overwrite their input and others must not: BN -> ReLU (donated), a BN
    output read twice (not donated), Add into a fresh BN output, then ReLU of the Add, a Dropout's output
    (its input itself in inference: not fresh) into Hardswish, a Dense -> ReLU6 head, and a model output
    that is also read by a later step."""
    from xpcnn.layers import Add, BatchNorm2D, Dropout, GlobalAvgPool2D, Hardsigmoid, Hardswish, Input, ReLU6
    from xpcnn.model import Model

    inputs = Input((3, 6, 5))
    a = BatchNorm2D(name="bn_a")(Conv2D(4, 3, padding="same", name="conv_a")(inputs))
    relu_a = ReLU(name="relu_a")(a)                                   # donated: a is fresh, read once
    b = BatchNorm2D(name="bn_b")(Conv2D(4, 1, name="conv_b")(relu_a))
    twice = Hardsigmoid(name="gate")(b)                               # b is read twice: not donated
    added = Add(name="add")([BatchNorm2D(name="bn_c")(Conv2D(4, 1, name="conv_c")(twice)), b])
    relu_add = ReLU(name="relu_add")(added)                           # donated: an Add's output
    dropped = Hardswish(name="hswish")(Dropout(0.5, name="drop")(relu_add))  # Dropout: not fresh
    head = ReLU6(name="relu6")(Dense(3, name="fc")(GlobalAvgPool2D(name="gap")(dropped)))
    return Model(inputs, [head, added], name="in_place")


def test_in_place_steps_are_where_the_input_is_a_fresh_array_read_once(backend):
    model = _in_place_model()
    donated = {step.layers[0].name: step.donated for step in model.plan.steps if step.in_place is not None}
    # 'add' is a model output: its reader relu_add may not write into it
    assert donated == {"relu_a": 0, "add": 0, "relu6": 0}


def test_in_place_inference_equals_the_layers_one_by_one(backend64):
    """Outputs equal a forward with nothing written in place, bit for bit; the caller's input, the model's
    outputs and a tensor asked for by ``values_of`` are left as they are."""
    xpcnn.manual_seed(0)
    model = _in_place_model()
    rng = np.random.default_rng(3)
    for layer in model.layers:  # running statistics that are not 0 and 1
        for key in ("running_mean", "running_var"):
            if key in layer.buffers:
                layer.buffers[key] = xpcnn.asarray(rng.uniform(0.5, 1.5, layer.buffers[key].shape))
    values = rng.standard_normal((2, 3, 6, 5))
    x = xpcnn.asarray(values)
    in_place = [step.in_place for step in model.plan.steps]
    for step in model.plan.steps:
        step.in_place = None
    plain = [host(y) for y in model.forward(x)]
    for step, run in zip(model.plan.steps, in_place):
        step.in_place = run
    got = model.forward(x)
    assert_on_device(got[0], backend64)
    for y, expected in zip(got, plain):
        np.testing.assert_array_equal(host(y), expected)
    np.testing.assert_array_equal(host(x), values)
    bn_a = next(step.output for step in model.plan.steps if step.layers[0].name == "bn_a")
    kept, _ = model.values_of(x, [bn_a, model.plan.outputs[0]])
    steps = {step.layers[0].name: step for step in model.plan.steps}
    reference = steps["bn_a"].runner.forward(steps["conv_a"].runner.forward(x))
    np.testing.assert_array_equal(host(kept), host(reference))  # asked for: not overwritten by relu_a
    y = model.forward(x, training=True)  # training writes nothing in place (the layers keep their inputs)
    model.backward([xpcnn.asarray(np.ones(tuple(y[0].shape))), xpcnn.asarray(np.ones(tuple(y[1].shape)))])
    np.testing.assert_array_equal(host(x), values)


def test_in_place_gives_way_to_a_layer_that_does_more_than_its_op(backend):
    from xpcnn.layers import Add
    from xpcnn.layers.fusion import in_place

    assert in_place(MaxPool2D(2), 0) is None and in_place(LeakyReLU(0.1), 0) is None
    relu = ReLU()
    assert in_place(relu, 0)(xpcnn.asarray(np.ones((1, 2), dtype=np.float32))) is None  # not built yet
    add = Add()
    add.build([(2, 3), (2, 1)])
    run = in_place(add, 0)
    full, column = (xpcnn.asarray(np.ones(s, dtype=np.float32)) for s in ((1, 2, 3), (1, 2, 1)))
    assert run([full, column]) is None  # shapes differ: the layer broadcasts, out of place
