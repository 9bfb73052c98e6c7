"""Every script in examples/ runs in ``--quick`` mode on the backend under test and writes a real picture.

Each example runs as a subprocess (as a user would start it) with ``--backend``/``--device`` of this
session (array-api-strict on its simulated ``device1``), writes its PNG into ``tmp_path``, and the test
reads the PNG back: the pixel size the example's fixed figure size gives, and content that is not one
flat colour. The examples that train on MNIST are skipped when the data are absent.
"""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

import xpcnn

pytest.importorskip("matplotlib")
pytest.importorskip("skimage")

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
EXAMPLES = REPO_ROOT / "examples"
BACKEND = os.environ.get("XPCNN_TEST_BACKEND", "numpy")
DEVICE = os.environ.get("XPCNN_TEST_DEVICE") or ("device1" if BACKEND == "array_api_strict" else None)
TIMEOUT_S = 600  # a quick run takes seconds on NumPy; the generous limit is for slow shared CI machines

# script -> (picture it writes, needs MNIST, (height, width) in pixels)
CASES = {
    "feature_maps.py": ("feature_maps.png", False, (1069, 432)),
    "augmentation.py": ("augmentation.png", False, (660, 672)),
    "class_activation_maps.py": ("class_activation_maps.png", True, (302, 1008)),
    "autoencoder.py": ("autoencoder.png", True, (288, 1088)),
    "train_mnist.py": ("history.png", True, (272, 720)),
    "resnet.py": ("resnet_history.png", True, (272, 1080)),
    "unet_segmentation.py": ("unet_segmentation.png", False, (412, 880)),
    "cats_vs_dogs.py": ("cats_vs_dogs_cam.png", False, (322, 1008)),
}
# script -> (the line its score follows, the least score its quick run must reach)
QUICK_SCORES = {"cats_vs_dogs.py": ("validation accuracy: ", 0.9)}


