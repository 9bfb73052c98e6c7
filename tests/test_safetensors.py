"""Weights in the safetensors format: written by xpcnn, read by PyTorch (``safetensors.torch``) and back; damaged
and foreign files refused with the file and the entry named, the model untouched."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest

import xpcnn
from layer_checks import host
from xpcnn.io import load_model
from xpcnn.layers import BatchNorm2D, Conv2D, Dense, Flatten, MaxPool2D, ReLU
from xpcnn.model import Sequential

torch = pytest.importorskip("torch")
st_torch = pytest.importorskip("safetensors.torch")


def _model() -> Sequential:
    return Sequential([Conv2D(4, 3, padding=1), BatchNorm2D(), ReLU(), MaxPool2D(2), Flatten(), Dense(5)],
                      input_shape=(2, 6, 6))


def _torch_model() -> torch.nn.Module:
    return torch.nn.Sequential(torch.nn.Conv2d(2, 4, 3, padding=1), torch.nn.BatchNorm2d(4), torch.nn.ReLU(),
                               torch.nn.MaxPool2d(2), torch.nn.Flatten(), torch.nn.Linear(36, 5)).eval()


def _x(n: int = 5) -> np.ndarray:
    return np.random.default_rng(0).standard_normal((n, 2, 6, 6)).astype(np.float32)


def _trained() -> Sequential:
    model = _model()
    model.compile("cross_entropy", "adam")
    model.fit(_x(16), np.arange(16) % 5, batch_size=4, epochs=1, verbose=0)  # running statistics move too
    return model


def _snapshot(model) -> dict[str, np.ndarray]:
    return {k: host(v) for k, v in model.state_dict().items()}


def test_xpcnn_weights_load_into_pytorch_and_predict_the_same(backend, tmp_path):
    model = _trained()
    path = tmp_path / "weights.safetensors"
    model.save_weights(path)
    tmodel = _torch_model()
    missing, unexpected = tmodel.load_state_dict(st_torch.load_file(str(path)), strict=False)
    assert unexpected == [] and all(k.endswith("num_batches_tracked") for k in missing)
    with torch.no_grad():
        expected = tmodel(torch.from_numpy(_x())).numpy()
    np.testing.assert_allclose(host(model.predict(_x())), expected, rtol=1e-4, atol=1e-5)
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        metadata = f.metadata()
    assert metadata["xpcnn_version"] == xpcnn.__version__ and metadata["format"] == "xpcnn.weights"
    assert json.loads(metadata["architecture"]) == json.loads(json.dumps(model.get_config()))


@pytest.mark.parametrize("dtype", ["float32", "bfloat16", "float16"])
def test_pytorch_weights_load_into_xpcnn_and_predict_the_same(backend, tmp_path, dtype):
    torch.manual_seed(0)
    tmodel = _torch_model().to(getattr(torch, dtype))
    with torch.no_grad():
        tmodel[1].running_mean.uniform_(-0.5, 0.5)
        tmodel[1].running_var.uniform_(0.5, 2.0)
    path = tmp_path / "torch.safetensors"
    st_torch.save_file(tmodel.state_dict(), str(path))
    model = _model()
    model.load_weights(path)
    reference = tmodel.float()
    for key, value in model.state_dict().items():
        np.testing.assert_array_equal(host(value), reference.state_dict()[key].numpy())  # exact (widening)
    with torch.no_grad():
        expected = reference(torch.from_numpy(_x())).numpy()
    np.testing.assert_allclose(host(model.predict(_x())), expected, rtol=1e-4, atol=1e-5)


def test_graph_model_round_trip_and_whole_model_calls_refused(backend, tmp_path):
    inputs = xpcnn.Input((3,), name="x")
    model = xpcnn.Model(inputs, Dense(2, name="head")(Dense(4, activation="relu", name="trunk")(inputs)))
    path = tmp_path / "graph.SafeTensors"  # the extension, in any case
    model.save_weights(path)
    rebuilt = xpcnn.Model.from_config(model.get_config())
    rebuilt.load_weights(path)
    for key, value in _snapshot(model).items():
        np.testing.assert_array_equal(_snapshot(rebuilt)[key], value)
    with pytest.raises(ValueError, match="safetensors holds weights only; use model.save_weights"):
        model.save(tmp_path / "whole.safetensors")
    with pytest.raises(ValueError, match="is a safetensors file: weights only"):
        load_model(path)


def test_weights_of_another_architecture_are_refused_untouched(backend, tmp_path):
    path = tmp_path / "other.safetensors"
    Sequential([Conv2D(4, 3, padding=1), Conv2D(4, 1), ReLU(), MaxPool2D(2), Flatten(), Dense(5)],
               input_shape=(2, 6, 6)).save_weights(path)
    model = _model()
    before = _snapshot(model)
    with pytest.raises(ValueError, match="layer 1 is Conv2D in the file but BatchNorm2D in the model"):
        model.load_weights(path)
    foreign = tmp_path / "foreign.safetensors"  # no xpcnn metadata: keys and shapes decide
    st_torch.save_file({"0.weight": torch.zeros(4, 2, 5, 5)}, str(foreign))
    with pytest.raises(ValueError, match=r"missing keys .*shape mismatches \[0.weight: expected \(4, 2, 3, 3\)"):
        model.load_weights(foreign)
    for key, value in _snapshot(model).items():
        np.testing.assert_array_equal(before[key], value)


def _raw(header: dict, buffer: bytes = b"", length: int | None = None) -> bytes:
    text = json.dumps(header).encode()
    return struct.pack("<Q", len(text) if length is None else length) + text + buffer


def _raw_text(text: str) -> bytes:
    return struct.pack("<Q", len(text.encode())) + text.encode()


_LONG = "9" * 5000  # more digits than Python converts to an int by default


@pytest.mark.parametrize(("content", "message"), [
    (b"\x01\x02", "shorter than its header length"),
    (_raw({}, length=10**9), "a header of 1000000000 bytes"),
    (struct.pack("<Q", 4) + b"{{{{", "not valid JSON"),
    (_raw({"0.weight": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}, b"\0" * 4), "do not lie in"),
    (_raw({"0.weight": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}}, b"\0" * 8), "needs 12 bytes"),
    (_raw({"0.weight": {"dtype": "C64", "shape": [1], "data_offsets": [0, 8]}}, b"\0" * 8), "dtype 'C64'"),
    (_raw({"0.weight": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 0]}}), "not a list of non-negative"),
    (_raw({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
           "b": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}}, b"\0" * 8), "overlap or leave holes"),
    (_raw({"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}, b"\0" * 8), "cover 4 of the buffer's 8"),
    (_raw({"__metadata__": {"architecture": 3}}), "must map strings to strings"),
    (_raw({"__metadata__": {"architecture": "[[[["}}), "architecture in the safetensors metadata is not valid"),
    (_raw_text(f'{{"0.weight": {{"dtype": "F32", "shape": [{_LONG}], "data_offsets": [0, 0]}}}}'),
     r"tensor '0.weight': shape \[<a 5000-digit number>\] is not a list of non-negative ints"),
    (_raw({"__metadata__": {"architecture": f'{{"layers": [{{"class_name": "Dense", "config": {{"out_features": '
                                            f'-{_LONG}}}}}], "input_shape": [72]}}'}}),
     r"field architecture.layers\[0\].config.out_features holds an integer Python cannot read: got a 5000-digit"),
])
def test_damaged_files_are_refused_naming_the_file(backend, tmp_path, content, message):
    path = tmp_path / "bad.safetensors"
    path.write_bytes(content)
    model = _model()
    before = _snapshot(model)
    with pytest.raises(ValueError, match=message) as info:
        model.load_weights(path)
    assert str(path) in str(info.value)
    for key, value in _snapshot(model).items():
        np.testing.assert_array_equal(before[key], value)
