"""The backend under test is chosen per nox session (``XPCNN_TEST_BACKEND``, ``XPCNN_TEST_DEVICE``).

Tests that compute ask for the ``backend`` fixture (float32, the default dtype) or ``backend64`` (float64 for
numerical gradient checks; skipped where the device refuses float64, like array-api-strict's
``no_float64``).
"""

from __future__ import annotations

import functools
import http.server
import os
import pathlib
import threading
from collections.abc import Iterator

import pytest

import xpcnn
from xpcnn.training import Trainer

BACKEND = os.environ.get("XPCNN_TEST_BACKEND", "numpy")
DEVICE = os.environ.get("XPCNN_TEST_DEVICE") or None
if BACKEND == "array_api_strict" and DEVICE is None:
    DEVICE = "device1"  # the simulated accelerator: any array that fell back to the default device fails
if BACKEND == "jax":
    import jax

    jax.config.update("jax_enable_x64", True)  # float64 checks, as a JAX user would enable them

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
#: test modules that train whole models: on JAX each of their tests runs with compiled and with eager steps
MODEL_LEVEL_MODULES = {"test_model", "test_callbacks", "test_io", "test_no_host_sync", "test_mnist_training",
                       "test_functional"}


def pytest_report_header(config: pytest.Config) -> str:
    return f"xpcnn backend under test: {BACKEND} (device={DEVICE})"


@pytest.fixture
def backend() -> xpcnn.Backend:
    """The session's backend in float32, active for the test."""
    with xpcnn.use_backend(BACKEND, device=DEVICE, dtype="float32") as b:
        yield b


@pytest.fixture
def backend64() -> xpcnn.Backend:
    """The session's backend in float64; skipped on devices without float64."""
    try:
        ctx = xpcnn.use_backend(BACKEND, device=DEVICE, dtype="float64")
        b = ctx.__enter__()
    except ValueError as exc:
        pytest.skip(f"float64 unavailable on {BACKEND}/{DEVICE}: {exc}")
    try:
        yield b
    finally:
        ctx.__exit__(None, None, None)


@pytest.fixture(autouse=True)
def _seeded() -> None:
    """Every test starts from the same random stream, so failures reproduce."""
    xpcnn.manual_seed(0)


@pytest.fixture(scope="session")
def mnist_root() -> pathlib.Path:
    """The folder holding ``mnist/`` (``$XPCNN_DATA``, else ``../shared/datasets``); skip when absent."""
    env = os.environ.get("XPCNN_DATA")
    root = pathlib.Path(env) if env else REPO_ROOT.parent / "shared" / "datasets"
    if not (root / "mnist").is_dir():
        pytest.skip(f"MNIST not found under {root} (set XPCNN_DATA to the folder that holds mnist/)")
    return root


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if (BACKEND == "jax" and "compile_jit" in metafunc.fixturenames
            and metafunc.module.__name__ in MODEL_LEVEL_MODULES):
        metafunc.parametrize("compile_jit", ["jit", "eager"], indirect=True)


@pytest.fixture(autouse=True)
def compile_jit(request: pytest.FixtureRequest) -> Iterator[str]:
    """``compile``'s default ``jit="auto"`` compiles on JAX; the "eager" variant makes the default False, so
    the same model-level test also checks the eager steps there."""
    mode = getattr(request, "param", "auto")
    defaults = Trainer.compile.__defaults__
    if mode == "eager":
        Trainer.compile.__defaults__ = (*defaults[:-1], False)
    try:
        yield mode
    finally:
        Trainer.compile.__defaults__ = defaults


@pytest.fixture
def server():
    """Serve a folder over HTTP on 127.0.0.1 (the loaders' download tests: nothing reaches the internet);
    yields ``start(folder) -> base URL``."""
    servers = []

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    def start(folder: pathlib.Path) -> str:
        httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(folder)))
        threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        servers.append(httpd)
        return f"http://127.0.0.1:{httpd.server_address[1]}/"

    yield start
    for httpd in servers:
        httpd.shutdown()
        httpd.server_close()
