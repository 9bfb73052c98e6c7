"""CIFAR-10/100 from archives made in the binary release's exact layout (fewer records), served on 127.0.0.1."""

from __future__ import annotations

import dataclasses
import io
import json
import tarfile

import numpy as np
import pytest

from xpcnn.datasets import CorruptDatasetError, DownloadError, class_names, load_cifar10, load_cifar100
from xpcnn.datasets import cifar as cifar_module
from xpcnn.datasets._fetch import md5

RECORDS = 4  # per file (the release has 10,000)


def _records(rng: np.random.Generator, n: int, label_classes: tuple[int, ...]) -> tuple[bytes, dict]:
    """``n`` binary records (label bytes, then R, G, B planes of 32x32) and what they should decode to."""
    labels = [rng.integers(0, k, n, dtype=np.uint8) for k in label_classes]
    pixels = rng.integers(0, 256, (n, 3, 32, 32), dtype=np.uint8)
    rows = np.concatenate([*(lab[:, None] for lab in labels), pixels.reshape(n, -1)], axis=1)
    return rows.tobytes(), {"labels": labels, "pixels": pixels}


def _archive(path, members: dict[str, bytes], extra: list[tarfile.TarInfo] = ()) -> None:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for info in extra:
            tar.addfile(info)


def _release(release, records: int = RECORDS):
    return dataclasses.replace(release, train_files={f: records for f in release.train_files},
                               test_files={f: records for f in release.test_files})


@pytest.fixture
def cifar10(tmp_path, monkeypatch):
    """A CIFAR-10 binary archive in ``tmp_path/mirror``; the release patched to its MD5 and record counts.
    Returns (mirror, expected {file: decoded}, members) ; ``remake(members)`` rebuilds it (and its MD5)."""
    rng = np.random.default_rng(0)
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    release = _release(cifar_module.CIFAR10)
    members, expected = {}, {}
    for name in [*release.train_files, *release.test_files]:
        members[f"cifar-10-batches-bin/{name}"], expected[name] = _records(rng, RECORDS, (10,))
    members["cifar-10-batches-bin/batches.meta.txt"] = "\n".join(class_names("cifar10")).encode()
    members["cifar-10-batches-bin/readme.html"] = b"<html></html>"

    def remake(members, extra=()):
        archive = mirror / release.archive
        _archive(archive, members, extra)
        monkeypatch.setattr(cifar_module, "CIFAR10", dataclasses.replace(release, md5=md5(archive)))
        return archive

    remake(members)
    return mirror, expected, members, remake


