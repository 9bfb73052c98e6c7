"""Flags, counts and numbers: one check everywhere, so a string flag or a float count never slips through."""

from __future__ import annotations

import numpy as np
import pytest

import xpcnn
from xpcnn import callbacks, datasets, optimizers, transforms
from xpcnn._checks import check_flag, check_int, check_number
from xpcnn.data import DataLoader
from xpcnn.layers import BatchNorm2D, Conv2D, Conv2DTranspose, Dense, MaxPool2D, UpSampling2D
from xpcnn.losses import BinaryCrossEntropy, CrossEntropy


def test_check_flag_takes_python_and_numpy_bools_only():
    assert check_flag(True, "f") is True and check_flag(np.False_, "f") is False
    for bad in ("false", "True", 0, 1, None, 1.0, np.int64(1)):
        with pytest.raises(TypeError, match=r"^Owner: f must be True or False, got \w+ "):
            check_flag(bad, "f", "Owner")


def test_check_int_names_type_and_range():
    assert check_int(np.int32(3), "n", 1) == 3 and type(check_int(np.int32(3), "n", 1)) is int
    with pytest.raises(TypeError, match=r"^n must be an integer, got float 2\.0$"):
        check_int(2.0, "n", 1)
    with pytest.raises(TypeError, match="got bool True"):
        check_int(True, "n", 0)
    with pytest.raises(ValueError, match=r"^Owner: n must be an integer >= 1, got 0$"):
        check_int(0, "n", 1, "Owner")


def test_check_number_names_type_and_range():
    assert check_number(np.float32(0.5), "r") == 0.5 and type(check_number(np.float32(0.5), "r")) is float
    with pytest.raises(TypeError, match=r"^Owner: r must be a finite number, got str '1'$"):
        check_number("1", "r", "Owner")
    with pytest.raises(ValueError, match="r must be a finite number, got nan"):
        check_number(float("nan"), "r")
    with pytest.raises(ValueError, match=r"r must be >= 0.0, got -1"):
        check_number(-1, "r")
    assert check_number(-1, "r", minimum=None) == -1.0


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda v: Dense(3, bias=v), "Dense: bias"),
        (lambda v: Conv2D(3, 3, bias=v), "Conv2D: bias"),
        (lambda v: Conv2DTranspose(3, 3, bias=v), "Conv2DTranspose: bias"),
        (lambda v: MaxPool2D(2, ceil_mode=v), "MaxPool2D: ceil_mode"),
        (lambda v: UpSampling2D(2, "bilinear", align_corners=v), "UpSampling2D: align_corners"),
        (lambda v: BatchNorm2D(affine=v), "BatchNorm2D: affine"),
        (lambda v: CrossEntropy(from_logits=v), "CrossEntropy: from_logits"),
        (lambda v: BinaryCrossEntropy(from_logits=v), "BinaryCrossEntropy: from_logits"),
        (lambda v: optimizers.SGD(nesterov=v), "SGD: nesterov"),
        (lambda v: optimizers.Adam(amsgrad=v), "Adam: amsgrad"),
        (lambda v: optimizers.RMSprop(centered=v), "RMSprop: centered"),
        (lambda v: optimizers.Adam(use_ema=v), "Adam: use_ema"),
        (lambda v: transforms.RandomFlip(horizontal=v, vertical=True), "RandomFlip: horizontal"),
        (lambda v: transforms.RandomFlip(vertical=v), "RandomFlip: vertical"),
        (lambda v: DataLoader(np.zeros((4, 2)), np.zeros(4), shuffle=v), "DataLoader: shuffle"),
        (lambda v: DataLoader(np.zeros((4, 2)), np.zeros(4), drop_last=v), "DataLoader: drop_last"),
        (lambda v: callbacks.EarlyStopping(restore_best_weights=v), "EarlyStopping: restore_best_weights"),
        (lambda v: callbacks.ModelCheckpoint("m.xpcnn", save_best_only=v), "ModelCheckpoint: save_best_only"),
        (lambda v: callbacks.ModelCheckpoint("m.xpcnn", save_weights_only=v), "ModelCheckpoint: save_weights_only"),
        (lambda v: callbacks.CSVLogger("log.csv", append=v), "CSVLogger: append"),
        (lambda v: callbacks.OneCycleLR(1e-3, total_steps=10, three_phase=v), "OneCycleLR: three_phase"),
        (lambda v: datasets.load_mnist(root="/nonexistent-xpcnn", download=v), "MNIST: download"),
        (lambda v: datasets.load_cifar10(root="/nonexistent-xpcnn", download=False, progress=v), "CIFAR-10: progress"),
    ],
)
def test_every_flag_refuses_a_string_and_keeps_a_numpy_bool_as_bool(make, message):
    with pytest.raises(TypeError, match=f"{message} must be True or False, got str 'false'"):
        make("false")
    try:
        make(np.False_)  # a flag computed with NumPy is still a flag
    except FileNotFoundError:  # the loaders get as far as looking for their files
        pass


@pytest.mark.parametrize("flag", ["shuffle", "follow_links", "crop_to_aspect_ratio", "verbose"])
def test_image_folder_flags_are_checked(tmp_path, flag):
    with pytest.raises(TypeError, match=f"image_dataset_from_directory: {flag} must be True or False"):
        datasets.image_dataset_from_directory(tmp_path, **{flag: "no"})


@pytest.mark.parametrize("flag", ["shuffle", "check_finite", "sync_batch_norm"])
def test_fit_checks_its_flags_before_anything_changes(backend, flag):
    model = xpcnn.Sequential([Dense(2)])  # built by its first fit
    model.compile("cross_entropy", "sgd")
    with pytest.raises(TypeError, match=f"fit: {flag} must be True or False, got int 0"):
        model.fit(np.zeros((4, 3), np.float32), np.zeros(4, np.int64), epochs=1, verbose=0, **{flag: 0})
    assert not model.built and model.optimizer.iterations == 0


def test_a_numpy_flag_is_stored_as_a_python_bool_so_configs_stay_json():
    layer = Dense(3, bias=np.False_)
    assert layer.get_config()["bias"] is False
