"""fit, evaluate and predict on every kind of input: arrays, a DataLoader (arrays or a streamed dataset), a
Keras PyDataset-style object, a generator, a re-iterable; each trains as the same batches given as arrays."""

from __future__ import annotations

import numpy as np
import pytest

import xpcnn
from xpcnn.data import ArrayDataset, DataLoader
from xpcnn.layers import Conv2D, Dense, GlobalAvgPool2D

N, BATCH = 40, 8


def _data():
    rng = np.random.default_rng(1)
    x = rng.integers(0, 256, (N, 1, 6, 6), dtype=np.uint8)
    return x, (x.reshape(N, -1).mean(axis=1) > 127).astype(np.int64)


def _model():
    xpcnn.manual_seed(0)
    model = xpcnn.Sequential([Conv2D(3, 3, activation="relu"), GlobalAvgPool2D(), Dense(2)])
    model.compile("cross_entropy", "adam", metrics=["accuracy"])
    return model


def _weights(model):
    return {k: xpcnn.to_numpy(v) for k, v in model.params.items()}


class Batches:
    """Keras's PyDataset protocol: len() batches, [i] the i-th; on_epoch_end after each pass."""

    def __init__(self, x, y):
        self.x, self.y, self.ends = x, y, 0

    def __len__(self):
        return -(-len(self.x) // BATCH)

    def __getitem__(self, i):
        return self.x[i * BATCH:(i + 1) * BATCH], self.y[i * BATCH:(i + 1) * BATCH]

    def on_epoch_end(self):
        self.ends += 1


def _generator(x, y, passes):
    for _ in range(passes):
        for i in range(0, len(x), BATCH):
            yield x[i:i + BATCH], y[i:i + BATCH]


class Reiterable:
    """Batches that start again at each iteration, as a PyTorch DataLoader does."""

    def __init__(self, x, y):
        self.x, self.y = x, y

    def __iter__(self):
        return _generator(self.x, self.y, 1)


def _assert_same(a, b):
    for k in a:
        np.testing.assert_allclose(a[k], b[k], rtol=1e-5, atol=1e-6, err_msg=k)


def test_every_input_kind_trains_like_the_arrays(backend):
    x, y = _data()
    reference = _model()
    reference.fit(x, y, batch_size=BATCH, epochs=2, shuffle=False, verbose=0)
    expected = _weights(reference)
    pydataset = Batches(x, y)
    inputs = {
        "loader over arrays": DataLoader(x, y, batch_size=BATCH, shuffle=False),
        "loader over a dataset": DataLoader(ArrayDataset(x, y), batch_size=BATCH, shuffle=False, num_workers=2),
        "pydataset": pydataset,
        "re-iterable": Reiterable(x, y),
    }
    for name, data in inputs.items():
        model = _model()
        history = model.fit(data, epochs=2, verbose=0)
        assert len(history.history["loss"]) == 2, name
        _assert_same(_weights(model), expected)
    assert pydataset.ends == 2
    model = _model()  # a generator goes on across epochs with steps_per_epoch
    model.fit(_generator(x, y, 2), epochs=2, steps_per_epoch=N // BATCH, verbose=0)
    _assert_same(_weights(model), expected)


def test_streams_evaluate_and_predict_like_arrays(backend):
    x, y = _data()
    model = _model()
    model.fit(x, y, batch_size=BATCH, epochs=1, verbose=0)
    expected = model.evaluate(x, y, batch_size=BATCH)
    outputs = xpcnn.to_numpy(model.predict(x, batch_size=BATCH))
    for data in (DataLoader(ArrayDataset(x, y), batch_size=BATCH, shuffle=False), Batches(x, y),
                 _generator(x, y, 1)):
        assert model.evaluate(data) == pytest.approx(expected, rel=1e-5)
    for data in (DataLoader(ArrayDataset(x), batch_size=BATCH, shuffle=False), Batches(x, y), _generator(x, y, 1)):
        np.testing.assert_allclose(xpcnn.to_numpy(model.predict(data)), outputs, rtol=1e-5, atol=1e-6)


def test_validation_data_may_stream_with_validation_steps(backend):
    x, y = _data()
    model = _model()
    history = model.fit(DataLoader(ArrayDataset(x, y), batch_size=BATCH), epochs=2, verbose=0,
                        validation_data=Batches(x, y), validation_steps=2)
    assert len(history.history["val_loss"]) == 2
    model_arrays = _model()
    reference = model_arrays.fit(DataLoader(ArrayDataset(x, y), batch_size=BATCH), epochs=2, verbose=0,
                                 validation_data=(x[:2 * BATCH], y[:2 * BATCH]))
    assert history.history["val_loss"] == pytest.approx(reference.history["val_loss"], rel=1e-5)


def test_a_one_shot_generator_ends_training_with_a_warning(backend):
    x, y = _data()
    model = _model()
    with pytest.warns(UserWarning, match="ran out of data"):
        history = model.fit(_generator(x, y, 1), epochs=3, verbose=0)
    assert len(history.history["loss"]) == 1


def test_stream_inputs_are_checked_before_anything_changes(backend):
    x, y = _data()
    model = _model()
    with pytest.raises(ValueError, match="y must be None when x is a DataLoader"):
        model.fit(DataLoader(x, y), y)
    with pytest.raises(ValueError, match="batch_size belongs to the input"):
        model.fit(Batches(x, y), batch_size=4)
    with pytest.raises(ValueError, match="validation_split splits arrays"):
        model.fit(Batches(x, y), validation_split=0.2)
    with pytest.raises(TypeError, match="ArrayDataset is a dataset of samples; batch it first"):
        model.fit(ArrayDataset(x, y))
    with pytest.raises(ValueError, match=r"y \(first batch\): integer labels must lie in \[0, 2\)"):
        model.fit(Batches(x, y + 5))
    with pytest.raises(ValueError, match="batches must be \\(x, y\\) pairs"):
        model.fit(DataLoader(ArrayDataset(x), batch_size=4))
    assert not model.built and model.optimizer.iterations == 0


def test_nan_in_a_streamed_host_batch_is_caught(backend):
    x, y = _data()
    images = x.astype(np.float32) / 255
    images[21, 0, 2, 2] = np.inf
    with pytest.raises(ValueError, match="batch 2 holds NaN or infinity"):
        _model().fit(Batches(images, y), epochs=1, verbose=0)
    with pytest.raises(ValueError, match="sample 21 holds NaN or infinity"):
        _model().fit(DataLoader(ArrayDataset(images, y), batch_size=BATCH, shuffle=False), epochs=1, verbose=0)
    _model().fit(Batches(images, y), epochs=1, verbose=0, check_finite=False)


def test_no_worker_outlives_a_fit_that_raises(backend):
    """The loops a fit opens (a stream carried across epochs with steps_per_epoch) are closed when it raises,
    although the traceback keeps fit's frame alive."""
    import threading

    from xpcnn.callbacks import Callback

    class Fails(Callback):
        def on_train_batch_end(self, batch, logs=None):
            if batch == 1:
                raise RuntimeError("a callback failed")

    x, y = _data()
    loader = DataLoader(ArrayDataset(x, y), batch_size=BATCH, num_workers=2)
    try:
        _model().fit(loader, epochs=2, steps_per_epoch=3, verbose=0, callbacks=[Fails()],
                     validation_data=DataLoader(ArrayDataset(x, y), batch_size=BATCH, num_workers=2),
                     validation_steps=2)
    except RuntimeError as error:
        held = error  # noqa: F841 (the traceback, and fit's frame, stay alive)
        assert not [t for t in threading.enumerate() if t.name.startswith("xpcnn-loader")]
    else:
        pytest.fail("the callback's error did not come through")


def test_a_generator_cannot_validate_every_epoch_and_arrays_in_memory_are_named(backend, tmp_path):
    x, y = _data()
    with pytest.raises(ValueError, match="validation_data is a generator, which can be read once only"):
        _model().fit(x, y, epochs=2, validation_data=_generator(x, y, 1), verbose=0)
    from xpcnn.datasets import ImageDataset

    with pytest.raises(TypeError, match="holds arrays in memory: pass its arrays, x=data.x and y=data.y"):
        _model().fit(ImageDataset(x.astype(np.float32), y, ("a", "b"), ()), verbose=0)
