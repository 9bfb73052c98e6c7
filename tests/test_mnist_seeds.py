"""Smoke test of ``benchmarks/mnist_seeds.py``: it trains each asked variant and seed and reports the spread."""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys

import pytest

from conftest import BACKEND

SCRIPT = pathlib.Path(__file__).resolve().parents[1] / "benchmarks" / "mnist_seeds.py"

pytestmark = [pytest.mark.skipif(BACKEND != "numpy", reason="the script trains on NumPy whatever the session"),
              pytest.mark.slow, pytest.mark.serial]


def run_script(mnist_root: pathlib.Path, *args: str) -> tuple[list[dict], str]:
    """The script's JSON line per run, and its whole output."""
    proc = subprocess.run([sys.executable, str(SCRIPT), *args, "--data", str(mnist_root)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")], proc.stdout


def test_runs_every_variant_and_seed_and_prints_the_means(mnist_root: pathlib.Path) -> None:
    runs, stdout = run_script(mnist_root, "--variants", "he", "he-standardised", "--seeds", "0", "1",
                              "--limit", "2048")
    assert [(r["variant"], r["seed"]) for r in runs] == [("he", 0), ("he", 1), ("he-standardised", 0),
                                                          ("he-standardised", 1)]
    assert all(0.5 < r["test_accuracy"] <= 1.0 for r in runs)  # 32 steps on 2,048 images: well above chance (0.1)
    assert runs[0]["test_accuracy"] != runs[1]["test_accuracy"]  # the seed changes the run
    assert "mean" in stdout.splitlines()[-1]


def test_learning_rate_and_weight_average_are_options(mnist_root: pathlib.Path) -> None:
    def one_run(ema: str) -> dict:
        (run,), _ = run_script(mnist_root, "--variants", "he", "--seeds", "0", "--lr", "2e-3", "--ema", ema,
                               "--limit", "1024")
        return run

    averaged, raw = one_run("0.9"), one_run("0")
    assert (averaged["lr"], averaged["ema"], raw["ema"]) == (2e-3, 0.9, 0.0)
    assert 0.3 < averaged["test_accuracy"] <= 1.0
    assert averaged["test_accuracy"] != raw["test_accuracy"]  # the same run, scored on other weights
