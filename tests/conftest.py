"""The backend under test is chosen per nox session (``XPCNN_TEST_BACKEND``, ``XPCNN_TEST_DEVICE``).

Tests that compute ask for the ``backend`` fixture (float32, the default dtype) or ``backend64`` (float64 for
numerical gradient checks; skipped where the device refuses float64, like array-api-strict's
``no_float64``).

Compiled and eager on JAX. ``compile``'s default ``jit="auto"`` compiles the train/test/predict steps with
``jax.jit`` on JAX. In the modules of ``MODEL_LEVEL_MODULES`` every test that compiles a model runs twice on
JAX: ``[jit]`` with that default and ``[eager]`` with the default turned to ``jit=False``. The rule, read from
the code before the tests run (``compiles_a_model``): a test compiles a model when it calls ``compile`` or
``load_model`` (which compiles a model saved compiled), in its own body or in a helper, class or fixture of the
tests folder that it names (followed transitively). A test may also ask for both modes by naming the
``compile_jit`` fixture. Every other test of those modules (callbacks driven by a fake model, an uncompiled
model's forward against torch, refusals) runs once: its steps, if any, are the same in both modes. That single
run fails as soon as it calls ``compile`` without ``jit=``, so a compile the rule did not see is reported, not
silently tested in one mode only. Other modules, and the other backends, run every test once.
"""

from __future__ import annotations

import ast
import functools
import http.server
import inspect
import os
import pathlib
import sys
import textwrap
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
#: test modules that train whole models: on JAX each of their tests that compiles a model runs with compiled and
#: with eager steps (see the module's docstring)
MODEL_LEVEL_MODULES = {"test_model", "test_callbacks", "test_io", "test_no_host_sync", "test_mnist_training",
                       "test_functional", "test_backup_and_restore", "test_freezing"}
#: the calls that compile a model: ``compile`` itself, and ``load_model`` of a file saved from a compiled model
COMPILING_CALLS = frozenset({"compile", "load_model"})
TESTS_DIR = pathlib.Path(__file__).resolve().parent


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


def _names_used(obj: object) -> set[str]:
    """Every name and attribute that ``obj``'s source mentions (``compile`` in ``model.compile(...)``)."""
    try:
        source = textwrap.dedent(inspect.getsource(inspect.unwrap(obj)))
    except (OSError, TypeError, ValueError):
        return set()
    names = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Name):
            names.add(node.id)
        elif isinstance(node, ast.Attribute):
            names.add(node.attr)
    return names


def _in_tests_folder(obj: object) -> bool:
    try:
        path = inspect.getsourcefile(inspect.unwrap(obj))
    except (TypeError, ValueError):  # a built-in or an instance: not test code
        return False
    return path is not None and TESTS_DIR in pathlib.Path(path).resolve().parents


def compiles_a_model(metafunc: pytest.Metafunc) -> bool:
    """Whether the test calls ``compile`` or ``load_model`` (``COMPILING_CALLS``): in its body, or in the helpers,
    classes and fixtures of the tests folder it names, followed transitively; or it asks for ``compile_jit``."""
    if "compile_jit" in inspect.signature(metafunc.function).parameters:
        return True
    seen: set[int] = set()
    todo: list[tuple[object, set[str]]] = [(metafunc.function, set(metafunc.fixturenames))]
    while todo:
        obj, extra = todo.pop()
        names = _names_used(obj) | extra
        if names & COMPILING_CALLS:
            return True
        owner = sys.modules.get(getattr(inspect.unwrap(obj), "__module__", ""), metafunc.module)
        for name in names:
            target = getattr(owner, name, None)
            if target is not None and id(target) not in seen and _in_tests_folder(target):
                seen.add(id(target))
                todo.append((target, set()))
    return False


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if (BACKEND == "jax" and metafunc.module.__name__ in MODEL_LEVEL_MODULES
            and compiles_a_model(metafunc)):
        metafunc.parametrize("compile_jit", ["jit", "eager"], indirect=True)


@pytest.fixture(autouse=True)
def compile_jit(request: pytest.FixtureRequest) -> Iterator[str]:
    """``compile``'s default ``jit="auto"`` compiles on JAX; the "eager" variant makes the default False, so
    the same model-level test also checks the eager steps there. A model-level test that runs once on JAX
    ("auto": the rule found no compile) fails if it calls ``compile`` without ``jit=`` after all."""
    mode = getattr(request, "param", "auto")
    original = Trainer.compile
    defaults = original.__defaults__
    if mode == "eager":  # the default of ``jit`` by its position among the parameters that have defaults
        with_defaults = [p.name for p in inspect.signature(original).parameters.values()
                         if p.default is not inspect.Parameter.empty]
        at = with_defaults.index("jit")
        Trainer.compile.__defaults__ = (*defaults[:at], False, *defaults[at + 1:])
    elif mode == "auto" and BACKEND == "jax" and request.module.__name__ in MODEL_LEVEL_MODULES:
        signature = inspect.signature(original)

        @functools.wraps(original)
        def compile_seen_by_the_rule(self, *args, **kwargs):
            try:
                given = signature.bind(self, *args, **kwargs).arguments
            except TypeError:  # arguments compile refuses: let it say so itself
                given = {"jit": None}
            if "jit" not in given:
                pytest.fail(f"{request.node.nodeid} compiles a model with the default jit, but conftest's rule "
                            "found no compile in it, so it would run in one mode only: name the compile_jit "
                            "fixture in its signature (or call compile/load_model where the rule can see it)")
            return original(self, *args, **kwargs)

        Trainer.compile = compile_seen_by_the_rule
    try:
        yield mode
    finally:
        Trainer.compile = original
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
