"""DataLoader over a map-style dataset: the same batches whatever the workers, positions restored exactly,
bounded buffers, errors that name the sample, and no thread or process left behind."""

from __future__ import annotations

import multiprocessing
import threading

import array_api_compat
import numpy as np
import pytest

import xpcnn
from xpcnn.data import ArrayDataset, DataLoader, SampleError, SkipSample
from xpcnn.data import workers as workers_module


def _images(n: int = 23) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(5)
    return rng.integers(0, 256, (n, 2, 3, 3), dtype=np.uint8), np.arange(n, dtype=np.int64)


def _jitter(sample, rng):
    """Noise from the sample's own generator: what a host-side augmentation does."""
    image, label = sample
    return np.clip(image.astype(np.int16) + rng.integers(-3, 4, image.shape), 0, 255).astype(np.uint8), label


class Broken(ArrayDataset):
    """Samples in ``skip`` cannot be read (SkipSample); sample ``fail`` raises a plain error."""

    def __init__(self, *arrays, skip=(), fail=None):
        super().__init__(*arrays)
        self.skip, self.fail = set(skip), fail
        self.file_paths = [f"img_{i}.jpg" for i in range(len(self))]

    def __getitem__(self, index):
        if index in self.skip:
            raise SkipSample("truncated file")
        if index == self.fail:
            raise KeyError("no such label")
        return super().__getitem__(index)


def _host(batches):
    return [tuple(xpcnn.to_numpy(part) for part in batch) for batch in batches]


def _loader_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("xpcnn-loader")]


WORKERS = [(0, False), (1, False), (2, False), (4, False), (2, True)]


@pytest.mark.parametrize("num_workers, processes", WORKERS)
def test_batches_depend_on_seed_and_epoch_only(backend, num_workers, processes):
    x, y = _images()
    reference = DataLoader(ArrayDataset(x, y), batch_size=5, seed=3, num_workers=0, sample_transform=_jitter)
    loader = DataLoader(ArrayDataset(x, y), batch_size=5, seed=3, num_workers=num_workers,
                        use_multiprocessing=processes, prefetch=1, sample_transform=_jitter)
    for _ in range(2):  # two epochs
        expected, got = _host(reference), _host(loader)
        assert len(got) == len(loader) == 5
        for (ex, ey), (gx, gy) in zip(expected, got):
            np.testing.assert_array_equal(gy, ey)
            np.testing.assert_array_equal(gx, ex)
    assert not _loader_threads() and not multiprocessing.active_children()


def test_orders_differ_by_epoch_and_repeat_by_seed(backend):
    x, y = _images()
    first = DataLoader(ArrayDataset(x, y), batch_size=23, seed=11, num_workers=2)
    again = DataLoader(ArrayDataset(x, y), batch_size=23, seed=11, num_workers=1)
    other = DataLoader(ArrayDataset(x, y), batch_size=23, seed=12, num_workers=1)
    epoch0, epoch1 = (_host(first)[0][1] for _ in range(2))
    assert sorted(epoch0.tolist()) == list(range(23)) and not np.array_equal(epoch0, epoch1)
    np.testing.assert_array_equal(_host(again)[0][1], epoch0)
    assert not np.array_equal(_host(other)[0][1], epoch0)


def test_unseeded_loaders_repeat_after_manual_seed(backend):
    x, y = _images()
    loader = DataLoader(ArrayDataset(x, y), batch_size=23)
    xpcnn.manual_seed(4)
    first = _host(loader)[0][1]
    xpcnn.manual_seed(4)
    np.testing.assert_array_equal(_host(loader)[0][1], first)


def test_uint8_becomes_scaled_floats_on_the_device(backend):
    x, y = _images()
    xb, yb = next(iter(DataLoader(ArrayDataset(x, y), batch_size=4, shuffle=False)))
    assert xb.dtype == backend.dtype and array_api_compat.device(xb) == backend.device
    assert backend.xp.isdtype(yb.dtype, "integral") and array_api_compat.device(yb) == backend.device
    np.testing.assert_allclose(xpcnn.to_numpy(xb), x[:4] / np.float32(255), rtol=1e-6)


