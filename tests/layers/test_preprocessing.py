"""Rescaling and Normalization: torch's arithmetic, numerical gradients, configs, errors, device placement."""

from __future__ import annotations

import numpy as np
import pytest

import xpcnn
from layer_checks import assert_forward_backward_on_device, assert_matches_torch, check_numerical_gradients, rtol_for
from xpcnn.layers.preprocessing import Normalization, Rescaling

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def _images(shape=(2, 3, 4, 5)) -> np.ndarray:
    return np.random.default_rng(0).uniform(size=shape)


def test_normalization_is_torchvisions_normalize(backend):
    import torch

    def reference(x):
        return (x - torch.tensor(MEAN, dtype=x.dtype)[:, None, None]) / torch.tensor(STD, dtype=x.dtype)[:, None, None]

    assert_matches_torch(Normalization.imagenet(), _images(), reference, rtol=rtol_for(backend))


def test_rescaling_maps_bytes_to_minus_one_one(backend):
    x = np.array([[0.0, 127.5, 255.0]])
    assert_matches_torch(Rescaling(1 / 127.5, offset=-1.0), x, lambda t: t / 127.5 - 1.0, rtol=rtol_for(backend))
    assert xpcnn.to_numpy(Rescaling(1 / 127.5, offset=-1.0).forward(xpcnn.asarray(x))).tolist() == [[-1.0, 0.0, 1.0]]


@pytest.mark.parametrize("layer", [Normalization((0.5, -1.0), (4.0, 0.25)), Rescaling(-2.5, 0.5)])
def test_numerical_gradients(backend64, layer):
    check_numerical_gradients(layer, _images((2, 2, 3, 3)))


def test_one_mean_for_every_channel_and_inputs_of_any_rank(backend):
    y = Normalization(0.5, 0.25).forward(xpcnn.asarray(np.full((2, 3), 1.0, np.float32)))
    np.testing.assert_array_equal(xpcnn.to_numpy(y), np.full((2, 3), 1.0))


def test_configs_rebuild_the_layers_and_nothing_is_a_parameter(backend, tmp_path):
    x = xpcnn.Input((3, 4, 4))
    model = xpcnn.Model(x, Rescaling(2.0, 1.0, name="scale")(Normalization.imagenet(name="norm")(x)))
    model.compile("mse", "sgd")
    assert model.state_dict() == {}
    model.save(tmp_path / "m.xpcnn")
    loaded = xpcnn.load_model(tmp_path / "m.xpcnn")
    assert loaded.get_layer("norm").get_config() == {"mean": list(MEAN), "variance": [s * s for s in STD]}
    images = _images((1, 3, 4, 4)).astype(np.float32)
    np.testing.assert_array_equal(xpcnn.to_numpy(loaded.predict(images)), xpcnn.to_numpy(model.predict(images)))


def test_forward_and_backward_stay_on_the_device(backend):
    assert_forward_backward_on_device(Normalization.imagenet(), xpcnn.asarray(_images().astype(np.float32)), backend)


@pytest.mark.parametrize("make, error, message", [
    (lambda: Normalization((0.1, 0.2), (1.0,)), ValueError, "one entry per channel alike, got 2 and 1"),
    (lambda: Normalization("mean", 1.0), TypeError, "mean must be a number or a sequence of numbers"),
    (lambda: Normalization(0.0, 0.0), ValueError, r"variance must be > 0, got \(0.0,\)"),
    (lambda: Normalization(float("nan"), 1.0), ValueError, "mean must be finite"),
    (lambda: Rescaling("2"), TypeError, "scale must be a number, got '2'"),
    (lambda: Rescaling(1.0, offset=float("inf")), ValueError, "offset must be finite"),
])
def test_bad_arguments_are_refused(make, error, message):
    with pytest.raises(error, match=message):
        make()


def test_a_channel_count_that_differs_from_the_means_is_refused(backend):
    with pytest.raises(ValueError, match=r"3 channel means for per-sample input \(4, 2, 2\)"):
        Normalization.imagenet().forward(xpcnn.asarray(np.zeros((1, 4, 2, 2), np.float32)))


def test_both_export_to_onnx_and_run_as_they_predict(backend, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    x = xpcnn.Input((3, 4, 4))
    model = xpcnn.Model(x, Rescaling(2.0, -1.0, name="scale")(Normalization.imagenet(name="norm")(x)))
    xpcnn.export_onnx(model, tmp_path / "m.onnx")
    session = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    images = _images((2, 3, 4, 4)).astype(np.float32)
    got = session.run(None, {session.get_inputs()[0].name: images})[0]
    np.testing.assert_allclose(got, xpcnn.to_numpy(model.predict(images)), rtol=1e-5, atol=1e-5)
