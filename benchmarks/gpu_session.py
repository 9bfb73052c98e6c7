"""One prepared GPU session: every GPU check of xpcnn in one command that ends by itself within a time budget.

    python benchmarks/gpu_session.py --out DIR [--budget-s 540] [--dry-run]

GPU time comes in short windows, so this runs, in order, each step under its own share of ``--budget-s``:

1. ``cupy``: the whole test suite on CuPy, over the CPU cores with pytest-xdist, then the tests marked
   ``serial`` (they spawn processes that use every core) in a second pass alone;
2. ``no-host-sync``: ``tests/test_no_host_sync.py`` on CuPy (a training step under
   ``cupyx.allow_synchronize(False)``);
3. ``torch-cuda`` and ``jax-gpu``: the fast subset of the suite (``-m "not slow and not serial"``) on
   PyTorch ``device="cuda"`` and on JAX's GPU;
4. ``bench``: ``benchmarks/bench_train.py --backend cupy`` against PyTorch CUDA on the MNIST CNN at batch 256
   and the CIFAR-shaped model at batch 128, with each side's device memory, in float32 and under
   ``mixed_float16`` (against PyTorch's ``torch.autocast`` with a ``GradScaler``).

A step that finishes early leaves its time to the steps after it; one that runs out is interrupted (pytest
still writes what ran) and reported as not finished. Everything lands in ``DIR`` as at most eight files:
``session.log`` (all output), ``junit-<step>.xml`` per test step, ``bench-train.json`` and ``summary.txt``,
which is also printed last. The exit code is 0 when every step finished green, 1 otherwise, 2 when the
session cannot start (no GPU, missing packages).

No network is needed. Wheels found in ``--wheels`` (default ``.wheels/``: array-api-compat,
array-api-extra, array-api-strict; docs/guides/gpu.md says how to download them) are installed into a
private folder put first on ``PYTHONPATH`` with the checkout itself, so the machine's own CuPy, PyTorch
and JAX are never touched and xpcnn needs no build. ``--dry-run`` runs the same harness on a CPU machine with
the numpy backend in place of every GPU step, a few test files and a tiny benchmark, so that the test suite
can run it and it cannot rot.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from typing import Any, TextIO

ROOT = pathlib.Path(__file__).resolve().parents[1]
DRY_RUN_TESTS = ("tests/test_backend.py", "tests/layers/test_dense.py")
FAST_SUBSET = "not slow and not serial"
RESERVE_S = 10.0  # kept back from the steps for the summary and the files
GRACE_S = 15.0  # between the interrupt that lets pytest write its report and the kill
LOG_LIMIT_BYTES = 15 * 2**20
NOT_STARTED = "not started: no time left"
VERSIONS_OF = ("numpy", "cupy-cuda13x", "cupy-cuda12x", "cupy", "torch", "jax", "jaxlib", "jax-cuda13-plugin",
               "jax-cuda12-plugin", "array-api-compat", "array-api-extra", "array-api-strict", "pytest",
               "pytest-xdist", "hypothesis")


@dataclasses.dataclass
class Pass:
    """One command of a step; ``weight`` is its part of the step's time."""

    label: str
    argv: list[str]
    env: dict[str, str]
    weight: float = 1.0
    junit: pathlib.Path | None = None
    status: str = NOT_STARTED
    seconds: float = 0.0


@dataclasses.dataclass
class Step:
    name: str
    what: str
    weight: float
    passes: list[Pass]
    counts: dict[str, int] | None = None

    @property
    def seconds(self) -> float:
        return sum(p.seconds for p in self.passes)

    @property
    def status(self) -> str:
        return "; ".join(f"{p.label} {p.status}" + (f" in {p.seconds:.0f} s" if p.seconds else "")
                         for p in self.passes)

    @property
    def finished(self) -> bool:
        return all(p.status.startswith(("passed", "failed")) for p in self.passes)

    @property
    def failed(self) -> bool:
        return any(p.status.startswith("failed") for p in self.passes) or bool((self.counts or {}).get("failed"))


# ====================================================================================================
# running commands under a deadline
# ====================================================================================================

