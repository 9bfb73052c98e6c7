"""torchvision checkpoints as users get them: written by ``torch.save`` in both formats, read by
``weights=path`` in a process where torch cannot be imported, give torchvision's eval-mode logits."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import BACKEND, DEVICE, REPO_ROOT
from test_models import PARAMETERS, randomised
from torchvision_models import torchvision_models

READER = """
import importlib.abc, json, sys
class NoTorch(importlib.abc.MetaPathFinder):  # importing torch now fails: nothing below may need it
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] == "torch":
            raise ImportError("torch is blocked in this process")
sys.meta_path.insert(0, NoTorch())
import numpy as np
import xpcnn
from xpcnn import applications
backend, device, folder, archs = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
xpcnn.set_backend(backend, device=None if device == "-" else device)
x = np.load(folder + "/images.npy")
logits = {}
for arch in archs:
    for fmt in ("zip", "legacy"):
        model = getattr(applications, arch)(weights=f"{folder}/{arch}-{fmt}.pth", input_shape=(3, 64, 64))
        logits[f"{arch}-{fmt}"] = np.asarray(xpcnn.to_numpy(model.predict(x)))
np.savez(folder + "/logits.npz", **logits)
print("torch imported:", any(name.split(".")[0] == "torch" for name in sys.modules))
"""


def test_torch_saved_files_in_both_formats_give_torchvisions_logits_without_torch(tmp_path):
    import torch

    archs = sorted(PARAMETERS)
    images = np.random.default_rng(0).standard_normal((2, 3, 64, 64)).astype(np.float32)
    np.save(tmp_path / "images.npy", images)
    expected = {}
    for arch in archs:
        reference = randomised(getattr(torchvision_models(), arch)())
        with torch.no_grad():
            expected[arch] = reference(torch.from_numpy(images)).numpy()
        torch.save(reference.state_dict(), tmp_path / f"{arch}-zip.pth")
        torch.save(reference.state_dict(), tmp_path / f"{arch}-legacy.pth", _use_new_zipfile_serialization=False)
    # the torch backend needs torch itself: its session reads the files on NumPy
    backend, device = ("numpy", "-") if BACKEND == "torch" else (BACKEND, DEVICE or "-")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH")) if p)}
    done = subprocess.run([sys.executable, "-c", READER, backend, device, str(tmp_path), json.dumps(archs)],
                          capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "torch imported: False" in done.stdout
    with np.load(tmp_path / "logits.npz") as got:
        for arch in archs:
            for fmt in ("zip", "legacy"):
                np.testing.assert_allclose(got[f"{arch}-{fmt}"], expected[arch], rtol=1e-4,
                                           atol=1e-4 * np.abs(expected[arch]).max(), err_msg=f"{arch} {fmt}")


def test_a_file_of_another_model_is_refused_by_key(backend, tmp_path):
    import torch

    from xpcnn import applications

    torch.save(torchvision_models().resnet18().state_dict(), tmp_path / "resnet18.pth")
    with pytest.raises(ValueError, match=r"mobilenet_v2: .*resnet18\.pth does not hold mobilenet_v2's weights"):
        applications.mobilenet_v2(weights=tmp_path / "resnet18.pth", input_shape=(3, 64, 64))
    features = applications.resnet18(weights=tmp_path / "resnet18.pth", include_top=False, input_shape=(3, 64, 64))
    assert "fc.weight" not in features.state_dict()  # without the top, the file's classifier is left out
