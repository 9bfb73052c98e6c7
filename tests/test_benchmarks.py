"""Smoke test of the training benchmark harness: it runs, prints a ratio and writes the JSON it promises.

Nothing here looks at the timings themselves (tests never assert on time). The harness starts its own
workers with the backends it is told (``--backends``), whatever the session's backend is, so each test runs in
one session only: the NumPy session, and the JAX session for the test that needs JAX installed.
"""

from __future__ import annotations

import json
import pathlib
import re
import subprocess
import sys

import pytest

from conftest import BACKEND

pytest.importorskip("torch", reason="the benchmark compares against PyTorch")
pytestmark = pytest.mark.serial  # its workers use every core
ONCE = "the harness runs the backends it is told whatever this session's is: run once, in the {} session"
in_numpy_session = pytest.mark.skipif(BACKEND != "numpy", reason=ONCE.format("numpy"))
in_jax_session = pytest.mark.skipif(BACKEND != "jax", reason=ONCE.format("jax") + ", the one with JAX installed")

SCRIPT = pathlib.Path(__file__).resolve().parents[1] / "benchmarks" / "bench_train.py"


def _run(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=timeout,
                          cwd=SCRIPT.parents[1])


@in_numpy_session
def test_quick_run_prints_ratio_and_writes_json(tmp_path: pathlib.Path) -> None:
    out = tmp_path / "bench.json"
    proc = _run("--quick", "--rounds", "1", "--json", str(out))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "ratio" in proc.stdout
    assert "training throughput ratio xpcnn/reference" in proc.stdout
    assert "| numpy | float32 | PyTorch eager | " in proc.stdout

    report = json.loads(out.read_text())
    for key in ("schema", "date", "settings", "machine", "versions", "blas", "results"):
        assert key in report, key
    assert report["mode"] == "compare"
    assert report["settings"]["quick"] is True
    assert report["settings"]["dtype"] == "float32"
    assert report["settings"]["backends"] == ["numpy"]
    for key in ("platform", "cpu_model", "cpu_count", "vector_extensions"):
        assert key in report["machine"], key
    for key in ("python", "numpy", "torch", "xpcnn"):
        assert report["versions"].get(key), key
    assert "blas" in report["blas"] or "threadpools" in report["blas"]

    (entry,) = report["results"]
    assert (entry["backend"], entry["reference"], entry["model"]) == ("numpy", "torch", "mnist")
    assert len(entry["rounds"]) == 1
    summary = entry["summary"]
    for mode in ("train", "infer"):
        for key in ("xpcnn_images_per_s", "reference_images_per_s", "ratio", "ratios"):
            assert key in summary[mode], (mode, key)
        assert summary[mode]["xpcnn_images_per_s"] > 0 and summary[mode]["reference_images_per_s"] > 0
        assert summary[mode]["ratio"] == pytest.approx(
            summary[mode]["xpcnn_images_per_s"] / summary[mode]["reference_images_per_s"]
        )
    assert report["table"][2].startswith("| numpy | float32 | PyTorch eager | ")
    for fw in ("xpcnn", "reference"):
        assert summary["peak_rss_mb"][f"{fw}_peak_train"] > 0


@in_numpy_session
def test_a_mixed_policy_runs_against_torch_autocast(tmp_path: pathlib.Path) -> None:
    out = tmp_path / "bench.json"
    proc = _run("--quick", "--rounds", "1", "--backend", "torch", "--dtype-policies", "mixed_float16",
                "--skip-infer", "--json", str(out))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (entry,) = json.loads(out.read_text())["results"]
    assert entry["dtype_policy"] == "mixed_float16"
    (one,) = entry["rounds"]
    assert (one["xpcnn"]["dtype_policy"], one["xpcnn"]["optimizer"]) == ("mixed_float16", "LossScaleOptimizer")
    assert (one["reference"]["autocast"], one["reference"]["grad_scaler"]) == ("torch.float16", True)
    assert "| torch | mixed_float16 | PyTorch eager (autocast float16 + GradScaler) | " in proc.stdout


@in_numpy_session
def test_profile_accounts_for_the_step(tmp_path: pathlib.Path) -> None:
    out = tmp_path / "profile.json"
    proc = _run("--quick", "--profile", "--json", str(out))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "matmul" in proc.stdout and "im2col" in proc.stdout

    report = json.loads(out.read_text())
    assert report["mode"] == "profile"
    (prof,) = report["profile"]
    rows = {r["category"]: r for r in prof["categories"]}
    # (no col2im: training skips the first convolution's input gradient, the second takes the correlation route)
    for category in ("matmul (BLAS)", "im2col (window extraction)", "pooling"):
        assert category in rows, category
    assert any(c.startswith("other") for c in rows)
    # the categories, "other" included, add up to the measured step time by construction
    assert sum(r["ms_per_step"] for r in rows.values()) == pytest.approx(prof["step_ms_profiled"], rel=1e-6)
    assert sum(r["percent"] for r in rows.values()) == pytest.approx(100.0, rel=1e-6)


@in_jax_session
def test_jax_runs_against_plain_jax_in_the_same_table(tmp_path: pathlib.Path) -> None:
    pytest.importorskip("jax", reason="the JAX reference needs JAX")
    out = tmp_path / "bench.json"
    proc = _run("--quick", "--rounds", "1", "--backends", "numpy", "jax", "--skip-infer", "--json", str(out))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads(out.read_text())
    assert [(e["backend"], e["reference"]) for e in report["results"]] == [("numpy", "torch"), ("jax", "jax")]
    jax_entry = report["results"][1]
    assert jax_entry["rounds"][0]["reference"]["framework"] == "jax"
    assert jax_entry["summary"]["train"]["reference_images_per_s"] > 0
    assert [row.split(" | ")[0] for row in report["table"][2:]] == ["| numpy", "| jax"]


@in_numpy_session
@pytest.mark.parametrize(("args", "message"), [
    (["--models", "no-such-model"], r"argument --models: invalid choice: 'no-such-model' \(choose from .*mnist"),
    (["--configs", "mnist:0"], r"argument --configs: expected MODEL:BATCH with MODEL in \[.*'mnist'.*\] and "
                               r"BATCH >= 1, got 'mnist:0'"),
    (["--quick", "--rounds", "0"], r"error: --rounds and --steps must be >= 1, --warmup >= 0"),
], ids=["unknown-model", "bad-config", "zero-rounds"])
def test_bad_arguments_exit_with_a_usage_error(args: list[str], message: str) -> None:
    proc = _run(*args, timeout=120)
    assert proc.returncode == 2, proc.stdout + proc.stderr  # argparse's usage error, before any worker starts
    assert re.search(message, proc.stderr), proc.stderr
    assert proc.stderr.startswith("usage: ") and "Traceback" not in proc.stderr
    assert proc.stdout == ""
