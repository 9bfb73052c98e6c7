"""What a benchmark result must say about where it ran (machine, library versions, BLAS, threads), and the
running of one measurement in a fresh process that the harnesses share."""

from __future__ import annotations

import importlib.metadata
import json
import math
import os
import platform
import re
import resource
import statistics
import subprocess
import sys
from typing import Any

THREAD_ENV_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "BLIS_NUM_THREADS",
                   "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS")


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.lower().startswith(("model name", "hardware", "cpu model")):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


#: the vector extensions that decide how fast the frameworks' kernels run (PyTorch's oneDNN uses AVX-512)
VECTOR_FLAGS = ("sse4_2", "avx", "avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx512_bf16", "amx_tile",
                "asimd", "sve")


def vector_extensions() -> list[str]:
    """Which of ``VECTOR_FLAGS`` the CPU reports (``/proc/cpuinfo`` flags; empty elsewhere)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.lower().startswith(("flags", "features")):
                    flags = set(line.split(":", 1)[1].split())
                    return [flag for flag in VECTOR_FLAGS if flag in flags]
    except OSError:
        pass
    return []


def usable_cores() -> int:
    """Cores this process may run on (the affinity mask where the OS has one, else ``os.cpu_count()``)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def machine_info() -> dict[str, Any]:
    info: dict[str, Any] = {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "hostname": platform.node(),
        "cpu_model": cpu_model(),
        "vector_extensions": vector_extensions(),
        "cpu_count": os.cpu_count(),
        "usable_cores": usable_cores(),
    }
    try:
        info["loadavg"] = [round(v, 2) for v in os.getloadavg()]
    except OSError:
        pass
    try:
        with open("/proc/meminfo", encoding="utf-8") as f:
            match = re.search(r"MemTotal:\s+(\d+) kB", f.read())
        if match:
            info["memory_gb"] = round(int(match.group(1)) / 2**20, 1)
    except OSError:
        pass
    return info


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def versions() -> dict[str, Any]:
    """Versions of what the benchmark touches, without importing the heavy libraries."""
    out: dict[str, Any] = {"python": sys.version.split()[0], "implementation": platform.python_implementation()}
    for dist in ("numpy", "torch", "array-api-compat", "array-api-extra", "cupy-cuda12x", "cupy-cuda13x", "jax",
                 "jaxlib", "array-api-strict", "threadpoolctl"):
        v = _version(dist)
        if v is not None:
            out[dist] = v
    try:
        import xpcnn

        out["xpcnn"] = getattr(xpcnn, "__version__", None)
        out["xpcnn_path"] = os.path.dirname(xpcnn.__file__)
    except ImportError as exc:  # pragma: no cover
        out["xpcnn"] = f"not importable: {exc}"
    out["xpcnn_git"] = _git_describe()
    return out


def _git_describe() -> str | None:
    import subprocess

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    try:
        head = subprocess.run(["git", "-C", root, "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              timeout=10)
        dirty = subprocess.run(["git", "-C", root, "status", "--porcelain", "--", "xpcnn", "benchmarks"],
                               capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    if head.returncode:
        return None
    return head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


def blas_info() -> dict[str, Any]:
    """The BLAS behind NumPy: threadpoolctl's live view when installed, else NumPy's build configuration."""
    import numpy as np

    info: dict[str, Any] = {}
    try:
        import threadpoolctl

        info["threadpools"] = [
            {k: pool.get(k) for k in ("user_api", "internal_api", "version", "num_threads", "threading_layer",
                                      "architecture", "filepath")}
            for pool in threadpoolctl.threadpool_info()
        ]
        info["source"] = "threadpoolctl"
    except ImportError:
        info["source"] = "numpy.show_config"
    try:
        config = np.show_config(mode="dicts")
        deps = config.get("Build Dependencies", {})
        for key in ("blas", "lapack"):
            if key in deps:
                info[key] = {k: deps[key].get(k) for k in ("name", "version", "openblas configuration")
                             if deps[key].get(k) is not None}
    except Exception as exc:  # numpy < 1.26 has no mode="dicts"
        info["error"] = f"numpy.show_config(mode='dicts') failed: {exc}"
    return info


def blas_summary(info: dict[str, Any]) -> str:
    blas = info.get("blas", {})
    text = f"{blas.get('name', '?')} {blas.get('version', '')}".strip()
    pools = [p for p in info.get("threadpools", []) if p.get("user_api") == "blas"]
    if pools:
        text += f" ({pools[0].get('num_threads')} threads, {pools[0].get('architecture')})"
    return text


# the C allocator's settings: with glibc's defaults large freed arrays go back to the operating system and
# every fresh one pays its page faults again, which moves NumPy step times by 15-30% on a small machine
ALLOCATOR_ENV_VARS = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_ARENA_MAX", "LD_PRELOAD")


def thread_env() -> dict[str, str]:
    return {k: os.environ[k] for k in THREAD_ENV_VARS if k in os.environ}


def allocator_env() -> dict[str, str]:
    return {k: os.environ[k] for k in ALLOCATOR_ENV_VARS if k in os.environ}


def peak_rss_mb() -> float:
    """Peak resident set of this process so far, MiB (ru_maxrss is KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(peak / (2**20 if sys.platform == "darwin" else 2**10), 1)


class WorkerError(RuntimeError):
    """A measurement's process failed, timed out or printed no result."""


def run_worker(cmd: list[str], what: str, marker: str, timeout: float, cwd: Any, env: dict[str, str],
               tail: int = 3000) -> dict[str, Any]:
    """Run one measurement in a fresh process; its result is the JSON printed after ``marker``."""
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=cwd, env=env)
    except subprocess.TimeoutExpired as exc:
        raise WorkerError(f"{what} exceeded {timeout}s") from exc
    for line in proc.stdout.splitlines():
        if line.startswith(marker):
            return json.loads(line[len(marker):])
    raise WorkerError(f"{what} failed with exit code {proc.returncode}:\n{proc.stdout[-tail:]}\n{proc.stderr[-tail:]}")


def median(values: list[float | None]) -> float | None:
    """The median of the finite values given (None when there are none)."""
    values = [v for v in values if v is not None and math.isfinite(v)]
    return statistics.median(values) if values else None