def run_pass(argv: list[str], env: dict[str, str], limit_s: float, log: TextIO) -> tuple[str, float]:
    """Run ``argv`` with output to ``log`` for at most ``limit_s`` seconds; return (status, seconds).

    At ``limit_s - GRACE_S`` the whole process group gets SIGINT, on which pytest (and xdist) stop and still
    write their JUnit report; whatever is left at ``limit_s`` is killed.
    """
    log.write(f"\n$ {' '.join(argv)}\n")
    log.flush()
    t0 = time.monotonic()
    proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, start_new_session=True)
    grace = min(GRACE_S, limit_s / 4)
    try:
        rc = proc.wait(timeout=max(limit_s - grace, 0.1))
    except subprocess.TimeoutExpired:
        _signal_group(proc, signal.SIGINT)
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            _signal_group(proc, signal.SIGKILL)
            proc.wait()
        seconds = time.monotonic() - t0
        return f"did not finish: stopped at its limit of {limit_s:.0f} s", seconds
    seconds = time.monotonic() - t0
    if rc == 0:
        return "passed", seconds
    if rc == 5:  # pytest: no test selected
        return "passed (nothing selected)", seconds
    return f"failed (exit code {rc})", seconds


def _signal_group(proc: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        pass


def share(remaining_s: float, weight: float, weights_left: float) -> float:
    """This item's part of the time left: what finished early flows on to the items after it."""
    return max(remaining_s, 0.0) * weight / weights_left


def run_steps(steps: list[Step], deadline: float, log: TextIO) -> None:
    for i, step in enumerate(steps):
        remaining = deadline - time.monotonic()
        if remaining < 1.0:
            continue
        step_deadline = time.monotonic() + share(remaining, step.weight, sum(s.weight for s in steps[i:]))
        print(f"== {step.name}: {step.what} ({step_deadline - time.monotonic():.0f} s)", flush=True)
        log.write(f"\n{'=' * 100}\n== step {step.name}: {step.what}\n")
        for j, p in enumerate(step.passes):
            limit = share(step_deadline - time.monotonic(), p.weight, sum(q.weight for q in step.passes[j:]))
            if limit >= 1.0:
                p.status, p.seconds = run_pass(p.argv, p.env, limit, log)
        print(f"   {step.status}", flush=True)


# ====================================================================================================
# the plan: which steps, on which backend
# ====================================================================================================

def child_env(pythonpath: list[str], **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([*pythonpath, *filter(None, [os.environ.get("PYTHONPATH")])])
    env.update({"PYTHONUNBUFFERED": "1", "PYTHONHASHSEED": "0", "OMP_NUM_THREADS": "1",
                "OPENBLAS_NUM_THREADS": "1", "MPLBACKEND": "Agg",
                # JAX takes 75% of the GPU at start unless told not to; with xdist every worker would
                "XLA_PYTHON_CLIENT_PREALLOCATE": "false"})
    env.update(extra)
    return env


def pytest_step(name: str, what: str, weight: float, backend: str, device: str | None, selection: list[str],
              args: argparse.Namespace, env: dict[str, str], tmp: pathlib.Path, *, xdist: bool,
              serial_pass: bool) -> Step:
    """pytest on ``backend``: over the cores with xdist where the tests allow it, then the serial tests alone."""
    env = {**env, "XPCNN_TEST_BACKEND": backend}
    if device:
        env["XPCNN_TEST_DEVICE"] = device
    pytest = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"]
    passes = []
    if xdist:
        marker = "not serial" if serial_pass else FAST_SUBSET
        passes.append(Pass(f"{name}-parallel", [*pytest, "-p", "xdist", "-n", str(args.workers), "-m", marker,
                                                *selection], env, weight=3.0))
        if serial_pass:
            passes.append(Pass(f"{name}-serial", [*pytest, "-m", "serial", *selection], env, weight=1.0))
    else:
        passes.append(Pass(f"{name}-all", [*pytest, *selection] + ([] if serial_pass else ["-m", FAST_SUBSET]),
                           env))
    for p in passes:
        p.junit = tmp / f"{p.label}.xml"
        p.argv.append(f"--junitxml={p.junit}")
    return Step(name, what, weight, passes)


def plan(args: argparse.Namespace, env: dict[str, str], out: pathlib.Path, tmp: pathlib.Path,
         xdist: bool) -> list[Step]:
    """The four steps; a dry run keeps their shape with numpy everywhere, a few test files and a tiny benchmark."""
    dry = args.dry_run
    suite = list(DRY_RUN_TESTS) if dry else ["tests"]
    where = (lambda backend, device: ("numpy", None)) if dry else (lambda backend, device: (backend, device))
    steps = [
        pytest_step("cupy", "the whole suite on CuPy", 4.0, *where("cupy", None), suite, args, env, tmp,
                  xdist=xdist, serial_pass=True),
        pytest_step("no-host-sync", "a training step under cupyx.allow_synchronize(False)", 0.5,
                  *where("cupy", None), ["tests/test_no_host_sync.py"], args, env, tmp, xdist=False,
                  serial_pass=True),
        pytest_step("torch-cuda", f"the suite's fast subset ({FAST_SUBSET}) on torch, device cuda", 1.5,
                  *where("torch", "cuda"), suite, args, env, tmp, xdist=xdist, serial_pass=False),
        pytest_step("jax-gpu", f"the suite's fast subset ({FAST_SUBSET}) on JAX, device gpu", 1.5,
                  *where("jax", "gpu"), suite, args, env, tmp, xdist=xdist, serial_pass=False),
    ]
    bench = [sys.executable, str(ROOT / "benchmarks" / "bench_train.py"), "--json", str(out / "bench-train.json")]
    if dry:
        bench += ["--backend", "numpy", "--configs", "mnist:16", "--rounds", "1", "--steps", "2", "--warmup", "1"]
    else:
        bench += ["--backend", "cupy", "--configs", "mnist:256", "cifar:128", "--rounds", "3", "--steps", "30",
                  "--warmup", "3", "--dtype-policies", "float32", "mixed_float16"]
    steps.append(Step("bench", "xpcnn on CuPy against PyTorch CUDA, MNIST b256 and CIFAR b128, float32 and "
                               "mixed_float16 (against torch.autocast + GradScaler)", 2.0,
                      [Pass("bench", bench, env)]))
    for step in steps:
        if dry:
            step.what += " [dry run: numpy on the CPU instead]"
    return steps


# ====================================================================================================
# setting up: the GPU, the wheels, the environment
# ====================================================================================================

class SetupError(RuntimeError):
    """The session cannot start; the message says why and what to do."""


def require_gpu() -> str:
    """nvidia-smi's line for the first GPU, or a SetupError that says how to run without one."""
    smi = shutil.which("nvidia-smi")
    proc = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=60) if smi else None
    if proc is None or proc.returncode != 0 or "GPU" not in proc.stdout:
        why = "nvidia-smi is not on PATH" if proc is None else (proc.stderr or proc.stdout).strip() or "no GPU listed"
        raise SetupError(f"no CUDA GPU found on this machine ({why}). Run this on a machine with an NVIDIA GPU, "
                         "or pass --dry-run to rehearse the session on the CPU with the numpy backend.")
    return proc.stdout.splitlines()[0]


def install_wheels(wheels: pathlib.Path, target: pathlib.Path, log: TextIO) -> list[str]:
    """pip-install the wheels in ``wheels`` into ``target`` (no index, no dependencies); their names."""
    files = sorted(wheels.glob("*.whl")) if wheels.is_dir() else []
    if not files:
        return []
    proc = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-index", "--no-deps",
                           "--no-compile", "--target", str(target), *map(str, files)],
                          capture_output=True, text=True, timeout=300)
    log.write(proc.stdout + proc.stderr)
    if proc.returncode:
        raise SetupError(f"installing the wheels of {wheels} failed:\n{proc.stderr.strip()[-2000:]}")
    return [f.name for f in files]


