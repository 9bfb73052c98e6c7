"""One test session per backend: ``nox -l`` lists them, plain ``nox`` runs every one (CuPy skips without a GPU).

Each session installs xpcnn with its test extra (PyTorch CPU is the oracle) and runs pytest with
``XPCNN_TEST_BACKEND`` set, over every core with pytest-xdist and then the ``serial`` tests alone; results
land in ``reports/<session>[-serial].xml`` for CI's summary.

``nox -s docs`` builds the documentation site (``docs/``) with warnings as errors; it is part of the default run.

``nox -s mutation`` is not part of that default run. It runs mutmut (``[tool.mutmut]`` in pyproject.toml) over
the numerical core (``xpcnn/ops``, ``xpcnn/layers``, losses, optimizers, transforms, metrics, callbacks)
against the NumPy session's tests of those modules: each mutant (a small deliberate bug) runs only the
tests that call the function it changes, and a mutant that every test survives points at a missing check.
It prints the survivors and the score; ``mutmut show <name>`` shows one, ``mutmut browse`` all of them.
Arguments after ``--`` name mutants (``nox -s mutation -- "xpcnn.losses.*"``); results are cached in
``mutants/`` (git-ignored), so a re-run retests only changed functions and maps only new tests; delete the
folder after editing existing tests, or for a fresh run.
"""

from __future__ import annotations

import importlib.util
import json
import os
import pathlib
import shutil
import subprocess

import nox

nox.options.reuse_venv = "yes"
nox.options.error_on_missing_interpreters = False

REPORTS = pathlib.Path(__file__).parent / "reports"
SHARED_DATA = pathlib.Path(__file__).resolve().parent.parent / "shared" / "datasets"


def _env(backend: str, device: str | None = None) -> dict[str, str]:
    # Tests are many tiny ops: one BLAS/OpenMP thread each is faster on 2 cores than threads fighting.
    env = {"XPCNN_TEST_BACKEND": backend, "PYTHONHASHSEED": "0", "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    if device:
        env["XPCNN_TEST_DEVICE"] = device
    if "XPCNN_DATA" not in os.environ and SHARED_DATA.is_dir():
        env["XPCNN_DATA"] = str(SHARED_DATA)
    return env


def _pytest(session: nox.Session, backend: str, device: str | None = None) -> None:
    """The tests over every core with pytest-xdist, then those marked ``serial`` (they start processes that
    use every core themselves) alone."""
    label = session.name + (f"-{device}" if device else "")
    REPORTS.mkdir(exist_ok=True)
    env = _env(backend, device)
    pytest = ("python", "-m", "pytest", *session.posargs)
    session.run(*pytest, "-n", "auto", "-m", "not serial", f"--junitxml={REPORTS / (label + '.xml')}", env=env)
    session.run(*pytest, "-m", "serial", f"--junitxml={REPORTS / (label + '-serial.xml')}", env=env,
                success_codes=[0, 5])  # 5: nothing selected


@nox.session(name="tests-numpy")
def tests_numpy(session: nox.Session) -> None:
    session.install("-e", ".[test]")
    _pytest(session, "numpy")


@nox.session(name="tests-array_api_strict")
def tests_array_api_strict(session: nox.Session) -> None:
    """On the simulated accelerator device1 (no silent host fallback), then on no_float64 in float32."""
    session.install("-e", ".[test,strict]")
    _pytest(session, "array_api_strict", "device1")
    _pytest(session, "array_api_strict", "no_float64")


@nox.session(name="tests-torch")
def tests_torch(session: nox.Session) -> None:
    session.install("-e", ".[test,torch]")
    _pytest(session, "torch", os.environ.get("XPCNN_TORCH_DEVICE"))


@nox.session(name="tests-jax")
def tests_jax(session: nox.Session) -> None:
    session.install("-e", ".[test,jax]")
    _pytest(session, "jax")


@nox.session(name="tests-mpi")
def tests_mpi(session: nox.Session) -> None:
    """Data-parallel training under ``mpiexec`` (the mpich wheel brings one) on each CPU backend."""
    session.install("-e", ".[test,mpi,jax]")
    REPORTS.mkdir(exist_ok=True)
    for backend in ("numpy", "torch", "jax"):
        session.run("python", "-m", "pytest", "tests/distributed", *session.posargs,
                    f"--junitxml={REPORTS / f'{session.name}-{backend}.xml'}", env=_env(backend))


def _has_cuda_gpu() -> bool:
    if shutil.which("nvidia-smi") is None:
        return False
    return subprocess.run(["nvidia-smi", "-L"], capture_output=True).returncode == 0


@nox.session(name="tests-cupy", venv_params=["--system-site-packages"])
def tests_cupy(session: nox.Session) -> None:
    """Needs a CUDA GPU; reuses a CuPy already installed on the machine, else the cuda12 extra."""
    if not _has_cuda_gpu():
        session.skip("no CUDA GPU on this machine (nvidia-smi found none): CuPy cannot run here")
    extra = "" if importlib.util.find_spec("cupy") else "," + os.environ.get("XPCNN_CUPY_EXTRA", "cuda12")
    session.install("-e", f".[test{extra}]")
    _pytest(session, "cupy", os.environ.get("XPCNN_CUPY_DEVICE"))


@nox.session(name="docs")
def docs(session: nox.Session) -> None:
    """The documentation site into ``docs/_build/html`` (open ``index.html``), from scratch, warnings as errors.

    The gallery runs the examples in their quick modes on the NumPy backend (MNIST from ``$XPCNN_DATA``), the
    guides' code blocks and the docstrings' doctests run too, and every public name must have a docstring
    (``docs/_ext/docstring_check.py``). Arguments after ``--`` go to sphinx-build.
    """
    session.install("-e", ".[docs]")
    out = pathlib.Path("docs") / "_build"
    for generated in (out, pathlib.Path("docs") / "auto_examples", pathlib.Path("docs") / "api" / "generated"):
        shutil.rmtree(generated, ignore_errors=True)
    env = {k: v for k, v in _env("numpy").items() if k != "XPCNN_TEST_BACKEND"}
    session.run("python", "-m", "sphinx", "-b", "html", "-W", "--keep-going", "-q", "docs", str(out / "html"),
                *session.posargs, env=env)
    session.log(f"open {(out / 'html' / 'index.html').resolve()}")


@nox.session(name="mutation", default=False)
def mutation(session: nox.Session) -> None:
    """Mutation testing of the numerical core with the NumPy tests that mirror it (see the module docstring);
    ``--max-children`` defaults to every core (``MUTMUT_MAX_CHILDREN`` to change it)."""
    session.install("-e", ".[test]", "mutmut>=3.8,<4")
    env = _env("numpy")
    children = os.environ.get("MUTMUT_MAX_CHILDREN", str(os.cpu_count() or 1))
    session.run("mutmut", "run", "--max-children", children, *session.posargs, env=env)
    session.run("mutmut", "results", env=env)
    if session.run("mutmut", "export-cicd-stats", env=env) is None:
        return  # --install-only
    stats = json.loads((pathlib.Path("mutants") / "mutmut-cicd-stats.json").read_text())
    # a timeout or a crash is a kill too; a mutant no test reaches ("no_tests") is listed apart
    killed = stats["killed"] + stats["timeout"] + stats["segfault"]
    score = killed / max(killed + stats["survived"] + stats["suspicious"], 1)
    session.log(f"mutation score {100 * score:.1f}% of the mutants that tests reach; {stats}")
