"""image_dataset_from_directory on folders made here: formats, modes, splits, corrupt files, clear errors."""

from __future__ import annotations

import numpy as np
import pytest

PIL = pytest.importorskip("PIL")
from PIL import Image  # noqa: E402

import xpcnn  # noqa: E402
from xpcnn.datasets import ImageDataset, ImageFolderLoader, image_dataset_from_directory  # noqa: E402

COLORS = {"cats": (200, 30, 10), "dogs": (10, 60, 220), "owls": (90, 250, 40)}
FORMATS = ("png", "jpg", "bmp", "gif", "PNG")


def _folder(root, classes=("cats", "dogs"), per_class=5, size=(20, 12)):
    """``per_class`` solid-colour images of each class, cycling through the formats."""
    for name in classes:
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            fmt = FORMATS[i % len(FORMATS)]
            Image.new("RGB", size, COLORS[name]).save(root / name / f"{i:03d}.{fmt}",
                                                       format="JPEG" if fmt == "jpg" else fmt.upper())
    return root


def _load(root, **kwargs):
    return image_dataset_from_directory(root, **{"image_size": (8, 6), "verbose": False, "batch_size": None, **kwargs})


def test_classes_labels_and_pixels(tmp_path):
    _folder(tmp_path, per_class=5)
    data = _load(tmp_path, shuffle=False)
    assert isinstance(data, ImageDataset) and len(data) == 10
    x, y = data
    assert x.shape == (10, 3, 8, 6) and x.dtype == np.float32 and y.dtype == np.int64
    assert data.class_names == ("cats", "dogs")
    assert y.tolist() == [0] * 5 + [1] * 5
    assert data.file_paths[0].endswith("cats/000.png") and data.file_paths[-1].endswith("dogs/004.PNG")
    for image, label in zip(x, y):  # every format decodes to its colour (JPEG and GIF within their loss)
        expected = np.asarray(COLORS[data.class_names[label]], np.float32) / 255
        np.testing.assert_allclose(image.mean(axis=(1, 2)), expected, atol=0.05)
    lossless = [i for i, p in enumerate(data.file_paths) if p.lower().endswith((".png", ".bmp"))]
    np.testing.assert_array_equal(x[lossless[0]] * 255, np.broadcast_to(np.float32(COLORS["cats"])[:, None, None],
                                                                       (3, 8, 6)))


