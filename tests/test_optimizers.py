"""Optimizers against ``torch.optim`` (float64 to 1e-10, float32 to 1e-5), with their state on the device,
state_dict round trips, learning-rate changes, missing gradients and clear errors."""

from __future__ import annotations

import json

import array_api_compat
import array_api_extra as xpx
import numpy as np
import pytest

import xpcnn
from xpcnn.optimizers import SGD, Adam, AdamW, RMSprop, get

torch = pytest.importorskip("torch")

SHAPES = {"0.weight": (4, 3, 2, 2), "0.bias": (4,), "2.weight": (5, 6)}
STEPS = 5
CASES = [
    ("sgd", {"lr": 0.1}),
    ("sgd", {"lr": 0.1, "momentum": 0.9}),
    ("sgd", {"lr": 0.1, "momentum": 0.9, "nesterov": True, "weight_decay": 0.1}),
    ("sgd", {"lr": 0.05, "momentum": 0.5, "weight_decay": 0.01}),
    ("adam", {"lr": 0.1}),
    ("adam", {"lr": 0.1, "weight_decay": 0.1}),
    ("adam", {"lr": 0.1, "betas": (0.8, 0.99), "eps": 1e-6, "amsgrad": True}),
    ("adamw", {"lr": 0.1}),
    ("adamw", {"lr": 0.1, "weight_decay": 0.5, "amsgrad": True}),
    ("rmsprop", {"lr": 0.01}),
    ("rmsprop", {"lr": 0.01, "momentum": 0.9, "weight_decay": 0.1}),
    ("rmsprop", {"lr": 0.01, "alpha": 0.9, "centered": True}),
    ("rmsprop", {"lr": 0.01, "momentum": 0.5, "centered": True, "eps": 1e-4}),
]
TORCH = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam, "adamw": torch.optim.AdamW,
         "rmsprop": torch.optim.RMSprop}
LRS = [0.1, 0.02, 0.3, 0.0, 0.05]


def host_data(missing: dict[int, str] | None = None) -> tuple[dict, list[dict]]:
    """Initial parameters and one gradient dict per step (float64, NumPy); ``missing`` drops a key at a step."""
    rng = np.random.default_rng(1)
    params = {key: rng.standard_normal(shape) for key, shape in SHAPES.items()}
    grads = [{key: rng.standard_normal(shape) for key, shape in SHAPES.items()} for _ in range(STEPS)]
    for step, key in (missing or {}).items():
        del grads[step][key]
    return params, grads


def torch_reference(name: str, kwargs: dict, params: dict, grads: list[dict], lrs: list[float] | None = None):
    """torch.optim on float64 tensors: the parameters and buffers after all steps, as NumPy."""
    tensors = {key: torch.tensor(value, requires_grad=True) for key, value in params.items()}
    opt = TORCH[name](list(tensors.values()), **kwargs)
    for i, step_grads in enumerate(grads):
        if lrs is not None:
            opt.param_groups[0]["lr"] = lrs[i]
        for key, t in tensors.items():
            t.grad = torch.tensor(step_grads[key]) if key in step_grads else None
        opt.step()
    state = {key: {n: v.numpy() for n, v in opt.state[t].items() if n != "step" and v is not None}
             for key, t in tensors.items() if t in opt.state}
    return {key: t.detach().numpy() for key, t in tensors.items()}, state


def on_backend(host: dict) -> dict:
    """Fresh backend copies: in-place updates must never reach the host data (NumPy shares memory)."""
    return {key: xpcnn.asarray(np.array(value)) for key, value in host.items()}


def run(opt, params: dict, grads: list[dict], lrs: list[float] | None = None) -> dict:
    """``opt`` over the steps from backend ``params``; the gradients come from the host."""
    for i, step_grads in enumerate(grads):
        if lrs is not None:
            opt.lr = lrs[i]
        params = opt.step(params, {key: xpcnn.asarray(g) for key, g in step_grads.items()})
    return params


def assert_close(actual: dict, expected: dict, tol: float) -> None:
    assert actual.keys() == expected.keys()
    for key, want in expected.items():
        np.testing.assert_allclose(xpcnn.to_numpy(actual[key]), want, rtol=tol, atol=tol * np.abs(want).max(),
                                   err_msg=key)


def check_against_torch(backend, name, kwargs, tol, missing=None, lrs=None) -> None:
    params, grads = host_data(missing)
    opt = get(name, **kwargs)
    ours = run(opt, on_backend(params), grads, lrs)
    want_params, want_state = torch_reference(name, kwargs, params, grads, lrs)
    assert_close(ours, want_params, tol)
    assert {key for key, slots in opt.state.items() if slots} == want_state.keys()  # torch keeps no empty state
    for key, slots in opt.state.items():
        assert_close(slots, want_state.get(key, {}), tol)
        for buffer in slots.values():
            assert array_api_compat.device(buffer) == backend.device
            assert buffer.dtype == backend.dtype


