"""ImageNet helpers: torchvision's preprocessing, Keras's decode_predictions, and the DEFAULT weights download
(from a local server: nothing here reaches the internet)."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

import xpcnn
from xpcnn import applications
from xpcnn.applications import imagenet, weights
from torchvision_models import torchvision_models


@pytest.mark.parametrize("arch", ["resnet50", "resnet18", "efficientnet_b0"])
def test_preprocess_input_is_what_torchvisions_transforms_give(arch):
    torchvision_models()  # enters the torchvision package without its compiled operators
    from PIL import Image
    from torchvision.transforms._presets import ImageClassification
    from torchvision.transforms import InterpolationMode

    spec = weights.DEFAULT_WEIGHTS[arch]
    transform = ImageClassification(crop_size=spec["crop"], resize_size=spec["resize"],
                                    interpolation=InterpolationMode(spec["interpolation"]))
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (2, 3, 300, 260), dtype=np.uint8)
    expected = np.stack([transform(Image.fromarray(im.transpose(1, 2, 0))).numpy() for im in images])
    got = imagenet.preprocess_input(images, arch)
    assert got.shape == (2, 3, 224, 224) and got.dtype == np.float32
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_preprocess_input_refuses_what_it_cannot_prepare():
    with pytest.raises(ValueError, match=r"expected images of shape \(N, 3, H, W\), got \(2, 64, 64, 3\)"):
        imagenet.preprocess_input(np.zeros((2, 64, 64, 3), np.uint8))
    with pytest.raises(ValueError, match="unknown model 'vgg16'"):
        imagenet.preprocess_input(np.zeros((1, 3, 64, 64), np.uint8), "vgg16")
    with pytest.raises(TypeError, match="images are uint8 or floats in \\[0, 1\\], got int64"):
        imagenet.preprocess_input(np.zeros((1, 3, 64, 64), np.int64))
    small = imagenet.preprocess_input(np.full((1, 3, 100, 200), 255, np.uint8), "resnet18")  # enlarged, then cropped
    np.testing.assert_allclose(small[0, :, 0, 0], (1.0 - np.array(imagenet.IMAGENET_MEAN)) / imagenet.IMAGENET_STD,
                               rtol=1e-6)


def _class_index(folder) -> None:
    folder.mkdir(exist_ok=True)
    (folder / "imagenet_class_index.json").write_text(
        json.dumps({str(i): [f"n{i:08d}", f"class_{i}"] for i in range(1000)}))


def test_decode_predictions_names_the_best_classes_from_the_downloaded_index(server, tmp_path, monkeypatch):
    _class_index(tmp_path / "www")
    monkeypatch.setattr(imagenet, "CLASS_INDEX_MIRRORS", [server(tmp_path / "www")])
    scores = np.zeros((2, 1000), np.float32)
    scores[0, [7, 3, 999]] = [3.0, 2.0, 1.0]
    scores[1, 42] = 5.0
    decoded = imagenet.decode_predictions(scores, top=3, root=tmp_path / "cache")
    assert decoded[0] == [("n00000007", "class_7", 3.0), ("n00000003", "class_3", 2.0),
                          ("n00000999", "class_999", 1.0)]
    assert decoded[1][0] == ("n00000042", "class_42", 5.0)
    assert (tmp_path / "cache" / "imagenet_class_index.json").is_file()  # kept: the next call reads it
    with pytest.raises(ValueError, match=r"expected scores of shape \(N, 1000\), got \(2, 10\)"):
        imagenet.decode_predictions(np.zeros((2, 10)), root=tmp_path / "cache")


def test_default_weights_download_once_checked_against_their_hash(backend, server, tmp_path, monkeypatch):
    import torch

    torch_model = torchvision_models().resnet18()
    www = tmp_path / "www"
    www.mkdir()
    torch.save(torch_model.state_dict(), www / "staging.pth")
    data = (www / "staging.pth").read_bytes()
    name = f"resnet18-{hashlib.sha256(data).hexdigest()[:8]}.pth"
    (www / name).write_bytes(data)
    monkeypatch.setattr(weights, "MIRRORS", [server(www)])
    monkeypatch.setitem(weights.DEFAULT_WEIGHTS, "resnet18", {**weights.DEFAULT_WEIGHTS["resnet18"], "file": name})
    monkeypatch.setenv("XPCNN_DATA", str(tmp_path / "data"))
    model = applications.resnet18(weights="DEFAULT", input_shape=(3, 64, 64))
    assert (tmp_path / "data" / "weights" / name).is_file()
    np.testing.assert_array_equal(xpcnn.to_numpy(model.state_dict()["fc.weight"]), torch_model.fc.weight.detach().numpy())
    # a damaged download is refused and not kept
    (tmp_path / "data" / "weights" / name).unlink()
    (www / name).write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    with pytest.raises(xpcnn.datasets.DownloadError, match="SHA-256"):
        applications.resnet18(weights="DEFAULT", input_shape=(3, 64, 64))
    assert not (tmp_path / "data" / "weights" / name).exists()