def test_matches_pillow_resize_and_modes(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    rng = np.random.default_rng(0)
    picture = Image.fromarray(rng.integers(0, 256, (30, 40, 3), dtype=np.uint8))
    picture.save(tmp_path / "a" / "pic.png")
    picture.save(tmp_path / "b" / "pic.png")
    for mode, pil_mode, channels in [("rgb", "RGB", 3), ("grayscale", "L", 1), ("rgba", "RGBA", 4)]:
        for interpolation in ("bilinear", "nearest", "bicubic"):
            x = _load(tmp_path, color_mode=mode, interpolation=interpolation, shuffle=False).x
            expected = np.asarray(picture.convert(pil_mode).resize(
                (6, 8), getattr(Image.Resampling, interpolation.upper())), np.float32) / 255
            assert x.shape == (2, channels, 8, 6)
            np.testing.assert_allclose(x[0], expected.reshape(8, 6, channels).transpose(2, 0, 1), atol=1e-6)


def test_crop_to_aspect_ratio_takes_the_centre(tmp_path):
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        wide = np.zeros((20, 60, 3), np.uint8)
        wide[:, :20] = wide[:, 40:] = (255, 0, 0)  # red sides, a black centre square
        Image.fromarray(wide).save(tmp_path / name / "wide.png")
    square = _load(tmp_path, image_size=(10, 10), crop_to_aspect_ratio=True, interpolation="nearest").x
    assert square.max() == 0.0  # only the centre (a smoothing filter also reads a pixel or two beyond it)
    squeezed = _load(tmp_path, image_size=(10, 10)).x
    assert squeezed[:, 0].max() == 1.0  # the sides too


def test_corrupt_files_are_skipped_with_one_warning(tmp_path):
    _folder(tmp_path, per_class=4)
    good = (tmp_path / "cats" / "001.jpg").read_bytes()
    (tmp_path / "cats" / "truncated.jpg").write_bytes(good[: len(good) // 2])
    (tmp_path / "dogs" / "not_an_image.png").write_text("hello")
    (tmp_path / "dogs" / "empty.jpeg").write_bytes(b"")
    (tmp_path / "dogs" / "notes.txt").write_text("ignored: not an image extension")
    with pytest.warns(UserWarning, match="skipped 3 of 11 files") as record:
        data = _load(tmp_path, shuffle=False)
    assert len(record) == 1
    message = str(record[0].message)
    assert "truncated.jpg" in message and "not_an_image.png" in message and "empty.jpeg" in message
    assert len(data) == 8 and data.y.tolist() == [0] * 4 + [1] * 4
    assert not any("truncated" in p for p in data.file_paths)


def test_validation_split_subsets(tmp_path):
    _folder(tmp_path, classes=("cats", "dogs", "owls"), per_class=10)
    train = _load(tmp_path, validation_split=0.2, subset="training", seed=3)
    val = _load(tmp_path, validation_split=0.2, subset="validation", seed=3)
    assert (len(train), len(val)) == (24, 6)
    assert not set(train.file_paths) & set(val.file_paths)
    assert len(set(train.file_paths) | set(val.file_paths)) == 30
    both = _load(tmp_path, validation_split=0.2, subset="both", seed=3)
    assert both[0].file_paths == train.file_paths and both[1].file_paths == val.file_paths
    np.testing.assert_array_equal(both[1].x, val.x)
    np.testing.assert_array_equal(both[1].y, val.y)
    other = _load(tmp_path, validation_split=0.2, subset="validation", seed=4)
    assert other.file_paths != val.file_paths


def test_label_modes_and_explicit_labels(tmp_path):
    _folder(tmp_path, per_class=3)
    binary = _load(tmp_path, label_mode="binary", shuffle=False)
    assert binary.y.dtype == np.float32 and binary.y.shape == (6, 1) and binary.y[:, 0].tolist() == [0, 0, 0, 1, 1, 1]
    categorical = _load(tmp_path, label_mode="categorical", shuffle=False)
    np.testing.assert_array_equal(categorical.y, np.eye(2, dtype=np.float32)[[0, 0, 0, 1, 1, 1]])
    unlabeled = _load(tmp_path, labels=None)
    assert unlabeled.y is None and len(unlabeled) == 6 and unlabeled.class_names == ()
    given = _load(tmp_path, labels=[5, 4, 3, 2, 1, 0], shuffle=False)
    assert given.y.tolist() == [5, 4, 3, 2, 1, 0]
    reordered = _load(tmp_path, class_names=["dogs", "cats"], shuffle=False)
    assert reordered.class_names == ("dogs", "cats") and reordered.y.tolist() == [0, 0, 0, 1, 1, 1]
    assert reordered.file_paths[0].endswith("dogs/000.png")


def test_many_files_load_in_threads(tmp_path):
    _folder(tmp_path, per_class=300, size=(4, 4))
    data = image_dataset_from_directory(tmp_path, image_size=(4, 4), verbose=True, num_workers=3, shuffle=False,
                                        batch_size=None)
    assert len(data) == 600 and data.y.sum() == 300
    single = _load(tmp_path, image_size=(4, 4), num_workers=1, shuffle=False)
    np.testing.assert_array_equal(data.x, single.x)


@pytest.mark.parametrize("kwargs, message", [
    ({"image_size": (0, 4)}, "image_size must be \\(height, width\\) of positive ints"),
    ({"color_mode": "cmyk"}, "color_mode must be one of"),
    ({"interpolation": "area"}, "interpolation must be one of"),
    ({"subset": "training", "seed": 1}, "give validation_split and subset together"),
    ({"validation_split": 0.2}, "give validation_split and subset together"),
    ({"validation_split": 1.5, "subset": "both"}, "validation_split must be a number in \\(0, 1\\)"),
    ({"validation_split": 0.2, "subset": "training"}, "needs a seed"),
    ({"validation_split": 0.05, "subset": "both"}, "leaves 6 for training and 0 for validation"),
    ({"class_names": ["cats", "birds"]}, "must name each subfolder"),
    ({"label_mode": "binary", "class_names": ["cats"]}, "must name each subfolder"),
    ({"labels": [0, 1]}, "one int >= 0 per image file \\(6 found"),
    ({"labels": np.array([0, 1, 2, 0, 1, -1])}, "one int >= 0 per image file"),
    ({"labels": None, "class_names": ["cats", "dogs"]}, "class_names is only used with labels='inferred'"),
])
def test_bad_arguments(tmp_path, kwargs, message):
    _folder(tmp_path, per_class=3)
    with pytest.raises(ValueError, match=message):
        _load(tmp_path, **kwargs)


def test_bad_folders(tmp_path):
    with pytest.raises(FileNotFoundError, match="is not a folder"):
        _load(tmp_path / "missing")
    (tmp_path / "empty" / "cats").mkdir(parents=True)
    (tmp_path / "empty" / "dogs").mkdir()
    with pytest.raises(ValueError, match="no image files"):
        _load(tmp_path / "empty")
    _folder(tmp_path / "one", classes=("cats",))
    with pytest.raises(ValueError, match="found 1 class folder.*needs two or more"):
        _load(tmp_path / "one")
    _folder(tmp_path / "three", classes=("cats", "dogs", "owls"), per_class=2)
    with pytest.raises(ValueError, match="label_mode='binary' needs exactly 2 classes, found 3"):
        _load(tmp_path / "three", label_mode="binary")
    broken = tmp_path / "broken"
    for name in ("a", "b"):
        (broken / name).mkdir(parents=True)
        (broken / name / "x.png").write_bytes(b"not a png")
    with pytest.warns(UserWarning), pytest.raises(ValueError, match="none of the 2 training files"):
        _load(broken)


def test_sixteen_bit_greyscale_is_scaled_not_clipped(tmp_path):
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        Image.fromarray(np.full((4, 4), 32768, np.uint16)).save(tmp_path / name / "grey16.png")
    for mode, channels in [("grayscale", 1), ("rgb", 3), ("rgba", 4)]:
        x = _load(tmp_path, color_mode=mode, image_size=(4, 4)).x
        assert x.shape == (2, channels, 4, 4)
        np.testing.assert_allclose(x[:, :3], 32768 / 65535, rtol=1e-6)
        if mode == "rgba":
            assert (x[:, 3] == 1.0).all()


def test_numpy_labels_hidden_folders_links_and_path_order(tmp_path):
    _folder(tmp_path, per_class=2)
    (tmp_path / "cats" / ".ipynb_checkpoints").mkdir()
    Image.new("RGB", (4, 4)).save(tmp_path / "cats" / ".ipynb_checkpoints" / "000.png")  # not a sample
    (tmp_path / "dogs" / "a").mkdir()
    Image.new("RGB", (4, 4)).save(tmp_path / "dogs" / "a" / "z.png")
    (tmp_path / "dogs" / "a-b").mkdir()
    Image.new("RGB", (4, 4)).save(tmp_path / "dogs" / "a-b" / "y.png")
    (tmp_path / "dogs" / "a" / "loop").symlink_to(tmp_path / "dogs")
    data = _load(tmp_path, shuffle=False, follow_links=True)
    names = [p.split(str(tmp_path))[1] for p in data.file_paths]
    assert names == ["/cats/000.png", "/cats/001.jpg", "/dogs/000.png", "/dogs/001.jpg", "/dogs/a/z.png",
                     "/dogs/a-b/y.png"]  # sorted as paths; the link back up is walked once
    given = _load(tmp_path, labels=np.array([1, 0, 1, 0, 1, 2]), shuffle=False)  # every file, without links
    assert len(given) == 6 and given.y.tolist() == [1, 0, 1, 0, 1, 2]


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")  # Pillow says it too
def test_images_over_the_pixel_limit_are_skipped(tmp_path, monkeypatch):
    _folder(tmp_path, per_class=2, size=(20, 12))
    Image.new("RGB", (40, 40)).save(tmp_path / "cats" / "huge.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # Pillow itself refuses only beyond twice this
    with pytest.warns(UserWarning, match="huge.png \\(40x40 pixels, over Pillow's MAX_IMAGE_PIXELS"):
        data = _load(tmp_path)
    assert len(data) == 4


# --- streaming: a batch_size gives a loader that reads the files as training asks ---------------------

def _stream(root, **kwargs):
    return image_dataset_from_directory(root, **{"image_size": (8, 6), "verbose": False, "batch_size": 4,
                                                 "num_workers": 2, **kwargs})


def test_streamed_batches_are_the_in_memory_images(tmp_path, backend):
    _folder(tmp_path, per_class=5)
    loader = _stream(tmp_path, shuffle=False, label_mode="binary")
    memory = _load(tmp_path, shuffle=False, label_mode="binary")
    assert isinstance(loader, ImageFolderLoader) and len(loader) == 3
    assert loader.class_names == memory.class_names and loader.file_paths == memory.file_paths
    batches = [tuple(xpcnn.to_numpy(part) for part in batch) for batch in loader]
    np.testing.assert_allclose(np.concatenate([b[0] for b in batches]), memory.x, rtol=1e-6)
    np.testing.assert_array_equal(np.concatenate([b[1] for b in batches]), memory.y)


def test_a_corrupt_file_mid_stream_is_left_out_and_named(tmp_path, backend):
    _folder(tmp_path, per_class=4)
    good = (tmp_path / "cats" / "001.jpg").read_bytes()
    (tmp_path / "cats" / "002x.jpg").write_bytes(good[: len(good) // 2])
    loader = _stream(tmp_path, shuffle=False)
    for epoch in range(2):  # one warning per epoch
        with pytest.warns(UserWarning, match=f"left out 1 samples in epoch {epoch} .*002x.jpg"):
            sizes = [int(yb.shape[0]) for _, yb in loader]
        assert sorted(sizes) == [1, 3, 4]  # the batch that held it is one smaller


def test_large_jpegs_decode_in_draft_mode(tmp_path, monkeypatch):
    """A JPEG at least twice the target is decoded at reduced scale (Pillow's draft), close to the full decode."""
    rng = np.random.default_rng(0)
    smooth = np.kron(rng.integers(0, 256, (15, 20, 3)), np.ones((20, 20, 1))).astype(np.uint8)  # 300x400
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        Image.fromarray(smooth).save(tmp_path / name / "big.jpg", quality=95)
    from PIL import JpegImagePlugin

    drafts = []
    real = JpegImagePlugin.JpegImageFile.draft
    monkeypatch.setattr(JpegImagePlugin.JpegImageFile, "draft", lambda self, *a: drafts.append(a) or real(self, *a))
    x = _load(tmp_path, image_size=(60, 80), shuffle=False).x
    assert len(drafts) == 2 and drafts[0][1] == (80, 60)
    full = np.asarray(Image.fromarray(smooth).resize((80, 60), Image.Resampling.BILINEAR), np.float32) / 255
    assert np.abs(x[0].transpose(1, 2, 0) - full).mean() < 0.03
    drafts.clear()
    _load(tmp_path, image_size=(200, 300))  # less than twice: decoded whole
    assert not drafts


def test_pad_to_aspect_ratio_keeps_the_whole_image(tmp_path):
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        Image.new("RGB", (40, 20), (255, 255, 255)).save(tmp_path / name / "wide.png")
    x = _load(tmp_path, image_size=(10, 10), pad_to_aspect_ratio=True, interpolation="nearest").x
    assert (x[:, :, :2] == 0).all() and (x[:, :, -2:] == 0).all()  # black bands above and below
    assert (x[:, :, 3:7] == 1).all()  # the white picture, whole, in the middle
    with pytest.raises(ValueError, match="crop_to_aspect_ratio and pad_to_aspect_ratio exclude each other"):
        _load(tmp_path, crop_to_aspect_ratio=True, pad_to_aspect_ratio=True)
    with pytest.raises(ValueError, match="data_format must be None or 'channels_first'"):
        _load(tmp_path, data_format="channels_last")


def test_the_tutorials_code_shape_trains_from_the_folder(tmp_path, backend):
    """``image_dataset_from_directory(..., subset="both", batch_size=...)`` then ``fit(train_ds,
    validation_data=val_ds)`` with augmentation on the device, as the Keras tutorial writes it."""
    from xpcnn.layers import Conv2D, Dense, GlobalAvgPool2D
    from xpcnn.transforms import RandomFlip

    _folder(tmp_path, per_class=10)
    train_ds, val_ds = image_dataset_from_directory(tmp_path, validation_split=0.2, subset="both", seed=1337,
                                                    image_size=(8, 8), batch_size=4, verbose=False)
    model = xpcnn.Sequential([Conv2D(4, 3, activation="relu"), GlobalAvgPool2D(), Dense(2)])
    model.compile("cross_entropy", "adam", metrics=["accuracy"])
    history = model.fit(train_ds, epochs=2, validation_data=val_ds, transform=RandomFlip(), verbose=0)
    assert len(history.history["val_loss"]) == 2 and np.isfinite(history.history["loss"]).all()
    assert train_ds.num_samples == 16 and val_ds.num_samples == 4
