"""Activation layer behaviours that mutation testing (``nox -s mutation``) found unchecked: the activation inside a
layer (``activation="relu"``) is named after its layer, so that it takes no number from the default names, and the
unknown-activation error names the layer."""

from __future__ import annotations

import pytest

from xpcnn.layers import Dense, ReLU


def test_a_layers_activation_takes_no_default_name():
    first = ReLU().name
    Dense(2, activation="relu")
    number = int(first.rpartition("_")[2]) if first != "relu" else 0
    assert ReLU().name == f"relu_{number + 1}"


def test_unknown_activation_names_the_layer():
    with pytest.raises(ValueError, match="^Dense: unknown activation 'rleu'; use one of "):
        Dense(2, activation="rleu")