@pytest.mark.parametrize(("name", "kwargs"), CASES)
def test_matches_torch_float64(backend64, name, kwargs):
    check_against_torch(backend64, name, kwargs, 1e-10)


@pytest.mark.parametrize(("name", "kwargs"), CASES)
def test_matches_torch_float32(backend, name, kwargs):
    check_against_torch(backend, name, kwargs, 1e-5)


@pytest.mark.parametrize(("name", "kwargs"), CASES)
def test_lr_changes_between_steps_like_torch_param_group(backend64, name, kwargs):
    check_against_torch(backend64, name, kwargs, 1e-10, lrs=LRS)


@pytest.mark.parametrize(("name", "kwargs"), CASES)
def test_missing_gradients_skip_the_parameter_like_torch(backend64, name, kwargs):
    """A parameter without a gradient keeps its value and its own step count (Adam's bias correction)."""
    check_against_torch(backend64, name, kwargs, 1e-10, missing={0: "2.weight", 2: "0.bias"})


def test_parameter_never_given_a_gradient_is_untouched(backend):
    params, grads = host_data()
    params = on_backend(params)
    opt = Adam()
    out = opt.step(params, {key: xpcnn.asarray(g) for key, g in grads[0].items() if key != "0.bias"})
    assert out["0.bias"] is params["0.bias"]
    assert "0.bias" not in opt.state
    assert opt.iterations == 1


def test_updates_in_place_except_on_jax(backend):
    params, grads = host_data()
    params = on_backend(params)
    before = {key: np.array(xpcnn.to_numpy(value)) for key, value in params.items()}
    out = SGD(lr=0.1, momentum=0.9).step(params, {key: xpcnn.asarray(g) for key, g in grads[0].items()})
    functional = array_api_compat.is_jax_namespace(backend.xp)
    for key, p in params.items():
        assert (out[key] is p) is not functional
        if functional:
            np.testing.assert_array_equal(xpcnn.to_numpy(p), before[key])


def through_host(state: dict) -> dict:
    """What the save code does: arrays to NumPy, the config through JSON, and back onto the backend."""
    return {
        "config": json.loads(json.dumps(state["config"])),
        "iterations": state["iterations"],
        "state": {key: {n: xpcnn.asarray(np.array(xpcnn.to_numpy(a))) for n, a in slots.items()}
                  for key, slots in state["state"].items()},
        "steps": json.loads(json.dumps(state["steps"])),
    }


@pytest.mark.parametrize(("name", "kwargs"), CASES)
def test_state_dict_round_trip_continues_identically(backend64, name, kwargs):
    params, grads = host_data(missing={1: "0.bias"})
    straight = run(get(name, **kwargs), on_backend(params), grads)
    first = get(name, **kwargs)
    halfway = run(first, on_backend(params), grads[:3])
    resumed = get(name)  # default hyper-parameters: loading restores the saved ones
    resumed.load_state_dict(through_host(first.state_dict()), params=halfway)
    assert resumed.get_config() == first.get_config()
    final = run(resumed, halfway, grads[3:])
    assert resumed.iterations == STEPS
    for key, value in straight.items():
        np.testing.assert_array_equal(xpcnn.to_numpy(final[key]), xpcnn.to_numpy(value), err_msg=key)


def test_loaded_buffers_are_copies_that_later_steps_of_the_source_do_not_touch(backend):
    params, grads = host_data()
    first = Adam()
    params = run(first, on_backend(params), grads[:1])
    resumed = Adam()
    resumed.load_state_dict(first.state_dict())
    loaded = {key: {n: np.array(xpcnn.to_numpy(b)) for n, b in slots.items()}
              for key, slots in resumed.state.items()}
    run(first, params, grads[1:2])
    for key, slots in resumed.state.items():
        for n, buffer in slots.items():
            np.testing.assert_array_equal(xpcnn.to_numpy(buffer), loaded[key][n])


def test_load_without_steps_counts_every_parameter_from_iterations(backend):
    params, grads = host_data()
    first = Adam(lr=0.1)
    run(first, on_backend(params), grads[:2])
    state = first.state_dict()
    del state["steps"]
    resumed = Adam()
    resumed.load_state_dict(state)
    assert resumed.iterations == 2
    assert resumed.state_dict()["steps"] == dict.fromkeys(SHAPES, 2)


def saved_adam() -> tuple[dict, dict]:
    """An Adam state after one step, and the parameters it belongs to."""
    params, grads = host_data()
    opt = Adam()
    params = run(opt, on_backend(params), grads[:1])
    return opt.state_dict(), params


