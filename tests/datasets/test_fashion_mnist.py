"""Fashion-MNIST: the IDX reader MNIST uses, checked against the published .gz sums (here: the test's own)."""

from __future__ import annotations

import dataclasses
import gzip
import pathlib

import numpy as np
import pytest

from xpcnn.datasets import CorruptDatasetError, DownloadError, class_names, load_fashion_mnist
from xpcnn.datasets import mnist as mnist_module
from xpcnn.datasets._fetch import md5

SIZES = {"train": 12, "t10k": 5}


def _idx(array: np.ndarray) -> bytes:
    """``array`` (uint8) in the IDX format: magic 00 00 08 ndim, big-endian dims, the bytes."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    return header + array.tobytes()


@pytest.fixture
def release(tmp_path, monkeypatch):
    """A small Fashion-MNIST in the release format under ``tmp_path/mirror`` (gzip files), the release
    description patched to its checksums; returns (mirror folder, {file: array})."""
    rng = np.random.default_rng(0)
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    arrays, files = {}, {}
    for split, n in SIZES.items():
        arrays[f"{split}-images-idx3-ubyte"] = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        arrays[f"{split}-labels-idx1-ubyte"] = rng.integers(0, 10, (n,), dtype=np.uint8)
    for name, array in arrays.items():
        packed = gzip.compress(_idx(array), mtime=0)
        (mirror / f"{name}.gz").write_bytes(packed)
        files[name] = (md5(packed), array.shape)
    monkeypatch.setattr(mnist_module, "FASHION_MNIST", dataclasses.replace(mnist_module.FASHION_MNIST, files=files))
    return mirror, arrays


def test_download_and_layout_match_mnist(release, server, tmp_path, monkeypatch):
    mirror, arrays = release
    monkeypatch.delenv("XPCNN_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    empty = tmp_path / "empty"
    empty.mkdir()
    (x_train, y_train), (x_test, y_test) = load_fashion_mnist(mirrors=[server(empty), server(mirror)], progress=False)
    cache = tmp_path / "cache" / "xpcnn" / "fashion_mnist"
    assert sorted(p.name for p in cache.iterdir()) == sorted(f"{n}.gz" for n in arrays)
    assert x_train.shape == (12, 1, 28, 28) and x_test.shape == (5, 1, 28, 28)
    assert x_train.dtype == np.float32 and y_train.dtype == np.int64
    np.testing.assert_array_equal(x_train[:, 0] * 255, arrays["train-images-idx3-ubyte"].astype(np.float32))
    np.testing.assert_array_equal(y_test, arrays["t10k-labels-idx1-ubyte"])
    # a second load reads the cache: no mirror needed
    (_, again), _ = load_fashion_mnist(download=False)
    np.testing.assert_array_equal(again, y_train)


def test_the_real_release_is_described_by_its_published_gzip_sums():
    release = mnist_module.FASHION_MNIST
    assert release.md5_of == "gzip" and release.name == "fashion_mnist"
    assert release.files["train-images-idx3-ubyte"][0] == "8d4fb7e6c68d591d4c3dfef9ec88bf0d"
    assert class_names("fashion_mnist")[9] == "Ankle boot" and len(class_names("fashion_mnist")) == 10


def test_damaged_gzip_is_refused_by_name(release, tmp_path):
    mirror, _ = release
    path = mirror / "t10k-labels-idx1-ubyte.gz"
    data = bytearray(path.read_bytes())
    data[-9] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(CorruptDatasetError, match="t10k-labels-idx1-ubyte.gz.*checksum"):
        load_fashion_mnist(mirror, download=False)


def test_uncompressed_copy_cannot_be_verified(release, tmp_path):
    mirror, _ = release
    path = mirror / "train-labels-idx1-ubyte.gz"
    (mirror / "train-labels-idx1-ubyte").write_bytes(gzip.decompress(path.read_bytes()))
    path.unlink()
    with pytest.raises(CorruptDatasetError, match="train-labels-idx1-ubyte: Fashion-MNIST's published checksums"):
        load_fashion_mnist(mirror, download=False)


def test_corrupt_mirror_and_offline(release, server, tmp_path):
    mirror, _ = release
    bad = tmp_path / "bad"
    bad.mkdir()
    for path in mirror.iterdir():
        (bad / path.name).write_bytes(path.read_bytes()[:-1])  # truncated by one byte
    dest = tmp_path / "dest"
    with pytest.raises(DownloadError, match="checksum"):
        load_fashion_mnist(dest, mirrors=[server(bad)], progress=False)
    assert not list(dest.iterdir())  # nothing half-written under any name
    with pytest.raises(DownloadError, match="offline") as info:
        load_fashion_mnist(dest, mirrors=[server(tmp_path / "dest")], progress=False)
    assert "Fashion-MNIST" in str(info.value) and str(dest) in str(info.value)
    with pytest.raises(FileNotFoundError, match="Fashion-MNIST.*fashion_mnist/"):
        load_fashion_mnist(pathlib.Path(tmp_path / "nowhere"), download=False)
