"""Loss-object behaviours that mutation testing (``nox -s mutation``) found unchecked: Keras's names and the
probability output a model's last activation implies, CrossEntropy's config, the widest class count an integer
label dtype can address, and errors that name the argument, the dtype and both array libraries."""

from __future__ import annotations

import re

import numpy as np
import pytest

import xpcnn
from conftest import BACKEND
from layer_checks import host
from xpcnn.losses import MSE, BinaryCrossEntropy, CrossEntropy, get


@pytest.mark.parametrize(("name", "kind"), [
    ("categorical_crossentropy", CrossEntropy), ("sparse_categorical_crossentropy", CrossEntropy),
    ("binary_crossentropy", BinaryCrossEntropy), ("mean_squared_error", MSE),
])
def test_get_knows_keras_names(name, kind):
    loss = get(name)
    assert type(loss) is kind and getattr(loss, "from_logits", True) is True


def test_get_takes_probabilities_after_the_matching_output_activation():
    assert get("categorical_crossentropy", "softmax").from_logits is False
    assert get("cross_entropy", "softmax").from_logits is False
    assert get("binary_crossentropy", "sigmoid").from_logits is False
    assert get("cross_entropy", "sigmoid").from_logits is True  # a sigmoid output is no distribution over classes
    assert get("binary_cross_entropy", "softmax").from_logits is True
    assert get("cross_entropy", None).from_logits is True
    assert type(get("mse", "softmax")) is MSE


def test_cross_entropy_config_rebuilds_it():
    assert CrossEntropy().get_config() == {}
    assert CrossEntropy(from_logits=False).get_config() == {"from_logits": False}
    assert CrossEntropy(**CrossEntropy(from_logits=False).get_config()).from_logits is False
    assert repr(CrossEntropy(from_logits=False)) == "CrossEntropy(from_logits=False)"
    assert repr(CrossEntropy()) == "CrossEntropy()" and repr(MSE()) == "MSE()"


def test_uint8_labels_address_exactly_256_classes(backend):
    """The largest uint8 label, 255, is class 256's index: 256 classes are fine, 257 are refused."""
    labels = np.array([0, 255], dtype=np.uint8)
    pred = np.random.default_rng(0).standard_normal((2, 256))
    value = CrossEntropy().forward(xpcnn.asarray(pred), xpcnn.asarray(labels))
    wide = CrossEntropy().forward(xpcnn.asarray(pred), xpcnn.asarray(labels.astype(np.int64)))
    np.testing.assert_allclose(float(host(value)), float(host(wide)), rtol=1e-6)
    with pytest.raises(TypeError, match="class indices of dtype uint8 cannot address 257 classes"):
        CrossEntropy().forward(xpcnn.asarray(np.zeros((2, 257))), xpcnn.asarray(labels))


def test_float_class_indices_are_refused_with_their_dtype(backend):
    float_labels = xpcnn.asarray(np.array([0.0, 1.0], dtype=np.float32))
    with pytest.raises(TypeError, match="must be integers, got dtype float32;"):
        CrossEntropy().forward(xpcnn.asarray(np.zeros((2, 3))), float_labels)


def test_errors_name_the_argument_the_dtype_and_the_libraries(backend):
    pred = xpcnn.asarray(np.zeros((2, 3)))
    with pytest.raises(TypeError, match="MSE: pred must be an array, got list"):
        MSE().forward([[0.0] * 3] * 2, pred)
    complex_target = backend.xp.zeros((2, 3), dtype=backend.xp.complex64, device=backend.device)
    with pytest.raises(TypeError, match="MSE: target must be real or boolean, got dtype complex64"):
        MSE().forward(pred, complex_target)
    import array_api_strict

    foreign = np.zeros((2, 3)) if BACKEND == "array_api_strict" else array_api_strict.asarray(np.zeros((2, 3)))
    libraries = f"({type(pred).__name__} and {type(foreign).__name__}); convert the target with xpcnn.asarray"
    with pytest.raises(TypeError, match=re.escape(libraries)):
        MSE().forward(pred, foreign)
