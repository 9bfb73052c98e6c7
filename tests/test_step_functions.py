"""The training engine's steps: eager on every backend, compiled with ``jax.jit`` on JAX.

Compiled steps must trace once per batch shape (not per batch, epoch or learning rate), give the results of
the eager steps (same dropout masks, batch-norm statistics and weight average), and move the random stream
as the eager steps do. Every model-level test of the suite also runs both ways on JAX (see conftest).
"""

from __future__ import annotations

import numpy as np
import pytest

import xpcnn
from conftest import BACKEND
from xpcnn import mixed_precision, optimizers
from xpcnn.callbacks import StepLR
from xpcnn.layers import BatchNorm2D, Conv2D, Dense, Dropout, Flatten, MaxPool2D, ReLU
from xpcnn.step_functions import TrainState, train_step

jax_only = pytest.mark.skipif(BACKEND != "jax", reason="jax.jit compiles the steps on the jax backend only")


def _data(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, 1, 8, 8)).astype(np.float32), rng.integers(0, 3, size=n)


def _model(jit, use_ema: bool = False) -> xpcnn.Sequential:
    model = xpcnn.Sequential(
        [Conv2D(4, 3, padding="same"), BatchNorm2D(), ReLU(), MaxPool2D(2), Dropout(0.3), Flatten(), Dense(3)],
        input_shape=(1, 8, 8),
    )
    model.compile("cross_entropy", optimizers.Adam(0.01, use_ema=use_ema), metrics=["accuracy"], jit=jit)
    return model


def _host(tree: dict) -> dict:
    return {k: np.asarray(xpcnn.to_numpy(v), dtype=np.float64) for k, v in tree.items()}


def test_jit_is_on_for_jax_only_by_default(backend):
    model = _model("auto")
    assert model.step_functions.jit is (backend.name == "jax")
    assert _model(False).step_functions.jit is False


def test_bad_jit_choices_are_refused(backend):
    model = _model("auto")
    with pytest.raises(ValueError, match=r"jit must be True, False or 'auto', got 'yes'"):
        model.compile("cross_entropy", "adam", jit="yes")
    if backend.name != "jax":
        with pytest.raises(ValueError, match=rf"jit=True compiles with jax.jit and needs the jax backend; the "
                                             rf"current backend is '{backend.name}'"):
            model.compile("cross_entropy", "adam", jit=True)
    assert model.jit == "auto"  # a refused compile changes nothing


def test_train_step_is_a_function_of_explicit_state(backend):
    """Given the state, train_step returns the next one; the optimizer and the model's own state do not
    have to be involved (the compiled step relies on it)."""
    model = _model(False)
    x, y = (xpcnn.asarray(a) for a in _data(16))
    optimizer = model.optimizer
    state = TrainState(model.params, model.buffers, optimizer.init_state(model.params),
                       optimizer.next_steps(list(model.params)), optimizer.lr)
    new, logs = train_step(model, state, x, y)
    assert set(new.params) == set(model.params) and set(new.slots) == set(model.params)
    assert set(new.buffers) == {"1.running_mean", "1.running_var"}
    assert set(logs) == {"loss", "accuracy"} and logs["loss"].shape == ()
    assert optimizer.iterations == 0 and optimizer.state == {}, "apply leaves the optimizer object alone"


@jax_only
def test_compiled_fit_traces_once_per_batch_shape(backend):
    x, y = _data(70)
    model = _model(True)
    model.fit(x, y, batch_size=16, epochs=3, validation_data=_data(20, 1), verbose=0,
              callbacks=[StepLR(1, 0.5)])  # the rate changes every epoch: an input, not a constant
    traces = dict(model.step_functions.traces)
    assert traces == {"train": 2, "test": 2}, traces  # batches of 16 and the last ones of 6 and 4
    model.fit(x, y, batch_size=16, epochs=2, verbose=0)
    model.evaluate(x, y, batch_size=16)
    model.predict(x[:32], batch_size=16)
    assert dict(model.step_functions.traces) == {"train": 2, "test": 3, "predict": 1}


@jax_only
@pytest.mark.parametrize("policy", ["mixed_bfloat16", "mixed_float16"])
def test_mixed_precision_steps_trace_once_per_batch_shape(backend, policy):
    """Under a mixed policy (and the loss scaling of float16, whose skips are decided inside the step)."""
    mixed_precision.set_global_policy(policy)
    try:
        model = _model(True)
    finally:
        mixed_precision.set_global_policy("float32")
    model.fit(*_data(70), batch_size=16, epochs=3, verbose=0, callbacks=[StepLR(1, 0.5)])
    assert dict(model.step_functions.traces) == {"train": 2}  # batches of 16 and the last one of 6


@jax_only
def test_the_weight_average_costs_one_more_trace(backend):
    model = _model(True, use_ema=True)
    model.fit(*_data(64), batch_size=16, epochs=2, verbose=0)
    assert model.step_functions.traces["train"] == 2  # the first step creates the average's buffers


@jax_only
@pytest.mark.parametrize("use_ema", [False, True])
def test_compiled_steps_give_the_eager_results(backend64, use_ema):
    """In float64, so that the two orders of summation cannot drift apart through Adam's normalisation."""
    runs = []
    for jit in (True, False):
        xpcnn.manual_seed(3)
        model = _model(jit, use_ema)
        history = model.fit(*_data(70), batch_size=16, epochs=2, validation_split=0.2, verbose=0).history
        runs.append((history, _host(model.state_dict()), _host(model.optimizer.state["0.weight"]),
                     xpcnn.random.get_state(), model.optimizer.iterations))
    (h_jit, w_jit, o_jit, r_jit, i_jit), (h_eager, w_eager, o_eager, r_eager, i_eager) = runs
    assert r_jit == r_eager, "the compiled step moves the random stream as the eager one does"
    assert i_jit == i_eager
    assert h_jit.keys() == h_eager.keys()
    for key in h_jit:
        np.testing.assert_allclose(h_jit[key], h_eager[key], rtol=1e-9, err_msg=key)
    for got, want in ((w_jit, w_eager), (o_jit, o_eager)):
        assert got.keys() == want.keys()
        for key in got:
            np.testing.assert_allclose(got[key], want[key], rtol=1e-8, atol=1e-8, err_msg=key)  # a bias before batch norm: noise


@jax_only
def test_compiled_train_on_batch_and_test_on_batch(backend):
    x, y = (xpcnn.asarray(a) for a in _data(16))
    model = _model(True)
    first = float(model.train_on_batch(x, y)["loss"])
    for _ in range(20):
        logs = model.train_on_batch(x, y)
    assert float(logs["loss"]) < first
    test = model.test_on_batch(x, y)
    assert set(test) == {"loss", "accuracy"}
    assert dict(model.step_functions.traces) == {"train": 1, "test": 1}
    # the model holds real arrays again, not the tracers of the compiled step (an eager forward would fail)
    np.testing.assert_allclose(xpcnn.to_numpy(model.forward(x)), xpcnn.to_numpy(model.predict(x)), rtol=1e-5,
                               atol=1e-6)
