"""xpcnn.viz.class_activation_map on Sequential stacks, lists of layers and graph models (no matplotlib needed)."""

from __future__ import annotations

import numpy as np
import pytest

import xpcnn
from xpcnn import viz
from xpcnn.layers import Add, Conv2D, Dense, Flatten, GlobalAvgPool2D, MaxPool2D, ReLU, Softmax
from xpcnn.model import Model, Sequential


def _rand(shape, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def _cam_layers(pool: bool, softmax: bool = False) -> list:
    layers = [Conv2D(4, 3, padding=1), ReLU()]
    if pool:
        layers.append(MaxPool2D(2))
    layers += [Conv2D(5, 3, padding=1), ReLU(), GlobalAvgPool2D(), Dense(3)]
    if softmax:
        layers.append(Softmax())
    return layers


def _forward(layers, x):
    for layer in layers:
        x = layer.forward(x)
    return x


def _assert_maps_spread_the_logit(cams, predicted, logits, dense):
    """Without pooling before it the map has the input's size, and its mean plus the bias is the logit."""
    np.testing.assert_array_equal(predicted, logits.argmax(axis=1))
    bias = np.asarray(xpcnn.to_numpy(dense.params["bias"]))
    expected = logits[np.arange(len(predicted)), predicted] - bias[predicted]
    np.testing.assert_allclose(cams.mean(axis=(1, 2)), expected, rtol=1e-4, atol=1e-5)


def test_cam_is_the_class_score_spread_over_the_image(backend):
    layers = _cam_layers(pool=False)
    x = xpcnn.asarray(_rand((3, 1, 8, 8)))
    logits = np.asarray(xpcnn.to_numpy(_forward(layers, x)))
    cams, predicted = viz.class_activation_map(layers, x, 3, normalize=False)
    assert isinstance(cams, np.ndarray) and cams.shape == (3, 8, 8)
    assert isinstance(predicted, np.ndarray) and predicted.shape == (3,)
    _assert_maps_spread_the_logit(cams, predicted, logits, layers[-1])


@pytest.mark.parametrize("activation", [None, "sigmoid"])
def test_cam_of_a_one_unit_binary_classifier(backend, activation):
    """Class 1 (score above the threshold) is mapped by the weight row, class 0 by its opposite."""
    layers = [Conv2D(4, 3, padding=1), ReLU(), GlobalAvgPool2D(), Dense(1, activation=activation)]
    model = Sequential(layers, input_shape=(1, 8, 8))
    x = xpcnn.asarray(_rand((6, 1, 8, 8), seed=2))
    logit = np.asarray(xpcnn.to_numpy(_forward(layers[:3], x) @ xpcnn.asarray(
        xpcnn.to_numpy(layers[3].params["weight"]).T)))[:, 0]  # the pre-activation score minus the bias
    bias = -float(np.median(logit))  # half the images on each side
    layers[3].params["bias"] = xpcnn.asarray(np.asarray([bias], np.float32))
    cams, predicted = viz.class_activation_map(model, x, normalize=False)
    np.testing.assert_array_equal(predicted, (logit + bias > 0).astype(np.int64))
    assert 0 < predicted.sum() < 6  # both classes occur, so both signs are checked
    np.testing.assert_allclose(cams.mean(axis=(1, 2)), np.where(predicted == 1, logit, -logit), rtol=1e-4, atol=1e-5)
    ones, _ = viz.class_activation_map(model, x, classes=1, normalize=False)
    np.testing.assert_allclose(ones.mean(axis=(1, 2)), logit, rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="classes must lie in \\[0, 2\\)"):
        viz.class_activation_map(model, x, classes=2)


def _pooled_model():
    """Pooling halves the maps: (8, 10) images give (4, 5) maps that must be upsampled."""
    return Sequential(_cam_layers(pool=True, softmax=True), input_shape=(1, 8, 10)), xpcnn.asarray(_rand((2, 1, 8, 10)))


def test_cam_upsampled_as_torch_and_normalised_per_sample(backend):
    """The (4, 5) maps reach the input's (8, 10) as torch's bilinear interpolation with half-pixel centres
    (align_corners=False); normalising maps each sample's own minimum to 0 and maximum to 1, linearly."""
    torch = pytest.importorskip("torch")
    model, x = _pooled_model()
    raw, predicted = viz.class_activation_map(model, x, normalize=False)
    features = np.asarray(xpcnn.to_numpy(_forward(model.layers[:5], x)))  # what the pooling receives
    weight = np.asarray(xpcnn.to_numpy(model.layers[6].params["weight"]))
    maps = np.einsum("nc,nchw->nhw", weight[predicted], features)
    assert maps.shape == (2, 4, 5)
    upsampled = torch.nn.functional.interpolate(torch.tensor(maps[:, None]), size=(8, 10), mode="bilinear",
                                                align_corners=False)[:, 0].numpy()
    np.testing.assert_allclose(raw, upsampled, rtol=1e-4, atol=1e-5)

    cams, _ = viz.class_activation_map(model, x)
    low, high = raw.min(axis=(1, 2)), raw.max(axis=(1, 2))
    assert np.all(high > low) and not np.allclose(low, low[0]), "the samples' ranges differ"
    np.testing.assert_array_equal(cams.min(axis=(1, 2)), [0.0, 0.0])
    np.testing.assert_array_equal(cams.max(axis=(1, 2)), [1.0, 1.0])
    np.testing.assert_allclose(cams, (raw - low[:, None, None]) / (high - low)[:, None, None], rtol=1e-5, atol=1e-6)


def test_cam_of_the_layer_the_last_pooling_receives_by_default(backend):
    model, x = _pooled_model()
    cams, predicted = viz.class_activation_map(model, x)  # layer=None: what the last pooling receives
    assert cams.shape == (2, 8, 10) and cams.dtype == np.float32
    assert predicted.shape == (2,) and predicted.dtype == np.int64
    np.testing.assert_array_equal(predicted, xpcnn.to_numpy(model.predict(x)).argmax(axis=1))
    same, _ = viz.class_activation_map(model, x, 4)  # the ReLU before the pooling
    by_type, _ = viz.class_activation_map(model, x, Conv2D)  # the last Conv2D: a ReLU in between is allowed
    by_name, _ = viz.class_activation_map(model, x, model.layers[3].name)
    for maps in (same, by_type, by_name):
        np.testing.assert_allclose(maps, cams)
    other, _ = viz.class_activation_map(model, x, classes=[0, 1])
    assert other.shape == cams.shape and not np.allclose(other, cams)


def _residual_classifier():
    """conv -> [conv -> conv] + skip -> relu -> global pooling -> flatten -> dense: the end of a ResNet."""
    inputs = xpcnn.Input((2, 6, 6))
    stem = Conv2D(4, 3, padding="same", activation="relu", name="stem")(inputs)
    branch = Conv2D(4, 3, padding="same", name="branch_b")(Conv2D(4, 3, padding="same", activation="relu",
                                                                  name="branch_a")(stem))
    merged = ReLU(name="merged_relu")(Add(name="add")([stem, branch]))
    logits = Dense(3, name="classes")(Flatten()(GlobalAvgPool2D(name="gap")(merged)))
    return Model(inputs, logits)


def test_cam_on_a_graph_model_by_name_type_and_object(backend):
    model = _residual_classifier()
    x = xpcnn.asarray(_rand((3, 2, 6, 6), seed=1))
    logits = np.asarray(xpcnn.to_numpy(model.predict(x)))
    cams, predicted = viz.class_activation_map(model, x, normalize=False)
    assert cams.shape == (3, 6, 6)
    _assert_maps_spread_the_logit(cams, predicted, logits, model.get_layer("classes"))
    for layer in ("add", "merged_relu", Add, ReLU, model.get_layer("add")):
        same, _ = viz.class_activation_map(model, x, layer, normalize=False)
        np.testing.assert_allclose(same, cams, rtol=1e-6)


def test_cam_rejects_models_of_the_wrong_shape(backend):
    layers = [Conv2D(4, 3, padding=1), ReLU(), MaxPool2D(2), Conv2D(5, 3), GlobalAvgPool2D(), Dense(3)]
    x = xpcnn.asarray(_rand((1, 1, 8, 8)))
    with pytest.raises(ValueError, match="shape-preserving"):
        viz.class_activation_map(layers, x, 0)  # pooling between the layer and the GAP
    with pytest.raises(ValueError, match="no GlobalAvgPool2D"):
        viz.class_activation_map(layers[:4], x)
    with pytest.raises(ValueError, match="out of range"):
        viz.class_activation_map(layers, x, 10)
    with pytest.raises(ValueError, match="fused"):
        viz.class_activation_map(layers, x, 1)  # the ReLU runs inside the MaxPool2D step
    with pytest.raises(ValueError, match="classes"):
        viz.class_activation_map(layers, x, classes=[3])
    with pytest.raises(ValueError, match="no Softmax layer"):
        viz.class_activation_map(layers, x, Softmax)
    with pytest.raises(ValueError, match="is not a layer of"):
        viz.class_activation_map(layers, x, Conv2D(2, 1))
    with pytest.raises(TypeError, match="layer type"):
        viz.class_activation_map(layers, x, "Conv2D".encode())
    with pytest.raises(ValueError, match="one image input"):
        viz.class_activation_map(layers, [x, x])


def test_cam_needs_the_pooled_features_to_reach_one_dense(backend):
    inputs = xpcnn.Input((1, 6, 6))
    pooled = GlobalAvgPool2D()(Conv2D(3, 3, padding="same")(inputs))
    model = Model(inputs, [Dense(2)(pooled), Dense(4)(pooled)])
    with pytest.raises(ValueError, match="feeds 2 layers"):
        viz.class_activation_map(model, xpcnn.asarray(_rand((1, 1, 6, 6))))
