"""Metrics on the session's backend: values against NumPy (and PyTorch's top-k), 0-d results on the device,
names as Keras spells them, clear errors for targets that do not fit."""

from __future__ import annotations

import array_api_compat
import numpy as np
import pytest

import xpcnn
from xpcnn import metrics
from xpcnn.losses import BinaryCrossEntropy
from xpcnn.metrics import Accuracy, BinaryAccuracy, TopKAccuracy


def _scores(n: int = 50, classes: int = 7, seed: int = 3):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, classes)).astype(np.float32), rng.integers(0, classes, size=n)


def test_categorical_metrics_on_device_match_numpy(backend):
    pred, labels = _scores()
    onehot = np.eye(7, dtype=np.float32)[labels]
    p, t, oh = xpcnn.asarray(pred), xpcnn.asarray(labels), xpcnn.asarray(onehot)
    ranks = (pred > pred[np.arange(50), labels][:, None]).sum(axis=1)
    for metric, expected in [
        (Accuracy(), np.mean(pred.argmax(1) == labels)),
        (TopKAccuracy(3), np.mean(ranks < 3)),
        (TopKAccuracy(7), 1.0),
    ]:
        for target in (t, oh):
            value = metric(p, target)
            assert value.ndim == 0 and array_api_compat.device(value) == backend.device
            assert float(value) == pytest.approx(expected)


def test_top_k_matches_torch_topk(backend):
    torch = pytest.importorskip("torch")
    pred, labels = _scores(n=200, classes=10, seed=8)
    for k in (1, 2, 5):
        top = torch.topk(torch.from_numpy(pred), k, dim=1).indices.numpy()
        expected = np.mean([label in row for label, row in zip(labels, top)])
        assert float(TopKAccuracy(k)(xpcnn.asarray(pred), xpcnn.asarray(labels))) == pytest.approx(expected)


def test_top_k_counts_ties_in_the_targets_favour(backend):
    pred = xpcnn.asarray(np.array([[1.0, 1.0, 1.0, 0.0]], dtype=np.float32))
    for label in (0, 1, 2):  # three classes tie for first place: each is in the top 1
        assert float(TopKAccuracy(1)(pred, xpcnn.asarray(np.array([label])))) == 1.0
    assert float(TopKAccuracy(3)(pred, xpcnn.asarray(np.array([3])))) == 0.0


def test_binary_accuracy_thresholds_and_reshapes(backend):
    rng = np.random.default_rng(4)
    logits = rng.standard_normal((40, 1)).astype(np.float32)
    truth = rng.integers(0, 2, size=(40, 1))
    value = BinaryAccuracy(threshold=0.0)(xpcnn.asarray(logits), xpcnn.asarray(truth))
    assert float(value) == pytest.approx(np.mean((logits > 0) == (truth > 0.5)))
    flat = BinaryAccuracy(threshold=0.0)(xpcnn.asarray(logits), xpcnn.asarray(truth[:, 0]))  # (N,) for (N, 1)
    assert float(flat) == pytest.approx(float(value))
    probabilities = 1.0 / (1.0 + np.exp(-logits))
    assert float(BinaryAccuracy()(xpcnn.asarray(probabilities), xpcnn.asarray(truth))) == pytest.approx(float(value))


@pytest.mark.parametrize(("name", "loss", "kind", "config"), [
    ("accuracy", None, Accuracy, {}),
    ("acc", "cross_entropy", Accuracy, {}),
    ("sparse_categorical_accuracy", None, Accuracy, {}),
    ("accuracy", "binary_cross_entropy", BinaryAccuracy, {"threshold": 0.5, "name": "accuracy"}),
    ("accuracy", BinaryCrossEntropy(from_logits=True), BinaryAccuracy, {"threshold": 0.0, "name": "accuracy"}),
    ("binary_accuracy", BinaryCrossEntropy(), BinaryAccuracy, {"threshold": 0.0, "name": "binary_accuracy"}),
    ("top_k_accuracy", None, TopKAccuracy, {"k": 5}),
    ("sparse_top_k_categorical_accuracy", None, TopKAccuracy, {"k": 5}),
    ("top_3_accuracy", None, TopKAccuracy, {"k": 3}),
])
def test_get_resolves_keras_names(name, loss, kind, config):
    metric = metrics.get(name, loss)
    assert type(metric) is kind and metric.get_config() == config
    assert repr(metric).startswith(kind.__name__)


def test_get_keeps_objects_and_refuses_unknown_names():
    top = TopKAccuracy(2)
    assert metrics.get(top) is top and top.name == "top_2_accuracy"
    for bad in ("f2", "top_0_accuracy", "top_x_accuracy", 3):
        with pytest.raises(ValueError, match="unknown metric"):
            metrics.get(bad)
    for k in (0, 2.0, True):
        with pytest.raises(ValueError, match="k must be a positive int"):
            TopKAccuracy(k)


def test_targets_that_do_not_fit_are_named(backend):
    pred = xpcnn.asarray(np.zeros((4, 3), np.float32))
    with pytest.raises(ValueError, match=r"labels of shape \(5,\) do not match predictions of shape \(4, 3\)"):
        Accuracy()(pred, xpcnn.asarray(np.zeros(5, np.int64)))
    with pytest.raises(ValueError, match=r"one-hot targets of shape \(4, 2\)"):
        TopKAccuracy(1)(pred, xpcnn.asarray(np.zeros((4, 2), np.float32)))
    with pytest.raises(ValueError, match="neither labels nor one-hot"):
        Accuracy()(pred, xpcnn.asarray(np.zeros((4, 3, 1), np.float32)))
    with pytest.raises(ValueError, match=r"binary accuracy: targets of shape \(5,\)"):
        BinaryAccuracy()(xpcnn.asarray(np.zeros((4, 1), np.float32)), xpcnn.asarray(np.zeros(5, np.float32)))
