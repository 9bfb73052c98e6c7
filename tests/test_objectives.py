"""What ``compile`` makes of the losses and metrics of a model with several outputs: metrics given by output name
go to the outputs named (as in Keras, an output left out gets none), logged as Keras names them; a name that is
no output is refused with the output names listed."""

from __future__ import annotations

import numpy as np
import pytest

import xpcnn
from xpcnn.layers import Dense, Input
from xpcnn.model import Model


def _two_outputs() -> Model:
    x = Input((4,), name="features")
    h = Dense(5, activation="tanh", name="trunk")(x)
    return Model(x, [Dense(3, name="cls")(h), Dense(2, name="box")(h)], name="detector")


def _data(n: int = 12):
    rng = np.random.default_rng(0)
    return (rng.standard_normal((n, 4)).astype(np.float32),
            {"cls": rng.integers(0, 3, n), "box": rng.standard_normal((n, 2)).astype(np.float32)})


def test_metrics_by_output_name_go_to_the_outputs_named_only(backend, tmp_path):
    model = _two_outputs()
    model.compile({"cls": "cross_entropy", "box": "mse"}, "adam", metrics={"cls": ["accuracy"]})
    x, y = _data()
    history = model.fit(x, y, batch_size=4, epochs=1, verbose=0, validation_split=0.25).history
    assert set(history) == {"loss", "cls_loss", "box_loss", "cls_accuracy", "val_loss", "val_cls_loss",
                            "val_box_loss", "val_cls_accuracy", "lr"}
    result = model.evaluate(x, y, batch_size=5)
    assert set(result) == {"loss", "cls_loss", "box_loss", "cls_accuracy"}
    assert 0.0 <= result["cls_accuracy"] <= 1.0
    model.save(tmp_path / "m")
    again = xpcnn.load_model(tmp_path / "m").evaluate(x, y, batch_size=5)
    assert set(again) == set(result)
    for key in result:
        assert again[key] == pytest.approx(result[key], rel=1e-5, abs=1e-6), key


def test_a_metric_for_a_name_that_is_no_output_is_refused_naming_the_outputs(backend):
    model = _two_outputs()
    with pytest.raises(ValueError, match=r"metrics by output name must name only the model's outputs "
                                         r"\['cls', 'box'\]; unknown \['label'\]"):
        model.compile(["cross_entropy", "mse"], "adam", metrics={"label": ["accuracy"]})
    with pytest.raises(ValueError, match=r"loss by output name must name exactly the model's outputs "
                                         r"\['cls', 'box'\]; missing \['box'\]$"):
        model.compile({"cls": "cross_entropy"}, "adam")  # a loss, unlike a metric, every output needs