@pytest.mark.parametrize(("edit", "match"), [
    (lambda s: s["config"].update(name="sgd"), "'sgd', not 'adam'"),
    (lambda s: s.update(extra=1), "expected keys"),
    (lambda s: s.pop("iterations"), "expected keys"),
    (lambda s: s["config"].update(nesterov=True), "bad hyper-parameters"),
    (lambda s: s["config"].update(amsgrad=True), "max_exp_avg_sq"),
    (lambda s: s["state"]["0.bias"].pop("exp_avg"), "'0.bias' has buffers"),
    (lambda s: s["state"]["0.bias"].update(exp_avg=s["state"]["2.weight"]["exp_avg"]), "of '0.bias' has shape"),
])
def test_load_state_dict_rejects_bad_state_and_changes_nothing(backend, edit, match):
    state, _ = saved_adam()
    state = {**state, "config": dict(state["config"]), "state": {k: dict(v) for k, v in state["state"].items()}}
    edit(state)
    opt = Adam(lr=0.5)
    with pytest.raises(ValueError, match=match):
        opt.load_state_dict(state)
    assert opt.lr == 0.5 and opt.iterations == 0 and opt.state == {}


def test_load_state_dict_checks_shapes_and_keys_against_params(backend):
    state, params = saved_adam()
    with pytest.raises(ValueError, match="unknown parameter '2.weight'"):
        Adam().load_state_dict(state, params={k: v for k, v in params.items() if k != "2.weight"})
    wrong = {**params, "0.bias": xpcnn.asarray(np.zeros(5))}
    with pytest.raises(ValueError, match=r"'0.bias' has shape \(4,\), expected \(5,\)"):
        Adam().load_state_dict(state, params=wrong)


@pytest.mark.parametrize(("make", "match"), [
    (lambda: SGD(lr=-0.1), "lr must be >= 0"),
    (lambda: SGD(momentum=-0.5), "momentum must be >= 0"),
    (lambda: SGD(nesterov=True), "nesterov=True needs momentum"),
    (lambda: SGD(weight_decay=-1.0), "weight_decay must be >= 0"),
    (lambda: Adam(lr=float("nan")), "lr must be >= 0"),
    (lambda: Adam(betas=(1.0, 0.999)), "betas must be"),
    (lambda: Adam(betas=(0.9, -0.1)), "betas must be"),
    (lambda: Adam(eps=0.0), "eps must be > 0"),
    (lambda: AdamW(betas=(0.9, 0.999, 0.5)), "betas must be"),
    (lambda: RMSprop(alpha=1.5), "alpha must be in"),
    (lambda: RMSprop(eps=-1e-8), "eps must be > 0"),
    (lambda: RMSprop(momentum=-0.9), "momentum must be >= 0"),
    (lambda: Adam(use_ema=True, ema_momentum=1.0), r"ema_momentum must be in \[0, 1\)"),
    (lambda: SGD(ema_momentum=-0.1), r"ema_momentum must be in \[0, 1\)"),
])
def test_constructor_rejects_bad_hyperparameters(make, match):
    with pytest.raises(ValueError, match=match):
        make()


@pytest.mark.parametrize(("name", "cls"), [("sgd", SGD), ("Adam", Adam), ("adamw", AdamW), ("RMSprop", RMSprop)])
def test_get_by_name_config_or_instance(name, cls):
    opt = get(name, lr=0.5)
    assert type(opt) is cls and opt.lr == 0.5
    config = json.loads(json.dumps(opt.get_config()))
    assert get(config).get_config() == opt.get_config()
    assert get(opt) is opt


def test_get_rejects_unknown_names():
    with pytest.raises(ValueError, match="unknown optimizer 'adagrad'"):
        get("adagrad")


def test_defaults_follow_torch_and_keras_ema():
    no_ema = {"use_ema": False, "ema_momentum": 0.99}  # Keras's defaults
    assert SGD().get_config() == {"name": "sgd", "lr": 0.01, "momentum": 0.0, "nesterov": False,
                                  "weight_decay": 0.0, **no_ema}
    assert Adam().get_config() == {"name": "adam", "lr": 1e-3, "betas": [0.9, 0.999], "eps": 1e-8,
                                   "weight_decay": 0.0, "amsgrad": False, **no_ema}
    assert AdamW().weight_decay == 0.01
    assert RMSprop().get_config() == {"name": "rmsprop", "lr": 0.01, "alpha": 0.99, "eps": 1e-8, "momentum": 0.0,
                                      "centered": False, "weight_decay": 0.0, **no_ema}


# --- moving average of the weights (use_ema) ------------------------------------------------------------