@pytest.mark.parametrize("num_workers", [0, 2])
def test_a_restored_loader_yields_exactly_the_remaining_batches(backend, num_workers):
    x, y = _images()
    make = lambda: DataLoader(ArrayDataset(x, y), batch_size=4, num_workers=num_workers,  # noqa: E731
                              sample_transform=_jitter)
    xpcnn.manual_seed(9)
    whole = make()
    uninterrupted = [_host(whole) for _ in range(2)]
    xpcnn.manual_seed(9)
    interrupted = make()
    seen = []
    for batch in interrupted:
        seen.append(batch)
        if len(seen) == 3:
            break
    state = interrupted.state_dict()
    assert state["epoch"] == 0 and state["batch"] == 3
    restored = make()
    restored.load_state_dict(state)
    rest = _host(restored)
    assert len(rest) == len(whole) - 3
    for got, expected in zip(_host(seen) + rest, uninterrupted[0]):
        for g, e in zip(got, expected):
            np.testing.assert_array_equal(g, e)
    assert restored.state_dict()["epoch"] == 1 and restored.state_dict()["batch"] == 0


def test_arrays_restore_mid_epoch_too(backend):
    x, y = _images()
    loader = DataLoader(x, y, batch_size=5, seed=2)
    full = _host(loader)
    loader = DataLoader(x, y, batch_size=5, seed=2)
    loader.load_state_dict({"seed": 2, "epoch": 0, "batch": 2})
    np.testing.assert_array_equal(_host(loader)[0][1], full[2][1])


def test_bad_state_is_refused_by_name(backend):
    loader = DataLoader(ArrayDataset(*_images()), batch_size=5)
    with pytest.raises(ValueError, match="load_state_dict takes"):
        loader.load_state_dict({"epoch": 0})
    with pytest.raises(ValueError, match="out of range \\(this loader has 5 batches per epoch\\)"):
        loader.load_state_dict({"seed": 1, "epoch": 0, "batch": 9})
    with pytest.raises(ValueError, match="out of range"):  # a drawn seed is known once its epoch has begun
        loader.load_state_dict({"seed": None, "epoch": 2, "batch": 1})


def test_unreadable_samples_are_left_out_and_warned_once_per_epoch(backend):
    x, y = _images()
    dataset = Broken(x, y, skip=range(0, 14, 2))  # 7 unreadable samples
    loader = DataLoader(dataset, batch_size=4, shuffle=False, num_workers=2)
    with pytest.warns(UserWarning, match=r"left out 7 samples in epoch 0 .*img_0\.jpg\) \(truncated file\).*and 2 more"):
        batches = _host(loader)
    labels = np.concatenate([b[1] for b in batches])
    assert labels.tolist() == [i for i in range(23) if i not in dataset.skip]
    assert [len(b[1]) for b in batches] == [2, 2, 2, 3, 4, 3]  # well-formed, smaller batches


@pytest.mark.parametrize("num_workers, processes", [(0, False), (2, False), (2, True)])
def test_a_failing_sample_is_named_and_stops_the_workers(backend, num_workers, processes):
    x, y = _images()
    loader = DataLoader(Broken(x, y, fail=9), batch_size=4, shuffle=False, num_workers=num_workers,
                        use_multiprocessing=processes)
    with pytest.raises(SampleError, match=r"sample 9 \(img_9\.jpg\) failed: KeyError"):
        list(loader)
    assert not _loader_threads() and not multiprocessing.active_children()


def test_nan_samples_are_refused_unless_unchecked(backend):
    x = np.ones((6, 2), np.float32)
    x[4, 1] = np.nan
    with pytest.raises(ValueError, match="sample 4 holds NaN or infinity"):
        list(DataLoader(ArrayDataset(x), batch_size=2, shuffle=False, num_workers=1))
    assert len(list(DataLoader(ArrayDataset(x), batch_size=2, check_finite=False))) == 3


def test_no_worker_outlives_a_break_or_an_error_in_the_loop(backend):
    x, y = _images(60)
    for processes in (False, True):
        loader = DataLoader(ArrayDataset(x, y), batch_size=2, num_workers=2, use_multiprocessing=processes)
        for _ in loader:
            break
        assert not _loader_threads() and not multiprocessing.active_children()
        for error in (RuntimeError("the step failed"), KeyboardInterrupt()):  # KeyboardInterrupt: Ctrl-C
            with pytest.raises(type(error)):
                for _ in loader:
                    raise error
            assert not _loader_threads() and not multiprocessing.active_children()


