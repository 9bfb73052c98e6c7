"""The applications benchmark harness runs and reports (timings are not judged: benchmarks measure, tests
do not); it does not depend on the backend under test, so it runs once, in the numpy session."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from conftest import BACKEND, REPO_ROOT

pytest.importorskip("torch", reason="the benchmark compares against torchvision on PyTorch")
pytestmark = pytest.mark.skipif(BACKEND != "numpy", reason="backend-independent: run once, in the numpy session")


def test_quick_run_prints_its_table_and_writes_json(tmp_path):
    out = tmp_path / "apps.json"
    done = subprocess.run([sys.executable, str(REPO_ROOT / "benchmarks" / "bench_applications.py"), "--quick",
                           "--models", "mobilenet_v3_small", "--backends", "numpy", "--json", str(out)],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "| mobilenet_v3_small | numpy |" in done.stdout
    report = json.loads(out.read_text())
    (row,) = report["results"]
    assert (row["model"], row["backend"], len(row["rounds"])) == ("mobilenet_v3_small", "numpy", 1)
    assert row["xpcnn_images_per_s"] > 0 and row["torchvision_images_per_s"] > 0
    assert report["settings"]["size"] == 64 and "cpu_model" in report["machine"]
