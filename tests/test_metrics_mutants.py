"""Metric behaviours that mutation testing (``nox -s mutation``) found unchecked: the result's dtype, labels of
any integer dtype, a score exactly at the threshold, reprs and defaults, every name ``get`` documents, user
metric objects, and errors that name the metric."""

from __future__ import annotations

import numpy as np
import pytest

import xpcnn
from xpcnn import metrics
from xpcnn.losses import BinaryCrossEntropy
from xpcnn.metrics import Accuracy, BinaryAccuracy, TopKAccuracy


def _scores(n: int = 40, classes: int = 6, seed: int = 2):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, classes)).astype(np.float32), rng.integers(0, classes, size=n)


@pytest.mark.parametrize("fixture", ["backend", "backend64"])
def test_metrics_come_back_in_the_predictions_float_dtype(request, fixture):
    b = request.getfixturevalue(fixture)
    pred, labels = _scores()
    p, t = xpcnn.asarray(pred, dtype=b.dtype), xpcnn.asarray(labels)
    scores = xpcnn.asarray(pred[:, :1], dtype=b.dtype)
    for value in (Accuracy()(p, t), TopKAccuracy(2)(p, t), BinaryAccuracy(0.0)(scores, xpcnn.asarray(labels % 2))):
        assert value.dtype == b.dtype


@pytest.mark.parametrize("dtype", [np.int32, np.int16, np.uint8])
def test_labels_of_any_integer_dtype_count_the_same(backend, dtype):
    pred, labels = _scores()
    p = xpcnn.asarray(pred)
    for metric in (Accuracy(), TopKAccuracy(2)):
        expected = float(metric(p, xpcnn.asarray(labels.astype(np.int64))))
        assert float(metric(p, xpcnn.asarray(labels.astype(dtype)))) == pytest.approx(expected)
    assert float(Accuracy()(p, xpcnn.asarray(labels.astype(dtype)))) == pytest.approx(np.mean(pred.argmax(1) == labels))


def test_binary_accuracy_counts_a_score_at_the_threshold_as_negative(backend):
    """Keras's rule, ``pred > threshold``: 0.5 exactly is a 0."""
    pred = xpcnn.asarray(np.array([[0.5], [0.7], [0.2]], dtype=np.float32))
    target = xpcnn.asarray(np.array([[0], [1], [0]]))
    assert float(BinaryAccuracy()(pred, target)) == 1.0


def test_reprs_and_defaults():
    assert repr(Accuracy()) == "Accuracy()"
    assert repr(TopKAccuracy(3)) == "TopKAccuracy(k=3)"
    assert repr(BinaryAccuracy(threshold=0.0)) == "BinaryAccuracy(threshold=0.0, name='accuracy')"
    assert TopKAccuracy().k == 5 and TopKAccuracy().name == "top_5_accuracy"
    assert BinaryAccuracy().threshold == 0.5


@pytest.mark.parametrize(("name", "loss", "kind", "config"), [
    ("categorical_accuracy", None, Accuracy, {}),
    ("CATEGORICAL_ACCURACY", None, Accuracy, {}),
    ("top_k_categorical_accuracy", None, TopKAccuracy, {"k": 5}),
    ("top_1_accuracy", None, TopKAccuracy, {"k": 1}),
    ("binary_accuracy", None, BinaryAccuracy, {"threshold": 0.5, "name": "binary_accuracy"}),
    ("binary_accuracy", BinaryCrossEntropy(from_logits=False), BinaryAccuracy,
     {"threshold": 0.5, "name": "binary_accuracy"}),
    ("accuracy", BinaryCrossEntropy(from_logits=False), BinaryAccuracy, {"threshold": 0.5, "name": "accuracy"}),
    ("accuracy", lambda pred, target: pred, Accuracy, {}),  # a loss function without a ``name``
])
def test_get_resolves_every_documented_name(name, loss, kind, config):
    metric = metrics.get(name, loss)
    assert type(metric) is kind and metric.get_config() == config


def test_get_keeps_user_metric_objects_and_refuses_classes_and_lookalike_names():
    class Recall:
        name = "recall"

        def __call__(self, pred, target):
            return pred

    mine = Recall()
    assert metrics.get(mine) is mine
    message = (r"unknown metric .*; use 'accuracy', 'top_k_accuracy' \(k=5\), 'top_<k>_accuracy', or a Metric "
               r"object such as TopKAccuracy\(k\)")
    for bad in (Recall, "abc_3_accuracy", "top_3", "top_0_accuracy"):
        with pytest.raises(ValueError, match=message):
            metrics.get(bad)


def test_shape_errors_name_the_metric(backend):
    pred = xpcnn.asarray(np.zeros((4, 3), np.float32))
    with pytest.raises(ValueError, match=r"^accuracy: labels of shape \(5,\) do not match predictions"):
        Accuracy()(pred, xpcnn.asarray(np.zeros(5, np.int64)))
    with pytest.raises(ValueError, match=r"^top_1_accuracy: one-hot targets of shape \(4, 2\)"):
        TopKAccuracy(1)(pred, xpcnn.asarray(np.zeros((4, 2), np.float32)))