PROBE = r"""
import importlib, importlib.metadata, importlib.util, json, os, sys
out = {"python": sys.version.split()[0], "cpu_cores": len(os.sched_getaffinity(0)), "versions": {},
       "missing": []}
for dist in json.loads(sys.argv[1]):
    try:
        out["versions"][dist] = importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        pass
for module in ("array_api_compat", "array_api_extra", "numpy", "pytest", "xpcnn"):
    try:
        importlib.import_module(module)
    except ImportError as exc:
        out["missing"].append(f"{module} ({exc})")
out["xdist"] = importlib.util.find_spec("xdist") is not None
try:
    import cupy
    out["cuda_runtime"] = cupy.cuda.runtime.runtimeGetVersion()
    out["cuda_driver"] = cupy.cuda.runtime.driverGetVersion()
except Exception as exc:
    out["cupy_error"] = repr(exc)[:300]
try:
    import torch
    out["torch_cuda"] = torch.version.cuda
    out["torch_gpu"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
except Exception as exc:
    out["torch_error"] = repr(exc)[:300]
print(json.dumps(out))
"""


def probe_environment(env: dict[str, str]) -> dict[str, Any]:
    """Versions and devices as the steps will see them (same interpreter, same PYTHONPATH)."""
    proc = subprocess.run([sys.executable, "-c", PROBE, json.dumps(VERSIONS_OF)], capture_output=True, text=True,
                          env=env, cwd=ROOT, timeout=180)
    if proc.returncode:
        raise SetupError(f"the environment probe failed:\n{proc.stderr.strip()[-2000:]}")
    info = json.loads(proc.stdout.strip().splitlines()[-1])
    smi = shutil.which("nvidia-smi")
    if smi:
        q = subprocess.run([smi, "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
                           capture_output=True, text=True, timeout=60)
        if q.returncode == 0:
            info["gpus"] = [line.strip() for line in q.stdout.splitlines() if line.strip()]
    return info


def describe_environment(info: dict[str, Any]) -> list[str]:
    lines = [f"GPU: {'; '.join(info.get('gpus') or ['none'])} (name, driver, memory)"]
    if "cuda_runtime" in info:
        lines.append(f"CUDA runtime {info['cuda_runtime']}, driver API {info['cuda_driver']} (CuPy's numbering)")
    lines.append(f"Python {info['python']}, {info['cpu_cores']} CPU cores; "
                 + ", ".join(f"{k} {v}" for k, v in info["versions"].items()))
    if info.get("torch_cuda") or info.get("torch_gpu"):
        lines.append(f"torch built for CUDA {info.get('torch_cuda')}, sees {info.get('torch_gpu')}")
    return lines


# ====================================================================================================
# results: JUnit per step, the benchmark, the summary
# ====================================================================================================

def merge_junit(step: Step, out: pathlib.Path) -> None:
    """The passes' JUnit reports as one ``junit-<step>.xml``; counts over them on the step."""
    suites = []
    for p in step.passes:
        if p.junit is not None and p.junit.is_file():
            try:
                suites += list(ET.parse(p.junit).getroot().iter("testsuite"))
            except ET.ParseError:
                continue
    if not suites and not any(p.junit for p in step.passes):
        return
    counts = dict.fromkeys(("passed", "failed", "skipped"), 0)
    root = ET.Element("testsuites", name=step.name)
    for suite in suites:
        tests, skipped = int(suite.get("tests", 0)), int(suite.get("skipped", 0))
        failed = int(suite.get("failures", 0)) + int(suite.get("errors", 0))
        counts["passed"] += tests - failed - skipped
        counts["failed"] += failed
        counts["skipped"] += skipped
        root.append(suite)
    step.counts = counts
    ET.ElementTree(root).write(out / f"junit-{step.name}.xml", encoding="utf-8", xml_declaration=True)


def bench_lines(path: pathlib.Path) -> list[str]:
    if not path.is_file():
        return ["benchmark: no results written"]
    report = json.loads(path.read_text(encoding="utf-8"))
    s = report["settings"]
    lines = [f"benchmark: {s['rounds']} rounds x {s['steps']} steps, median of per-round ratios (> 1: xpcnn faster)"]
    for entry in report["results"]:
        sm = entry["summary"]
        parts = [f"{mode} {sm[mode]['ratio']:.2f}x ({sm[mode]['xpcnn_images_per_s']:.0f} vs "
                 f"{sm[mode]['reference_images_per_s']:.0f} img/s)" for mode in ("train", "infer") if mode in sm]
        memory = {k: v for k, v in sm["peak_rss_mb"].items() if "gpu" in k}
        lines.append(f"  {entry['backend']} vs {entry['reference']} on {entry['reference_device']}, "
                     f"{entry['model']} b{entry['batch_size']} {entry.get('dtype_policy', 'float32')}: "
                     + ", ".join(parts)
                     + (f"; device memory MB {memory}" if memory else ""))
    missing = [f"{m}:{b}" for m, b in s.get("configs") or [] if not any(
        e["model"] == m and e["batch_size"] == b for e in report["results"])]
    if missing:
        lines.append(f"  not measured: {', '.join(missing)}")
    return lines


def summary_lines(args: argparse.Namespace, steps: list[Step], info: dict[str, Any], started: datetime.datetime,
                  took_s: float, out: pathlib.Path) -> list[str]:
    title = "xpcnn GPU session" + (" (DRY RUN: numpy backend on the CPU, a few test files)" if args.dry_run else "")
    lines = [title, f"started {started.isoformat(timespec='seconds')}, budget {args.budget_s:.0f} s, "
                    f"took {took_s:.0f} s", *describe_environment(info), ""]
    lines.append(f"{'step':<14} {'passed':>7} {'failed':>7} {'skipped':>8} {'seconds':>8}  status")
    for step in steps:
        c = step.counts or {}
        lines.append(f"{step.name:<14} {c.get('passed', '-'):>7} {c.get('failed', '-'):>7} {c.get('skipped', '-'):>8} "
                     f"{step.seconds:>8.0f}  {step.status}")
        lines.append(f"{'':<14} {step.what}")
    lines += ["", *bench_lines(out / "bench-train.json")]
    unfinished = [s.name for s in steps if not s.finished]
    failed = [s.name for s in steps if s.failed]
    lines += ["", f"did not run or did not finish: {', '.join(unfinished) or 'nothing'}",
              f"failed: {', '.join(failed) or 'nothing'}"]
    return lines


def cap_log(path: pathlib.Path) -> None:
    """Keep the log under the file limit: its head and its tail, the middle cut out."""
    size = path.stat().st_size
    if size <= LOG_LIMIT_BYTES:
        return
    head, tail = 2 * 2**20, LOG_LIMIT_BYTES - 3 * 2**20
    with open(path, "rb") as f:
        first = f.read(head)
        f.seek(size - tail)
        last = f.read()
    path.write_bytes(first + f"\n[... {size - head - tail} bytes cut ...]\n".encode() + last)


# ====================================================================================================

def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, type=pathlib.Path, help="folder for the result files (created)")
    p.add_argument("--budget-s", type=float, default=None,
                   help="seconds for the whole session, setup included (default 540; dry run 150)")
    p.add_argument("--dry-run", action="store_true", help="rehearse on the CPU: numpy in place of every GPU step")
    p.add_argument("--wheels", type=pathlib.Path, default=ROOT / ".wheels",
                   help="folder of wheels to install privately first (default .wheels/)")
    p.add_argument("--data", type=pathlib.Path, default=None,
                   help="folder holding mnist/ for the real-data tests (default $XPCNN_DATA, else .data/ if present)")
    p.add_argument("--workers", default="auto", help="pytest-xdist workers (default auto: one per core)")
    args = p.parse_args(argv)
    if args.budget_s is None:
        args.budget_s = 150.0 if args.dry_run else 540.0
    if args.budget_s < 3 * RESERVE_S:
        p.error(f"--budget-s must be at least {3 * RESERVE_S:.0f}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    t_start, started = time.monotonic(), datetime.datetime.now().astimezone()
    deadline = t_start + args.budget_s - RESERVE_S
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="xpcnn-gpu-session-") as tmpdir, \
            open(out / "session.log", "w", encoding="utf-8") as log:
        tmp = pathlib.Path(tmpdir)
        try:
            gpu = None if args.dry_run else require_gpu()
            installed = install_wheels(args.wheels, tmp / "site", log)
            data = args.data or (pathlib.Path(os.environ["XPCNN_DATA"]) if os.environ.get("XPCNN_DATA") else
                                 ROOT / ".data")
            env = child_env([str(tmp / "site"), str(ROOT)], **({"XPCNN_DATA": str(data)} if data.is_dir() else {}))
            info = probe_environment(env)
            if info["missing"]:
                raise SetupError(f"cannot import {', '.join(info['missing'])}. Put their wheels in {args.wheels} "
                                 "(docs/guides/gpu.md has the pip download command).")
        except SetupError as exc:
            print(f"gpu_session: {exc}", file=sys.stderr)
            log.write(f"setup failed: {exc}\n")
            return 2
        header = describe_environment(info) + [f"wheels installed privately: {', '.join(installed) or 'none'}",
                                               f"MNIST for the real-data tests: {env.get('XPCNN_DATA', 'absent')}"]
        if gpu:
            header.insert(0, gpu)
        if not info["xdist"]:
            header.append("pytest-xdist missing: every test step runs in one process")
        print("\n".join(header), flush=True)
        log.write("\n".join(header) + "\n")
        steps = plan(args, env, out, tmp, xdist=info["xdist"])
        run_steps(steps, deadline, log)
        for step in steps:
            merge_junit(step, out)
    cap_log(out / "session.log")
    lines = summary_lines(args, steps, info, started, time.monotonic() - t_start, out)
    (out / "summary.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n" + "\n".join(lines), flush=True)
    return 0 if all(s.finished and not s.failed for s in steps) else 1


if __name__ == "__main__":
    sys.exit(main())
