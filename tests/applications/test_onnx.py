"""Every model family exports to ONNX and runs in onnxruntime within 1e-4 of ``predict``."""

from __future__ import annotations

import numpy as np
import pytest

import xpcnn
from xpcnn import applications

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")


@pytest.mark.parametrize("arch", applications.__all__)
def test_the_model_runs_in_onnxruntime_as_it_predicts(backend, tmp_path, arch):
    model = getattr(applications, arch)(input_shape=(3, 64, 64), include_preprocessing=True)
    rng = np.random.default_rng(0)
    for key, value in model.buffers.items():  # statistics that are not 0 and 1, so that a mix-up shows
        if key.endswith("running_var"):
            model.set_buffers({key: xpcnn.asarray(rng.uniform(0.5, 1.5, value.shape[0]).astype(np.float32))})
        elif key.endswith("running_mean"):
            model.set_buffers({key: xpcnn.asarray(rng.normal(0.0, 0.1, value.shape[0]).astype(np.float32))})
    path = tmp_path / f"{arch}.onnx"
    xpcnn.export_onnx(model, path)
    onnx.checker.check_model(onnx.load(str(path)))
    images = rng.uniform(size=(2, 3, 64, 64)).astype(np.float32)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(None, {session.get_inputs()[0].name: images})[0]
    expected = np.asarray(xpcnn.to_numpy(model.predict(images)))
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())
