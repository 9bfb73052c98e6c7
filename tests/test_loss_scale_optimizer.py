"""``LossScaleOptimizer`` step by step against ``torch.amp.GradScaler`` around the same torch optimizer: the
parameters, the optimizer's buffers and the scale after every step, through overflowing steps (inf, NaN:
skipped, the scale halved, the inner step count kept) and growth after ``dynamic_growth_steps`` good steps;
its state through ``state_dict``, model files and ``get``; clear errors. The optimizer is dtype-blind (it
unscales float32 gradients), so it runs on every backend session, array-api-strict included."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

import xpcnn
from xpcnn.optimizers import SGD, Adam, LossScaleOptimizer, get

torch = pytest.importorskip("torch")

SHAPES = {"0.weight": (4, 3, 2, 2), "0.bias": (4,), "2.weight": (5, 6)}
#: per step, which gradient entry overflows (None: a good step); with growth every 3 good steps
OVERFLOWS = [None, ("0.bias", math.inf), None, None, None, None, ("2.weight", math.nan), None, None, None]
GROWTH = 3
INITIAL = 2.0**15


def _grads(rng: np.random.Generator) -> dict[str, np.ndarray]:
    return {key: (1e-3 * rng.standard_normal(shape)).astype(np.float32) for key, shape in SHAPES.items()}


def _scaled(grads: dict[str, np.ndarray], scale: float, overflow: tuple[str, float] | None) -> dict:
    out = {key: g * np.float32(scale) for key, g in grads.items()}
    if overflow is not None:
        key, value = overflow
        out[key] = out[key].copy()
        out[key].flat[1] = value
    return out


def _torch_run(make_opt, params: dict, grads: list[dict]) -> list[tuple[dict, float]]:
    """torch's optimizer under a GradScaler: after each step, the parameters and the scale."""
    tensors = {key: torch.tensor(value, requires_grad=True) for key, value in params.items()}
    opt = make_opt(list(tensors.values()))
    scaler = torch.amp.GradScaler("cpu", init_scale=INITIAL, growth_interval=GROWTH)
    scaler.scale(torch.zeros(()))  # initialises the scale and the growth tracker
    out = []
    for step_grads, overflow in zip(grads, OVERFLOWS):
        scaled = _scaled(step_grads, scaler.get_scale(), overflow)
        for key, t in tensors.items():
            t.grad = torch.tensor(scaled[key])
        scaler.step(opt)
        scaler.update()
        out.append(({k: t.detach().numpy().copy() for k, t in tensors.items()}, scaler.get_scale()))
    return out


@pytest.mark.parametrize("kind", ["adam", "sgd_momentum"])
def test_steps_match_torch_grad_scaler(backend, kind):
    rng = np.random.default_rng(0)
    params = {key: rng.standard_normal(shape).astype(np.float32) for key, shape in SHAPES.items()}
    grads = [_grads(rng) for _ in OVERFLOWS]
    if kind == "adam":
        ours = LossScaleOptimizer(Adam(lr=0.01), initial_scale=INITIAL, dynamic_growth_steps=GROWTH)
        expected = _torch_run(lambda p: torch.optim.Adam(p, lr=0.01), params, grads)
    else:
        ours = LossScaleOptimizer(SGD(lr=0.1, momentum=0.9), initial_scale=INITIAL, dynamic_growth_steps=GROWTH)
        expected = _torch_run(lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9), params, grads)
    current = {key: xpcnn.asarray(value) for key, value in params.items()}
    scale = INITIAL
    for i, (step_grads, overflow, (torch_params, torch_scale)) in enumerate(zip(grads, OVERFLOWS, expected)):
        scaled = {key: xpcnn.asarray(g) for key, g in _scaled(step_grads, scale, overflow).items()}
        current = ours.step(current, scaled)
        scale = float(xpcnn.to_numpy(ours.dynamic_scale))
        assert scale == torch_scale, f"step {i}"
        for key in SHAPES:
            got = xpcnn.to_numpy(current[key])
            assert np.all(np.isfinite(got)), f"step {i}: {key} took the overflowed update"
            np.testing.assert_allclose(got, torch_params[key], rtol=1e-5, atol=1e-6, err_msg=f"step {i} {key}")
    # two skipped steps, and the scale moved: halved twice, doubled after each run of 3 good steps
    skipped = float(xpcnn.to_numpy(ours.state["loss_scale"]["skipped"]))
    assert skipped == 2.0
    assert scale == INITIAL * 2 ** (2 - 2)  # good runs: steps 3-5 (x2), 8-10 (x2); halved at steps 2 and 7
    assert ours.iterations == len(OVERFLOWS)


