"""MNIST loading: parsing, checksums, missing files, and downloads from a local HTTP server."""

from __future__ import annotations

import gzip
import pathlib
import shutil

import numpy as np
import pytest

from xpcnn.datasets import CorruptDatasetError, DownloadError, load_mnist, read_idx
from xpcnn.datasets._fetch import data_dir
from xpcnn.datasets.mnist import MNIST

NAMES = list(MNIST.files)


@pytest.fixture(scope="module")
def mnist(mnist_root):
    """The real data, parsed once for the module (about a second)."""
    return load_mnist(mnist_root / "mnist", download=False)


@pytest.fixture
def mnist_dir(mnist_root) -> pathlib.Path:
    return mnist_root / "mnist"


# --- the real data ---------------------------------------------------------------------------------------

def test_shapes_dtypes_and_ranges(mnist):
    (x_train, y_train), (x_test, y_test) = mnist
    assert x_train.shape == (60000, 1, 28, 28) and x_test.shape == (10000, 1, 28, 28)
    assert y_train.shape == (60000,) and y_test.shape == (10000,)
    assert x_train.dtype == np.float32 and x_test.dtype == np.float32
    assert y_train.dtype == np.int64 and y_test.dtype == np.int64
    assert x_train.min() == 0.0 and x_train.max() == 1.0
    assert 0.12 < x_train.mean() < 0.14  # the well-known MNIST mean 0.1307


def test_label_counts(mnist):
    (_, y_train), (_, y_test) = mnist
    assert np.bincount(y_train, minlength=10).tolist() == [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    assert np.bincount(y_test, minlength=10).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    assert y_test[:8].tolist() == [7, 2, 1, 0, 4, 1, 4, 9]


def test_uncompressed_files_load_too(mnist, mnist_dir, tmp_path):
    for name in NAMES:
        (tmp_path / name).write_bytes(gzip.decompress((mnist_dir / f"{name}.gz").read_bytes()))
    (_, y_train), (x_test, _) = load_mnist(tmp_path, download=False)
    np.testing.assert_array_equal(y_train, mnist[0][1])
    np.testing.assert_array_equal(x_test, mnist[1][0])


def test_xpcnn_data_env_is_used(mnist_root, monkeypatch):
    monkeypatch.setenv("XPCNN_DATA", str(mnist_root))
    assert data_dir("mnist") == mnist_root / "mnist"
    monkeypatch.delenv("XPCNN_DATA")
    monkeypatch.setenv("XDG_CACHE_HOME", "/some/cache")
    assert data_dir("mnist") == pathlib.Path("/some/cache/xpcnn/mnist")


# --- corrupt and missing files -----------------------------------------------------------------------------

def _copy(mnist_dir: pathlib.Path, dest: pathlib.Path) -> None:
    for name in NAMES:
        shutil.copy(mnist_dir / f"{name}.gz", dest / f"{name}.gz")


def test_flipped_byte_is_detected(mnist_dir, tmp_path):
    _copy(mnist_dir, tmp_path)
    path = tmp_path / "t10k-labels-idx1-ubyte"
    data = bytearray(gzip.decompress((tmp_path / "t10k-labels-idx1-ubyte.gz").read_bytes()))
    data[100] ^= 0xFF
    (tmp_path / "t10k-labels-idx1-ubyte.gz").unlink()
    path.write_bytes(bytes(data))
    with pytest.raises(CorruptDatasetError, match="t10k-labels-idx1-ubyte.*checksum"):
        load_mnist(tmp_path, download=False)


def test_truncated_gzip_is_detected(mnist_dir, tmp_path):
    _copy(mnist_dir, tmp_path)
    path = tmp_path / "train-labels-idx1-ubyte.gz"
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(CorruptDatasetError, match="train-labels-idx1-ubyte.gz"):
        load_mnist(tmp_path, download=True, mirrors=[])  # a corrupt file is never replaced silently


def test_read_idx_rejects_bad_headers():
    good = bytes([0, 0, 0x08, 1]) + (3).to_bytes(4, "big") + bytes([1, 2, 3])
    np.testing.assert_array_equal(read_idx(good), [1, 2, 3])
    with pytest.raises(CorruptDatasetError, match="magic"):
        read_idx(b"\x01\x00\x08\x01" + good[4:], "f.idx")
    with pytest.raises(CorruptDatasetError, match="element type"):
        read_idx(b"\x00\x00\x07\x01" + good[4:], "f.idx")
    with pytest.raises(CorruptDatasetError, match="f.idx.*bytes"):
        read_idx(good[:-1], "f.idx")


def test_missing_files_without_download(tmp_path):
    with pytest.raises(FileNotFoundError, match=str(tmp_path)):
        load_mnist(tmp_path, download=False)


def test_missing_files_default_dir_without_download(tmp_path, monkeypatch):
    monkeypatch.delenv("XPCNN_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="xpcnn/mnist"):
        load_mnist(download=False)


# --- downloads -------------------------------------------------------------------------------------------

def test_download_from_local_mirror(mnist, mnist_dir, server, tmp_path, monkeypatch):
    monkeypatch.delenv("XPCNN_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    empty = tmp_path / "empty"
    empty.mkdir()
    mirrors = [server(empty), server(mnist_dir)]  # the first mirror 404s, the second serves
    (_, y_train), (x_test, _) = load_mnist(mirrors=mirrors)  # with a progress bar when tqdm is there
    cache = tmp_path / "xpcnn" / "mnist"
    assert sorted(p.name for p in cache.iterdir()) == sorted(f"{n}.gz" for n in NAMES)  # no temp files left
    np.testing.assert_array_equal(y_train, mnist[0][1])
    np.testing.assert_array_equal(x_test, mnist[1][0])


def test_download_rejects_corrupt_mirror(mnist_dir, server, tmp_path):
    bad = tmp_path / "bad"
    bad.mkdir()
    _copy(mnist_dir, bad)
    path = bad / "t10k-images-idx3-ubyte.gz"
    path.write_bytes(gzip.compress(gzip.decompress(path.read_bytes())[:-1] + b"\x01", compresslevel=1))
    dest = tmp_path / "dest"
    with pytest.raises(DownloadError, match="checksum"):
        load_mnist(dest, mirrors=[server(bad)], progress=False)
    assert not (dest / "t10k-images-idx3-ubyte.gz").exists()
    assert not list(dest.glob("*.part"))


def test_all_mirrors_failing_says_offline(server, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    dest = tmp_path / "dest"
    with pytest.raises(DownloadError, match="offline") as info:
        load_mnist(dest, mirrors=[server(empty), server(empty)], progress=False)
    message = str(info.value)
    assert "404" in message and str(dest) in message
    assert isinstance(info.value, ConnectionError)


def test_progress_bar_is_optional(monkeypatch):
    import sys

    from xpcnn.datasets import _fetch

    monkeypatch.setitem(sys.modules, "tqdm.auto", None)  # import fails as if tqdm were not installed
    assert _fetch.progress_bar(10, "file.gz") is None


def test_read_idx_header_too_large_to_be_true():
    huge = bytes([0, 0, 0x08, 4]) + (65536).to_bytes(4, "big") * 4  # 2**64 bytes: int64 would wrap to 0
    with pytest.raises(CorruptDatasetError, match="huge.idx: IDX header says shape"):
        read_idx(huge, "huge.idx")