def _run(script: str, out: pathlib.Path, *extra: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    cmd = [sys.executable, str(EXAMPLES / script), "--quick", "--backend", BACKEND, "--out", str(out), *extra]
    if DEVICE is not None:
        cmd += ["--device", DEVICE]
    env = {**os.environ, "MPLBACKEND": "Agg", **(env or {}), "PYTHONPATH": os.pathsep.join(
        p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH")) if p)}
    result = subprocess.run(cmd, cwd=out, env=env, capture_output=True, text=True, timeout=TIMEOUT_S)
    assert result.returncode == 0, (
        f"{' '.join(cmd)} failed with exit code {result.returncode}\n--- stdout\n{result.stdout[-4000:]}"
        f"\n--- stderr\n{result.stderr[-4000:]}"
    )
    return result


def _check_png(path: pathlib.Path, size: tuple[int, int] | None) -> None:
    import matplotlib.image

    assert path.is_file(), f"{path.name} was not written"
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", f"{path.name} is not a PNG file"
    image = matplotlib.image.imread(path)
    assert image.ndim == 3 and image.shape[2] in (3, 4)
    if size is not None:
        assert image.shape[:2] == size, f"{path.name}: {image.shape[:2]} pixels, expected {size}"
    else:
        assert min(image.shape[:2]) >= 100, f"{path.name} is only {image.shape[:2]} pixels"
    rgb = image[..., :3]
    assert float(rgb.std()) > 0.02, f"{path.name} is (nearly) one flat colour"
    assert len(np.unique(rgb.reshape(-1, 3), axis=0)) > 16, f"{path.name} holds almost no distinct colours"


@pytest.mark.parametrize("script", list(CASES))
def test_example_quick_run_writes_its_picture(script, tmp_path, request):
    picture, needs_mnist, size = CASES[script]
    if not (EXAMPLES / script).is_file():
        pytest.skip(f"examples/{script} is not there")
    extra = []
    if needs_mnist:
        mnist_root = request.getfixturevalue("mnist_root")  # skips when MNIST is absent
        extra = ["--data", str(mnist_root)]
    result = _run(script, tmp_path, *extra)
    _check_png(tmp_path / picture, size)
    assert str(tmp_path / picture) in result.stdout, "the example should say where it saved the picture"
    if script in QUICK_SCORES:
        prefix, least = QUICK_SCORES[script]
        score = float(result.stdout.split(prefix)[1].split()[0])
        assert score >= least, f"{script} --quick scored {score}, expected at least {least}"


@pytest.mark.skipif(BACKEND != "numpy", reason="reading the release's files does not depend on the backend, and "
                    "resnet.py trains on every backend in its MNIST run: run once, in the numpy session")
def test_resnet_trains_on_cifar10_from_a_folder_extracted_by_hand(tmp_path):
    """``--data cifar10`` reads ``$XPCNN_DATA/cifar10/cifar-10-batches-bin``: here files in the binary release's
    exact layout and sizes (the real archive cannot be downloaded on CI). Random records where ``--quick`` reads
    (the first 2,000 training and 500 test images), zeros after them, left as holes in sparse files: the loader
    still reads and checks all 60,000 records, but 184 MB are neither drawn nor written."""
    folder = tmp_path / "data" / "cifar10" / "cifar-10-batches-bin"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    used = {"data_batch_1.bin": 2000, "test_batch.bin": 500}
    for name in [*(f"data_batch_{i}.bin" for i in range(1, 6)), "test_batch.bin"]:
        records = rng.integers(0, 256, (used.get(name, 0), 3073), dtype=np.uint8)
        records[:, 0] %= 10
        with open(folder / name, "wb") as f:
            f.write(records.tobytes())
            f.truncate(10000 * 3073)  # the release's size; the rest reads as zeros (label 0, black images)
    out = tmp_path / "out"
    out.mkdir()
    result = _run("resnet.py", out, "--data", "cifar10", env={"XPCNN_DATA": str(tmp_path / "data")})
    assert "CIFAR-10: 2,000 training and 500 test images" in result.stdout
    _check_png(out / "resnet_history.png", CASES["resnet.py"][2])


# --- docs/tutorial.md: its python blocks run, in order, as one script ---------------------------------

TUTORIAL = REPO_ROOT / "docs" / "tutorial.md"
# the tutorial's own sizes, cut down for the test; each must be in the text (else the test says so)
TUTORIAL_EDITS = {
    'xpcnn.set_backend("numpy")': f"xpcnn.set_backend({BACKEND!r}, device={DEVICE!r})",
    "N_TRAIN, N_TEST = 10_000, 2_000": "N_TRAIN, N_TEST = 256, 256",
}


def _python_blocks(markdown: str) -> list[str]:
    blocks, current = [], None
    for line in markdown.splitlines():
        if current is None and line.strip() == "```python":
            current = []
        elif current is not None and line.strip() == "```":
            blocks.append("\n".join(current))
            current = None
        elif current is not None:
            current.append(line)
    return blocks


def test_tutorial_code_runs(tmp_path, mnist_root):
    script = "\n\n".join(_python_blocks(TUTORIAL.read_text(encoding="utf-8")))
    for old, new in TUTORIAL_EDITS.items():
        assert old in script, f"docs/tutorial.md no longer contains {old!r}; update TUTORIAL_EDITS"
        script = script.replace(old, new)
    (tmp_path / "tutorial.py").write_text(script, encoding="utf-8")
    env = {**os.environ, "MPLBACKEND": "Agg", "XPCNN_DATA": str(mnist_root), "PYTHONPATH": os.pathsep.join(
        p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH")) if p)}
    result = subprocess.run([sys.executable, "tutorial.py"], cwd=tmp_path, env=env, capture_output=True,
                            text=True, timeout=TIMEOUT_S)
    assert result.returncode == 0, f"--- stdout\n{result.stdout[-4000:]}\n--- stderr\n{result.stderr[-4000:]}"
    for picture in ("history.png", "cam.png"):
        assert (tmp_path / picture).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_train_mnist_reports_the_averaged_weights_it_was_asked_for(tmp_path, mnist_root, backend):
    """``--quick`` trains without the average by default; asked for, the average is what gets scored and saved:
    the saved weights are the optimizer's moving average, and the printed test accuracy is theirs. (Momentum
    0.98 over the 32 quick steps keeps the average far from the raw weights: 74% against 84.5% on NumPy, so
    scoring the raw weights cannot pass by a coincidence of one image in 1,000.)"""
    result = _run("train_mnist.py", tmp_path, "--data", str(mnist_root), "--ema", "0.98")
    line = next(line for line in result.stdout.splitlines() if line.startswith("test accuracy after"))
    assert line.endswith("(weights averaged with momentum 0.98)"), line
    printed = line.split(": ")[1].split()[0]

    from xpcnn.datasets.mnist import load_mnist

    model = xpcnn.load_model(tmp_path / "mnist_cnn.xpcnn")
    params, optimizer = model.params, model.optimizer
    assert optimizer.use_ema and optimizer.ema_momentum == 0.98
    for key, value in params.items():  # the weights fit left in the model are the average, not the raw ones
        ema = optimizer.state[key]["ema"]
        np.testing.assert_array_equal(xpcnn.to_numpy(value), xpcnn.to_numpy(ema), err_msg=key)
    _, (x_test, y_test) = load_mnist(mnist_root / "mnist")
    n = int(line.split(" on ")[1].split()[0].replace(",", ""))  # the --quick test images it scored
    accuracy = model.evaluate(x_test[:n], y_test[:n], batch_size=1000)["accuracy"]
    assert printed == f"{accuracy:.4f}", f"printed {printed}, the saved model scores {accuracy:.4f}"


def test_train_mnist_stops_at_the_target_accuracy_with_a_one_cycle_schedule(tmp_path, mnist_root):
    """``--target-accuracy`` ends training after the first epoch that reaches it and says how long it took."""
    result = _run("train_mnist.py", tmp_path, "--data", str(mnist_root), "--epochs", "3", "--one-cycle", "0.01",
                  "--target-accuracy", "0.5")
    assert "target 50.00% reached after 1 epoch(s)" in result.stdout, result.stdout[-2000:]
    assert "test accuracy after 1 epoch(s)" in result.stdout


def test_transfer_learning_starts_from_a_torchvision_checkpoint_and_keeps_the_frozen_backbone(tmp_path):
    """``--quick --weights FILE``: a torchvision checkpoint the test writes (random weights, randomised batch-norm
    statistics) as the backbone; feature extraction leaves it as loaded, fine-tuning trains, the model saves."""
    torch = pytest.importorskip("torch")
    sys.path.insert(0, str(REPO_ROOT / "tests" / "applications"))
    from torchvision_models import torchvision_models

    torch.manual_seed(0)
    backbone = torchvision_models().mobilenet_v3_small()
    with torch.no_grad():
        for name, value in backbone.state_dict().items():
            if name.endswith("running_var"):
                value.uniform_(0.5, 1.5)
    weights = tmp_path / "backbone.pth"
    torch.save(backbone.state_dict(), weights)
    result = _run("transfer_learning.py", tmp_path, "--weights", str(weights))
    _check_png(tmp_path / "transfer_learning_history.png", (272, 1080))
    assert "the backbone's 206 weights and statistics as loaded: True" in result.stdout
    model = xpcnn.load_model(tmp_path / "mobilenet_v3_small_transfer.xpcnn")
    assert model.get_layer("head").trainable and not model.get_layer("features.0.1").trainable  # a batch norm
    assert model.get_layer("features.0.0").trainable  # its convolution was fine-tuned
    fine_tuned = xpcnn.to_numpy(model.state_dict()["features.0.0.weight"])
    assert not np.array_equal(fine_tuned, backbone.state_dict()["features.0.0.weight"].numpy())
    np.testing.assert_array_equal(xpcnn.to_numpy(model.state_dict()["features.0.1.running_var"]),
                                  backbone.state_dict()["features.0.1.running_var"].numpy())