@pytest.mark.parametrize(("name", "kwargs"), CASES)
def test_ema_averages_the_updated_weights_and_leaves_the_update_alone(backend64, name, kwargs):
    params, grads = host_data(missing={2: "0.bias"})
    plain = run(get(name, **kwargs), on_backend(params), grads)
    opt = get(name, **kwargs, use_ema=True, ema_momentum=0.6)
    current = on_backend(params)
    expected: dict[str, np.ndarray] = {}
    for step_grads in grads:  # the EMA by hand: the first step's weights, then a 0.6/0.4 blend after each step
        current = opt.step(current, {key: xpcnn.asarray(g) for key, g in step_grads.items()})
        for key in step_grads:
            now = xpcnn.to_numpy(current[key])
            expected[key] = now.copy() if key not in expected else 0.6 * expected[key] + 0.4 * now
    for key, value in plain.items():  # averaging never feeds back into the optimisation
        np.testing.assert_array_equal(xpcnn.to_numpy(current[key]), xpcnn.to_numpy(value), err_msg=key)
    averaged = opt.averaged_params(current)
    assert averaged.keys() == current.keys()
    for key, want in expected.items():
        np.testing.assert_allclose(xpcnn.to_numpy(averaged[key]), want, rtol=1e-12, atol=1e-12, err_msg=key)
        assert array_api_compat.device(averaged[key]) == backend64.device
        assert averaged[key] is not opt.state[key]["ema"]


def test_averaged_params_are_copies_and_unaveraged_entries_come_back_as_given(backend):
    params, grads = host_data()
    opt = Adam(lr=0.1, use_ema=True)
    current = run(opt, on_backend(params), grads[:2])
    extra = xpcnn.asarray(np.ones(3))
    averaged = opt.averaged_params({**current, "9.weight": extra})
    assert averaged["9.weight"] is extra
    before = xpcnn.to_numpy(opt.state["0.weight"]["ema"]).copy()
    if array_api_compat.is_writeable_array(averaged["0.weight"]):
        xpx.at(averaged["0.weight"])[...].set(0.0)  # writing into the copy must not reach the optimizer's average
    np.testing.assert_array_equal(xpcnn.to_numpy(opt.state["0.weight"]["ema"]), before)
    assert Adam(lr=0.1).averaged_params(current) == current  # without use_ema: the weights themselves


def test_ema_state_round_trips_and_resumes_identically(backend64):
    params, grads = host_data()
    straight = get("adam", lr=0.1, use_ema=True, ema_momentum=0.5)
    run(straight, on_backend(params), grads)
    first = get("adam", lr=0.1, use_ema=True, ema_momentum=0.5)
    halfway = run(first, on_backend(params), grads[:2])
    resumed = Adam()
    resumed.load_state_dict(through_host(first.state_dict()), params=halfway)
    assert resumed.use_ema and resumed.ema_momentum == 0.5
    final = run(resumed, halfway, grads[2:])
    for key, value in straight.averaged_params(final).items():
        np.testing.assert_array_equal(xpcnn.to_numpy(resumed.averaged_params(final)[key]), xpcnn.to_numpy(value))


def test_ema_switched_on_midway_starts_from_the_weights_then_and_off_drops_it(backend64):
    params, grads = host_data()
    opt = Adam(lr=0.1)
    current = run(opt, on_backend(params), grads[:2])
    opt.use_ema = True  # e.g. on a run resumed from a state saved without averaging
    current = run(opt, current, grads[2:3])
    expected = {key: xpcnn.to_numpy(v).copy() for key, v in current.items()}
    current = run(opt, current, grads[3:4])
    for key, value in opt.averaged_params(current).items():
        want = 0.99 * expected[key] + 0.01 * xpcnn.to_numpy(current[key])
        np.testing.assert_allclose(xpcnn.to_numpy(value), want, rtol=1e-12, atol=1e-12, err_msg=key)
    opt.use_ema = False
    assert opt.averaged_params(current) == current
    run(opt, current, grads[4:])
    assert all("ema" not in slots for slots in opt.state.values())
    Adam().load_state_dict(opt.state_dict())  # loads back: no buffer is left that its config does not expect


def test_state_with_an_average_loads_into_either_setting(backend):
    params, grads = host_data()
    opt = Adam(lr=0.1, use_ema=True)
    run(opt, on_backend(params), grads[:2])
    state = opt.state_dict()
    state_off = {**state, "config": {**state["config"], "use_ema": False}}
    plain = Adam()
    plain.load_state_dict(state_off)
    assert not plain.use_ema and all("ema" not in slots for slots in plain.state.values())
    averaging = Adam()
    averaging.load_state_dict(state)
    assert averaging.use_ema and all("ema" in slots for slots in averaging.state.values())


def test_states_saved_before_the_average_existed_still_load(backend):
    state, params = saved_adam()
    config = {k: v for k, v in state["config"].items() if k not in ("use_ema", "ema_momentum")}
    opt = Adam(lr=0.5, use_ema=True)
    opt.load_state_dict({**state, "config": config}, params=params)
    assert opt.lr == 1e-3 and not opt.use_ema and opt.ema_momentum == 0.99 and opt.iterations == 1