def test_host_memory_is_a_few_reused_buffers(backend, monkeypatch):
    """At most num_workers + prefetch batch buffers exist, made once and refilled every epoch."""
    made = []
    real = workers_module.BatchBuffer.__init__

    def counting(self, *args, **kwargs):
        made.append(self)
        real(self, *args, **kwargs)

    monkeypatch.setattr(workers_module.BatchBuffer, "__init__", counting)
    x, y = _images(200)
    loader = DataLoader(ArrayDataset(x, y), batch_size=4, num_workers=2, prefetch=1)
    for _ in range(3):
        assert len(list(loader)) == 50
    batches = [buffer for buffer in made if buffer.capacity == 4]  # besides the one-sample read of the layout
    assert len(batches) == 3
    assert len({id(a) for buffer in batches for a in buffer.arrays}) == 6  # images and labels of 3 buffers


def test_samples_of_different_shapes_are_refused_by_index(backend):
    class Ragged(ArrayDataset):
        def __getitem__(self, index):
            return np.zeros((3,) if index < 5 else (4,), np.float32)

    with pytest.raises(ValueError, match=r"sample 5: part 0 is float32 \(4,\), the loader's first sample's was float32 "
                                         r"\(3,\)"):
        list(DataLoader(Ragged(np.zeros(8)), batch_size=8, shuffle=False, num_workers=0))


@pytest.mark.parametrize("kwargs, error, match", [
    ({"num_workers": -1}, ValueError, "num_workers"),
    ({"prefetch": -1}, ValueError, "prefetch"),
    ({"use_multiprocessing": "yes"}, TypeError, "use_multiprocessing must be True or False"),
    ({"sample_transform": 3}, TypeError, "sample_transform must be callable"),
    ({"seed": -2}, ValueError, "seed"),
])
def test_bad_arguments_are_named(kwargs, error, match):
    with pytest.raises(error, match=match):
        DataLoader(ArrayDataset(np.zeros((3, 2))), **kwargs)


def test_arrays_refuse_the_options_of_datasets():
    with pytest.raises(ValueError, match="num_workers, use_multiprocessing and sample_transform read a dataset"):
        DataLoader(np.zeros((3, 2)), num_workers=2)
    with pytest.raises(ValueError, match="a dataset yields its own targets"):
        DataLoader(ArrayDataset(np.zeros((3, 2))), np.zeros(3))


def test_two_loops_over_one_loader_never_share_a_buffer(backend):
    x, y = _images()
    loader = DataLoader(ArrayDataset(x, y), batch_size=4, shuffle=False, num_workers=0, prefetch=1)
    for outer, (_, yb) in enumerate(loader):
        inner = [xpcnn.to_numpy(b) for _, b in loader]  # a whole second loop while the first is suspended
        assert np.concatenate(inner).tolist() == list(range(23))
        assert xpcnn.to_numpy(yb).tolist() == list(range(4 * outer, min(4 * outer + 4, 23)))


def test_a_failing_sample_comes_after_the_batches_before_it(backend):
    x, y = _images()
    got = []
    with pytest.raises(SampleError, match="sample 9"):
        for _, yb in DataLoader(Broken(x, y, fail=9), batch_size=4, shuffle=False, num_workers=2):
            got.append(xpcnn.to_numpy(yb).tolist())
    assert got == [[0, 1, 2, 3], [4, 5, 6, 7]]


def test_an_array_loader_refuses_nan_unless_told_not_to_check(backend):
    x = np.ones((6, 2), np.float32)
    x[3, 0] = np.inf
    with pytest.raises(ValueError, match=r"DataLoader: x holds NaN or infinity \(first in sample 3\)"):
        DataLoader(x)
    assert len(list(DataLoader(x, batch_size=4, check_finite=False))) == 2


def test_a_memory_mapped_dataset_goes_to_processes_as_its_file(tmp_path):
    import pickle

    np.save(tmp_path / "x.npy", np.arange(40000, dtype=np.float64).reshape(100, 400))
    mapped = np.load(tmp_path / "x.npy", mmap_mode="r")
    whole, view = ArrayDataset(mapped), ArrayDataset(mapped[10:20])
    assert len(pickle.dumps(whole)) < 2_000  # the file's name, not its 320 kB
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(whole))[99], mapped[99])
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(view))[0], mapped[10])  # a view travels as its values
