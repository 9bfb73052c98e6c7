"""The model families: torchvision's keys, shapes and parameter counts, and its eval-mode logits for its weights."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import xpcnn
from xpcnn import applications
from conftest import BACKEND
from torchvision_models import torchvision_models

PARAMETERS = {"resnet18": 11_689_512, "resnet34": 21_797_672, "resnet50": 25_557_032, "mobilenet_v2": 3_504_872,
              "mobilenet_v3_large": 5_483_032, "mobilenet_v3_small": 2_542_856, "efficientnet_b0": 5_288_548}


def randomised(torch_model: Any) -> Any:
    """Random weights and batch-norm statistics (a fresh torchvision model's are 0 and 1: they would hide a
    swapped mean and variance), in eval mode."""
    import torch

    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, value in torch_model.state_dict().items():
            if value.dtype.is_floating_point:
                noise = torch.rand(value.shape, generator=generator)
                value.copy_(0.5 + noise if name.endswith("running_var") else (noise - 0.5) * 0.2 + (
                    1.0 if name.endswith(".weight") and value.ndim == 1 else 0.0))
    return torch_model.eval()


@pytest.mark.parametrize("arch", sorted(PARAMETERS))
def test_keys_shapes_and_parameter_counts_are_torchvisions(backend, arch):
    reference = getattr(torchvision_models(), arch)()
    model = getattr(applications, arch)(input_shape=(3, 64, 64))
    expected = {k: tuple(v.shape) for k, v in reference.state_dict().items() if not k.endswith("num_batches_tracked")}
    assert {k: tuple(v.shape) for k, v in model.state_dict().items()} == expected
    assert list(model.state_dict()) == list(expected)  # torch's order too
    assert model.num_params == PARAMETERS[arch] == sum(p.numel() for p in reference.parameters())


@pytest.mark.parametrize("arch", sorted(PARAMETERS))
def test_logits_are_torchvisions_for_its_weights(backend, arch):
    import torch

    reference = randomised(getattr(torchvision_models(), arch)())
    model = getattr(applications, arch)(input_shape=(3, 64, 64))
    model.load_state_dict({k: v.numpy() for k, v in reference.state_dict().items()})
    x = np.random.default_rng(0).standard_normal((2, 3, 64, 64)).astype(np.float32)
    with torch.no_grad():
        expected = reference(torch.from_numpy(x)).numpy()
    got = xpcnn.to_numpy(model.predict(x))
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())


@pytest.mark.skipif(BACKEND != "numpy", reason="one 224x224 case per model, on NumPy (CI time)")
@pytest.mark.parametrize("arch", sorted(PARAMETERS))
def test_logits_at_224_are_torchvisions(backend, arch):
    import torch

    reference = randomised(getattr(torchvision_models(), arch)())
    model = getattr(applications, arch)()
    model.load_state_dict({k: v.numpy() for k, v in reference.state_dict().items()})
    x = np.random.default_rng(1).standard_normal((1, 3, 224, 224)).astype(np.float32)
    with torch.no_grad():
        expected = reference(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(xpcnn.to_numpy(model.predict(x)), expected, rtol=1e-4,
                               atol=1e-4 * np.abs(expected).max())


def test_without_the_top_the_features_or_their_pooling_come_out(backend):
    features = applications.resnet18(include_top=False, input_shape=(3, 64, 64))
    assert features.output_shape == (512, 2, 2)
    pooled = applications.resnet50(include_top=False, pooling="avg", input_shape=(3, 64, 64))
    assert pooled.output_shape == (2048,)
    assert not any(key.startswith("fc.") for key in pooled.state_dict())


@pytest.mark.parametrize("kwargs, error, message", [
    ({"pooling": "mean"}, ValueError, "pooling must be None, 'avg' or 'max', got 'mean'"),
    ({"num_classes": 0}, ValueError, "num_classes"),
    ({"input_shape": (64, 64)}, ValueError, r"input_shape is \(channels, height, width\)"),
    ({"weights": 3}, TypeError, "weights is None, a path or 'DEFAULT', got int"),
    ({"include_top": "yes"}, TypeError, "include_top"),
])
def test_bad_arguments_are_refused_before_anything_is_built(kwargs, error, message):
    with pytest.raises(error, match=message):
        applications.resnet18(**kwargs)


def test_include_preprocessing_normalises_inside_the_model_without_new_weights(backend):
    from xpcnn.applications.imagenet import IMAGENET_MEAN, IMAGENET_STD

    plain = applications.resnet18(input_shape=(3, 32, 32), num_classes=4)
    inside = applications.resnet18(input_shape=(3, 32, 32), num_classes=4, include_preprocessing=True)
    assert list(inside.state_dict()) == list(plain.state_dict())
    inside.load_state_dict(plain.state_dict())
    images = np.random.default_rng(0).uniform(size=(2, 3, 32, 32)).astype(np.float32)
    normalised = (images - np.asarray(IMAGENET_MEAN, np.float32)[:, None, None]) / np.asarray(
        IMAGENET_STD, np.float32)[:, None, None]
    np.testing.assert_allclose(xpcnn.to_numpy(inside.predict(images)), xpcnn.to_numpy(plain.predict(normalised)),
                               rtol=1e-4, atol=1e-5)