def test_download_extract_and_decode(cifar10, server, tmp_path, monkeypatch):
    mirror, expected, _, _ = cifar10
    monkeypatch.delenv("XPCNN_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    (x_train, y_train), (x_test, y_test) = load_cifar10(mirrors=[server(mirror)], progress=False)
    assert x_train.shape == (5 * RECORDS, 3, 32, 32) and x_test.shape == (RECORDS, 3, 32, 32)
    assert x_train.dtype == np.float32 and y_train.dtype == np.int64
    batches = [expected[f"data_batch_{i}.bin"] for i in range(1, 6)]
    np.testing.assert_array_equal(y_train, np.concatenate([b["labels"][0] for b in batches]))
    np.testing.assert_array_equal(x_train * 255, np.concatenate([b["pixels"] for b in batches]).astype(np.float32))
    np.testing.assert_array_equal(x_test[:, 2] * 255, expected["test_batch.bin"]["pixels"][:, 2])  # the blue plane
    cache = tmp_path / "cache" / "xpcnn" / "cifar10"
    assert sorted(p.name for p in cache.iterdir()) == ["cifar-10-batches-bin", "cifar-10-binary.tar.gz"]  # no temps
    assert (cache / "cifar-10-batches-bin" / "readme.html").is_file()
    (cache / "cifar-10-binary.tar.gz").unlink()  # later loads read the extracted folder
    (_, again), _ = load_cifar10(download=False)
    np.testing.assert_array_equal(again, y_train)


def test_extracted_file_damaged_later_is_refused(cifar10):
    mirror, *_ = cifar10
    load_cifar10(mirror, download=False)
    path = mirror / "cifar-10-batches-bin" / "data_batch_3.bin"
    data = bytearray(path.read_bytes())
    data[500] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(CorruptDatasetError, match="data_batch_3.bin: checksum mismatch with the manifest"):
        load_cifar10(mirror, download=False)


def test_a_folder_extracted_by_hand_is_checked_by_size(cifar10):
    mirror, expected, _, _ = cifar10
    with tarfile.open(mirror / "cifar-10-binary.tar.gz") as tar:
        tar.extractall(mirror, filter="data") if hasattr(tarfile, "data_filter") else tar.extractall(mirror)
    (mirror / "cifar-10-binary.tar.gz").unlink()
    _, (_, y_test) = load_cifar10(mirror, download=False)
    np.testing.assert_array_equal(y_test, expected["test_batch.bin"]["labels"][0])
    path = mirror / "cifar-10-batches-bin" / "test_batch.bin"
    path.write_bytes(path.read_bytes()[:-1])
    with pytest.raises(CorruptDatasetError, match="test_batch.bin: 12291 bytes, expected 4 records of 3073"):
        load_cifar10(mirror, download=False)


def test_damaged_archive_is_refused_by_name(cifar10, server, tmp_path):
    mirror, *_ = cifar10
    archive = mirror / "cifar-10-binary.tar.gz"
    archive.write_bytes(archive.read_bytes()[:-100])
    with pytest.raises(CorruptDatasetError, match="cifar-10-binary.tar.gz: checksum mismatch"):
        load_cifar10(mirror, download=False)
    dest = tmp_path / "dest"
    with pytest.raises(DownloadError, match="checksum"):
        load_cifar10(dest, mirrors=[server(mirror)], progress=False)
    assert not list(dest.iterdir())


def test_truncated_archive_with_its_own_checksum_fails_to_extract(cifar10, monkeypatch):
    mirror, *_ = cifar10
    archive = mirror / "cifar-10-binary.tar.gz"
    archive.write_bytes(archive.read_bytes()[:2000])
    monkeypatch.setattr(cifar_module, "CIFAR10", dataclasses.replace(cifar_module.CIFAR10, md5=md5(archive)))
    with pytest.raises(CorruptDatasetError, match="cifar-10-binary.tar.gz: cannot extract"):
        load_cifar10(mirror, download=False)
    assert sorted(p.name for p in mirror.iterdir()) == ["cifar-10-binary.tar.gz"]  # no folder, no temp folder


@pytest.mark.parametrize("name, why", [
    ("../escaped.bin", "would escape"),
    ("/tmp/absolute.bin", "would escape"),
    ("cifar-10-batches-bin/../../escaped.bin", "would escape"),
    ("other-folder/data.bin", "outside cifar-10-batches-bin/"),
])
def test_members_outside_the_folder_are_refused(cifar10, tmp_path, name, why):
    mirror, _, members, remake = cifar10
    remake({**members, name: b"x"})
    with pytest.raises(CorruptDatasetError, match=f"member '{name}' .*{why}"):
        load_cifar10(mirror, download=False)
    assert not (tmp_path / "escaped.bin").exists() and not (mirror / "cifar-10-batches-bin").exists()
    assert sorted(p.name for p in mirror.iterdir()) == ["cifar-10-binary.tar.gz"]


@pytest.mark.parametrize("kind", [tarfile.SYMTYPE, tarfile.LNKTYPE, tarfile.CHRTYPE])
def test_links_and_devices_are_refused(cifar10, kind):
    mirror, _, members, remake = cifar10
    link = tarfile.TarInfo("cifar-10-batches-bin/link.bin")
    link.type, link.linkname = kind, "/etc/passwd"
    remake(members, [link])
    with pytest.raises(CorruptDatasetError, match="link.bin' is a link or special file"):
        load_cifar10(mirror, download=False)


def test_wrong_sized_or_missing_members_are_refused(cifar10):
    mirror, _, members, remake = cifar10
    remake({**members, "cifar-10-batches-bin/data_batch_2.bin": b"\x00" * 3073})
    with pytest.raises(CorruptDatasetError, match="data_batch_2.bin' holds 3073 bytes, not 4 records"):
        load_cifar10(mirror, download=False)
    del members["cifar-10-batches-bin/test_batch.bin"]
    remake(members)
    with pytest.raises(CorruptDatasetError, match="test_batch.bin is missing"):
        load_cifar10(mirror, download=False)


def test_label_out_of_range_is_refused(cifar10):
    mirror, _, members, remake = cifar10
    data = bytearray(members["cifar-10-batches-bin/test_batch.bin"])
    data[3073] = 10  # the second record's label
    remake({**members, "cifar-10-batches-bin/test_batch.bin": bytes(data)})
    with pytest.raises(CorruptDatasetError, match="label reads 10, but CIFAR-10 has 10 classes"):
        load_cifar10(mirror, download=False)


def test_offline_and_missing(tmp_path, server):
    empty = tmp_path / "empty"
    empty.mkdir()
    dest = tmp_path / "dest"
    with pytest.raises(DownloadError, match="offline") as info:
        load_cifar10(dest, mirrors=[server(empty)], progress=False)
    assert "cifar-10-binary.tar.gz" in str(info.value) and str(dest) in str(info.value)
    with pytest.raises(FileNotFoundError, match="CIFAR-10: neither cifar-10-batches-bin/ nor"):
        load_cifar10(tmp_path / "nowhere", download=False)


def test_cifar100_fine_and_coarse_labels(tmp_path, monkeypatch):
    rng = np.random.default_rng(1)
    release = _release(cifar_module.CIFAR100, records=6)
    members, expected = {}, {}
    for name in ["train.bin", "test.bin"]:
        members[f"cifar-100-binary/{name}"], expected[name] = _records(rng, 6, (20, 100))
    archive = tmp_path / release.archive
    _archive(archive, members)
    monkeypatch.setattr(cifar_module, "CIFAR100", dataclasses.replace(release, md5=md5(archive)))
    (x, fine), _ = load_cifar100(tmp_path, download=False)
    (_, coarse), (x_test, _) = load_cifar100(tmp_path, download=False, label_mode="coarse")
    np.testing.assert_array_equal(coarse, expected["train.bin"]["labels"][0])
    np.testing.assert_array_equal(fine, expected["train.bin"]["labels"][1])
    np.testing.assert_array_equal(x_test * 255, expected["test.bin"]["pixels"].astype(np.float32))
    with pytest.raises(ValueError, match="label_mode must be one of \\['coarse', 'fine'\\]"):
        load_cifar100(tmp_path, download=False, label_mode="medium")


def test_manifest_records_every_extracted_file(cifar10):
    mirror, *_ = cifar10
    load_cifar10(mirror, download=False)
    manifest = json.loads((mirror / "cifar-10-batches-bin" / ".xpcnn-manifest.json").read_text())
    assert sorted(manifest["md5"]) == sorted(["batches.meta.txt", "readme.html", "test_batch.bin",
                                              *(f"data_batch_{i}.bin" for i in range(1, 6))])


def test_class_names():
    assert class_names("cifar10")[3] == "cat"
    assert len(class_names("cifar100")) == 100 and class_names("cifar100")[0] == "apple"
    assert len(class_names("cifar100", "coarse")) == 20
    with pytest.raises(ValueError, match="unknown dataset 'imagenet'"):
        class_names("imagenet")


@pytest.mark.parametrize("clash", ["dir_then_file", "file_then_child"])
def test_members_that_clash_are_refused_cleanly(cifar10, clash):
    mirror, _, members, remake = cifar10
    folder = tarfile.TarInfo("cifar-10-batches-bin/readme.html")
    folder.type = tarfile.DIRTYPE
    if clash == "dir_then_file":
        members = {k: v for k, v in members.items() if not k.endswith("readme.html")}
        remake({"cifar-10-batches-bin/data_batch_1.bin/x": b"", **members})
    else:
        remake({**members, "cifar-10-batches-bin/readme.html/inner.txt": b"x"})
    with pytest.raises(CorruptDatasetError, match="cifar-10-binary.tar.gz: cannot extract"):
        load_cifar10(mirror, download=False)
    assert sorted(p.name for p in mirror.iterdir()) == ["cifar-10-binary.tar.gz"]


def test_a_colon_in_a_member_name_is_refused(cifar10):
    mirror, _, members, remake = cifar10
    remake({**members, "cifar-10-batches-bin/C:evil.bin": b"x"})
    with pytest.raises(CorruptDatasetError, match="C:evil.bin' would escape"):
        load_cifar10(mirror, download=False)


def test_extracted_folder_is_readable_by_others_as_the_umask_allows(cifar10):
    import os
    import stat

    mirror, *_ = cifar10
    mask = os.umask(0o022)
    try:
        load_cifar10(mirror, download=False)
    finally:
        os.umask(mask)
    assert stat.S_IMODE((mirror / "cifar-10-batches-bin").stat().st_mode) == 0o755


def test_a_folder_another_process_extracted_meanwhile_is_used(cifar10, monkeypatch):
    mirror, expected, _, _ = cifar10
    real_replace = cifar_module.os.replace

    def racing_replace(src, dst):  # the other process wins the rename
        (mirror / "other").mkdir()
        with tarfile.open(mirror / "cifar-10-binary.tar.gz") as tar:
            tar.extractall(mirror / "other", filter="data") if hasattr(tarfile, "data_filter") else tar.extractall(mirror / "other")
        real_replace(mirror / "other" / "cifar-10-batches-bin", dst)
        return real_replace(src, dst)

    monkeypatch.setattr(cifar_module.os, "replace", racing_replace)
    _, (_, y_test) = load_cifar10(mirror, download=False)
    np.testing.assert_array_equal(y_test, expected["test_batch.bin"]["labels"][0])
    assert not [p for p in mirror.iterdir() if p.name.endswith(".part")]


def test_a_full_disk_is_reported_as_such_not_as_a_bad_archive(cifar10, monkeypatch):
    import errno

    mirror, *_ = cifar10

    def full(*args):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(cifar_module.shutil, "copyfileobj", full)
    with pytest.raises(OSError, match="No space left") as info:
        load_cifar10(mirror, download=False)
    assert not isinstance(info.value, CorruptDatasetError)
    assert sorted(p.name for p in mirror.iterdir()) == ["cifar-10-binary.tar.gz"]
