"""Real data: the classic small CNN learns MNIST in one short epoch on the session's backend.

10,000 training images, one epoch, batch 32, Adam 3e-3: about 97% on the 10,000 test images (96.2% to
97.5% over seeds on NumPy), asserted >= 95%. JAX runs op by op on the CPU (eager dispatch) and is several
times slower, so there the run is halved (5,000 training and 2,000 test images) and must reach >= 90%.
Skipped when MNIST is absent (``mnist_root``).
"""

from __future__ import annotations

import numpy as np
import pytest

import xpcnn
from xpcnn.datasets.mnist import load_mnist
from xpcnn.layers.activations import ReLU
from xpcnn.layers.conv import Conv2D
from xpcnn.layers.dense import Dense
from xpcnn.layers.pool import MaxPool2D
from xpcnn.layers.reshape import Flatten
from xpcnn.model import Sequential
from xpcnn.optimizers import Adam

#: backend -> (training images, test images, accuracy to reach)
BUDGETS = {"jax": (5_000, 2_000, 0.90)}
DEFAULT_BUDGET = (10_000, 10_000, 0.95)


def classic_cnn() -> Sequential:
    return Sequential([
        Conv2D(16, 5, padding="same"), ReLU(), MaxPool2D(2),
        Conv2D(32, 5, padding="same"), ReLU(), MaxPool2D(2),
        Flatten(), Dense(10),
    ], input_shape=(1, 28, 28))


@pytest.mark.slow
def test_classic_cnn_learns_mnist(backend, mnist_root):
    n_train, n_test, target = BUDGETS.get(backend.name, DEFAULT_BUDGET)
    (x_train, y_train), (x_test, y_test) = load_mnist(mnist_root / "mnist", download=False, progress=False)
    xpcnn.manual_seed(0)
    model = classic_cnn()
    model.compile("cross_entropy", Adam(lr=3e-3), metrics=["accuracy"])
    history = model.fit(x_train[:n_train], y_train[:n_train], batch_size=32, epochs=1, verbose=0)
    assert history.history["accuracy"][0] > target - 0.1
    result = model.evaluate(x_test[:n_test], y_test[:n_test], batch_size=500)
    assert result["accuracy"] >= target, result
    # predict gives the same predictions as evaluate counted
    logits = xpcnn.to_numpy(model.predict(x_test[:n_test], batch_size=500))
    assert np.mean(logits.argmax(axis=1) == y_test[:n_test]) == pytest.approx(result["accuracy"], abs=0.5 / n_test)
