"""Optimizer behaviours that mutation testing (``nox -s mutation``) found unchecked: AdamW's defaults, the
inclusive ends of the hyper-parameter ranges, errors that name the optimizer, in-place writes of parameters and
buffers by every optimizer, ``apply`` with 0-d array steps and learning rate (what a compiled step passes),
``init_state``, and ``load_state_dict`` casting buffers to the parameters' dtype."""

from __future__ import annotations

import array_api_compat
import numpy as np
import pytest

import xpcnn
from layer_checks import host
from xpcnn.optimizers import SGD, Adam, AdamW, RMSprop, get

KINDS = [
    (SGD, {"lr": 0.1, "momentum": 0.9}),
    (Adam, {"lr": 0.1, "amsgrad": True}),
    (AdamW, {"lr": 0.1, "weight_decay": 0.1}),
    (RMSprop, {"lr": 0.01, "momentum": 0.5, "centered": True}),
]


def _host_steps(steps: int = 3) -> tuple[dict, list[dict]]:
    rng = np.random.default_rng(4)
    params = {"w": rng.standard_normal((3, 2)), "b": rng.standard_normal(3)}
    return params, [{k: rng.standard_normal(v.shape) for k, v in params.items()} for _ in range(steps)]


def _on_backend(values: dict, dtype=None) -> dict:
    return {k: xpcnn.asarray(np.array(v), dtype=dtype) for k, v in values.items()}


def test_adamw_defaults_are_torchs():
    assert AdamW().get_config() == {"name": "adamw", "lr": 1e-3, "betas": [0.9, 0.999], "eps": 1e-8,
                                    "weight_decay": 0.01, "amsgrad": False, "use_ema": False, "ema_momentum": 0.99}


def test_range_ends_that_torch_allows_are_allowed():
    assert SGD(lr=0.0).lr == 0.0
    assert Adam(betas=(0.0, 0.0)).betas == (0.0, 0.0)
    assert RMSprop(alpha=0.0).alpha == 0.0
    assert SGD(use_ema=True, ema_momentum=0.0).ema_momentum == 0.0
    with pytest.raises(ValueError, match=r"RMSprop: alpha must be in \[0, 1\), got 1.0"):
        RMSprop(alpha=1.0)
    with pytest.raises(ValueError, match="RMSprop: eps must be > 0, got 0.0"):
        RMSprop(eps=0.0)


def test_errors_name_the_optimizer():
    with pytest.raises(ValueError, match=r"^AdamW: betas must be two numbers in \[0, 1\), got \(1.0, 0.5\)"):
        AdamW(betas=(1.0, 0.5))
    with pytest.raises(ValueError, match="^RMSprop: lr must be >= 0, got -1"):
        RMSprop(lr=-1)
    with pytest.raises(ValueError, match="^SGD: nesterov=True needs momentum > 0$"):
        SGD(nesterov=True)
    with pytest.raises(ValueError, match="^get: keyword arguments apply to an optimizer name, not to an instance$"):
        get(SGD(), lr=0.1)
    with pytest.raises(ValueError, match="unknown optimizer None"):
        get({"lr": 0.1})
    with pytest.raises(ValueError, match="unknown optimizer 3"):
        get(3)
    state = Adam().state_dict()
    with pytest.raises(ValueError, match=r"^SGD.load_state_dict: the state is for optimizer 'adam', not 'sgd'"):
        SGD().load_state_dict(state)
    state["config"].pop("name")
    with pytest.raises(ValueError, match="^Adam.load_state_dict: the state is for optimizer None, not 'adam'"):
        Adam().load_state_dict(state)


@pytest.mark.parametrize(("kind", "kwargs"), KINDS, ids=lambda v: getattr(v, "__name__", ""))
def test_every_optimizer_writes_parameters_and_buffers_in_place_where_arrays_are_writeable(backend, kind, kwargs):
    """The module's contract (only JAX is functional): whoever holds a parameter or a buffer sees the update."""
    params, grads = _host_steps()
    params = _on_backend(params)
    opt = kind(**kwargs)
    out = opt.step(params, _on_backend(grads[0]))
    buffers = {k: dict(slots) for k, slots in opt.state.items()}
    out = opt.step(out, _on_backend(grads[1]))
    if not array_api_compat.is_writeable_array(params["w"]):
        return
    for key, p in params.items():
        assert out[key] is p
        for name, buffer in buffers[key].items():
            assert opt.state[key][name] is buffer, (key, name)


@pytest.mark.parametrize(("kind", "kwargs"), KINDS, ids=lambda v: getattr(v, "__name__", ""))
def test_apply_with_0d_array_steps_and_lr_matches_step(backend, kind, kwargs):
    """Under ``jax.jit`` the step numbers and the learning rate arrive as 0-d arrays; eagerly the same update."""
    host_params, grads = _host_steps()
    stepped, opt = _on_backend(host_params), kind(**kwargs)
    for g in grads:
        stepped = opt.step(stepped, _on_backend(g))
    applied, functional = _on_backend(host_params), kind(**kwargs)
    state = functional.init_state(applied)
    lr = xpcnn.asarray(np.array(kwargs["lr"]))
    for i, g in enumerate(grads, start=1):
        steps = {k: xpcnn.asarray(np.array(float(i))) for k in applied}
        applied, state = functional.apply(applied, _on_backend(g), state, steps, lr)
    for key in host_params:
        np.testing.assert_allclose(host(applied[key]), host(stepped[key]), rtol=2e-5, atol=1e-6)


def test_init_state_adds_zero_buffers_for_new_parameters_and_keeps_the_others(backend):
    params = _on_backend(_host_steps()[0])
    opt = Adam(amsgrad=True)
    opt.step({"w": params["w"]}, {"w": xpcnn.asarray(np.ones((3, 2)))})
    kept = opt.state["w"]
    state = opt.init_state(params)
    assert state["w"] is kept and opt.state == {"w": kept}
    assert sorted(state["b"]) == ["exp_avg", "exp_avg_sq", "max_exp_avg_sq"]
    for buffer in state["b"].values():
        assert buffer.dtype == params["b"].dtype and array_api_compat.device(buffer) == backend.device
        np.testing.assert_array_equal(host(buffer), np.zeros(3))


def test_loaded_buffers_take_the_parameters_dtype(backend64):
    """A state saved in float64 loads into a float32 model with float32 buffers (the docstring's promise)."""
    host_params, grads = _host_steps()
    source = Adam(lr=0.1)
    source.step(_on_backend(host_params), _on_backend(grads[0]))
    state = source.state_dict()
    params32 = _on_backend(host_params, dtype="float32")
    target = Adam(lr=0.1)
    target.load_state_dict(state, params=params32)
    for key, slots in target.state.items():
        for name, buffer in slots.items():
            assert buffer.dtype == params32[key].dtype, (key, name)
            np.testing.assert_allclose(host(buffer), host(source.state[key][name]), rtol=1e-6)


def test_state_of_sgd_without_momentum_loads_without_params(backend):
    """Plain SGD keeps no buffers: its state has empty entries, which load with nothing to compare shapes to."""
    params, grads = _host_steps()
    source = SGD(lr=0.1)
    source.step(_on_backend(params), _on_backend(grads[0]))
    target = SGD(lr=0.1)
    target.load_state_dict(source.state_dict())
    assert target.state == {"w": {}, "b": {}} and target.iterations == 1
