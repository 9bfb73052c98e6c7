"""Smoke test of the input-pipeline benchmark: ``--quick`` runs, prints its tables and writes the JSON it promises.

Nothing here looks at the timings (tests never assert on time). The script starts its own worker processes on
the numpy backend whatever the session's backend is, so it runs in the NumPy session only.
"""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

import pytest

pytest.importorskip("torch", reason="the benchmark compares against PyTorch's DataLoader")
pytest.importorskip("PIL", reason="the benchmark generates and decodes JPEGs")
pytestmark = [
    pytest.mark.serial,  # its workers use every core
    pytest.mark.skipif(os.environ.get("XPCNN_TEST_BACKEND", "numpy") != "numpy",
                       reason="the benchmark runs the numpy backend whatever this session's is: run once, in the "
                              "numpy session"),
]

SCRIPT = pathlib.Path(__file__).resolve().parents[1] / "benchmarks" / "bench_input.py"


def test_quick_run_prints_the_tables_and_writes_json(tmp_path: pathlib.Path) -> None:
    out, folder = tmp_path / "input.json", tmp_path / "pets"
    proc = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--folder", str(folder), "--json", str(out)],
                          capture_output=True, text=True, timeout=300, cwd=SCRIPT.parents[1])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for heading in ("| size | xpcnn 1 worker | xpcnn 2 workers |", "| folder | files | as float32 |",
                    "| model | files | BLAS threads | in memory | streamed |"):
        assert heading in proc.stdout, heading
    assert "results written to" in proc.stdout

    report = json.loads(out.read_text())
    for key in ("schema", "date", "command", "settings", "machine", "versions", "blas", "folder", "results", "table"):
        assert key in report, key
    assert report["settings"]["quick"] is True and report["settings"]["backend"] == "numpy"
    for key in ("cpu_model", "usable_cores", "loadavg", "loadavg_end"):
        assert key in report["machine"], key
    for key in ("python", "numpy", "torch", "xpcnn", "pillow"):
        assert report["versions"].get(key), key
    assert report["folder"]["corrupt_files"] == 6 and report["folder"]["images"] == report["settings"]["images"]

    decode = report["results"]["decode"]
    (size,) = report["settings"]["sizes"]
    summary = decode["summary"][str(size)]
    for side in ("xpcnn_1", "xpcnn_2", "torch_2"):
        assert summary[side]["images_per_s"] > 0 and summary[side]["cpu_ms_per_image"] > 0, side
    assert summary["xpcnn_1"]["skipped"] == 6  # the corrupt files, left out
    row = decode["rounds"][0]
    assert row["xpcnn_1"]["images"] == row["torch_2"]["images"] == report["settings"]["subset"]
    assert summary["xpcnn_2_over_torch_2"]["ratio"] == pytest.approx(
        row["xpcnn_2"]["images_per_s"] / row["torch_2"]["images_per_s"])
    assert "xpcnn_2_over_1" in summary
    assert "ImageFolder" in decode["reference"]

    memory = {entry["what"]: entry for entry in report["results"]["memory"]}
    assert set(memory) == {"folder", "tutorial"}
    assert memory["tutorial"]["files"] == report["settings"]["tutorial_images"] + 6
    for entry in memory.values():
        assert entry["peak_rss_mb"] > 0 and entry["epochs"][0]["train_batches"] > 0

    stream = report["results"]["stream_vs_memory"]["summary"]["small"]["default"]
    for key in ("memory_epoch_s", "stream_epoch_s", "stream_over_memory", "stream_input_wait_share"):
        assert stream[key] is not None and stream[key] >= 0, key

    profile = report["results"]["profile"]
    for part in ("main_thread", "worker_threads", "reference_one_thread"):
        assert sum(c["percent"] for c in profile[part]["categories"]) == pytest.approx(100.0), part
    assert any(line.startswith("| size |") for line in report["table"])
    assert not list(folder.rglob("*.part"))  # every generated file was written whole