def test_a_skipped_step_changes_nothing(backend):
    """Parameters and buffers stay bit-identical through an overflowing step, the first one included (the
    inner optimizer's buffers are still zeros)."""
    params = {"0.weight": xpcnn.asarray(np.arange(6, dtype=np.float32).reshape(2, 3))}
    opt = LossScaleOptimizer(Adam(lr=0.1), initial_scale=8.0)
    before = xpcnn.to_numpy(params["0.weight"]).copy()
    bad = np.ones((2, 3), np.float32)
    bad[0, 0] = np.inf
    params = opt.step(params, {"0.weight": xpcnn.asarray(bad)})
    np.testing.assert_array_equal(xpcnn.to_numpy(params["0.weight"]), before)
    for name in ("exp_avg", "exp_avg_sq"):
        np.testing.assert_array_equal(xpcnn.to_numpy(opt.state["0.weight"][name]), np.zeros((2, 3)))
    assert float(xpcnn.to_numpy(opt.dynamic_scale)) == 4.0
    # the next good step is the inner optimizer's first: Adam's first step moves each weight by lr
    params = opt.step(params, {"0.weight": xpcnn.asarray(np.full((2, 3), 4.0, np.float32))})
    np.testing.assert_allclose(xpcnn.to_numpy(params["0.weight"]), before - 0.1, atol=1e-6)


def test_state_dict_round_trip_continues_identically(backend):
    rng = np.random.default_rng(3)
    params = {key: xpcnn.asarray(rng.standard_normal(shape).astype(np.float32)) for key, shape in SHAPES.items()}
    grads = [_grads(rng) for _ in OVERFLOWS]
    a = LossScaleOptimizer(Adam(lr=0.01), dynamic_growth_steps=GROWTH)
    pa = dict(params)
    for i in range(4):
        pa = a.step(pa, {k: xpcnn.asarray(v) for k, v in _scaled(grads[i], 2.0**15, OVERFLOWS[i]).items()})
    state = a.state_dict()
    state = {**state, "state": {k: {n: xpcnn.to_numpy(v) for n, v in s.items()} for k, s in state["state"].items()}}
    b = get(json.loads(json.dumps(a.get_config())))
    assert isinstance(b, LossScaleOptimizer) and isinstance(b.inner_optimizer, Adam)
    b.load_state_dict(state, params=pa)
    pb = {k: xpcnn.asarray(xpcnn.to_numpy(v)) for k, v in pa.items()}
    for i in range(4, len(OVERFLOWS)):
        scale = float(xpcnn.to_numpy(a.dynamic_scale))
        assert float(xpcnn.to_numpy(b.dynamic_scale)) == scale
        step = {k: _scaled(grads[i], scale, OVERFLOWS[i])[k] for k in SHAPES}
        pa = a.step(pa, {k: xpcnn.asarray(v) for k, v in step.items()})
        pb = b.step(pb, {k: xpcnn.asarray(v) for k, v in step.items()})
    for key in SHAPES:
        np.testing.assert_array_equal(xpcnn.to_numpy(pa[key]), xpcnn.to_numpy(pb[key]))


def test_the_learning_rate_is_the_inner_optimizers(backend):
    opt = LossScaleOptimizer("adam")
    opt.lr = 0.25  # what schedules do
    assert opt.inner_optimizer.lr == 0.25 and opt.lr == 0.25
    assert opt.get_config() == {"name": "loss_scale", "inner_optimizer": Adam(lr=0.25).get_config(),
                                "initial_scale": 2.0**15, "dynamic_growth_steps": 2000}


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"inner_optimizer": "adam", "initial_scale": 0.5}, "initial_scale must be a number in"),
    ({"inner_optimizer": "adam", "initial_scale": "big"}, "initial_scale must be a number in"),
    ({"inner_optimizer": "adam", "dynamic_growth_steps": 0}, "dynamic_growth_steps must be an int >= 1"),
    ({"inner_optimizer": "adam", "dynamic_growth_steps": 2.5}, "dynamic_growth_steps must be an int >= 1"),
    ({"inner_optimizer": LossScaleOptimizer("sgd")}, "already a LossScaleOptimizer"),
    ({"inner_optimizer": "adagrad"}, "unknown optimizer 'adagrad'"),
])
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        LossScaleOptimizer(**kwargs)


def test_a_bad_loss_scale_entry_is_refused_before_anything_changes(backend):
    opt = LossScaleOptimizer("sgd")
    params = {"0.weight": xpcnn.asarray(np.ones((2,), np.float32))}
    opt.step(params, {"0.weight": xpcnn.asarray(np.ones((2,), np.float32))})
    state = opt.state_dict()
    bad = {**state, "state": {**state["state"], "loss_scale": {"scale": np.ones(2, np.float32)}}}
    with pytest.raises(ValueError, match="'loss_scale' entry must hold"):
        opt.load_state_dict(bad)
    assert opt.iterations == 1 and set(opt.state) == {"0.weight", "loss_scale"}
